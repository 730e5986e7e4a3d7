"""ropelab's own selection methods beside DPRoPE: the turns-guarded variant (and, below, the others)."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from ropelab import RopeSpec, make_plan
from ropelab.rope.dprope import lattice_noise
from ropelab.rope.scoring import Scoring

LLAMA2, SMOLLM2 = RopeSpec.preset("llama2-7b"), RopeSpec.preset("smollm2-135m")


@pytest.mark.parametrize("spec,target", [(LLAMA2, 8192), (LLAMA2, 16384), (SMOLLM2, 16384), (SMOLLM2, 65536)])
@pytest.mark.parametrize("beta", [8.0, 32.0, 128.0])
def test_robust_never_interpolates_pairs_with_more_than_beta_turns(spec, target, beta):
    turns = spec.original_length / spec.wavelengths()
    assert turns[0] > 128 and turns[-1] < 1  # input sanity: both kinds of pair exist
    robust, argmin = make_plan("dprope_robust", spec, target, beta=beta), make_plan("dprope", spec, target)
    chosen = list(robust.interpolated_pairs)
    assert (turns[chosen] <= beta).all()
    # below the guard it is the argmin, pair for pair
    below = turns <= beta
    np.testing.assert_array_equal(np.array(robust.factors)[below], np.array(argmin.factors)[below])


def test_robust_smollm2_16k_snapshot():
    # the argmin interpolates 2,3,4,6,8 (73-635 turns in L); the guard at YaRN's beta_fast = 32 keeps 0-10
    assert make_plan("dprope", SMOLLM2, 16384).interpolated_pairs[:7] == (2, 3, 4, 6, 8, 12, 14)  # input sanity
    assert make_plan("dprope_robust", SMOLLM2, 16384).interpolated_pairs == (12, 14, *range(15, 32))
    assert make_plan("dprope_robust", SMOLLM2, 16384, floor=True).interpolated_pairs == (14, 15, 16, 17, *range(19, 32))


def test_robust_with_n_hat_and_threshold():
    plan = make_plan("dprope_robust", LLAMA2, 8192, n_hat=64)
    assert plan.n_interpolated_dims == 64 and min(plan.interpolated_pairs) >= 20
    strict = make_plan("dprope_robust", LLAMA2, 8192, threshold=0.1)
    assert set(strict.interpolated_pairs) <= set(make_plan("dprope_robust", LLAMA2, 8192).interpolated_pairs)
    with pytest.raises(ValueError, match="n_hat=128 asks for more pairs than the"):
        make_plan("dprope_robust", LLAMA2, 8192, n_hat=128)


def test_lattice_noise_is_the_chi_square_level():
    b, L, L2 = 360, 8192, 16384
    assert lattice_noise(SMOLLM2, L2, Scoring(b)) == pytest.approx(b * b / 8 * (1 / L + 1 / L2) ** 2, rel=0.01)
    assert lattice_noise(SMOLLM2, L2, Scoring(b, "tv")) == pytest.approx(b / 4 * (1 / L + 1 / L2), rel=0.01)


@pytest.mark.parametrize("beta", [0, -1.0, True, "32"])
def test_robust_bad_beta(beta):
    with pytest.raises(ValueError, match="beta must be a number of turns > 0, got") as err:
        make_plan("dprope_robust", LLAMA2, 8192, beta=beta)
    assert "\n" not in str(err.value)


# --- continuous per-pair factors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,target", [(LLAMA2, 8192), (LLAMA2, 16384), (SMOLLM2, 16384)])
def test_continuous_within_bounds_never_worse_than_argmin(spec, target):
    s = target / spec.original_length
    argmin = make_plan("dprope", spec, target)
    plan = make_plan("dprope_continuous", spec, target, beta=None)
    f = np.array(plan.factors)
    assert (f >= 1).all() and (f <= s).all()
    assert (np.array(plan.disturbance_per_pair) <= np.array(argmin.disturbance_per_pair) + 1e-15).all()
    # where the argmin's margin is large the continuum agrees with it
    margin = np.array(argmin.details["d_extrap"]) - np.array(argmin.details["d_interp"])
    large = np.abs(margin) > 0.05
    assert large.sum() >= 10  # input sanity
    np.testing.assert_allclose(f[large], np.array(argmin.factors)[large], rtol=1e-9)


def test_continuous_plan_disturbance_is_its_frequencies_rescored():
    from ropelab.rope.scoring import disturbance_per_pair

    plan = make_plan("dprope_continuous", LLAMA2, 16384, beta=None, min_factor=1.5, max_factor=3.0)
    assert min(plan.factors) >= 1.0 and max(plan.factors) <= 3.0
    searched = plan.details["searched"]
    assert searched == list(range(64)) and plan.details["evaluations"] == 9 + 2 + 6  # input sanity (min_factor 1.5: no reuse of D_extrap)
    assert {round(f, 6) for f in plan.factors} - {1.5, 3.0}  # some pair lands strictly inside the bounds
    rescored = disturbance_per_pair(LLAMA2, plan.inv_freq, 16384, Scoring())
    np.testing.assert_allclose(rescored, plan.disturbance_per_pair, rtol=1e-12)


def test_continuous_guard_keeps_fast_pairs():
    turns = LLAMA2.original_length / LLAMA2.wavelengths()
    plan = make_plan("dprope_continuous", LLAMA2, 16384)  # beta = 32 by default
    f = np.array(plan.factors)
    assert (f[turns > 32] == 1).all() and plan.details["searched"] == np.flatnonzero(turns <= 32).tolist()


@pytest.mark.parametrize("options,match", [
    ({"min_factor": 0.5}, "factor bounds must satisfy 1 <= min_factor < max_factor <= s = 4"),
    ({"max_factor": 5.0}, "factor bounds must satisfy"),
    ({"min_factor": 3.0, "max_factor": 2.0}, "factor bounds must satisfy"),
    ({"points": 1}, "points must be an integer >= 2, got 1"),
    ({"refine": -1}, "refine must be an integer >= 0, got -1"),
])
def test_continuous_bad_input(options, match):
    with pytest.raises(ValueError, match=match) as err:
        make_plan("dprope_continuous", LLAMA2, 16384, **options)
    assert "\n" not in str(err.value)


PINNED = json.loads((Path(__file__).parent / "fixtures" / "pinned_selection.json").read_text())["plans"]
SLOW_PINS = {("dprope_continuous", 1 << 20)}  # about 1 s each on one thread


@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] * ((c["method"], c["target"]) in SLOW_PINS),
                                               id=f"{c['method']}-{c['preset']}-{c['target']}-{c['options']}")
                                  for c in PINNED])
def test_selection_equals_plans_pinned_before_the_block_histograms(case):
    # factors and per-pair D bit for bit (tests/fixtures): the counts as the per-position histograms gave them
    # (commit 8cd94a6), the logs re-pinned once for rope.elementary (the same bits on AVX-512, AVX2 and under an
    # emulated AMD EPYC: scripts/other_isa.sh)
    plan = make_plan(case["method"], RopeSpec.preset(case["preset"]), case["target"], **case["options"])
    assert [f.hex() for f in plan.factors] == case["factors"]
    assert [d.hex() for d in plan.disturbance_per_pair] == case["disturbance_per_pair"]


# --- per-pair choice among candidate strategies -------------------------------------------------------------------


@pytest.mark.parametrize("spec,target", [(LLAMA2, 8192), (LLAMA2, 16384), (SMOLLM2, 16384)])
def test_candidates_extrapolate_pi_is_the_argmin_exactly(spec, target):
    argmin = make_plan("dprope", spec, target)
    plan = make_plan("dprope_candidates", spec, target, candidates="extrapolate,pi")
    assert plan.factors == argmin.factors and plan.disturbance_per_pair == argmin.disturbance_per_pair


def test_candidates_pick_the_least_disturbance_per_pair():
    plan = make_plan("dprope_candidates", LLAMA2, 16384, candidates="ntk,yarn,llama3,extrapolate,pi")
    names = plan.details["candidates"]
    scores = np.array([plan.details[f"d_{c}"] for c in names])  # (C, P)
    assert scores.shape == (5, 64)  # input sanity
    np.testing.assert_array_equal(plan.disturbance_per_pair, scores.min(axis=0))
    # each pair's factor is its chosen candidate's factor
    yarn = np.array(make_plan("yarn", LLAMA2, 16384).factors)
    for i, choice in enumerate(plan.details["choice"]):
        if choice == "yarn":
            assert plan.factors[i] == pytest.approx(yarn[i])


@pytest.mark.parametrize("candidates", ["pi,clex", "", "pi,pi"])
def test_candidates_bad_names(candidates):
    with pytest.raises(ValueError, match="candidates must be distinct names among extrapolate, pi, ntk, yarn, llama3"):
        make_plan("dprope_candidates", LLAMA2, 8192, candidates=candidates)


# --- attention temperature for every static method -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["pi", "ntk", "llama3", "dprope", "dprope_robust", "none"])
def test_attention_temperature(method):
    import math

    plan = make_plan(method, LLAMA2, 16384, attention_temperature=True)
    assert plan.attention_factor == pytest.approx(0.1 * math.log(4) + 1)
    assert make_plan(method, LLAMA2, 16384, attention_temperature=1.2).attention_factor == 1.2
    assert plan.options["attention_temperature"] is True
    assert make_plan(method, LLAMA2, 16384, **plan.options) == plan  # the options rebuild the plan
    assert make_plan("yarn", LLAMA2, 16384, attention_temperature=False).attention_factor == 1.0


@pytest.mark.parametrize("method,options,match", [
    ("dynamic_ntk", {"attention_temperature": True}, "attention_temperature needs a static method"),
    ("yarn", {"attention_temperature": True, "attention_factor": 1.1}, "give attention_temperature or attention_f"),
    ("pi", {"attention_temperature": -1.0}, "attention_temperature must be true, false or a number > 0, got -1.0"),
])
def test_attention_temperature_bad_input(method, options, match):
    with pytest.raises(ValueError, match=match):
        make_plan(method, LLAMA2, 8192, **options)


# --- search against a measured objective --------------------------------------------------------------------------


def tiny_objective():
    """Perplexity of a tiny random llama (window 64) on fixed tokens, 256 long, with a plan applied."""
    import torch

    from ropelab.eval.perplexity import perplexity
    from ropelab.runtime.hf import plan_applied
    from ropelab.runtime.models import random_model

    model = random_model("llama", original_length=64)
    ids = torch.randint(3, 128, (256,), generator=torch.Generator().manual_seed(0)).numpy()
    calls = []

    def objective(plan):
        calls.append(plan)
        with plan_applied(model, plan), torch.no_grad():
            return perplexity(model, [("doc", ids)], 256, protocol="truncated", progress=False).ppl

    return model, objective, calls


def test_search_improves_a_real_objective_within_budget():
    from ropelab.rope.search import coordinate_search

    model, objective, calls = tiny_objective()
    spec = RopeSpec.from_hf_config(model.config)
    assert (spec.n_pairs, spec.original_length) == (8, 64)  # input sanity
    plan = coordinate_search(objective, spec, 256, budget=12, bins=36, progress=False)
    search = plan.details["search"]
    assert len(calls) == search["evaluations"] <= 12 and len(search["curve"]) == search["evaluations"]
    assert search["start"] == "dprope" and calls[0].factors == make_plan("dprope", spec, 256, bins=36).factors
    curve = search["curve"]
    assert all(b <= a for a, b in itertools.pairwise(curve)) and search["objective"] == curve[-1] < curve[0]
    assert all(1.0 <= f <= 4.0 for f in plan.factors)
    assert objective(plan) == pytest.approx(search["objective"], rel=1e-9)  # the plan is what was measured
    again = make_plan(plan.method, spec, 256, bins=36, **plan.options)
    assert again.factors == plan.factors and again.attention_factor == plan.attention_factor


@pytest.mark.parametrize("kwargs,match", [
    ({"budget": 0}, "budget must be a positive integer \\(objective evaluations\\), got 0"),
    ({"values": [0.5, 2.0]}, "values must be factors in \\[1, s = 4\\]"),
])
def test_search_bad_input(kwargs, match):
    from ropelab.rope.search import coordinate_search

    with pytest.raises(ValueError, match=match) as err:
        coordinate_search(lambda plan: 0.0, LLAMA2, 16384, progress=False, **kwargs)
    assert "\n" not in str(err.value)
