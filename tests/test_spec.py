"""RopeSpec: presets, reading transformers configs of every RoPE family, and bad input."""

import json

import numpy as np
import pytest
import torch
from transformers import (
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from ropelab import PRESETS, RopeSpec


def test_llama2_facts():
    spec = RopeSpec.preset("llama2-7b")
    assert (spec.n_pairs, spec.critical_dimension()) == (64, 92)  # docs/method.md sec. 1
    lam = spec.wavelengths()
    # pairs with a wavelength longer than L never turn fully during pre-training: 64 - 92/2 = 18 of them fit
    assert int((lam <= 4096).sum()) == 92 // 2


def test_exact_and_float32_inv_freq_agree_to_float32_precision():
    for name in PRESETS:
        spec = RopeSpec.preset(name)
        np.testing.assert_allclose(spec.inv_freq("float32"), spec.inv_freq(), rtol=1e-6)
        # the float32 mode is transformers' own computation
        d = spec.rotary_dim
        ref = 1.0 / (spec.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        np.testing.assert_array_equal(spec.inv_freq("float32"), ref.double().numpy())


@pytest.mark.parametrize("config,expected", [
    (LlamaConfig(hidden_size=4096, num_attention_heads=32, max_position_embeddings=4096, rope_theta=10000.0),
     RopeSpec(10000.0, 128, 4096)),
    (MistralConfig(max_position_embeddings=32768, rope_theta=10000.0), RopeSpec(10000.0, 128, 32768)),
    (Qwen2Config(hidden_size=3584, num_attention_heads=28, max_position_embeddings=32768, rope_theta=1e6),
     RopeSpec(1e6, 128, 32768)),
    (Qwen3Config(), RopeSpec(10000.0, 128, 32768)),
    (Phi3Config(), RopeSpec(10000.0, 96, 4096)),
    (GemmaConfig(), RopeSpec(10000.0, 256, 8192)),
])
def test_from_hf_config_reads_every_family(config, expected):
    assert RopeSpec.from_hf_config(config) == expected
    assert RopeSpec.from_hf_config(config.to_dict()) == expected


def test_from_hf_config_reads_legacy_fields_and_folders(tmp_path):
    legacy = {"model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "rope_theta": 100000,
              "max_position_embeddings": 8192, "rope_scaling": None}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    assert RopeSpec.from_hf_config(tmp_path) == RopeSpec.preset("smollm2-135m")
    # an already-extended model (Phi-3 style) reports its pre-training window, not the extended one
    extended = dict(legacy, max_position_embeddings=32768,
                    rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192})
    assert RopeSpec.from_hf_config(extended).original_length == 8192


def test_partial_rotary():
    cfg = {"hidden_size": 2560, "num_attention_heads": 32, "rope_theta": 10000.0, "max_position_embeddings": 2048,
           "partial_rotary_factor": 0.4}
    spec = RopeSpec.from_hf_config(cfg)
    assert (spec.head_dim, spec.rotary_dim, spec.n_pairs) == (80, 32, 16)


def test_per_layer_type_rope_must_be_chosen():
    config = Gemma3TextConfig()
    with pytest.raises(ValueError, match="per-layer-type RoPE .*pass layer_type"):
        RopeSpec.from_hf_config(config)
    full = RopeSpec.from_hf_config(config, layer_type="full_attention")
    local = RopeSpec.from_hf_config(config, layer_type="sliding_attention")
    assert full.theta != local.theta


@pytest.mark.parametrize("kwargs,match", [
    ({"head_dim": 127}, "even rotary dimension"),
    ({"head_dim": 0}, "head_dim must be a positive integer, got 0"),
    ({"original_length": -4096}, "original_length must be a positive integer, got -4096"),
    ({"theta": 1.0}, "theta must be a finite number above 1, got 1.0"),
    ({"partial_rotary_factor": 1.5}, r"partial_rotary_factor must be in \(0, 1\], got 1.5"),
])
def test_bad_spec(kwargs, match):
    args = {"theta": 10000.0, "head_dim": 128, "original_length": 4096}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        RopeSpec(**args)


def test_config_without_rope_and_unknown_preset():
    with pytest.raises(ValueError, match="model_type 'gpt2' has no RoPE"):
        RopeSpec.from_hf_config(GPT2Config())
    with pytest.raises(ValueError, match="unknown preset 'llama9'; allowed: gemma-2b, llama2-13b"):
        RopeSpec.preset("llama9")
