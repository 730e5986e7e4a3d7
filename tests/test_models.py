"""ropelab.models: the offline SmolLM2-135M, local folders, clear errors."""

import time

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ropelab.models import SMOLLM2, cache_folder, load_model, load_smollm2_gguf, smollm2_gguf_path


def test_cache_folder_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "c"))
    assert cache_folder() == tmp_path / "c"
    monkeypatch.delenv("ROPELAB_CACHE")
    assert cache_folder().parts[-2:] == (".cache", "ropelab")


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
    AutoTokenizer.from_pretrained(smollm2_gguf_path().parent, gguf_file=smollm2_gguf_path().name).save_pretrained(
        tmp_path
    )
    model, tokenizer = load_model(tmp_path, dtype=torch.float64)
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert next(model.parameters()).dtype == torch.float64
    assert tokenizer("hello world").input_ids


@pytest.mark.slow
def test_smollm2_cached_copy_is_fast_and_identical_to_the_gguf():
    load_model(SMOLLM2)  # builds the cache on first use
    start = time.perf_counter()
    cached, tokenizer = load_model(SMOLLM2)
    seconds = time.perf_counter() - start
    assert seconds < 3.0, f"cached SmolLM2 load took {seconds:.1f} s"  # ~0.5 s measured; slack for a busy CI
    assert (cache_folder() / f"{SMOLLM2}-fp32" / "model.safetensors").exists()

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
