"""ropelab.runtime.verify and ropelab.runtime.gguf on tiny exported models: what each runtime computes, against the plan.

GGUF files here are written with gguf-py in the layout llama.cpp's converter gives a Llama checkpoint with
``rope_type: longrope`` (type kept, no factor tensor); the real converter and llama.cpp itself run in
tests/test_engines.py.
"""

import json
import math

import gguf
import numpy as np
import pytest

from ropelab import RopeSpec, make_plan
from ropelab.cli import main
from ropelab.runtime.export import export_checkpoint
from ropelab.runtime.gguf import read_gguf_rope, write_gguf
from ropelab.runtime.models import random_model, word_tokenizer
from ropelab.runtime.verify import verify, verify_folder, verify_gguf

ORIGINAL, TARGET = 64, 256
SPEC = RopeSpec(10000.0, 16, ORIGINAL)  # random_model("llama"): head_dim 16, 8 pairs


def exported(tmp_path, method, family="llama", **options):
    model = random_model(family, original_length=ORIGINAL)
    plan = make_plan(method, RopeSpec.from_hf_config(model.config), TARGET, bins=36, **options)
    return export_checkpoint(model, word_tokenizer(), plan, tmp_path / f"{family}-{method}"), plan


def converted_gguf(path, arch="llama", n_rot=16, scaling="longrope", factor=None, original=None, base=10000.0):
    """A GGUF with the RoPE keys convert_hf_to_gguf.py writes, and one weight tensor."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_context_length(TARGET)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_rope_dimension_count(n_rot)
    writer.add_rope_freq_base(base)
    writer.add_string(f"{arch}.rope.scaling.type", scaling)
    if factor:
        writer.add_rope_scaling_factor(factor)
    if original:
        writer.add_rope_scaling_orig_ctx_len(original)
    writer.add_tensor("token_embd.weight", np.arange(128 * 64, dtype=np.float32).reshape(128, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- transformers and vLLM, on exported folders -----------------------------------------------------------------


def test_verify_folder_passes_for_dprope_and_shows_vllm_without_overrides(tmp_path):
    folder, _plan = exported(tmp_path, "dprope")
    result = verify_folder(folder)  # the plan from ropelab_plan.json
    assert result.ok
    by_runtime = {(c.runtime, c.length): c for c in result.checks}
    assert set(by_runtime) == {(r, n) for r in ("transformers", "vllm (as is)", "vllm (overrides)")
                               for n in (ORIGINAL, TARGET)}
    for length in (ORIGINAL, TARGET):
        assert by_runtime["transformers", length].status == "pass"
        assert by_runtime["vllm (overrides)", length].status == "pass"
        # served as is, vLLM's longrope scales cos/sin by its own formula (phi3_long_rope_scaled_rope.py)
        as_is = by_runtime["vllm (as is)", length]
        assert as_is.status == "differs" and as_is.max_rel_error == 0.0
        assert as_is.attention == pytest.approx(math.sqrt(1 + math.log(4) / math.log(ORIGINAL)))
    assert "vllm (as is)      64      short_factor" in result.table()
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True


def test_verify_longrope_switches_factor_sets_past_the_original_window(tmp_path):
    factors = list(np.linspace(1.0, 4.0, 8))
    folder, plan = exported(tmp_path, "longrope", factors=factors, short_factors=[1.0] * 8)
    result = verify_folder(folder, plan)
    assert result.ok
    vllm = {c.length: c for c in result.checks if c.runtime == "vllm (overrides)"}
    assert (vllm[ORIGINAL].factors, vllm[TARGET].factors) == ("short_factor", "long_factor")
    transformers = [c for c in result.checks if c.runtime == "transformers"]
    assert [c.status for c in transformers] == ["pass", "pass"]  # short factors at L tokens, long at L'


def test_verify_finds_a_broken_config(tmp_path):
    folder, _plan = exported(tmp_path, "yarn")
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"]["attention_factor"] = 1.0  # a hand edit that loses YaRN's temperature
    (folder / "config.json").write_text(json.dumps(config))
    result = verify_folder(folder)
    transformers = [c for c in result.checks if c.runtime == "transformers"]
    assert not result.ok and {c.status for c in transformers} == {"FAIL"}
    assert transformers[0].attention == pytest.approx(1.0) and transformers[0].expected_attention > 1.1


def test_verify_dynamic_ntk_follows_the_sequence_length(tmp_path):
    folder, _plan = exported(tmp_path, "dynamic_ntk")
    result = verify_folder(folder)
    assert result.ok
    transformers = {c.length: c for c in result.checks if c.runtime == "transformers"}
    assert set(transformers) == {ORIGINAL, TARGET} and {c.status for c in transformers.values()} == {"pass"}
    assert {c.status for c in result.checks if c.runtime == "vllm (overrides)"} == {"n/a"}


def test_verify_ntk_folder_and_its_stock_gguf_base(tmp_path):
    """NTK changes the base: the folder's rope_theta (and a converted GGUF's freq_base) is the new one."""
    folder, plan = exported(tmp_path, "ntk")
    assert json.loads((folder / "config.json").read_text())["rope_parameters"]["rope_theta"] != SPEC.theta
    assert verify_folder(folder).ok
    stock = converted_gguf(tmp_path / "ntk.gguf", scaling="none", base=plan.details["base"])  # the new base
    assert verify_gguf(stock, plan).ok  # input sanity: llama.cpp runs the new base as such
    out = write_gguf(stock, plan, tmp_path / "out.gguf")
    assert read_gguf_rope(out).freq_base == SPEC.theta and verify_gguf(out).ok  # the old base and the factors


# --- llama.cpp, on GGUF files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dprope", "yarn", "pi", "ntk"])
def test_write_gguf_gives_llama_cpp_the_plan(tmp_path, method):
    plan = make_plan(method, SPEC, TARGET, bins=36)
    source = converted_gguf(tmp_path / "converted.gguf")
    stock = verify_gguf(source, plan)
    assert not stock.ok  # the converter's file: type longrope and no factors (the issue)
    assert {c.factors for c in stock.checks} == {"none"}
    linear = converted_gguf(tmp_path / "linear.gguf", scaling="linear", factor=4.0)  # a converted PI export
    out = write_gguf(linear, plan, tmp_path / "out.gguf")
    rope = read_gguf_rope(out)
    assert (rope.scaling_type, rope.freq_scale, rope.n_ctx_orig, rope.n_ctx_train) == ("none", 1.0, ORIGINAL, TARGET)
    assert list(rope.factors) == ["rope_freqs.weight"] and rope.plan == plan
    result = verify_gguf(out)  # the plan stored in the file
    assert result.ok and {c.factors for c in result.checks} == {"rope_freqs.weight"}
    reader = gguf.GGUFReader(out)
    weight = next(t for t in reader.tensors if t.name == "token_embd.weight")
    np.testing.assert_array_equal(weight.data, np.arange(128 * 64, dtype=np.float32).reshape(128, 64))
    assert reader.get_field("llama.rope.scaling.factor") is None  # would scale every position again


def test_write_gguf_longrope_pair_for_phi3_and_llama(tmp_path):
    plan = make_plan("longrope", SPEC, TARGET, bins=36, factors=list(np.linspace(1, 4, 8)), short_factors=[1.0] * 8)
    for arch in ("llama", "phi3"):
        out = write_gguf(converted_gguf(tmp_path / f"{arch}.gguf", arch=arch), plan, tmp_path / f"{arch}-out.gguf")
        result = verify_gguf(out)
        assert result.ok, result.table()
        assert [c.factors for c in result.checks] == ["rope_factors_short.weight", "rope_factors_long.weight"]


def test_llama_cpp_yarn_matches_the_yarn_plan(tmp_path):
    """A converter-written YaRN GGUF (type yarn, factor s): llama.cpp's own YaRN gives the plan's frequencies."""
    plan = make_plan("yarn", SPEC, TARGET, bins=36)
    path = converted_gguf(tmp_path / "yarn.gguf", scaling="yarn", factor=4.0, original=ORIGINAL)
    result = verify_gguf(path, plan)
    assert result.ok, result.table()
    assert result.checks[0].attention == pytest.approx(1 + 0.1 * math.log(4))


# --- bad input ---------------------------------------------------------------------------------------------------


def test_write_gguf_bad_input_writes_nothing(tmp_path):
    plan = make_plan("dprope", SPEC, TARGET, bins=36)
    qwen = converted_gguf(tmp_path / "qwen2.gguf", arch="qwen2")
    with pytest.raises(ValueError, match="GGUF architecture 'qwen2' has no per-pair RoPE factors.*allowed: llama"):
        write_gguf(qwen, plan, tmp_path / "out.gguf")
    wide = converted_gguf(tmp_path / "wide.gguf", n_rot=32)
    with pytest.raises(ValueError, match="plan has 8 frequency pairs but .*wide.gguf' rotates 16"):
        write_gguf(wide, plan, tmp_path / "out.gguf")
    with pytest.raises(ValueError, match="dynamic_ntk frequencies change with the sequence length"):
        write_gguf(converted_gguf(tmp_path / "c.gguf"), make_plan("dynamic_ntk", SPEC, TARGET), tmp_path / "out.gguf")
    (tmp_path / "taken.gguf").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        write_gguf(converted_gguf(tmp_path / "c2.gguf"), plan, tmp_path / "taken.gguf")
    with pytest.raises(ValueError, match="is not a readable GGUF file"):
        write_gguf(tmp_path / "taken.gguf", plan, tmp_path / "out.gguf")
    assert (tmp_path / "taken.gguf").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.gguf", "c2.gguf", "qwen2.gguf", "taken.gguf", "wide.gguf"]


def cli(*argv):
    return main(["verify", *map(str, argv)])


def last_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("ropelab: error: ") and not any("Traceback" in line for line in err)
    return err[-1]


def test_verify_cli_table_json_and_exit_codes(tmp_path, capsys):
    folder, _plan = exported(tmp_path, "pi")
    assert cli(folder) == 0
    assert "transformers" in capsys.readouterr().out
    assert cli(folder, "--json") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    wrong = make_plan("pi", SPEC, 512)  # same RoPE, another target: the folder runs 4x, not 8x
    wrong.save(tmp_path / "wrong.json")
    assert cli(folder, "--plan", tmp_path / "wrong.json") == 1
    assert "FAIL" in capsys.readouterr().out


def test_verify_cli_bad_input_is_one_line(tmp_path, capsys):
    gpt2 = tmp_path / "gpt2"
    random_model("gpt2").save_pretrained(gpt2)
    assert cli(gpt2) == 2
    line = last_error(capsys)
    assert "model 'gpt2'" in line and "has no RoPE" in line
    folder, _ = exported(tmp_path, "dprope")
    (folder / "ropelab_plan.json").unlink()
    assert cli(folder) == 2
    assert "holds no ropelab_plan.json; pass a plan (--plan plan.json)" in last_error(capsys)
    make_plan("dprope", RopeSpec(10000.0, 32, ORIGINAL), TARGET, bins=36).save(tmp_path / "wide.json")
    assert cli(folder, "--plan", tmp_path / "wide.json") == 2
    assert "plan has 16 frequency pairs but" in last_error(capsys)
    assert cli(tmp_path / "nowhere") == 2
    assert "no model folder or GGUF file at" in last_error(capsys)
    with pytest.raises(ValueError, match="holds no ropelab plan"):
        verify(converted_gguf(tmp_path / "plain.gguf"))


@pytest.mark.parametrize("family,extra,message", [
    ("llama", ["--gguf", "out.txt"], "GGUF output .*out.txt' must end in .gguf"),
    ("llama", ["--gguf", "out.gguf", "--gguf-converter", "/no/convert_hf_to_gguf.py"],
     "no llama.cpp converter at '/no/convert_hf_to_gguf.py'"),
    ("qwen2", ["--gguf", "out.gguf", "--gguf-converter", "CONVERTER"],
     "GGUF export covers LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM .*got Qwen2ForCausalLM"),
])
def test_extend_gguf_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, family, extra, message):
    import re

    source = tmp_path / "model"
    random_model(family, original_length=ORIGINAL).save_pretrained(source)
    word_tokenizer().save_pretrained(source)
    (tmp_path / "convert_hf_to_gguf.py").write_text("raise SystemExit('not run')\n")
    monkeypatch.chdir(tmp_path)
    extra = [str(tmp_path / "convert_hf_to_gguf.py") if x == "CONVERTER" else x for x in extra]
    code = main(["extend", "--model", str(source), "--method", "dprope", "--target-length", str(TARGET),
                 "--out", str(tmp_path / "out"), *extra])
    assert code == 2 and re.search(message, last_error(capsys))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convert_hf_to_gguf.py", "model"]
