"""Statistics of repeated runs: mean +- std over seeds, paired comparisons across seeds, rank correlation."""

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


def paired_comparison(rows: Sequence[Mapping[str, Any]], metric: str, scale: int, reference: str = "dprope",
                      baseline: str = "pi", lower_is_better: bool = True) -> dict[str, float]:
    """``reference`` against ``baseline`` at ``scale``, paired by seed.

    Returns wins (seeds where the reference is better), n (paired seeds), mean_diff (reference - baseline) and
    p (two-sided paired t-test; NaN when n < 3 or all differences are equal).
    """
    from scipy import stats

    def by_seed(label: str) -> dict[int, float]:
        return {r["seed"]: r[metric] for r in rows if r["label"] == label and r["scale"] == scale and metric in r}

    ref, base = by_seed(reference), by_seed(baseline)
    seeds = sorted(set(ref) & set(base))
    diff = np.array([ref[s] - base[s] for s in seeds], dtype=np.float64)
    wins = int(np.sum(diff < 0) if lower_is_better else np.sum(diff > 0))
    p = float("nan")
    if len(diff) >= 3 and np.ptp(diff) > 0:
        p = float(stats.ttest_rel([ref[s] for s in seeds], [base[s] for s in seeds]).pvalue)
    return {"wins": wins, "n": len(seeds), "mean_diff": float(diff.mean()) if len(diff) else float("nan"), "p": p}


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its p-value (scipy)."""
    from scipy import stats

    result = stats.spearmanr(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)
