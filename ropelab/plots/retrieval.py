"""Retrieval heat-maps (passkey, needle-in-a-haystack): accuracy over context length x depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ropelab.figures import COLUMN_WIDTH, use_style


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
    ax.set_xticks(range(len(lengths)), [f"{n / 1024:g}k" if n % 256 == 0 else str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{100 * d:g}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("depth (%)")
    if window is not None:
        inside = sum(n <= window for n in lengths)
        if 0 < inside < len(lengths):
            ax.axvline(inside - 0.5, color="black", linewidth=1.0, linestyle="--")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    return fig
