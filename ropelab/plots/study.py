"""Figures of the study (notebook 07): ppl vs length, disturbance vs ppl (the paper's Fig. 5), sweeps, passkey."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ropelab.figures import COLUMN_WIDTH, FULL_WIDTH, SCALE_MARKERS, label_style, use_style

Rows = Sequence[Mapping]


def _mean_std(rows: Rows, label: str, scale: int, key: str) -> tuple[float, float]:
    values = [r[key] for r in rows if r["label"] == label and r["scale"] == scale and key in r]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def plot_ppl_vs_length(rows: Rows, base: Mapping, lengths: Sequence[int], scales: Sequence[int], window: int,
                       labels: Sequence[str]):
    """Perplexity (mean +- std over seeds) against evaluation length, one panel per scale; the pre-trained model
    in black. Returns the figure and the plotted rows."""
    import matplotlib.pyplot as plt

    use_style()
    fig, axes = plt.subplots(1, len(scales), figsize=(FULL_WIDTH, 2.4), sharey=True, squeeze=False)
    data = []
    for ax, scale in zip(axes[0], scales):
        ax.plot(lengths, [base[f"ppl_{n}"] for n in lengths], color="black", marker=".", label="pre-trained")
        for label in labels:
            stats = [_mean_std(rows, label, scale, f"ppl_{n}") for n in lengths]
            mean, std = np.array([s[0] for s in stats]), np.array([s[1] for s in stats])
            if np.all(np.isnan(mean)):
                continue
            ax.errorbar(lengths, mean, yerr=std, marker=".", capsize=2, label=label, **label_style(label))
            data += [{"scale": scale, "label": label, "length": n, "ppl_mean": m, "ppl_std": s}
                     for n, m, s in zip(lengths, mean, std)]
        ax.axvline(window, color="grey", linewidth=0.8, linestyle=":")
        ax.axvline(window * scale, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_title(f"extended to {scale}L = {window * scale}")
    axes[0][0].set_ylabel("perplexity (held-out)")
    axes[0][-1].legend(loc="upper left", fontsize=6, ncol=2)
    data += [{"scale": 1, "label": "pretrained", "length": n, "ppl_mean": base[f"ppl_{n}"], "ppl_std": 0.0}
             for n in lengths]
    return fig, data


def plot_disturbance_scatter(points: Rows, rho: float, p: float):
    """Disturbance (log) against perplexity at the target length, one point per (method, scale); Spearman's rho."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    use_style()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.6))
    for pt in points:
        ax.scatter(pt["disturbance"], pt["ppl"], color=label_style(pt["label"])["color"],
                   marker=SCALE_MARKERS.get(pt["scale"], "o"), s=18, zorder=3)
        ax.annotate(f"{pt['label']} {pt['scale']}x", (pt["disturbance"], pt["ppl"]), fontsize=5,
                    xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels collide at column width
    ax.set_xlabel("disturbance (mean KL over pairs)")
    ax.set_ylabel("perplexity at target length")
    ax.set_title(f"Spearman rho = {rho:.2f} (p = {p:.2g}, n = {len(points)})")
    return fig


def plot_sweep(rows: Rows, labels: Sequence[str], xs: Sequence[float], keys: Sequence[str], xlabel: str,
               xscale: str = "linear"):
    """Mean perplexity (over sweep seeds) of sweep variants ``labels`` at positions ``xs``, one line per key."""
    import matplotlib.pyplot as plt

    use_style()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
    data = []
    for key in keys:
        values = []
        for label, x in zip(labels, xs):
            mean = np.mean([r[key] for r in rows if r["label"] == label and key in r]) if any(
                r["label"] == label for r in rows) else np.nan
            values.append(mean)
            data.append({"label": label, "x": x, "metric": key, "value": float(mean)})
        ax.plot(xs, values, marker="o", label=key.replace("ppl_", "ppl @ "))
    ax.set_xscale(xscale)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("perplexity (held-out)")
    ax.legend()
    return fig, data


def plot_passkey_matrix(rows: Rows, labels: Sequence[str], scales: Sequence[int], lengths: Sequence[int],
                        window: int):
    """Passkey accuracy (mean over depths and seeds): rows method @ scale, columns prompt length."""
    import matplotlib.pyplot as plt

    use_style()
    names, grid, data = [], [], []
    for scale in scales:
        for label in labels:
            values = [_mean_std(rows, label, scale, f"passkey_{n}")[0] for n in lengths]
            if all(np.isnan(values)):
                continue
            names.append(f"{label} {scale}x")
            grid.append(values)
            data += [{"label": label, "scale": scale, "length": n, "accuracy": v} for n, v in zip(lengths, values)]
    grid = np.array(grid)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.5 + 0.18 * len(names)))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_xlabel(f"passkey prompt length (tokens; L = {window})")
    ax.grid(False)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=5)
    fig.colorbar(image, ax=ax, label="accuracy")
    return fig, data
