"""Figures of RoPE frequencies, rotary-angle distributions and their disturbance (notebooks 01-04).

Every function takes data (arrays, rows, specs, plans) and returns a Figure; save it with
``ropelab.figures.save_figure``. References: Wu et al. 2024 (DPRoPE) Fig. 3 and Table 3; Peng et al. 2024 (YaRN)
for the ramp; Liu et al. 2023 for the critical dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from ropelab.figures import COLUMN_WIDTH, FULL_WIDTH, method_color
from ropelab.rope.plan import RopePlan
from ropelab.rope.spec import RopeSpec

Rows = Sequence[Mapping[str, Any]]


def interpolation_degree(plan: RopePlan) -> np.ndarray:
    """Per pair, how far the plan moves theta_i towards theta_i / s: 0 keeps it, 1 is full PI; shape (d/2,).

    YaRN's value is its ramp; NTK's grows smoothly with the pair index. (1 - 1/f) / (1 - 1/s) for factor f.
    """
    factors = np.asarray(plan.factors)
    return (1.0 - 1.0 / factors) / (1.0 - 1.0 / plan.scale)


def plot_wavelengths(specs: Mapping[str, RopeSpec]) -> plt.Figure:
    """Wavelength lambda_i = 2pi/theta_i per pair (log scale) against each model's training length L (dashed);
    the critical pair d_extra/2 (Liu et al. 2023) is marked with a dot."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    for k, (label, spec) in enumerate(specs.items()):
        color = f"C{k}"
        lam = spec.wavelengths()
        ax.plot(np.arange(spec.n_pairs), lam, color=color, label=label)
        ax.axhline(spec.original_length, color=color, linestyle="--", linewidth=0.8)
        crit = spec.critical_dimension() // 2
        if crit < spec.n_pairs:
            ax.plot([crit], [lam[crit]], "o", color=color)
    ax.set_yscale("log")
    ax.set_xlabel("pair i")
    ax.set_ylabel(r"wavelength $2\pi/\theta_i$ (tokens)")
    ax.legend(loc="upper left")
    return fig


def plot_pair_factors(plans: Sequence[RopePlan], critical_pair: float | None = None) -> plt.Figure:
    """Factor theta_i / theta_i' per pair for each plan (1 = extrapolate, s = interpolate), log scale."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    for plan in plans:
        ax.plot(np.arange(len(plan.factors)), plan.factors, color=method_color(plan.method), label=plan.method,
                drawstyle="steps-mid" if plan.method == "dprope" else "default")
    if critical_pair is not None:
        ax.axvline(critical_pair, color="black", linestyle=":", linewidth=0.8, label="critical dim / 2")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("pair i")
    ax.set_ylabel(r"factor $\theta_i / \theta_i'$")
    ax.legend(loc="upper left")
    return fig


def plot_angle_histograms(pairs: Sequence[int], reference: np.ndarray, candidates: Mapping[str, np.ndarray],
                          divergence: Mapping[str, np.ndarray] | None = None,
                          reference_label: str = "pre-trained") -> plt.Figure:
    """DPRoPE Fig. 3 analogue: one row per pair, one column per candidate distribution, each overlaid on the
    pre-trained distribution; ``reference`` and each candidate have shape (d/2, bins)."""
    bins = reference.shape[-1]
    centres = (np.arange(bins) + 0.5) * 360.0 / bins  # degrees
    fig, axes = plt.subplots(len(pairs), len(candidates), figsize=(FULL_WIDTH, 1.5 * len(pairs) + 0.3),
                             sharex=True, squeeze=False)
    for r, pair in enumerate(pairs):
        for c, (label, dist) in enumerate(candidates.items()):
            ax = axes[r, c]
            ax.fill_between(centres, reference[pair], step="mid", color="0.75", label=reference_label)
            ax.step(centres, dist[pair], where="mid", color=f"C{c + 1}", linewidth=0.6, label=label)
            title = f"pair {pair}: {label}"
            if divergence is not None and label in divergence:
                title += f"  (D = {divergence[label][pair]:.2e})"
            ax.set_title(title)
            if r == len(pairs) - 1:
                ax.set_xlabel("angle (degrees)")
            if c == 0:
                ax.set_ylabel("probability")
            if r == 0:
                ax.legend(loc="upper right")
    axes[0, 0].set_xlim(0, 360)
    return fig


def plot_distribution_heatmap(distributions: Mapping[str, np.ndarray], floor: float = 1e-6) -> plt.Figure:
    """Every pair's angle distribution as an image (pairs x angle bins, log colour), one panel per label."""
    fig, axes = plt.subplots(1, len(distributions), figsize=(FULL_WIDTH, 2.6), sharey=True, squeeze=False)
    vmax = max(float(d.max()) for d in distributions.values())
    norm = LogNorm(vmin=floor, vmax=vmax)
    image = None
    for ax, (label, dist) in zip(axes[0], distributions.items()):
        image = ax.imshow(np.maximum(dist, floor), aspect="auto", origin="lower", norm=norm,
                          extent=(0, 360, -0.5, dist.shape[0] - 0.5), interpolation="nearest")
        ax.set_title(label)
        ax.set_xlabel("angle (degrees)")
        ax.grid(False)
    axes[0, 0].set_ylabel("pair i")
    fig.colorbar(image, ax=axes[0].tolist(), label="probability", shrink=0.9)
    return fig


def plot_pair_disturbance(d_extrap: np.ndarray, d_interp: np.ndarray, interpolated: Sequence[int] = (),
                          critical_pair: float | None = None) -> plt.Figure:
    """Per-pair D_extrap and D_interp (DPRoPE eq. 8, log scale); pairs the plan interpolates are shaded."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    pairs = np.arange(len(d_extrap))
    for i in interpolated:
        ax.axvspan(i - 0.5, i + 0.5, color=method_color("dprope"), alpha=0.12, linewidth=0)
    ax.plot(pairs, d_extrap, color=method_color("none"), label=r"$D_\mathrm{extrap}$")
    ax.plot(pairs, d_interp, color=method_color("pi"), label=r"$D_\mathrm{interp}$")
    if critical_pair is not None:
        ax.axvline(critical_pair, color="black", linestyle=":", linewidth=0.8, label="critical dim / 2")
    ax.set_yscale("log")
    ax.set_xlabel("pair i (shaded: DPRoPE interpolates)")
    ax.set_ylabel("disturbance (KL, nats)")
    ax.legend(loc="lower left")
    return fig


def plot_table3(rows: Rows, columns: Sequence[str] = ("paper", "exact", "float32")) -> plt.Figure:
    """Table 3 as grouped bars: one group per (method, target) row, one bar per column (disturbance x 1e-3)."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    x = np.arange(len(rows))
    width = 0.8 / len(columns)
    for k, column in enumerate(columns):
        values = [row[column] for row in rows]
        ax.bar(x + (k - (len(columns) - 1) / 2) * width, values, width, label=column, color=f"C{k}")
    ax.set_xticks(x, [f"{row['method']}\n{row['target']}" for row in rows])
    ax.set_ylabel(r"disturbance ($\times 10^{-3}$)")
    ax.legend(loc="upper left")
    return fig


def plot_disturbance_vs_scale(rows: Rows, value: str = "disturbance") -> plt.Figure:
    """One panel per ``preset``, one line per ``method``: ``value`` against ``scale`` (rows of dicts)."""
    presets = list(dict.fromkeys(row["preset"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    fig, axes = plt.subplots(1, len(presets), figsize=(FULL_WIDTH, 2.4), sharey=True, squeeze=False)
    for ax, preset in zip(axes[0], presets):
        for method in methods:
            mine = sorted((r["scale"], r[value]) for r in rows if r["preset"] == preset and r["method"] == method)
            if mine:
                xs, ys = zip(*mine)
                ax.plot(xs, ys, "o-", color=method_color(method), label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(preset)
        ax.set_xlabel("scale s = L'/L")
    axes[0, 0].set_ylabel("disturbance (mean KL over pairs)")
    axes[0, -1].legend(loc="best")
    return fig


def plot_metric_comparison(rows: Rows) -> plt.Figure:
    """One panel per ``metric``: each ``method``'s disturbance (bars), grouped by ``target`` (rows of dicts with
    metric, method, target, value). Each panel has its own scale: the metrics have different units."""
    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    targets = list(dict.fromkeys(row["target"] for row in rows))
    fig, axes = plt.subplots(1, len(metrics), figsize=(FULL_WIDTH, 2.2), squeeze=False)
    width = 0.8 / len(methods)
    for ax, metric in zip(axes[0], metrics):
        for k, method in enumerate(methods):
            values = [next((r["value"] for r in rows if (r["metric"], r["method"], r["target"]) == (metric, method, t)),
                           np.nan) for t in targets]
            ax.bar(np.arange(len(targets)) + (k - (len(methods) - 1) / 2) * width, values, width,
                   color=method_color(method), label=method)
        ax.set_xticks(np.arange(len(targets)), [str(t) for t in targets])
        ax.set_yscale("log")  # methods can differ by orders of magnitude (YaRN's ramp under Wasserstein-1)
        ax.set_title(metric)
    axes[0, 0].set_ylabel("disturbance (log scale)")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_selection(rows: Rows, xlabel: str = "pair i", xscale: str = "linear",
                   vline: float | None = None, vline_label: str = "") -> plt.Figure:
    """Which pairs each plan interpolates: one row per ``label``, a dot per pair at ``x`` coloured by its
    interpolation degree (0 keep .. 1 full PI; see :func:`interpolation_degree`)."""
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 0.35 * len(rows) + 1.0))
    scatter = None
    for k, row in enumerate(rows):
        x = np.asarray(row["x"])
        scatter = ax.scatter(x, np.full(x.shape, k), c=np.asarray(row["degree"]), cmap="viridis", vmin=0, vmax=1,
                             s=9, marker="s", linewidths=0)
    if vline is not None:
        ax.axvline(vline, color="black", linestyle=":", linewidth=0.8, label=vline_label)
        ax.legend(loc="lower right")
    ax.set_yticks(np.arange(len(rows)), [row["label"] for row in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    ax.set_xscale(xscale)
    ax.set_xlabel(xlabel)
    ax.grid(False)
    fig.colorbar(scatter, ax=ax, label="interpolation (0 keep, 1 PI)", pad=0.01)
    return fig


def plot_threshold_sweep(thresholds: np.ndarray, n_hat: Mapping[str, np.ndarray],
                         marks: Mapping[str, int] | None = None) -> plt.Figure:
    """Interpolated dimensions n_hat as the threshold t of eq. 9 grows, one line per label; ``marks`` draws the
    paper's chosen n_hat as dotted horizontal lines."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    for k, (label, counts) in enumerate(n_hat.items()):
        ax.step(thresholds, counts, where="post", color=f"C{k}", label=label)
        if marks and label in marks:
            ax.axhline(marks[label], color=f"C{k}", linestyle=":", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=float(np.min(thresholds[thresholds > 0])))
    ax.set_xlim(0, float(np.max(thresholds)))
    ax.set_xlabel("threshold t")
    ax.set_ylabel(r"interpolated dimensions $\hat n$")
    ax.legend(loc="upper right")
    return fig


def plot_bins_sensitivity(rows: Rows) -> plt.Figure:
    """Two panels against ``bins``: interpolated dimensions and disturbance, one line per ``target``."""
    targets = list(dict.fromkeys(row["target"] for row in rows))
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH * 0.7, 2.2), sharex=True)
    for k, target in enumerate(targets):
        mine = sorted((r["bins"], r["n_interpolated_dims"], r["disturbance"]) for r in rows if r["target"] == target)
        b, n, dist = zip(*mine)
        axes[0].plot(b, n, "o-", color=f"C{k}", label=str(target))
        axes[1].plot(b, dist, "o-", color=f"C{k}", label=str(target))
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["bins"] for r in rows}), [str(b) for b in sorted({r["bins"] for r in rows})])
        ax.set_xlabel("bins b")
    axes[0].set_ylabel(r"interpolated dims $\hat n$")
    axes[1].set_ylabel("disturbance (KL)")
    axes[1].set_yscale("log")
    axes[0].legend(loc="best", title="L'")
    return fig
