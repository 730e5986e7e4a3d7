"""Perplexity figures: perplexity against context length per method, short-context retention per method, and the
search curve of a searched variant (objective against evaluation)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ropelab.figures import COLUMN_WIDTH, FULL_WIDTH, method_color, use_style, variant_colors


def ppl_vs_length(rows: Sequence[Mapping], window: int | None = None, title: str = "",
                  colors: Mapping[str, str] | None = None, zoom: float = 1.25):
    """Perplexity against context length, two panels: (a) every method, log scale; (b) each method's perplexity
    relative to the unextended model's at the window (``none`` at L), zoomed to [1/zoom.., zoom] around 1, so
    methods within a few percent of each other stay apart; methods off that scale are named under the panel.

    Args:
        rows: result rows with ``method``, ``length`` and ``ppl``; NaN is skipped.
        window: the pre-training window L, drawn as a dashed vertical line (and the reference length of (b)).
        colors: label -> colour (default :func:`ropelab.figures.variant_colors` of the rows' labels).
        zoom: the upper limit of panel (b).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullLocator

    use_style()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = dict(colors or variant_colors(methods))
    lengths = sorted({int(r["length"]) for r in rows})
    points = {m: sorted((int(r["length"]), float(r["ppl"])) for r in rows
                        if r["method"] == m and math.isfinite(float(r["ppl"]))) for m in methods}
    reference_length = window if window in lengths else max(n for n in lengths if window is None or n <= window)
    reference = dict(points.get("none", [])).get(reference_length)
    fig, axes = plt.subplots(1, 2 if reference else 1, figsize=(FULL_WIDTH, COLUMN_WIDTH * 0.78), squeeze=False)
    off_scale = []
    for method in methods:
        if not points[method]:
            continue
        style = {"marker": "o", "markersize": 3, "color": colors.get(method, method_color(method)), "label": method,
                 "linestyle": "--" if ":" in method else "-"}
        axes[0, 0].plot(*zip(*points[method]), **style)
        if reference:
            xs, ys = zip(*points[method])
            ratio = [y / reference for y in ys]
            if max(ratio) > zoom or min(ratio) < 1 / zoom:
                off_scale.append(method)
            axes[0, 1].plot(xs, ratio, **{**style, "label": "_nolegend_"})
    for ax in axes[0]:
        if window is not None:
            ax.axvline(window, color="black", linewidth=0.8, linestyle="--")
            ax.text(window, 1.0, " L", transform=ax.get_xaxis_transform(), va="top", fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [_length_label(n) for n in lengths])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("context length (tokens)")
    ax = axes[0, 0]
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel("perplexity")
    ax.set_title("(a) every method" + (f": {title}" if title else ""), fontsize=8)
    if reference:
        ax = axes[0, 1]
        ax.set_ylim(1 / zoom + 0.1 * (1 - 1 / zoom), zoom)
        ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
        ax.set_ylabel(f"ppl / ppl of none at {_length_label(reference_length)}")
        ax.set_title("(b) relative to the unextended model at L, zoomed", fontsize=8)
        if off_scale:
            ax.text(0.02, 0.02, "off scale: " + ", ".join(off_scale), transform=ax.transAxes, fontsize=6,
                    va="bottom")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)
    fig.tight_layout()
    return fig


def ppl_by_corpus(rows: Sequence[Mapping], window: int, colors: Mapping[str, str] | None = None,
                  zoom: float = 1.25):
    """One panel per ``corpus``: each method's perplexity relative to the unextended model's at the window on that
    corpus, against context length, zoomed to ``zoom`` around 1 (methods off that scale named under the panel)."""
    import matplotlib.pyplot as plt

    use_style()
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = dict(colors or variant_colors(methods))
    fig, axes = plt.subplots(1, len(corpora), figsize=(FULL_WIDTH, COLUMN_WIDTH * 0.75), squeeze=False,
                             sharey=True)
    for ax, corpus in zip(axes[0], corpora):
        mine = [r for r in rows if r["corpus"] == corpus]
        base = {r["length"]: r["ppl"] for r in mine if r["method"] == "none"}
        reference = base.get(max((n for n in base if n <= window), default=None))
        off = []
        for method in methods:
            points = sorted((int(r["length"]), float(r["ppl"]) / reference) for r in mine if r["method"] == method)
            if not points or reference is None:
                continue
            if max(y for _, y in points) > zoom:
                off.append(method)
            ax.plot(*zip(*points), marker="o", markersize=3, color=colors[method], label=method,
                    linestyle="--" if ":" in method else "-")
        lengths = sorted({int(r["length"]) for r in mine})
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [_length_label(n) for n in lengths])
        ax.minorticks_off()
        ax.axvline(window, color="black", linewidth=0.8, linestyle="--")
        ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
        ax.set_ylim(1 / zoom + 0.1 * (1 - 1 / zoom), zoom)
        n_docs = sorted({int(r["n_docs"]) for r in mine})
        ax.set_title(f"{corpus} ({n_docs[0]} documents)", fontsize=8)
        ax.set_xlabel("context length (tokens)")
        if off:
            ax.text(0.02, 0.02, "off scale: " + ", ".join(off), transform=ax.transAxes, fontsize=5, va="bottom")
    axes[0, 0].set_ylabel("ppl / ppl of none at L")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)
    fig.tight_layout()
    return fig


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
