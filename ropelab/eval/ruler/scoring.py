"""RULER's metrics and effective length (Hsieh et al. 2024, sec. 4; NVIDIA/RULER
``scripts/eval/synthetic/constants.py`` and ``scripts/eval/evaluate.py``).

A prediction is cleaned as RULER's ``postprocess_pred`` does (strip; control characters become newlines). Then

* ``string_match_all`` (NIAH, VT, CWE, FWE): the fraction of the reference strings found in the prediction,
  case-insensitively;
* ``string_match_part`` (QA): 1 if any reference is found, else 0. (lm-eval's ``string_match_part`` averages
  instead of taking the maximum; RULER's is followed here.)

Scores are fractions in [0, 1] (RULER prints percent). A task's score at a length is the mean over its samples;
the average at a length is the mean over tasks, as RULER's "Avg." column.

Effective length (RULER sec. 4): the longest tested length up to which the average *exceeds* a threshold at
every tested length. RULER's threshold is Llama-2-7B's average at 4k, 85.6% (:data:`RULER_THRESHOLD`), a level
small models do not reach even inside their window. The default here is relative instead: ``0.85`` times the
model's own average at its shortest tested length (:func:`relative_threshold`), i.e. the context over which the
model keeps 85% of its short-context score, which is roughly RULER's absolute bar (85.6% of the ~100% a strong
model scores at short lengths). To compare methods on one footing, pass them all the same ``threshold``, e.g.
the relative threshold of the unextended model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

RULER_THRESHOLD = 0.856  # Llama-2-7B's RULER average at 4k (Hsieh et al. 2024, table 3)
DEFAULT_RELATIVE = 0.85
CONTROL = re.compile(r"[\x00-\x1f]")


def postprocess(prediction: str) -> str:
    """RULER's ``postprocess_pred``: strip, control characters to newlines, strip again."""
    return CONTROL.sub("\n", prediction.strip()).strip()


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    """Fraction of ``references`` contained (case-insensitively) in ``prediction``."""
    if not references:
        raise ValueError("string_match_all needs at least one reference")
    text = prediction.lower()
    return sum(r.lower() in text for r in references) / len(references)


def string_match_part(prediction: str, references: Sequence[str]) -> float:
    """1.0 when any of ``references`` is contained (case-insensitively) in ``prediction``, else 0.0."""
    if not references:
        raise ValueError("string_match_part needs at least one reference")
    text = prediction.lower()
    return float(any(r.lower() in text for r in references))


METRICS = {"all": string_match_all, "part": string_match_part}


def score(prediction: str, references: Sequence[str], metric: str) -> float:
    """The score of one (post-processed) prediction by ``metric`` ("all" or "part")."""
    if metric not in METRICS:
        raise ValueError(f"unknown RULER metric {metric!r}; allowed: {', '.join(METRICS)}")
    return METRICS[metric](postprocess(prediction), references)


def summarize(rows: Sequence[Mapping], threshold: float | None = None,
              relative: float = DEFAULT_RELATIVE) -> dict:
    """Cells (task, length, score, n), averages per length, the threshold used and the effective length, from
    rows with ``task``, ``length`` and ``score``."""
    cells: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        cells.setdefault((row["task"], int(row["length"])), []).append(float(row["score"]))
    table = [{"task": task, "length": length, "score": sum(v) / len(v), "n": len(v)}
             for (task, length), v in cells.items()]
    averages = length_averages(table)
    if threshold is None:
        threshold = relative_threshold(averages, relative) if averages else float("nan")
    return {"cells": table, "averages": [{"length": n, "score": s} for n, s in averages.items()],
            "threshold": threshold, "effective_length": effective_length(averages, threshold) if averages else None}


def length_averages(cells: Sequence[Mapping]) -> dict[int, float]:
    """Mean score over tasks at each length (RULER's "Avg."), by increasing length."""
    by_length: dict[int, list[float]] = {}
    for cell in cells:
        by_length.setdefault(int(cell["length"]), []).append(float(cell["score"]))
    return {n: sum(v) / len(v) for n, v in sorted(by_length.items())}


def relative_threshold(averages: Mapping[int, float], relative: float = DEFAULT_RELATIVE) -> float:
    """``relative`` times the average at the shortest length."""
    if not averages:
        raise ValueError("no averages to take a threshold from")
    if not 0.0 < relative <= 1.0:
        raise ValueError(f"relative threshold must be in (0, 1], got {relative}")
    return relative * averages[min(averages)]


def effective_length(averages: Mapping[int, float], threshold: float) -> int | None:
    """The longest length such that the average exceeds ``threshold`` at it and at every shorter tested length;
    None when even the shortest does not."""
    best = None
    for length in sorted(averages):
        if not averages[length] > threshold:
            break
        best = length
    return best
