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
