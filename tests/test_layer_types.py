"""Per-layer-type RoPE (Gemma 3) and p-RoPE (transformers' ``proportional``: Gemma 4, LFM3), against transformers.

Round trips on tiny random models built locally: plan one layer type, apply, export, reload with stock
``from_pretrained``; the live rotary module must compute the plan's frequencies in that layer type and leave the other
layer type's exactly as they were.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ropelab.rope.angles import angle_counts
from ropelab.rope.plan import RopePlan
from ropelab.rope.registry import METHODS, make_plan
from ropelab.rope.spec import RopeSpec, default_layer_type, rope_layer_types
from ropelab.runtime.export import export_checkpoint
from ropelab.runtime.hf import apply_plan, model_frequencies, model_spec
from ropelab.runtime.models import random_model
from ropelab.runtime.verify import verify_folder

ORIGINAL, TARGET = 64, 256
TINY = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": ORIGINAL, "sliding_window": 16,
        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def lfm3() -> torch.nn.Module:
    """A tiny LFM3: a sliding layer (default RoPE, theta 1e4), a full-attention one (p-RoPE, p = 0.5, theta 1e6)
    and a convolution layer."""
    config = transformers.Lfm3Config(**TINY, num_hidden_layers=3,
                                     layer_types=["sliding_attention", "full_attention", "conv"])
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def gemma4_config() -> transformers.Gemma4TextConfig:
    return transformers.Gemma4TextConfig(**TINY, num_hidden_layers=2, global_head_dim=32,
                                         layer_types=["sliding_attention", "full_attention"],
                                         vocab_size_per_layer_input=128, hidden_size_per_layer_input=16)


# --- p-RoPE: the spec's frequencies are transformers' ------------------------------------------------------------


@pytest.mark.parametrize("config", [transformers.Gemma4TextConfig(), transformers.Lfm3Config(), gemma4_config()],
                         ids=["gemma4", "lfm3", "gemma4-tiny"])
def test_proportional_frequencies_are_transformers_own(config):
    spec = RopeSpec.from_hf_config(config, layer_type="full_attention")
    reference, attention = ROPE_INIT_FUNCTIONS["proportional"](config, layer_type="full_attention")
    reference = reference.double().numpy()
    assert spec.proportional and attention == 1.0
    np.testing.assert_array_equal(spec.inv_freq("float32"), reference)  # bit for bit, zeros included
    np.testing.assert_allclose(spec.inv_freq(), reference, rtol=1e-7)
    assert spec.n_pairs == reference.size and spec.n_rotated_pairs == int(np.count_nonzero(reference))


def test_gemma4_full_attention_is_p_rope_over_its_own_head_size():
    spec = RopeSpec.from_hf_config(transformers.Gemma4TextConfig(), layer_type="full_attention")
    assert (spec.head_dim, spec.n_pairs, spec.n_rotated_pairs, spec.theta) == (512, 256, 64, 1e6)
    assert np.isinf(spec.wavelengths()[64:]).all() and spec.critical_dimension() <= 128


def test_unrotated_pairs_keep_angle_zero_and_factor_one():
    counts = angle_counts(np.array([0.0, 0.5]), 100, 8)
    assert counts[0].tolist() == [100, 0, 0, 0, 0, 0, 0, 0] and counts[1].sum() == 100
    spec = RopeSpec(1e6, 32, ORIGINAL, partial_rotary_factor=0.25, proportional=True)  # 4 of 16 pairs rotate
    for method in ("pi", "yarn", "llama3", "ntk", "dprope", "dprope_continuous"):
        plan = make_plan(method, spec, TARGET)
        assert plan.factors[4:] == (1.0,) * 12, method
        assert plan.inv_freq[4:].tolist() == [0.0] * 12 and (plan.inv_freq[:4] > 0).all(), method
        assert plan.disturbance_per_pair[4:] == (0.0,) * 12, method
        assert set(plan.interpolated_pairs) <= {0, 1, 2, 3}, method
    assert make_plan("pi", spec, TARGET).n_interpolated_dims == 8


def test_spec_and_plan_round_trip_with_the_new_fields():
    spec = RopeSpec(1e6, 32, ORIGINAL, 0.5, proportional=True, layer_type="full_attention")
    assert RopeSpec.from_dict(spec.to_dict()) == spec
    plan = make_plan("dprope", spec, TARGET)
    assert RopePlan.from_json(plan.to_json()) == plan
    old = {"theta": 1e4, "head_dim": 16, "original_length": 64, "partial_rotary_factor": 1.0}  # a pre-p-RoPE file
    assert RopeSpec.from_dict(old) == RopeSpec(1e4, 16, 64)
    assert RopeSpec(1e4, 16, 64).to_dict() == old  # unchanged: cache keys over older plans still hit


# --- per-layer-type: choosing the layer type --------------------------------------------------------------------


def test_layer_types_and_the_cli_default():
    config = random_model("gemma3").config
    assert rope_layer_types(config) == ("full_attention", "sliding_attention")
    assert default_layer_type(config) == "full_attention"
    assert default_layer_type(config, "sliding_attention") == "sliding_attention"
    assert rope_layer_types(random_model("llama").config) == () and default_layer_type(random_model("llama").config) is None
    with pytest.raises(ValueError, match=r"^unknown layer_type 'nope'; allowed: full_attention, sliding_attention$"):
        RopeSpec.from_hf_config(config, layer_type="nope")
    with pytest.raises(ValueError, match="layer_type 'full_attention' given but the config has one RoPE"):
        RopeSpec.from_hf_config(random_model("llama").config, layer_type="full_attention")


def test_model_spec_reads_the_full_attention_layers_unless_told_otherwise():
    model = random_model("gemma3")  # sliding layers theta 1e4, full-attention layers theta 1e6
    full, sliding = model_spec(model), model_spec(model, "sliding_attention")
    assert (full.layer_type, full.theta) == ("full_attention", 1e6)
    assert (sliding.layer_type, sliding.theta) == ("sliding_attention", 1e4)
    assert model_spec(random_model("llama")).layer_type is None


def test_a_plan_without_layer_type_or_with_an_absent_one_is_refused():
    model = random_model("gemma3", original_length=ORIGINAL)
    full = RopeSpec.from_hf_config(model.config, layer_type="full_attention")
    with pytest.raises(ValueError, match="per-layer-type RoPE .*make the plan for one of them"):
        apply_plan(model, make_plan("pi", RopeSpec(full.theta, full.head_dim, ORIGINAL), TARGET))
    sliding_only = random_model("gemma3", original_length=ORIGINAL, layer_types=["sliding_attention"] * 2)
    with pytest.raises(ValueError, match="has no full_attention layers"):
        apply_plan(sliding_only, make_plan("pi", full, TARGET))


# --- round trips through stock from_pretrained ------------------------------------------------------------------


def round_trip(model, plan, tmp_path):
    """Apply, export, reload (stock transformers); returns the reloaded model."""
    apply_plan(model, plan)
    folder = export_checkpoint(model, None, plan, tmp_path / "out")
    verification = verify_folder(folder)
    assert verification.ok, verification.table()
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "longrope"])
def test_gemma3_full_attention_extended_sliding_kept(method, tmp_path):
    model = random_model("gemma3", original_length=ORIGINAL)
    sliding = model_frequencies(model, TARGET, "sliding_attention")
    plan = make_plan(method, RopeSpec.from_hf_config(model.config, layer_type="full_attention"), TARGET)
    assert plan.spec.theta == 1e6
    reloaded = round_trip(model, plan, tmp_path)
    length = int(plan.options.get("length") or TARGET)
    inv_freq, attention = model_frequencies(reloaded, length, "full_attention")
    np.testing.assert_allclose(inv_freq, plan.inv_freq, rtol=2e-6, atol=0)
    assert attention == pytest.approx(plan.attention_factor, rel=1e-6)
    kept = model_frequencies(reloaded, TARGET, "sliding_attention")
    np.testing.assert_array_equal(kept[0], sliding[0])
    assert kept[1] == sliding[1] and reloaded.config.rope_parameters["sliding_attention"]["rope_theta"] == 1e4
    ids = torch.randint(3, 128, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("method, rope_type", [("none", "proportional"), ("pi", "proportional"),
                                               ("ntk", "proportional"), ("yarn", "longrope"), ("dprope", "longrope")])
def test_p_rope_round_trip(method, rope_type, tmp_path):
    model = lfm3()
    sliding = model_frequencies(model, TARGET, "sliding_attention")
    spec = RopeSpec.from_hf_config(model.config, layer_type="full_attention")
    assert (spec.proportional, spec.n_pairs, spec.n_rotated_pairs) == (True, 8, 4)
    plan = make_plan(method, spec, TARGET)
    reloaded = round_trip(model, plan, tmp_path)
    assert reloaded.config.rope_parameters["full_attention"]["rope_type"] == rope_type
    inv_freq, attention = model_frequencies(reloaded, TARGET, "full_attention")
    assert inv_freq[4:].tolist() == [0.0] * 4  # exactly zero: longrope's factor is infinite there
    np.testing.assert_allclose(inv_freq, plan.inv_freq, rtol=2e-6, atol=0)
    assert attention == pytest.approx(plan.attention_factor, rel=1e-6)
    np.testing.assert_array_equal(model_frequencies(reloaded, TARGET, "sliding_attention")[0], sliding[0])


def test_gemma4_p_rope_takes_its_native_type_but_no_per_pair_plan():
    """transformers 5.x validates longrope on Gemma 4's global config, where the head size is ambiguous."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(copy.deepcopy(gemma4_config())).eval()
    spec = RopeSpec.from_hf_config(model.config, layer_type="full_attention")
    apply_plan(model, make_plan("pi", spec, TARGET))
    assert model.config.rope_parameters["full_attention"]["rope_type"] == "proportional"
    model = AutoModelForCausalLM.from_config(copy.deepcopy(gemma4_config())).eval()
    with pytest.raises(ValueError, match="gemma4_text accepts no form of the dprope plan"):
        apply_plan(model, make_plan("dprope", spec, TARGET))


# --- the command line -----------------------------------------------------------------------------------------


def test_cli_plans_and_extends_the_full_attention_layers_by_default(tmp_path, capsys):
    from ropelab.cli import main
    from ropelab.runtime.models import word_tokenizer

    model = random_model("gemma3", original_length=ORIGINAL)
    model.save_pretrained(tmp_path / "gemma3")
    word_tokenizer().save_pretrained(tmp_path / "gemma3")
    assert main(["plan", "--model", str(tmp_path / "gemma3"), "--method", "dprope", "--target-length", str(TARGET),
                 "--out", str(tmp_path / "plan.json")]) == 0
    assert "full_attention layers (the others keep their RoPE)" in capsys.readouterr().out
    assert RopePlan.load(tmp_path / "plan.json").spec.layer_type == "full_attention"
    assert main(["extend", "--model", str(tmp_path / "gemma3"), "--method", "yarn", "--target-length", str(TARGET),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "rope_type yarn in the full_attention layers" in out and "tokens: pass" in out
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert reloaded.config.rope_parameters["sliding_attention"] == model.config.rope_parameters["sliding_attention"]
    assert main(["plan", "--model", str(tmp_path / "gemma3"), "--layer-type", "sliding_attention", "--method", "pi",
                 "--target-length", str(TARGET), "--json"]) == 0
    assert '"layer_type": "sliding_attention"' in capsys.readouterr().out


def test_apply_plan_catches_a_change_to_the_kept_layer_types(monkeypatch):
    import ropelab.runtime.hf

    real = ropelab.runtime.hf._with_layer

    def leaky(config, layer_type, params):  # a bug that also rewrites the sliding layers' RoPE
        out = real(config, layer_type, params)
        return {**out, "sliding_attention": {**out["sliding_attention"], "rope_theta": 2e4}}

    monkeypatch.setattr(ropelab.runtime.hf, "_with_layer", leaky)
    model = random_model("gemma3", original_length=ORIGINAL)
    plan = make_plan("pi", RopeSpec.from_hf_config(model.config, layer_type="full_attention"), TARGET)
    with pytest.raises(RuntimeError, match="changed the sliding_attention layers' frequencies"):
        apply_plan(model, plan)
