"""Figures of pre-training and extension fine-tuning (notebook 05): per-position loss and loss curves.

Every function takes rows and returns a Figure; save it with ``ropelab.figures.save_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ropelab.figures import COLUMN_WIDTH, method_color

Rows = Sequence[Mapping[str, Any]]


def position_loss_rows(losses: np.ndarray, label: str, bin_size: int) -> list[dict[str, Any]]:
    """Per-position losses (T - 1,) averaged over bins of ``bin_size`` positions: rows (model, position, loss)."""
    rows = []
    for start in range(0, len(losses), bin_size):
        chunk = losses[start:start + bin_size]
        rows.append({"model": label, "position": start + len(chunk) / 2, "loss": float(np.mean(chunk))})
    return rows


def plot_position_loss(rows: Rows, window: int, marks: Sequence[int] = ()) -> plt.Figure:
    """Next-token loss against position, one line per model; the pre-training window L is dashed.

    A RoPE model pre-trained at L is good below L and breaks past it (its unseen rotation angles).
    """
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    for label in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == label]
        ax.plot([r["position"] for r in mine], [r["loss"] for r in mine], label=label,
                color=method_color(label.split(" ")[0]), lw=1.2)
    ax.axvline(window, color="0.3", ls="--", lw=0.8)
    ax.text(window, ax.get_ylim()[1], " L", va="top", ha="left", fontsize="small", color="0.3")
    for mark in marks:
        ax.axvline(mark, color="0.6", ls=":", lw=0.8)
    ax.set_xlabel("position")
    ax.set_ylabel("next-token loss (nats)")
    ax.legend(fontsize="x-small", frameon=False)
    fig.tight_layout()
    return fig


def plot_loss_curves(rows: Rows, smooth: int = 5) -> plt.Figure:
    """Fine-tuning loss against step, one line per method (moving average over ``smooth`` steps)."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["step"])
        steps = np.array([r["step"] for r in mine])
        loss = np.array([r["loss"] for r in mine])
        k = max(1, min(smooth, len(loss)))
        avg = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], avg, label=method, color=method_color(method), lw=1.2)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("training loss (nats)")
    ax.legend(fontsize="x-small", frameon=False, ncol=2)
    fig.tight_layout()
    return fig
