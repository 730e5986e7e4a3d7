"""Tables of a zero-shot run with their uncertainty: retrieval cells with Wilson intervals, RULER averages with
stratified bootstrap intervals, effective lengths at two thresholds, and paired tests between methods.

Every sample of a retrieval cell is one prompt scored 0/1 (passkey, NIAH, most RULER tasks) or a fraction
(RULER's multi-answer tasks); a cell's interval is Wilson's for 0/1 scores and a percentile bootstrap otherwise.
Methods are compared on the *same* prompts: exact McNemar on 0/1 outcomes, a paired bootstrap on scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ropelab.stats import bootstrap_mean_interval, mcnemar_exact, paired_bootstrap, wilson_interval


def interval_cells(rows: Sequence[Mapping[str, Any]], value: str, keys: Sequence[str] = ("method", "length")
                   ) -> list[dict[str, Any]]:
    """One row per ``keys`` cell: ``n``, the mean of ``value`` (``accuracy`` for booleans, else ``score``) and its
    95% interval ``low``/``high`` (Wilson for 0/1 values, percentile bootstrap otherwise)."""
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        cells.setdefault(tuple(r[k] for k in keys), []).append(float(r[value]))
    out = []
    for cell, values in cells.items():
        n, mean = len(values), float(np.mean(values))
        if all(v in (0.0, 1.0) for v in values):
            low, high = wilson_interval(int(sum(values)), n)
        else:
            low, high = bootstrap_mean_interval(values)
        out.append({**dict(zip(keys, cell)), "n": n, "accuracy" if value == "correct" else value: mean,
                    "low": low, "high": high})
    return out


def ruler_averages(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """RULER's average per (method, length): the mean over tasks of each task's mean score, with a 95% two-stage
    bootstrap interval (tasks drawn with replacement, then prompts within each: :func:`ropelab.stats.paired_bootstrap`)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        for length in sorted({r["length"] for r in rows if r["method"] == method}):
            mine = [r for r in rows if r["method"] == method and r["length"] == length]
            scores, tasks = [float(r["score"]) for r in mine], [r["task"] for r in mine]
            low, high = bootstrap_mean_interval(scores, strata=tasks)
            means = [np.mean([s for s, t in zip(scores, tasks) if t == task]) for task in dict.fromkeys(tasks)]
            out.append({"method": method, "length": length, "score": float(np.mean(means)), "low": low,
                        "high": high, "tasks": len(means), "n": len(mine)})
    return out


def effective_lengths(averages: Sequence[Mapping[str, Any]], thresholds: Mapping[str, float]) -> list[dict]:
    """Per method and threshold: the longest length whose average stays at or above it at every length up to it
    (:func:`ropelab.eval.ruler.scoring.effective_length`; 0 when even the shortest is below)."""
    from ropelab.eval.ruler.scoring import effective_length

    out = []
    for method in dict.fromkeys(a["method"] for a in averages):
        mean = {int(a["length"]): float(a["score"]) for a in averages if a["method"] == method}
        for name, value in thresholds.items():
            out.append({"method": method, "threshold": name, "value": float(value),
                        "effective_length": effective_length(mean, value) or 0})
    return out


def paired_tests(rows: Sequence[Mapping[str, Any]], a: str, b: str, value: str, key: Sequence[str],
                 groups: Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """``a`` against ``b`` on the same prompts (matched by ``key``), for each group of lengths in ``groups``
    (e.g. ``{"12k": [12288], "past L": [12288, 16384]}``): exact McNemar for 0/1 values of one task (passkey,
    NIAH); a paired bootstrap for scores and for rows with a ``task`` (RULER), whose statistic is then the average
    over tasks (each task's mean, tasks weighted equally, as RULER averages) with tasks and prompts resampled."""
    by = {m: {tuple(r[k] for k in key): r for r in rows if r["method"] == m} for m in (a, b)}
    common = [k for k in by[a] if k in by[b]]
    out = []
    for name, lengths in groups.items():
        keys = [k for k in common if by[a][k]["length"] in lengths]
        if not keys:
            continue
        x = [float(by[a][k][value]) for k in keys]
        y = [float(by[b][k][value]) for k in keys]
        row = {"a": a, "b": b, "lengths": name, "n": len(keys), "mean_a": float(np.mean(x)), "mean_b": float(np.mean(y))}
        strata = [by[a][k]["task"] for k in keys] if "task" in by[a][keys[0]] else None
        if strata is None and all(v in (0.0, 1.0) for v in x + y):
            test = mcnemar_exact([v == 1.0 for v in x], [v == 1.0 for v in y])
            row.update(test="mcnemar", difference=test["difference"], a_only=test["a_only"], b_only=test["b_only"],
                       p=test["p"])
        else:  # scores, or a task average (RULER's): the two-stage bootstrap over tasks and their prompts
            test = paired_bootstrap(x, y, strata=strata)
            row.update(test="paired bootstrap", mean_a=test["mean_a"], mean_b=test["mean_b"],
                       difference=test["difference"], low=test["low"], high=test["high"], p=test["p"])
        out.append(row)
    return out


def ruler_thresholds(averages: Sequence[Mapping[str, Any]], absolute: float, window: int, baseline: str = "none"
                     ) -> dict[str, float]:
    """The effective-length thresholds, by name: relative (0.85 x ``baseline``'s average at its shortest length,
    :func:`ropelab.eval.ruler.scoring.relative_threshold`), only when ``baseline`` was run at a length within the
    model's ``window`` (past it the unextended model fails, and 0.85 x its score is no bar); and RULER's
    ``absolute`` bar (0.856, Llama-2-7B's average at 4k). Only the absolute one is RULER's."""
    from ropelab.eval.ruler.scoring import relative_threshold

    base = {a["length"]: a["score"] for a in averages if a["method"] == baseline and a["length"] <= window}
    relative = {f"relative: 0.85 x {baseline} at {min(base)}": relative_threshold(base)} if base else {}
    return {**relative, f"RULER's absolute {absolute:g}": float(absolute)}


COMPARED = (("dprope_robust", "yarn"), ("dprope_robust", "dprope"))  # besides every variant against none
OUTCOMES = {"passkey": (("length", "trial"), "correct"), "niah": (("length", "depth"), "correct"),
            "ruler": (("task", "length", "index"), "score")}  # outcome -> (what matches a prompt, its value)


def comparison_table(result: Mapping[str, Any], variants: Sequence[str], lengths: Sequence[int], window: int
                     ) -> list[dict[str, Any]]:
    """Every paired test of a run: :data:`COMPARED` and each variant against ``none``, for every outcome of
    :data:`OUTCOMES` the run has, at each length alone and pooled past the window (``"past L"``)."""
    pairs = [*COMPARED, *((m, "none") for m in variants if m != "none")]
    groups = {str(n): [n] for n in lengths}
    groups["past L"] = [n for n in lengths if n > window]
    tests = []
    for name, (key, value) in OUTCOMES.items():
        for a, b in pairs:
            if result.get(name) and {a, b} <= {r["method"] for r in result[name]}:
                tests += [{"outcome": name, **t} for t in paired_tests(result[name], a, b, value, key, groups)]
    return tests
