"""ropelab.runtime.models: the offline SmolLM2-135M, local folders, clear errors."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ropelab.runtime.models import SMOLLM2, load_model, load_smollm2_gguf, word_tokenizer
from ropelab.storage import cache_folder, cache_path


def test_cache_folder_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "c"))
    assert cache_folder() == tmp_path / "c"
    monkeypatch.delenv("ROPELAB_CACHE")
    assert cache_folder().parts[-2:] == (".cache", "ropelab")


def test_every_cache_path_in_the_package_is_a_listed_kind():
    import re

    from ropelab.storage import CACHE_KINDS

    root = Path(__file__).resolve().parents[1] / "ropelab"
    kinds = {m for p in root.rglob("*.py") for m in re.findall(r'cache_path\("(\w+)"', p.read_text())}
    assert kinds and kinds <= set(CACHE_KINDS), kinds - set(CACHE_KINDS)
    built = [p.name for p in root.rglob("*.py") if "cache_folder() /" in p.read_text() and p.name != "storage.py"]
    assert built == []  # no hand-built cache paths outside ropelab.storage
    with pytest.raises(ValueError, match="unknown cache kind 'tmp'; allowed: corpora, tokens"):
        cache_path("tmp")


def test_missing_local_folder_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        load_model(tmp_path / "nowhere")
    assert "\n" not in str(info.value)


def test_offline_hub_id_is_one_clear_line(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries against the network
    with pytest.raises(ValueError, match="cannot load model 'someone/no-such-model'") as info:
        load_model("someone/no-such-model")
    assert "\n" not in str(info.value)


def test_local_folder_loads_in_eval_mode_with_sdpa(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    word_tokenizer().save_pretrained(tmp_path)
    model, tokenizer = load_model(tmp_path, dtype=torch.float64)
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert next(model.parameters()).dtype == torch.float64
    assert tokenizer("hello world").input_ids


@pytest.mark.slow
def test_smollm2_cached_copy_is_fast_and_identical_to_the_gguf():
    load_model(SMOLLM2)  # builds the cache on first use
    weights = cache_path("models", f"{SMOLLM2}-fp32") / "model.safetensors"
    built = weights.stat().st_mtime_ns
    cached, tokenizer = load_model(SMOLLM2)  # reads the copy (~0.5 s here), never converts again (no timed test)
    assert weights.stat().st_mtime_ns == built

    config = cached.config
    assert (config.num_hidden_layers, config.head_dim, config.max_position_embeddings) == (30, 64, 8192)
    assert config.rope_parameters["rope_theta"] == 1e5
    assert sum(p.numel() for p in cached.parameters()) == pytest.approx(134.5e6, rel=0.01)

    gguf, gguf_tokenizer = load_smollm2_gguf()
    text = "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n"
    ids = tokenizer(text, return_tensors="pt").input_ids  # (1, T)
    assert torch.equal(ids, gguf_tokenizer(text, return_tensors="pt").input_ids)
    with torch.no_grad():
        assert torch.equal(cached(ids).logits, gguf(ids).logits)


# --- the real SmolLM2-135M, extended zero-shot from 8k to 16k ------------------------------------------------

TARGET = 16384


@pytest.fixture(scope="module")
def smollm2():
    return load_model(SMOLLM2)


@pytest.fixture(scope="module")
def stdlib_ids(smollm2):
    """CPython stdlib source (real text, PSF licence), tokenised: about 30k tokens."""
    from ropelab.data import stdlib_documents

    texts = {d.doc_id: d.text for d in stdlib_documents()}
    text = "\n".join(texts[name] for name in ("argparse.py", "typing.py"))
    return smollm2[1](text).input_ids


@pytest.mark.slow
def test_smollm2_plans_are_in_the_model_and_pi_moves_perplexity_most(smollm2, stdlib_ids):
    from ropelab import RopeSpec, make_plan
    from ropelab.eval.perplexity import perplexity
    from ropelab.runtime.hf import model_frequencies, plan_applied

    model = smollm2[0]
    spec = RopeSpec.from_hf_config(model.config)
    assert spec == RopeSpec.preset("smollm2-135m")
    documents = [("argparse.py", stdlib_ids[:2048])]  # one 2k window inside the original 8k window

    def ppl() -> float:
        return perplexity(model, documents, 2048, protocol="truncated", progress=False).ppl

    base = ppl()
    assert 1.5 < base < 20, base  # input sanity: a trained code model on Python source
    moved = {}
    for method in ("dprope", "pi", "yarn"):
        plan = make_plan(method, spec, TARGET)
        with plan_applied(model, plan):
            np.testing.assert_allclose(model_frequencies(model, TARGET)[0], plan.inv_freq, rtol=2e-6)
            moved[method] = ppl()
        print(f"SmolLM2-135M stdlib 2k ppl: base {base:.3f}, {method} {moved[method]:.3f}")
    shift = {m: abs(np.log(p / base)) for m, p in moved.items()}
    assert shift["pi"] > shift["dprope"] and shift["pi"] > 0.01


@pytest.mark.slow
def test_smollm2_generates_past_its_window_with_dprope(smollm2, stdlib_ids):
    from ropelab import RopeSpec, make_plan
    from ropelab.runtime.hf import plan_applied, rotary_modules

    model, tokenizer = smollm2
    plan = make_plan("dprope", RopeSpec.from_hf_config(model.config), TARGET)
    prompt = torch.tensor([stdlib_ids[:8300]])  # (1, 8300): past the 8192-token window
    with plan_applied(model, plan), torch.no_grad():
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        seconds = time.perf_counter() - start
        used = rotary_modules(model)[0].inv_freq.double().numpy()  # longrope switched to the long factors
    print(f"SmolLM2-135M dprope: 8300-token prompt + 4 tokens in {seconds:.1f} s: {tokenizer.decode(out[0, -4:])!r}")
    assert out.shape == (1, 8304) and torch.equal(out[:, :8300], prompt)
    np.testing.assert_allclose(used, plan.inv_freq, rtol=2e-6)


# --- the real Gemma-3-270M: per-layer-type RoPE, full-attention layers extended from 32k to 64k ----------------------

GEMMA3_TARGET = 65536


@pytest.mark.slow
def test_gemma3_full_attention_extension_round_trips_through_stock_transformers(tmp_path):
    """Plan DPRoPE for the three full-attention layers, apply, export, reload with stock ``from_pretrained``: the
    plan's frequencies are live in those layers, the sliding layers keep theta 1e4 exactly, the logits are the
    in-memory model's, and a 512-token perplexity inside the window barely moves."""
    from transformers import AutoModelForCausalLM

    from ropelab import RopeSpec, make_plan
    from ropelab.data import stdlib_documents
    from ropelab.runtime.export import export_checkpoint
    from ropelab.runtime.hf import model_frequencies
    from ropelab.runtime.models import GEMMA3
    from ropelab.runtime.verify import verify_folder

    model, tokenizer = load_model(GEMMA3)
    config = model.config
    assert (config.num_hidden_layers, config.head_dim, config.max_position_embeddings, config.sliding_window) == (
        18, 256, 32768, 512)
    assert config.layer_types.count("full_attention") == 3
    spec = RopeSpec.from_hf_config(config, layer_type="full_attention")
    assert spec == RopeSpec(1e6, 256, 32768, layer_type="full_attention")
    assert RopeSpec.from_hf_config(config, layer_type="sliding_attention").theta == 1e4
    text = next(d.text for d in stdlib_documents() if d.doc_id == "argparse.py")
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :512]  # (1, 512)

    def ppl(m) -> float:
        with torch.no_grad():
            return float(torch.exp(m(ids, labels=ids).loss))

    base = ppl(model)
    sliding = model_frequencies(model, GEMMA3_TARGET, "sliding_attention")
    plan = make_plan("dprope", spec, GEMMA3_TARGET)
    assert 0 < plan.n_interpolated_dims < spec.rotary_dim
    folder = export_checkpoint(model, tokenizer, plan, tmp_path / "gemma3-dprope")
    assert verify_folder(folder).ok
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert reloaded.config.rope_parameters["full_attention"]["rope_type"] == "longrope"
    assert reloaded.config.rope_parameters["sliding_attention"] == {"rope_theta": 1e4, "rope_type": "default"}
    inv_freq, attention = model_frequencies(reloaded, GEMMA3_TARGET, "full_attention")
    np.testing.assert_allclose(inv_freq, plan.inv_freq, rtol=2e-6, atol=0)
    assert attention == 1.0
    np.testing.assert_array_equal(model_frequencies(reloaded, GEMMA3_TARGET, "sliding_attention")[0], sliding[0])
    extended = ppl(reloaded)
    assert extended == pytest.approx(ppl(model), rel=1e-5)  # the exported folder is the in-memory model
    print(f"Gemma-3-270M argparse.py 512-token ppl: base {base:.3f}, dprope 32k -> 64k {extended:.3f} "
          f"({plan.n_interpolated_dims}/{spec.rotary_dim} dims interpolated)")
    assert 1.5 < base < 30, base  # input sanity: a trained model on Python source
    assert abs(np.log(extended / base)) < 0.05
