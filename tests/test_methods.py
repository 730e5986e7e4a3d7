"""The method registry: the paper's Table 3, transformers' own frequencies, and the properties of each method."""

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ropelab import METHODS, RopePlan, RopeSpec, make_plan
from ropelab.rope.paper import TABLE3, TABLE3_TOLERANCE
from ropelab.runtime.hf import rope_parameters

LLAMA2 = RopeSpec.preset("llama2-7b")

@pytest.mark.parametrize("precision", ["exact", "float32"])
@pytest.mark.parametrize("method,target", sorted(TABLE3))
def test_table3(method, target, precision):
    paper, rel = TABLE3[(method, target)], TABLE3_TOLERANCE[method]
    assert LLAMA2.n_pairs == 64 and LLAMA2.original_length == 4096  # input sanity
    value = make_plan(method, LLAMA2, target, precision=precision).disturbance * 1e3
    assert value == pytest.approx(paper, rel=rel)


def test_dprope_cuts_disturbance_as_the_abstract_says():
    # "up to 72% (8k) and 32% (16k)" against PI
    for target, cut in ((8192, 0.72), (16384, 0.32)):
        pi, dp = (make_plan(m, LLAMA2, target).disturbance for m in ("pi", "dprope"))
        assert 1 - dp / pi == pytest.approx(cut, abs=0.01)


def test_float32_parity_with_release_selection():
    # docs/method.md sec. 3: the release interpolates 47 of 64 pairs at 8k and 42 at 16k.
    assert len(make_plan("dprope", LLAMA2, 8192, precision="float32").interpolated_pairs) == 47
    assert len(make_plan("dprope", LLAMA2, 16384, precision="float32").interpolated_pairs) == 42


def test_pi_is_default_over_s_and_none_is_default():
    for s in (2, 3, 8):
        plan = make_plan("pi", LLAMA2, 4096 * s)
        np.testing.assert_allclose(plan.inv_freq, LLAMA2.inv_freq() / s, rtol=1e-15)
        assert plan.interpolated_pairs == tuple(range(64))
    np.testing.assert_array_equal(make_plan("none", LLAMA2, 8192).inv_freq, LLAMA2.inv_freq())


def test_dprope_argmin_never_above_either_pure_strategy_per_pair():
    for target in (8192, 16384, 65536):
        plan = make_plan("dprope", LLAMA2, target)
        ext, itp = np.array(plan.details["d_extrap"]), np.array(plan.details["d_interp"])
        chosen = np.array(plan.disturbance_per_pair)
        assert (chosen <= ext + 1e-15).all() and (chosen <= itp + 1e-15).all()
        np.testing.assert_allclose(chosen, np.minimum(ext, itp))


def test_dprope_plan_disturbance_equals_rescoring_its_frequencies():
    from ropelab.rope.scoring import Scoring, disturbance_per_pair

    plan = make_plan("dprope", LLAMA2, 16384)
    rescored = disturbance_per_pair(LLAMA2, plan.inv_freq, 16384, Scoring())
    np.testing.assert_allclose(rescored, plan.disturbance_per_pair, rtol=1e-12)


@pytest.mark.parametrize("n_hat", [0, 2, 64, 80, 128])
def test_n_hat_respected_exactly(n_hat):
    plan = make_plan("dprope", LLAMA2, 8192, n_hat=n_hat)
    assert plan.n_interpolated_dims == n_hat
    margin = np.array(plan.details["d_extrap"]) - np.array(plan.details["d_interp"])
    chosen = list(plan.interpolated_pairs)
    others = [i for i in range(64) if i not in chosen]
    if chosen and others:  # the chosen pairs are those with the largest margin
        assert margin[chosen].min() >= margin[others].max()


def test_threshold_monotone_and_zero_is_argmin():
    argmin = make_plan("dprope", LLAMA2, 8192)
    assert make_plan("dprope", LLAMA2, 8192, threshold=0.0).factors == argmin.factors
    counts = [make_plan("dprope", LLAMA2, 8192, threshold=t).n_interpolated_dims for t in (0, 1e-3, 1e-2, 0.1, 1.0)]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]


def test_yarn_bounded_between_interpolation_and_extrapolation():
    plan = make_plan("yarn", LLAMA2, 16384)
    f = np.array(plan.factors)
    assert (f >= 1 - 1e-12).all() and (f <= 4 + 1e-12).all()
    assert f[0] == 1 and f[-1] == pytest.approx(4)  # fastest pair kept, slowest interpolated
    assert (np.diff(f) >= -1e-12).all()
    assert plan.attention_factor == pytest.approx(0.1 * math.log(4) + 1)


def test_ntk_changes_base_and_keeps_the_fastest_pair():
    plan = make_plan("ntk", LLAMA2, 8192)
    assert plan.details["base"] == pytest.approx(10000 * 2 ** (128 / 126))
    # pair i is divided by s^(2i/(d-2)): the fastest kept, the slowest interpolated by exactly s
    assert plan.factors[0] == 1 and plan.factors[-1] == pytest.approx(2.0)
    assert plan.factors[21] == pytest.approx(2 ** (42 / 126))


def test_dynamic_ntk_at_target_is_static_ntk():
    np.testing.assert_allclose(make_plan("dynamic_ntk", LLAMA2, 16384).inv_freq, make_plan("ntk", LLAMA2, 16384).inv_freq,
                               rtol=1e-12)
    # at a shorter length it extends less
    short = make_plan("dynamic_ntk", LLAMA2, 16384, length=8192)
    np.testing.assert_allclose(short.inv_freq, make_plan("ntk", LLAMA2, 8192).inv_freq, rtol=1e-12)


# --- against transformers' own ROPE_INIT_FUNCTIONS -----------------------------------------------------------

SPECS = [RopeSpec.preset("llama2-7b"), RopeSpec.preset("llama3-8b"), RopeSpec.preset("smollm2-135m"),
         RopeSpec(10000.0, 80, 2048, partial_rotary_factor=0.4)]
OPTIONS = {
    "pi": {}, "yarn": {}, "yarn:betas": {"beta_fast": 16.0, "beta_slow": 2.0}, "llama3": {},
    "llama3:factor": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
    "dynamic_ntk": {}, "dynamic_ntk:len": {"length": 3 * 4096}, "dynamic_ntk:factor": {"factor": 2.0},
    "dprope": {}, "ntk": {},
}


def transformers_inv_freq(plan: RopePlan) -> tuple[torch.Tensor, float]:
    spec = plan.spec
    config = LlamaConfig(hidden_size=spec.head_dim * 4, num_attention_heads=4, head_dim=spec.head_dim,
                         max_position_embeddings=plan.target_length, rope_parameters=rope_parameters(plan))
    if plan.method == "dynamic_ntk":
        config.max_position_embeddings = spec.original_length
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        d = spec.rotary_dim
        base = config.rope_parameters["rope_theta"]
        return 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float) / d)), 1.0
    seq_len = plan.options.get("length", plan.target_length)
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"theta{s.theta:g}-d{s.rotary_dim}")
@pytest.mark.parametrize("key", sorted(OPTIONS))
def test_frequencies_equal_transformers(spec, key):
    method = key.split(":")[0]
    plan = make_plan(method, spec, spec.original_length * 4, **OPTIONS[key])
    inv, attention = transformers_inv_freq(plan)
    assert inv.shape == (spec.n_pairs,)  # input sanity
    np.testing.assert_allclose(plan.inv_freq, inv.double().numpy(), rtol=2e-6)
    assert plan.attention_factor == pytest.approx(attention, rel=1e-7)


def test_longrope_factors_equal_transformers():
    factors = list(np.linspace(1.0, 6.0, 64))
    plan = make_plan("longrope", LLAMA2, 16384, factors=factors)
    inv, attention = transformers_inv_freq(plan)
    np.testing.assert_allclose(plan.inv_freq, inv.double().numpy(), rtol=2e-6)
    assert plan.attention_factor == pytest.approx(attention)


# --- serialisation and errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"longrope"}))
def test_plan_json_round_trip(method, tmp_path):
    plan = make_plan(method, RopeSpec.preset("smollm2-135m"), 16384, bins=180, metric="js")
    again = RopePlan.load(plan.save(tmp_path / "plan.json"))
    assert again == plan and again.disturbance == plan.disturbance


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "foo"}, "unknown method 'foo'; allowed: none, pi"),
    ({"target_length": 4096}, "target_length must be above the original length 4096, got 4096"),
    ({"target_length": -1}, "target_length must be a positive integer, got -1"),
    ({"bins": 1}, "bins must be an integer >= 2, got 1"),
    ({"metric": "hellinger"}, "unknown metric 'hellinger'; allowed: kl, js, tv, wasserstein"),
    ({"precision": "float16"}, "unknown precision 'float16'; allowed: exact, float32"),
    ({"threshold": -0.1}, "threshold must be >= 0, got -0.1"),
    ({"n_hat": 81}, r"n_hat must be an even integer in \[0, 128\], got 81"),
    ({"n_hat": 130}, r"n_hat must be an even integer in \[0, 128\], got 130"),
    ({"n_hat": 2, "threshold": 0.1}, "give threshold or n_hat, not both"),
    ({"beta": 3}, "unknown option\\(s\\) beta for method 'dprope'; allowed: threshold, n_hat"),
    ({"method": "longrope"}, "longrope needs factors"),
    ({"method": "longrope", "factors": [1.0, 2.0]}, "factors must be 64 positive numbers"),
    ({"method": "yarn", "beta_fast": 1.0, "beta_slow": 2.0}, "need 0 < beta_slow < beta_fast"),
    ({"method": "pi", "factor": 0.5}, "factor must be a number >= 1, got 0.5"),
])
def test_bad_input_is_one_line_value_error(kwargs, match):
    args = {"method": "dprope", "target_length": 8192}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match) as err:
        make_plan(args.pop("method"), LLAMA2, args.pop("target_length"), **args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method,rope_type", [("none", "default"), ("pi", "linear"), ("ntk", "default"),
                                              ("yarn", "yarn"), ("llama3", "llama3"), ("dprope", "longrope"),
                                              ("dprope_robust", "longrope"), ("dprope_continuous", "longrope")])
def test_native_mapping_from_the_registry(method, rope_type):
    assert rope_parameters(make_plan(method, LLAMA2, 16384))["rope_type"] == rope_type
    # a temperature the native type cannot carry sends the plan to longrope, with the same frequencies
    hot = make_plan(method, LLAMA2, 16384, attention_temperature=1.25)
    params = rope_parameters(hot)
    assert params["rope_type"] == ("yarn" if method == "yarn" else "longrope") and params["attention_factor"] == 1.25
    inv, attention = transformers_inv_freq(hot)
    np.testing.assert_allclose(hot.inv_freq, inv.double().numpy(), rtol=2e-6)
    assert attention == pytest.approx(1.25)


def test_a_dynamic_plan_is_fixed_at_its_length_option():
    from ropelab import RopeSpec, make_plan

    spec = RopeSpec.preset("llama2-7b")
    plan = make_plan("dynamic_ntk", spec, 8192, length=12288)
    assert plan.dynamic and plan.dynamic_length == 12288
    assert make_plan("dynamic_ntk", spec, 8192).dynamic_length == 8192
    assert not make_plan("yarn", spec, 8192).dynamic and make_plan("yarn", spec, 8192).dynamic_length is None


def test_the_paper_s_n_hat_carried_to_other_models_keeps_its_ratio_in_whole_pairs():
    from ropelab.rope.paper import PAPER_NHAT_RATIO, even_dims

    assert even_dims(PAPER_NHAT_RATIO[2], 128) == 80 and even_dims(PAPER_NHAT_RATIO[4], 128) == 64  # LLaMA2 itself
    assert even_dims(PAPER_NHAT_RATIO[2], 64) == 40  # SmolLM2: the full profile's dprope:n_hat=40
    assert even_dims(PAPER_NHAT_RATIO[2], 96) == 60 and even_dims(PAPER_NHAT_RATIO[2], 80) == 50  # whole pairs
    assert even_dims(PAPER_NHAT_RATIO[2], 72) == 46  # 22.5 pairs: a half pair rounds up (round() would give 44)
