"""RULER figures: score per task x length (one heat-map panel per method) and the average score vs length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ropelab.figures import COLUMN_WIDTH, FULL_WIDTH, method_color, use_style


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


def ruler_heatmap(cells_by_method: Mapping[str, Sequence[Mapping]], window: int | None = None):
    """Score heat-maps, task (y) x context length (x), one panel per method, 0 red .. 1 green.

    Args:
        cells_by_method: ``{method: summary["cells"]}`` of :func:`ropelab.eval.ruler.evaluate_ruler`.
        window: draw a dashed line after the last length within the model's original window.
    """
    import matplotlib.pyplot as plt

    if not cells_by_method:
        raise ValueError("ruler_heatmap needs at least one method's cells")
    use_style()
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
        ax.set_title(method, color=method_color(method))
        ax.set_xlabel("context length (tokens)")
        if window is not None:
            inside = sum(x <= window for x in lengths)
            if 0 < inside < len(lengths):
                ax.axvline(inside - 0.5, color="black", linewidth=1.0, linestyle="--")
    fig.colorbar(image, ax=list(axes[0]), label="score")
    return fig


def ruler_average_plot(averages_by_method: Mapping[str, Sequence[Mapping]], window: int | None = None,
                       threshold: float | None = None):
    """Average RULER score vs context length, one line per method (its method colour).

    Args:
        averages_by_method: ``{method: summary["averages"]}`` (rows of length, score).
        window: dashed vertical line at the model's original window.
        threshold: dotted horizontal line at the effective-length threshold.
    """
    import matplotlib.pyplot as plt

    if not averages_by_method:
        raise ValueError("ruler_average_plot needs at least one method's averages")
    use_style()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, COLUMN_WIDTH * 0.7))
    lengths: set[int] = set()
    for method, rows in averages_by_method.items():
        points = sorted((int(r["length"]), float(r["score"])) for r in rows)
        lengths |= {x for x, _ in points}
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", color=method_color(method), label=method)
    ax.set_xscale("log", base=2)
    ticks = sorted(lengths)
    ax.set_xticks(ticks, [length_label(x) for x in ticks])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("RULER average score")
    if window is not None:
        ax.axvline(window, color="black", linewidth=1.0, linestyle="--", label="original window")
    if threshold is not None:
        ax.axhline(threshold, color="gray", linewidth=0.8, linestyle=":", label="threshold")
    ax.legend()
    return fig
