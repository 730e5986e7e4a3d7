"""ropelab.stats: t intervals, paired differences and the detectable effect, against hand values and scipy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from ropelab.stats import (
    bootstrap_mean_interval,
    detectable_effect,
    mcnemar_exact,
    mean_ci,
    paired_bootstrap,
    paired_ci,
    paired_comparison,
    wilson_interval,
)

T_975_4 = 2.7764451051977987  # Student t quantiles (tables): 0.975 with 4 and 2 d.o.f., 0.95 with 4
T_975_2 = 4.302652729749464
T_95_4 = 2.131846786326649


def test_mean_ci_by_hand():
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)  # sd sqrt(2.5)
    assert mean == 3.0 and low == pytest.approx(3.0 - half, rel=1e-12) and high == pytest.approx(3.0 + half, rel=1e-12)
    _, low90, high90 = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0], level=0.9)
    assert (3.0 - low90, high90 - 3.0) == pytest.approx((T_95_4 * math.sqrt(0.5),) * 2, rel=1e-12)
    x = [3.1, 2.7, 5.0, 4.4, 3.9, 2.2]
    assert mean_ci(x)[1:] == pytest.approx(sps.t.interval(0.95, len(x) - 1, np.mean(x), sps.sem(x)), rel=1e-12)


def test_mean_ci_edge_cases():
    mean, low, high = mean_ci([7.0])
    assert mean == 7.0 and math.isnan(low) and math.isnan(high)  # one seed: no interval
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)


def _rows(label, values, scale=2, metric="ppl_256", seeds=None):
    return [{"label": label, "method": label, "group": "main", "scale": scale, "seed": s, metric: v}
            for s, v in zip(seeds or range(len(values)), values)]


def test_paired_ci_by_hand():
    rows = _rows("dprope", [1.0, 2.0, 3.0]) + _rows("pi", [2.0, 2.5, 5.0]) + _rows("pi", [9.0, 9.0, 9.0], scale=4)
    cmp = paired_ci(rows, "ppl_256", 2, "dprope", "pi")
    half = T_975_2 * math.sqrt(7 / 12) / math.sqrt(3)  # differences -1, -0.5, -2: mean -7/6, sd sqrt(7/12)
    assert cmp["seeds"] == [0, 1, 2] and cmp["diffs"] == [-1.0, -0.5, -2.0]  # reference - baseline
    assert cmp["n"] == 3 and cmp["wins"] == 3
    assert cmp["mean_diff"] == pytest.approx(-7 / 6) and cmp["sd_diff"] == pytest.approx(math.sqrt(7 / 12))
    assert cmp["ci_low"] == pytest.approx(-7 / 6 - half) and cmp["ci_high"] == pytest.approx(-7 / 6 + half)
    assert cmp["p"] == pytest.approx(1 - math.sqrt(7) / 3, rel=1e-9)  # 2 d.o.f.: p = 1 - |t| / sqrt(2 + t^2)
    swapped = paired_ci(rows, "ppl_256", 2, "pi", "dprope")
    assert swapped["mean_diff"] == pytest.approx(7 / 6) and swapped["ci_low"] == pytest.approx(7 / 6 - half)
    assert swapped["wins"] == 0 and swapped["p"] == pytest.approx(cmp["p"])
    assert paired_comparison(rows, "ppl_256", 2, "dprope", "pi") == {k: cmp[k] for k in ("wins", "n", "mean_diff", "p")}


def test_paired_ci_pairs_by_seed():
    rows = _rows("dprope", [1.0, 2.0, 3.0, 4.0], seeds=[0, 1, 2, 5]) + _rows("pi", [3.0, 1.0, 7.0], seeds=[5, 1, 9])
    cmp = paired_ci(rows, "ppl_256", 2, "dprope", "pi")
    assert cmp["seeds"] == [1, 5] and cmp["diffs"] == [1.0, 1.0] and math.isnan(cmp["p"])
    assert cmp["ci_low"] == cmp["ci_high"] == 1.0
    one = paired_ci(rows[:2] + rows[5:6], "ppl_256", 2, "dprope", "pi")
    assert one["n"] == 1 and math.isnan(one["ci_low"]) and math.isnan(one["sd_diff"])
    ref = paired_ci(_rows("a", [1.0, 4.0, 2.0, 8.0]) + _rows("b", [2.0, 2.0, 3.0, 1.0]), "ppl_256", 2, "a", "b")
    assert ref["p"] == pytest.approx(sps.ttest_rel([1.0, 4.0, 2.0, 8.0], [2.0, 2.0, 3.0, 1.0]).pvalue, rel=1e-12)


def test_detectable_effect_large_n_tends_to_the_normal_formula():
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)  # 2.8016
    assert detectable_effect(3.0, 100_000) == pytest.approx(z * 3.0 / math.sqrt(100_000), rel=1e-3)
    assert detectable_effect(1.0, 40) > z / math.sqrt(40)  # t (heavier tails) needs more than the normal formula
    assert detectable_effect(2.0, 7) == pytest.approx(2 * detectable_effect(1.0, 7), rel=1e-10)  # linear in sd
    assert detectable_effect(0.0, 5) == 0.0


def test_detectable_effect_n5_by_simulation():
    """At the returned effect, a two-sided paired t-test on 5 pairs rejects in 80% of 20k simulated studies."""
    n, sd = 5, 1.5
    delta = detectable_effect(sd, n)
    rng = np.random.default_rng(0)
    diff = rng.normal(delta, sd, size=(20_000, n))
    t = diff.mean(axis=1) / (diff.std(axis=1, ddof=1) / math.sqrt(n))
    power = float(np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1)))
    assert power == pytest.approx(0.8, abs=0.012)  # binomial s.e. 0.003
    low = detectable_effect(sd, n, power=0.06)  # near alpha the lower rejection tail carries 0.009 of the 0.06
    t_low = (diff := rng.normal(low, sd, size=(50_000, n))).mean(axis=1) / (diff.std(axis=1, ddof=1) / math.sqrt(n))
    assert float(np.mean(np.abs(t_low) > sps.t.ppf(0.975, n - 1))) == pytest.approx(0.06, abs=0.004)  # s.e. 0.001
    assert 1.6 * sd < delta < 1.75 * sd  # 1.68 sd; the normal formula would give 2.80 / sqrt(5) = 1.25 sd


def test_detectable_effect_bad_input():
    with pytest.raises(ValueError, match="n >= 2"):
        detectable_effect(1.0, 1)
    with pytest.raises(ValueError, match="alpha"):
        detectable_effect(1.0, 5, alpha=0.9)


def test_detectable_effect_with_two_pairs_is_finite_and_large():
    from ropelab.stats import detectable_effect

    two, five = detectable_effect(1.0, 2), detectable_effect(1.0, 5)
    assert math.isfinite(two) and two > 5 * five  # one degree of freedom: only huge effects are detectable


def test_wilson_interval_by_hand():
    """(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n) with z = 1.959964: hand values at n = 10."""
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=5e-6)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=5e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=5e-6)  # symmetric to 0 of 10
    lo, hi = wilson_interval(3, 20, level=0.9)
    z = sps.norm.ppf(0.95)
    centre, half = (0.15 + z * z / 40) / (1 + z * z / 20), z * math.sqrt(0.15 * 0.85 / 20 + z * z / 1600) / (1 + z * z / 20)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), rel=1e-12)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_mcnemar_exact_is_a_binomial_test_of_the_discordant_pairs():
    right = [True] * 6 + [False] * 4
    out = mcnemar_exact(right, [False] * 10)
    assert (out["a_only"], out["b_only"], out["difference"]) == (6, 0, 0.6)
    assert out["p"] == pytest.approx(2 * 0.5 ** 6)  # 0.03125: 6 of 6 discordant pairs one way
    assert mcnemar_exact([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)["p"] == 1.0  # 5 each way
    assert mcnemar_exact(right, right)["p"] == 1.0  # concordant pairs carry no evidence
    assert mcnemar_exact([True, False, True], [False, True, False])["p"] == pytest.approx(1.0)  # 2 vs 1
    with pytest.raises(ValueError, match="equal lengths, got 2 and 3"):
        mcnemar_exact([True, False], [True, False, True])


def test_paired_bootstrap_on_known_differences_and_strata():
    same = paired_bootstrap([0.3, 0.5, 0.9], [0.3, 0.5, 0.9])
    assert (same["difference"], same["low"], same["high"], same["p"]) == (0.0, 0.0, 0.0, 1.0)
    ahead = paired_bootstrap([1.0] * 8, [0.0] * 8)
    assert (ahead["difference"], ahead["low"], ahead["high"], ahead["p"]) == (1.0, 1.0, 1.0, 0.0)
    # the mean of the strata's means (RULER's task average), not the mean over prompts
    strata = paired_bootstrap([1, 1, 0, 0, 0, 0], [0] * 6, strata=["a", "a", "b", "b", "b", "b"])
    assert strata["difference"] == 0.5 and (strata["mean_a"], strata["mean_b"]) == (0.5, 0.0)
    # two strata that each are constant: only the draw of the strata varies, so the interval spans both of them
    assert (strata["low"], strata["high"]) == (0.0, 1.0) and strata["p"] > 0.3
    # one prompt per task (RULER's other tasks here): no longer a zero-width interval around the point
    single = paired_bootstrap([1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0], strata=list("abcdef"), seed=2)
    assert single["difference"] == pytest.approx(0.5) and single["low"] < 0.25 and single["high"] > 0.75
    # the two-stage bootstrap with one stratum is the plain one
    assert paired_bootstrap(np.arange(9) % 2, np.zeros(9), strata=["x"] * 9, seed=5) == paired_bootstrap(
        np.arange(9) % 2, np.zeros(9), seed=5)
    noisy = paired_bootstrap(np.arange(20) % 3, np.zeros(20), resamples=4000, seed=1)
    se = np.std(np.arange(20) % 3) / math.sqrt(20)
    assert noisy["low"] == pytest.approx(noisy["difference"] - 1.96 * se, abs=0.1)
    assert bootstrap_mean_interval([0.5] * 4) == (0.5, 0.5)
    with pytest.raises(ValueError, match="equal, non-empty lengths, got 2 and 3"):
        paired_bootstrap([1, 2], [1, 2, 3])
