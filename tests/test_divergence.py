"""Divergences: KL in the paper's direction and the alternatives, checked against scipy and hand values."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance

from ropelab import DIVERGENCES, RopeSpec, angle_distribution, get_divergence
from ropelab.rope.divergence import js, kl, tv, wasserstein

RNG = np.random.default_rng(0)
P = RNG.dirichlet(np.ones(36), size=5)
Q = RNG.dirichlet(np.ones(36), size=5)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_nonnegative_and_zero_on_identical(name):
    d = get_divergence(name)
    assert (d(P, Q) >= 0).all()
    np.testing.assert_allclose(d(P, P), 0, atol=1e-12)


def test_kl_direction_is_the_release_and_table3():
    # KL(P_L || P_L') = sum P_L log(P_L / P_L') -- scipy's entropy(pk, qk)
    np.testing.assert_allclose(kl(P, Q), [entropy(p, q) for p, q in zip(P, Q)], rtol=1e-12)
    assert not np.allclose(kl(P, Q), kl(Q, P))


def test_js_and_tv_match_references():
    np.testing.assert_allclose(js(P, Q), [jensenshannon(p, q) ** 2 for p, q in zip(P, Q)], rtol=1e-10)
    assert tv(np.array([1.0, 0, 0]), np.array([0, 0, 1.0])) == 1.0
    assert tv(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.25)


def test_circular_wasserstein():
    one = np.eye(8)
    # mass one bin away, either way round the circle, costs one bin; opposite side costs four
    assert wasserstein(one[0], one[1]) == pytest.approx(1)
    assert wasserstein(one[0], one[7]) == pytest.approx(1)
    assert wasserstein(one[0], one[4]) == pytest.approx(4)
    # never more than the linear (non-circular) distance, which scipy computes
    bins = np.arange(36)
    for p, q in zip(P, Q):
        assert wasserstein(p, q) <= wasserstein_distance(bins, bins, p, q) + 1e-9
    # brute force over the cut point: circular W1 = min over rotations of the linear W1
    for p, q in zip(P, Q):
        best = min(wasserstein_distance(bins, bins, np.roll(p, k), np.roll(q, k)) for k in range(36))
        assert wasserstein(p, q) == pytest.approx(best, rel=1e-9)


def test_metrics_rank_interpolation_of_a_slow_pair_as_mild():
    # a pair that never turns fully in L: interpolating it over 2L keeps its angles, extrapolating does not
    spec = RopeSpec.preset("llama2-7b")
    theta = spec.inv_freq()[60:61]
    ref = angle_distribution(theta, 4096)
    extrap, interp = angle_distribution(theta, 8192), angle_distribution(theta / 2, 8192)
    for name, d in DIVERGENCES.items():
        assert d(ref, interp)[0] < d(ref, extrap)[0], name
