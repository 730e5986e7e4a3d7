"""RULER's per-task scores as a markdown table, the way the README prints them: ``mean [low, high]`` per method, two
decimals rounded half up, the leading zero dropped (``.80 [.49, .94]``; 1 and 0 bare), and RULER's average last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ropelab.eval.ruler.tasks import SYNTHETIC_TASKS


def two_places(value: float) -> str:
    """``value`` to two decimals, half up, without a leading zero: 0.8 -> ".80", 1.0 -> "1", 0.0 -> "0"."""
    text = str(Decimal(repr(float(value))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    if text in ("1.00", "0.00", "-0.00"):
        return text[:-3].lstrip("-")
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def cell_text(cell: Mapping[str, Any], value: str = "score") -> str:
    return f"{two_places(cell[value])} [{two_places(cell['low'])}, {two_places(cell['high'])}]"


def ruler_table(cells: Sequence[Mapping[str, Any]], averages: Sequence[Mapping[str, Any]]) -> str:
    """A row per task (and length, where there are several) of ``cells`` (:func:`interval_cells` rows by method, task,
    length), a column per method, then a row per length of the average over tasks (``averages``): "RULER average" only
    where every synthetic RULER task is in the table, else "average of k tasks" (a part of a grid, or a quick run)."""
    methods = list(dict.fromkeys(c["method"] for c in cells))
    lengths = sorted({c["length"] for c in cells})
    by = {(c["method"], c["task"], c["length"]): c for c in cells}
    counts = sorted({c["n"] for c in cells})
    n = f"n = {counts[0]} each" if len(counts) == 1 else f"n = {counts[0]}-{counts[-1]}"
    several = len(lengths) > 1
    head = ["task" + f" ({n})", *(["length"] if several else []), *methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in dict.fromkeys(c["task"] for c in cells):
        for length in lengths:
            if not any((m, task, length) in by for m in methods):
                continue
            row = [task, *([str(length)] if several else [])]
            row += [cell_text(by[(m, task, length)]) if (m, task, length) in by else "" for m in methods]
            lines.append("| " + " | ".join(row) + " |")
    mean = {(a["method"], a["length"]): a for a in averages}
    for length in lengths:
        tasks = {c["task"] for c in cells if c["length"] == length}
        label = "RULER average" if tasks >= set(SYNTHETIC_TASKS) else f"average of {len(tasks)} tasks"
        row = [f"**{label}**", *([str(length)] if several else [])]
        row += [cell_text(mean[(m, length)]) if (m, length) in mean else "" for m in methods]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
