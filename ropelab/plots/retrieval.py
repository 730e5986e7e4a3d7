"""Retrieval heat-maps (passkey, needle-in-a-haystack): accuracy over context length x depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ropelab.figures import COLUMN_WIDTH, use_style, variant_colors


def accuracy_grid(cells: Sequence[Mapping]) -> tuple[list[int], list[float], np.ndarray]:
    """(lengths, depths, grid) with grid[depth, length] = accuracy (NaN where a cell is missing)."""
    lengths = sorted({int(c["length"]) for c in cells})
    depths = sorted({float(c["depth"]) for c in cells})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for c in cells:
        grid[depths.index(float(c["depth"])), lengths.index(int(c["length"]))] = float(c["accuracy"])
    return lengths, depths, grid


def retrieval_heatmap(cells: Sequence[Mapping], title: str = "", window: int | None = None):
    """Accuracy heat-map: context length (tokens) on x, depth (% of the context) on y, 0 red .. 1 green.

    Args:
        cells: ``summary["cells"]`` of :func:`ropelab.eval.passkey.evaluate_passkey` or
            :func:`ropelab.eval.niah.evaluate_niah` (length, depth, accuracy).
        title: axes title, e.g. the model and method.
        window: draw a line after the last length within the model's original window.
    """
    import matplotlib.pyplot as plt

    use_style()
    lengths, depths, grid = accuracy_grid(cells)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, COLUMN_WIDTH * 0.75))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", origin="upper")
    ax.set_yticks(range(len(depths)), [f"{100 * d:g}" for d in depths])
    ax.set_ylabel("depth (%)")
    _length_axis(ax, lengths, window)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    return fig


def _length_axis(ax, lengths: Sequence[int], window: int | None) -> None:
    """Context lengths as x tick labels, and a dashed line after the last length inside ``window``."""
    ax.set_xticks(range(len(lengths)), [f"{n / 1024:g}k" if n % 256 == 0 else str(n) for n in lengths])
    ax.set_xlabel("context length (tokens)")
    if window is not None:
        inside = sum(n <= window for n in lengths)
        if 0 < inside < len(lengths):
            ax.axvline(inside - 0.5, color="black", linewidth=1.0, linestyle="--")


def score_heatmap(cells: Sequence[Mapping], rows: str = "method", value: str = "accuracy", title: str = "",
                  window: int | None = None):
    """Scores with one row per ``rows`` value (e.g. each method) and one column per context length, 0 red .. 1 green.

    Cells of the same (row, length) are averaged weighted by their ``n`` (e.g. over depths), so a grid of several
    depths reads as one accuracy per method and length. ``window`` draws a line after the last length inside it.
    """
    import matplotlib.pyplot as plt

    use_style()
    labels = list(dict.fromkeys(str(c[rows]) for c in cells))
    lengths = sorted({int(c["length"]) for c in cells})
    total = np.zeros((len(labels), len(lengths)))
    weight = np.zeros_like(total)
    for c in cells:
        i, j = labels.index(str(c[rows])), lengths.index(int(c["length"]))
        total[i, j] += float(c[value]) * c.get("n", 1)
        weight[i, j] += c.get("n", 1)
    grid = np.where(weight > 0, total / np.maximum(weight, 1), np.nan)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, max(1.6, 0.32 * len(labels) + 1.0)))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", origin="upper")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    ax.set_yticks(range(len(labels)), labels)
    _length_axis(ax, lengths, window)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label=value)
    return fig


def interval_plot(cells: Sequence[Mapping], value: str = "accuracy", title: str = "", window: int | None = None,
                  colors: Mapping[str, str] | None = None, ylabel: str | None = None):
    """A score per method against context length with its interval: one line per ``method``, points dodged
    sideways, error bars from each cell's ``low``/``high`` (e.g. Wilson's), the cells' ``n`` in the legend.

    Args:
        cells: rows with ``method``, ``length``, ``value``, ``low``, ``high`` and ``n``.
        window: a dashed line after the last length inside the model's original window.
        colors: label -> colour (default :func:`ropelab.figures.variant_colors` of the cells' methods).
    """
    import matplotlib.pyplot as plt

    use_style()
    methods = list(dict.fromkeys(str(c["method"]) for c in cells))
    colors = dict(colors or variant_colors(methods))
    lengths = sorted({int(c["length"]) for c in cells})
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.35, COLUMN_WIDTH * 0.72))
    width = 0.6 / max(len(methods), 1)
    for i, method in enumerate(methods):
        mine = sorted((c for c in cells if str(c["method"]) == method), key=lambda c: int(c["length"]))
        x = np.array([lengths.index(int(c["length"])) for c in mine]) + (i - (len(methods) - 1) / 2) * width
        y = np.array([float(c[value]) for c in mine])
        err = np.array([[yy - float(c["low"]) for yy, c in zip(y, mine)], [float(c["high"]) - yy for yy, c in zip(y, mine)]])
        ns = sorted({int(c["n"]) for c in mine})
        label = f"{method} (n={ns[0]})" if len(ns) == 1 else f"{method} (n={ns[0]}-{ns[-1]})"
        ax.errorbar(x, y, yerr=err, marker="o", markersize=3, capsize=2, linewidth=1.0, color=colors[method],
                    label=label, linestyle="--" if ":" in method else "-")
    _length_axis(ax, lengths, window)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(ylabel or value)
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
