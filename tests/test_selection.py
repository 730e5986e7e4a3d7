"""ropelab's own selection methods beside DPRoPE: the turns-guarded variant (and, below, the others)."""

import numpy as np
import pytest

from ropelab import RopeSpec, make_plan
from ropelab.methods import Scoring, lattice_noise

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
