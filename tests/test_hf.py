"""apply_plan / export_checkpoint on tiny random models of each RoPE family, reloaded by stock transformers.

The round trip loads every exported checkpoint in ONE fresh interpreter that never imports ropelab, and compares
its frequencies with the plan and its logits with the in-process extended model, past the original window.
"""

import hashlib
import json
import subprocess
import sys
import textwrap

import gguf
import numpy as np
import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ropelab import METHODS, RopeSpec, make_plan
from ropelab.rope.plan import RopePlan
from ropelab.runtime.export import PLAN_FILE, export_checkpoint
from ropelab.runtime.gguf import gguf_rope_metadata, gguf_rope_tensors
from ropelab.runtime.hf import (
    apply_plan,
    check_frequencies,
    model_frequencies,
    rope_parameters,
    rotary_modules,
    vllm_hf_overrides,
)
from ropelab.runtime.models import random_model, word_tokenizer

ORIGINAL, TARGET = 64, 256  # tiny window; the check runs at TARGET tokens, 4x past it
FAMILIES = ("llama", "mistral", "qwen2", "phi3")
N_PAIRS = 8  # head_dim 16
# Phi-3 cannot express dynamic NTK (refused: test_refuses_dynamic_ntk_where_the_class_cannot_express_it)
CASES = [(f, m) for f in FAMILIES for m in sorted(METHODS) if (f, m) != ("phi3", "dynamic_ntk")]


def plan_for(method: str, spec: RopeSpec) -> RopePlan:
    options = {}
    if method == "longrope":  # distinct short factors: transformers must switch to the long ones past L
        options = {"factors": list(np.linspace(1.0, 4.0, N_PAIRS)), "short_factors": [1.0] * N_PAIRS}
    return make_plan(method, spec, TARGET, bins=36, **options)


def input_ids() -> torch.Tensor:
    return torch.randint(3, 128, (1, TARGET), generator=torch.Generator().manual_seed(1))  # (1, T)


RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folders, ids = json.loads(sys.argv[1]), torch.tensor(json.loads(sys.argv[2]))
    out = {}
    for folder in folders:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        AutoTokenizer.from_pretrained(folder)
        with torch.no_grad():
            logits = model(ids).logits
        rotary = [m for m in model.modules() if isinstance(getattr(m, "inv_freq", None), torch.Tensor)][0]
        np.save(folder + "/reloaded_logits.npy", logits.numpy())
        out[folder] = {"inv_freq": rotary.inv_freq.double().tolist(), "attention": float(rotary.attention_scaling),
                       "rope_type": model.config.rope_parameters["rope_type"]}
    assert "ropelab" not in sys.modules
    print(json.dumps({"results": out, "ropelab_imported": "ropelab" in sys.modules}))
""")


def export_and_reload(root) -> dict:
    """Export every family x method, reload all in one subprocess; returns {(family, method): record}."""
    ids = input_ids()
    records = {}
    for family in FAMILIES:
        base = random_model(family, original_length=ORIGINAL)
        with torch.no_grad():
            base_logits = base(ids).logits
        for method in sorted(METHODS):
            if (family, method) not in CASES:
                continue
            model = random_model(family, original_length=ORIGINAL)
            plan = plan_for(method, RopeSpec.from_hf_config(model.config))
            folder = export_checkpoint(model, word_tokenizer(), plan, root / f"{family}-{method}")
            with torch.no_grad():
                logits = model(ids).logits  # (1, T, V)
            inv_freq = rotary_modules(model)[0].inv_freq.double().numpy()  # after a TARGET-token forward
            records[family, method] = {"plan": plan, "folder": str(folder), "logits": logits.numpy(),
                                       "inv_freq": inv_freq, "base_logits": base_logits.numpy()}
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD, json.dumps([r["folder"] for r in records.values()]),
         json.dumps(ids.tolist())],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reloaded["ropelab_imported"] is False
    for record in records.values():
        record["reloaded"] = reloaded["results"][record["folder"]]
        record["reloaded_logits"] = np.load(record["folder"] + "/reloaded_logits.npy")
    return records


NATIVE = {"none": "default", "ntk": "default", "pi": "linear", "yarn": "yarn", "dynamic_ntk": "dynamic",
          "llama3": "llama3", "longrope": "longrope", "dprope": "longrope", "dprope_robust": "longrope",
          "dprope_continuous": "longrope", "dprope_candidates": "longrope"}


def check_round_trip(family: str, method: str, record: dict) -> None:
    plan, reloaded = record["plan"], record["reloaded"]
    assert record["logits"].shape == (1, TARGET, 128)  # input sanity: past the original window
    # the frequencies stock transformers uses at TARGET tokens are the plan's, in process and after reloading
    np.testing.assert_allclose(record["inv_freq"], plan.inv_freq, rtol=2e-6)
    np.testing.assert_allclose(reloaded["inv_freq"], plan.inv_freq, rtol=2e-6)
    assert reloaded["attention"] == pytest.approx(plan.attention_factor, rel=1e-6)
    np.testing.assert_allclose(record["reloaded_logits"], record["logits"], atol=2e-5, rtol=0)
    if method == "none":
        np.testing.assert_array_equal(record["logits"], record["base_logits"])
    else:  # the extension really changed the model
        assert np.abs(record["logits"] - record["base_logits"]).max() > 1e-3
    with open(f"{record['folder']}/{PLAN_FILE}") as f:
        assert RopePlan.from_dict(json.load(f)) == plan
    phi3_static = family == "phi3" and method in ("pi", "yarn", "llama3")  # Phi-3 accepts only default/longrope
    assert reloaded["rope_type"] == ("longrope" if phi3_static else NATIVE[method])


@pytest.mark.slow
def test_round_trip_same_frequencies_and_logits_past_the_window(tmp_path):
    """One test, so that ``pytest -n 2`` runs the export and the subprocess once."""
    records = export_and_reload(tmp_path)
    assert sorted(records) == sorted(CASES)
    failures = []
    for (family, method), record in records.items():
        try:
            check_round_trip(family, method, record)
        except AssertionError as error:
            failures.append(f"{family}/{method}: {str(error).strip().splitlines()[0]}")
    assert not failures, "\n".join(failures)


# --- other families, in process ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen3", "gemma"])
@pytest.mark.parametrize("method", sorted(set(METHODS) - {"longrope"}))
def test_apply_plan_on_more_families(family, method):
    model = random_model(family, original_length=ORIGINAL)
    plan = plan_for(method, RopeSpec.from_hf_config(model.config))
    apply_plan(model, plan)
    inv_freq, attention = model_frequencies(model, TARGET)
    np.testing.assert_allclose(inv_freq, plan.inv_freq, rtol=2e-6)
    assert attention == pytest.approx(plan.attention_factor)
    assert model.config.max_position_embeddings == (ORIGINAL if method == "dynamic_ntk" else TARGET)


def test_partial_rotary_phi3():
    model = random_model("phi3", original_length=ORIGINAL, partial_rotary_factor=0.5)
    spec = RopeSpec.from_hf_config(model.config)
    assert spec.rotary_dim == 8  # input sanity: half of the 16-dim head rotates
    plan = make_plan("dprope", spec, TARGET, bins=36)
    apply_plan(model, plan)
    np.testing.assert_allclose(model_frequencies(model, TARGET)[0], plan.inv_freq, rtol=2e-6)
    full = make_plan("dprope", RopeSpec(spec.theta, 16, ORIGINAL), TARGET, bins=36)
    with pytest.raises(ValueError, match="plan was made for"):
        apply_plan(random_model("phi3", original_length=ORIGINAL, partial_rotary_factor=0.5), full)


# --- errors ------------------------------------------------------------------------------------------------------

LLAMA_SPEC = RopeSpec(10000.0, 16, ORIGINAL)


def test_refuses_a_model_without_rope():
    with pytest.raises(ValueError, match="GPT2LMHeadModel has no rotary embedding"):
        apply_plan(random_model("gpt2"), make_plan("pi", LLAMA_SPEC, TARGET))


def test_refuses_per_layer_type_rope():
    with pytest.raises(ValueError, match=r"per-layer-type RoPE \(full_attention, sliding_attention\)"):
        apply_plan(random_model("gemma3", original_length=ORIGINAL), make_plan("pi", LLAMA_SPEC, TARGET))


def test_refuses_a_plan_for_another_model():
    wrong = make_plan("pi", RopeSpec(500000.0, 16, ORIGINAL), TARGET)
    with pytest.raises(ValueError, match="plan was made for .*theta=500000.0.* but the model has .*theta=10000.0"):
        apply_plan(random_model("llama", original_length=ORIGINAL), wrong)


def test_refuses_dynamic_ntk_where_the_class_cannot_express_it():
    model = random_model("phi3", original_length=ORIGINAL)
    with pytest.raises(ValueError, match="phi3 does not accept rope_type 'dynamic'"):
        apply_plan(model, make_plan("dynamic_ntk", RopeSpec.from_hf_config(model.config), TARGET))


def test_warns_about_sliding_windows_shorter_than_the_target():
    model = random_model("mistral", original_length=ORIGINAL, sliding_window=32)
    with pytest.warns(UserWarning, match="sliding-window attention \\(32 tokens\\) in every layer"):
        apply_plan(model, make_plan("dprope", LLAMA_SPEC, TARGET, bins=36))
    np.testing.assert_allclose(model_frequencies(model, TARGET)[0], make_plan("dprope", LLAMA_SPEC, TARGET,
                                                                              bins=36).inv_freq, rtol=2e-6)


def test_export_refuses_a_non_empty_folder_unless_forced(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    plan = make_plan("pi", LLAMA_SPEC, TARGET)
    with pytest.raises(FileExistsError, match="is not empty"):
        export_checkpoint(random_model("llama", original_length=ORIGINAL), word_tokenizer(), plan, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    export_checkpoint(random_model("llama", original_length=ORIGINAL), word_tokenizer(), plan, tmp_path / "out",
                      force=True)
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / PLAN_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left behind


def folder_digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_export_is_deterministic(tmp_path):
    plan = make_plan("dprope", LLAMA_SPEC, TARGET, bins=36)
    for name in ("a", "b"):
        export_checkpoint(random_model("llama", original_length=ORIGINAL), word_tokenizer(), plan, tmp_path / name)
    first, second = folder_digest(tmp_path / "a"), folder_digest(tmp_path / "b")
    assert {"config.json", "model.safetensors", "tokenizer.json", PLAN_FILE} <= set(first)
    assert first == second


# --- the written config against transformers' own ROPE_INIT_FUNCTIONS -----------------------------------------


@pytest.mark.parametrize("spec", [RopeSpec.preset("smollm2-135m"), RopeSpec.preset("llama2-7b"),
                                  RopeSpec(10000.0, 96, 4096, partial_rotary_factor=0.5)], ids=str)
@pytest.mark.parametrize("method", ["pi", "yarn", "dynamic_ntk", "llama3", "longrope", "dprope"])
@pytest.mark.parametrize("native", [True, False], ids=["native", "longrope-form"])
def test_written_parameters_reproduce_the_plan_via_rope_init_functions(spec, method, native):
    if method == "dynamic_ntk" and not native:
        pytest.skip("dynamic NTK has no static form")
    options = {"factors": list(np.linspace(1, 3, spec.n_pairs))} if method == "longrope" else {}
    plan = make_plan(method, spec, spec.original_length * 4, bins=60, **options)
    params = rope_parameters(plan, native=native)
    assert params["rope_type"] == ({"pi": "linear", "dynamic_ntk": "dynamic", "dprope": "longrope"}.get(method, method)
                                   if native else "longrope")
    config = LlamaConfig(hidden_size=spec.head_dim * 2, num_attention_heads=2, head_dim=spec.head_dim,
                         max_position_embeddings=spec.original_length if method == "dynamic_ntk" else plan.target_length,
                         rope_parameters=params)
    inv_freq, attention = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, "cpu", seq_len=plan.target_length)
    assert inv_freq.shape == (spec.n_pairs,)
    np.testing.assert_allclose(inv_freq.double().numpy(), plan.inv_freq, rtol=2e-6)
    assert attention == pytest.approx(plan.attention_factor, rel=1e-7)


# --- serving ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dprope", "yarn", "pi"])
def test_vllm_hf_overrides_structure(method):
    plan = make_plan(method, RopeSpec.preset("smollm2-135m"), 16384, bins=60)
    overrides = vllm_hf_overrides(plan)
    assert json.loads(json.dumps(overrides)) == overrides  # JSON-able, as --hf-overrides takes it
    assert set(overrides) == {"rope_parameters", "max_position_embeddings"}
    assert overrides["max_position_embeddings"] == 16384
    rope = overrides["rope_parameters"]
    # keys vLLM's get_rope reads for "longrope" (vllm/model_executor/layers/rotary_embedding/__init__.py)
    assert rope["rope_type"] == "longrope" and rope["rope_theta"] == 1e5
    assert rope["original_max_position_embeddings"] == 8192
    assert rope["short_factor"] == rope["long_factor"] == list(plan.factors) and len(rope["long_factor"]) == 32
    assert rope["short_mscale"] == rope["long_mscale"] == pytest.approx(plan.attention_factor)
    assert list(vllm_hf_overrides(plan, rope_key="rope_scaling")) == ["rope_scaling", "max_position_embeddings"]
    # the same dict, loaded by transformers, gives the plan's frequencies
    config = LlamaConfig(hidden_size=128, num_attention_heads=2, head_dim=64, max_position_embeddings=16384,
                         rope_parameters={k: v for k, v in rope.items() if not k.endswith("mscale")})
    inv_freq, attention = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu", seq_len=16384)
    np.testing.assert_allclose(inv_freq.double().numpy(), plan.inv_freq, rtol=2e-6)
    assert attention == pytest.approx(plan.attention_factor)


def test_serving_refuses_dynamic_ntk():
    plan = make_plan("dynamic_ntk", RopeSpec.preset("smollm2-135m"), 16384, bins=60)
    for function in (vllm_hf_overrides, gguf_rope_tensors, gguf_rope_metadata):  # ropelab.runtime.hf and ropelab.runtime.gguf
        with pytest.raises(ValueError, match="dynamic_ntk frequencies change with the sequence length"):
            function(plan)


def test_gguf_rope_tensors_are_named_as_llama_cpp_loads_them():
    """llama.cpp loads ``tn(LLM_TENSOR_ROPE_FREQS, "weight")``: gguf-py's base name plus ``.weight``."""
    spec = RopeSpec.preset("smollm2-135m")
    plan = make_plan("dprope", spec, 16384, bins=60)
    tensors = gguf_rope_tensors(plan)
    assert list(tensors) == [gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"]
    factors = tensors["rope_freqs.weight"]
    assert factors.dtype == np.float32 and factors.shape == (spec.n_pairs,)
    # llama.cpp divides each pair's frequency by its factor: that reproduces the plan
    np.testing.assert_allclose(spec.inv_freq() / factors, plan.inv_freq, rtol=1e-7)
    metadata = gguf_rope_metadata(plan)
    assert metadata["llama.rope.scaling.type"] == "none"  # with longrope, llama's graph ignores rope_freqs
    assert metadata["llama.rope.scaling.attn_factor"] == 1.0 and metadata["llama.context_length"] == 16384
    assert RopePlan.from_json(metadata["ropelab.rope.plan"]) == plan

    long = make_plan("longrope", spec, 16384, bins=60, factors=[2.0] * 32, short_factors=[1.0] * 32)
    for arch in ("llama", "phi3"):  # distinct short factors: llama.cpp's long/short pair, type longrope
        pair = gguf_rope_tensors(long, arch=arch)
        assert set(pair) == {gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight",
                             gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight"}
        assert pair["rope_factors_long.weight"].tolist() == [2.0] * 32
        assert pair["rope_factors_short.weight"].tolist() == [1.0] * 32
        assert gguf_rope_metadata(long, arch=arch)[f"{arch}.rope.scaling.type"] == "longrope"
    with pytest.raises(ValueError, match="GGUF architecture 'qwen2' has no per-pair RoPE factors"):
        gguf_rope_tensors(plan, arch="qwen2")


def test_check_frequencies_reads_the_running_modules_attention_scaling():
    """The module's own ``attention_scaling`` (what multiplies cos/sin), not the config's, is checked."""
    model = random_model("llama", original_length=ORIGINAL)
    plan = make_plan("yarn", RopeSpec.from_hf_config(model.config), TARGET, bins=36)
    assert plan.attention_factor > 1.1  # input sanity: YaRN's temperature at 4x
    apply_plan(model, plan)
    module = rotary_modules(model)[0]
    assert module.attention_scaling == pytest.approx(plan.attention_factor, rel=1e-6)
    module.attention_scaling = 1.0  # as if the copy from the rebuilt module were lost; the config is unchanged
    with pytest.raises(RuntimeError, match="model attention factor 1.0 differs"):
        check_frequencies(model, plan)
    module.attention_scaling = plan.attention_factor
    module.inv_freq.mul_(1.001)  # frequencies drift from the config
    with pytest.raises(RuntimeError, match="model frequencies differ from the yarn plan"):
        check_frequencies(model, plan)


def test_serving_doc_examples_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/serving.md runs, in order, in one namespace."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 2  # input sanity: the vLLM and the GGUF examples
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/serving.md", "exec"), namespace)  # noqa: S102 -- our own documentation
    assert "--hf-overrides '{\"rope_parameters\": {" in capsys.readouterr().out


def test_export_files_are_not_private(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        export_checkpoint(random_model("llama", original_length=ORIGINAL), word_tokenizer(),
                          make_plan("pi", LLAMA_SPEC, TARGET), tmp_path / "out")
    finally:
        os.umask(mask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "out", *(tmp_path / "out").iterdir()]}
    assert modes["out"] == 0o755 and modes["model.safetensors"] == 0o644 and set(modes.values()) <= {0o755, 0o644}
