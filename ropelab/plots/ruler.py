"""RULER figures: score per task x length (one heat-map panel per method) and the average score vs length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ropelab.figures import COLUMN_WIDTH, FULL_WIDTH, use_style, variant_colors


def length_label(n: int) -> str:
    return f"{n / 1024:g}k" if n % 256 == 0 else str(n)


def score_grid(cells: Sequence[Mapping]) -> tuple[list[str], list[int], np.ndarray]:
    """(tasks in first-seen order, lengths, grid) with grid[task, length] = score (NaN where missing)."""
    tasks = list(dict.fromkeys(str(c["task"]) for c in cells))
    lengths = sorted({int(c["length"]) for c in cells})
    grid = np.full((len(tasks), len(lengths)), np.nan)
    for c in cells:
        grid[tasks.index(str(c["task"])), lengths.index(int(c["length"]))] = float(c["score"])
    return tasks, lengths, grid


def ruler_heatmap(cells_by_method: Mapping[str, Sequence[Mapping]], window: int | None = None,
                  colors: Mapping[str, str] | None = None):
    """Score heat-maps, task (y) x context length (x), one panel per method, 0 red .. 1 green.

    Args:
        cells_by_method: ``{method: summary["cells"]}`` of :func:`ropelab.eval.ruler.evaluate_ruler`.
        window: draw a dashed line after the last length within the model's original window.
    """
    import matplotlib.pyplot as plt

    if not cells_by_method:
        raise ValueError("ruler_heatmap needs at least one method's cells")
    use_style()
    colors = dict(colors or variant_colors(cells_by_method))
    n = len(cells_by_method)
    tasks = list(dict.fromkeys(str(c["task"]) for cells in cells_by_method.values() for c in cells))
    width = min(FULL_WIDTH, COLUMN_WIDTH * (0.45 + 0.55 * n))
    fig, axes = plt.subplots(1, n, figsize=(width, 0.9 + 0.22 * len(tasks)), sharey=True, squeeze=False)
    image = None
    for ax, (method, cells) in zip(axes[0], cells_by_method.items()):
        own, lengths, grid = score_grid(cells)
        full = np.full((len(tasks), len(lengths)), np.nan)
        for i, task in enumerate(own):
            full[tasks.index(task)] = grid[i]
        image = ax.imshow(full, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", origin="upper")
        ax.set_xticks(range(len(lengths)), [length_label(x) for x in lengths], rotation=45)
        ax.set_yticks(range(len(tasks)), tasks)
        ns = sorted({int(c.get("n", 1)) for c in cells})
        ax.set_title(f"{method}\nn = {ns[0]}" + (f"-{ns[-1]}" if len(ns) > 1 else "") + " per cell", fontsize=7,
                     color=colors[method])
        ax.set_xlabel("context length (tokens)")
        if window is not None:
            inside = sum(x <= window for x in lengths)
            if 0 < inside < len(lengths):
                ax.axvline(inside - 0.5, color="black", linewidth=1.0, linestyle="--")
    fig.colorbar(image, ax=list(axes[0]), label="score")
    return fig


def ruler_average_plot(averages_by_method: Mapping[str, Sequence[Mapping]], window: int | None = None,
                       thresholds: Mapping[str, float] | None = None, colors: Mapping[str, str] | None = None):
    """Average RULER score vs context length, one line per method, with its interval where rows carry
    ``low``/``high``.

    Args:
        averages_by_method: ``{method: rows of (length, score[, low, high])}``.
        window: dashed vertical line at the model's original window.
        thresholds: effective-length thresholds, ``{label: value}``, as horizontal lines.
        colors: label -> colour (default :func:`ropelab.figures.variant_colors` of the methods).
    """
    import matplotlib.pyplot as plt

    if not averages_by_method:
        raise ValueError("ruler_average_plot needs at least one method's averages")
    use_style()
    colors = dict(colors or variant_colors(averages_by_method))
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.35, COLUMN_WIDTH * 0.72))
    lengths: set[int] = set()
    for i, (method, rows) in enumerate(averages_by_method.items()):
        rows = sorted(rows, key=lambda r: int(r["length"]))
        x = np.array([int(r["length"]) for r in rows], dtype=float) * 2 ** (0.04 * (i - len(averages_by_method) / 2))
        y = np.array([float(r["score"]) for r in rows])
        lengths |= {int(r["length"]) for r in rows}
        if all("low" in r for r in rows):
            err = [y - np.array([float(r["low"]) for r in rows]), np.array([float(r["high"]) for r in rows]) - y]
            ax.errorbar(x, y, yerr=err, marker="o", markersize=3, capsize=2, color=colors[method], label=method)
        else:
            ax.plot(x, y, marker="o", color=colors[method], label=method)
    ax.set_xscale("log", base=2)
    ticks = sorted(lengths)
    ax.set_xticks(ticks, [length_label(x) for x in ticks])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("RULER average score")
    if window is not None:
        ax.axvline(window, color="black", linewidth=1.0, linestyle="--", label="original window")
    for (name, value), style in zip((thresholds or {}).items(), (":", "-.", (0, (1, 3)))):
        ax.axhline(value, color="gray", linewidth=0.8, linestyle=style, label=name)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
