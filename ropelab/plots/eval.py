"""Perplexity figures: perplexity against context length per method, short-context retention per method, and the
search curve of a searched variant (objective against evaluation)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ropelab.figures import COLUMN_WIDTH, method_color, use_style


def ppl_vs_length(rows: Sequence[Mapping], window: int | None = None, title: str = ""):
    """Perplexity (log scale) against context length (log2), one line per ``method``.

    Args:
        rows: result rows with ``method``, ``length`` and ``ppl`` (:meth:`PerplexityResult.row`); NaN is skipped.
        window: the pre-training window L, drawn as a dashed vertical line.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullLocator

    use_style()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, COLUMN_WIDTH * 0.72))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for method in methods:
        points = sorted((int(r["length"]), float(r["ppl"])) for r in rows
                        if r["method"] == method and math.isfinite(float(r["ppl"])))
        if points:
            # a variant of a method ("yarn:no_temp") keeps the method's colour, dashed
            ax.plot(*zip(*points), marker="o", color=method_color(method), label=method,
                    linestyle="--" if ":" in method else "-")
    if window is not None:
        ax.axvline(window, color="black", linewidth=0.8, linestyle="--")
        ax.text(window, 1.0, " L", transform=ax.get_xaxis_transform(), va="top", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    lengths = sorted({int(r["length"]) for r in rows})
    ax.set_xticks(lengths, [_length_label(n) for n in lengths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(NullLocator())
    return _finish(fig, ax, "context length (tokens)", "perplexity", title)


def retention_bars(rows: Sequence[Mapping], title: str = ""):
    """``ratio = ppl / ppl_original`` per method (bars) at each length inside the window; 1 = unchanged."""
    import matplotlib.pyplot as plt
    import numpy as np

    use_style()
    lengths = sorted({int(r["length"]) for r in rows})
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "none"]
    ratio = {(r["method"], int(r["length"])): float(r["ratio"]) for r in rows}
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, COLUMN_WIDTH * 0.72))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(lengths))
    for i, method in enumerate(methods):
        values = [ratio.get((method, n), math.nan) for n in lengths]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, color=method_color(method), label=method)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(x, [_length_label(n) for n in lengths])
    return _finish(fig, ax, "context length inside the window (tokens)", "ppl / ppl of the original model", title)


def search_curve_rows(search: Mapping) -> list[dict]:
    """One row per objective evaluation of a search record (``run_zero_shot(cfg)["search"]``): the evaluation
    (1 = the start plan), the best objective so far, and whether that evaluation was a kept move."""
    kept = {int(m["evaluation"]) for m in search["moves"]}
    return [{"label": search["label"], "evaluation": i + 1, "objective": float(v), "move": i in kept}
            for i, v in enumerate(search["curve"])]


def search_curve(rows: Sequence[Mapping], title: str = ""):
    """Best objective so far (needle perplexity, log scale) against objective evaluations (:func:`search_curve_rows`);
    kept moves are filled markers, the start is evaluation 1."""
    import matplotlib.pyplot as plt

    use_style()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, COLUMN_WIDTH * 0.72))
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        color = method_color(label)
        ax.step([r["evaluation"] for r in mine], [r["objective"] for r in mine], where="post", color=color, label=label)
        moves = [r for r in mine if r["move"]]
        ax.plot([r["evaluation"] for r in moves], [r["objective"] for r in moves], "o", color=color, markersize=4)
    ax.set_yscale("log")
    return _finish(fig, ax, "objective evaluations", "best needle perplexity", title)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str):
    """Axis labels, the optional title and the legend of one-axes figures; returns the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def _length_label(n: int) -> str:
    """Tick label of a length in tokens: 2k for 2048, 300 for 300."""
    return f"{n / 1024:g}k" if n % 256 == 0 else str(n)
