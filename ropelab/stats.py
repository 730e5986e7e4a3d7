"""Statistics of repeated runs: mean +- std and t intervals over seeds, paired comparisons across seeds, the
smallest effect a paired design detects, rank correlation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and count."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0, len(x)


def cell_summary(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Mean +- std over seeds of each metric per (label, scale), in first-seen order."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["scale"]), []).append(row)
    out = []
    for (label, scale), members in groups.items():
        entry: dict[str, Any] = {"label": label, "method": members[0]["method"], "group": members[0]["group"],
                                 "scale": scale, "n": len(members)}
        for metric in metrics:
            values = [m[metric] for m in members if metric in m]
            if values:
                entry[f"{metric}_mean"], entry[f"{metric}_std"], _ = mean_std(values)
        out.append(entry)
    return out


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t confidence interval ``mean -+ t_{(1+level)/2, n-1} * sd / sqrt(n)``.

    Returns (mean, low, high). With one value the interval is undefined: (value, nan, nan), so a plot draws the
    point without a band. With equal values the interval is the point. Raises ValueError on no values.
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value, got none")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1.0 + level) / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def _paired(rows: Sequence[Mapping[str, Any]], metric: str, scale: int, reference: str,
            baseline: str) -> tuple[list[int], np.ndarray]:
    """The seeds where both labels have ``metric`` at ``scale`` and the differences reference - baseline."""

    def by_seed(label: str) -> dict[int, float]:
        return {r["seed"]: r[metric] for r in rows if r["label"] == label and r["scale"] == scale and metric in r}

    ref, base = by_seed(reference), by_seed(baseline)
    seeds = sorted(set(ref) & set(base))
    return seeds, np.array([ref[s] - base[s] for s in seeds], dtype=np.float64)


def paired_ci(rows: Sequence[Mapping[str, Any]], metric: str, scale: int, reference: str = "dprope",
              baseline: str = "pi", level: float = 0.95, lower_is_better: bool = True) -> dict[str, Any]:
    """``reference`` against ``baseline`` at ``scale``, paired by seed, with a t confidence interval.

    Returns seeds and diffs (reference - baseline per seed), n, wins (seeds where the reference is better),
    mean_diff, sd_diff (ddof 1), ci_low and ci_high (``mean_ci`` of the differences: NaN for n < 2) and p (two-sided
    paired t-test = one-sample t-test of the differences; NaN when n < 3 or all differences are equal).
    """
    from scipy import stats

    seeds, diff = _paired(rows, metric, scale, reference, baseline)
    wins = int(np.sum(diff < 0) if lower_is_better else np.sum(diff > 0))
    nan = float("nan")
    mean, low, high = mean_ci(diff, level) if len(diff) else (nan, nan, nan)
    p = nan
    if len(diff) >= 3 and np.ptp(diff) > 0:
        p = float(stats.ttest_1samp(diff, 0.0).pvalue)
    return {"seeds": seeds, "diffs": [float(d) for d in diff], "n": len(seeds), "wins": wins, "mean_diff": mean,
            "sd_diff": float(diff.std(ddof=1)) if len(diff) > 1 else nan, "ci_low": low, "ci_high": high, "p": p}


def paired_comparison(rows: Sequence[Mapping[str, Any]], metric: str, scale: int, reference: str = "dprope",
                      baseline: str = "pi", lower_is_better: bool = True) -> dict[str, float]:
    """wins, n, mean_diff (reference - baseline) and p of :func:`paired_ci` (the numbers metrics.json keeps)."""
    full = paired_ci(rows, metric, scale, reference, baseline, lower_is_better=lower_is_better)
    return {k: full[k] for k in ("wins", "n", "mean_diff", "p")}


def detectable_effect(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided paired t-test on ``n`` pairs detects with ``power`` at ``alpha``.

    Solves power(delta) = 1 - F(t_c; n-1, nc) + F(-t_c; n-1, nc) = ``power`` for delta, with F the noncentral t
    CDF, nc = delta * sqrt(n) / sd_diff and t_c = t_{1-alpha/2, n-1}. For large n it tends to
    (z_{1-alpha/2} + z_power) * sd_diff / sqrt(n) (2.80 sd / sqrt(n) at the defaults). Same units as sd_diff.
    """
    from scipy import optimize, stats

    if n < 2:
        raise ValueError(f"detectable_effect needs n >= 2 pairs, got {n}")
    if not (0.0 < alpha < power < 1.0):
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if not sd_diff > 0:
        return 0.0 if sd_diff == 0 else float("nan")
    df, tcrit = n - 1, float(stats.t.ppf(1.0 - alpha / 2.0, n - 1))

    def gap(nc: float) -> float:  # power at noncentrality nc minus the target
        lower = float(stats.nct.cdf(-tcrit, df, nc))  # scipy gives NaN for df = 1 at large nc, where it is ~0
        return float(stats.nct.sf(tcrit, df, nc)) + (lower if np.isfinite(lower) else 0.0) - power

    upper = 1.0  # solved in nc, not delta: nc stays O(t_c + z_power) for any n, where the noncentral t is accurate
    while gap(upper) < 0:
        upper *= 2.0
    return float(optimize.brentq(gap, 0.0, upper, xtol=1e-12)) * sd_diff / np.sqrt(n)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its p-value (scipy)."""
    from scipy import stats

    result = stats.spearmanr(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)


# --- proportions and paired retrieval outcomes ---------------------------------------------------------------


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it for
    small n): ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``. (nan, nan) for n = 0."""
    from scipy.stats import norm

    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if successes == 0 else float(centre - half)), (1.0 if successes == n else float(centre + half))


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of paired binary outcomes (the same prompts under two methods): a two-sided binomial
    test of the discordant pairs, ``a_only`` (right under a only) against ``b_only``, at p = 1/2."""
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    a_only = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    b_only = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return {"n": len(a), "a_only": a_only, "b_only": b_only, "difference": (a_only - b_only) / max(len(a), 1),
            "p": p}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10000, level: float = 0.95,
                     seed: int = 0, strata: Sequence[Any] | None = None) -> dict[str, Any]:
    """Percentile bootstrap of the mean paired difference ``a - b`` (the same prompts resampled for both), with a
    two-sided p-value (twice the smaller tail of the resampled differences around 0).

    With ``strata`` the statistic is the mean of the strata's means (RULER's average over tasks), and the bootstrap
    has two stages: the strata are drawn with replacement, then each drawn stratum's prompts within it (Davison &
    Hinkley 1997, sec. 3.8). Drawing prompts alone would call a stratum of one prompt certain and give a task
    average of one sample per task a zero-width interval; drawing the tasks too carries their spread instead
    (conservative: it treats the task set as one draw of many). ``mean_a``/``mean_b`` are the same statistic of
    ``a`` and ``b``, so ``difference = mean_a - mean_b``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired scores need equal, non-empty lengths, got {a.size} and {b.size}")
    diff = a - b  # (n,)
    rng = np.random.default_rng(seed)
    groups = [np.arange(diff.size)] if strata is None else [
        np.flatnonzero(np.asarray(strata, dtype=object) == s) for s in dict.fromkeys(strata)]
    g = len(groups)
    # within-stratum means of independent draws, one per slot of the outer draw: (strata, resamples, slots)
    inner = np.stack([diff[idx][rng.integers(0, idx.size, size=(resamples, g, idx.size))].mean(axis=2)
                      for idx in groups])
    outer = rng.integers(0, g, size=(resamples, g))  # which stratum fills each slot: (resamples, slots)
    means = inner[outer, np.arange(resamples)[:, None], np.arange(g)[None, :]].mean(axis=1)  # (resamples,)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))

    def statistic(values: np.ndarray) -> float:
        return float(np.mean([values[idx].mean() for idx in groups]))

    return {"n": int(diff.size), "difference": statistic(diff), "mean_a": statistic(a), "mean_b": statistic(b),
            "low": float(lo), "high": float(hi), "p": p}


def bootstrap_mean_interval(values: Sequence[float], resamples: int = 10000, level: float = 0.95, seed: int = 0,
                            strata: Sequence[Any] | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (within ``strata``, as :func:`paired_bootstrap`)."""
    out = paired_bootstrap(values, np.zeros(len(values)), resamples, level, seed, strata)
    return out["low"], out["high"]
