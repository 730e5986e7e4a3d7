"""Statistical figures of the study (notebook 07), drawn with seaborn: metric against length with a t interval
over seeds, paired differences per seed with their t interval, and disturbance against outcomes (Wu et al. 2024,
Fig. 5, generalised). Every interval is :func:`ropelab.stats.mean_ci`'s, so the returned rows (the CSV) hold
exactly what is drawn; nothing is random (no bootstrap), so the same rows give the same bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ropelab.figures import COLUMN_WIDTH, FULL_WIDTH, SCALE_MARKERS, label_family, label_style, method_color, use_style
from ropelab.stats import detectable_effect, mean_ci, paired_ci, spearman

Rows = Sequence[Mapping]
LOG_Y = ("ppl_", "band_", "retention_")  # ratios of perplexities: log axis; accuracies: linear in [0, 1]
Y_LABELS = {"ppl_": "perplexity (held-out)", "band_": "band perplexity", "retention_": "ppl / pre-trained ppl",
            "copy_": "copy accuracy", "recall_": "recall accuracy", "passkey_": "passkey accuracy"}


def _values(rows: Rows, label: str, scale: int, key: str) -> list[float]:
    return [float(r[key]) for r in rows if r["label"] == label and r["scale"] == scale and key in r]


def _y_axis(ax, prefix: str) -> None:
    if prefix in LOG_Y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(-0.03, 1.03)


def plot_metric_bands(rows: Rows, base: Mapping, metric_prefix: str, lengths: Sequence[int], scales: Sequence[int],
                      window: int, labels: Sequence[str], level: float = 0.95):
    """``<metric_prefix><n>`` against length n (log 2), one panel per scale: per label the mean over seeds and its
    t interval as a band; the pre-trained model in black; dotted line at L, dashed at the target length.

    Returns (figure, rows) with rows {scale, label, method, metric, length, n, mean, ci_low, ci_high}; the
    pre-trained model's rows have scale 1, n 1 and no interval (NaN). Lengths a label lacks are left out.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    use_style()
    fig, axes = plt.subplots(1, len(scales), figsize=(FULL_WIDTH, 2.4), sharey=True, squeeze=False)
    data = []
    methods = {r["label"]: r["method"] for r in rows}
    band = lambda values: mean_ci(values, level)[1:]  # seaborn errorbar callable: (low, high)
    for ax, scale in zip(axes[0], scales):
        base_n = [n for n in lengths if f"{metric_prefix}{n}" in base]
        ax.plot(base_n, [base[f"{metric_prefix}{n}"] for n in base_n], color="black", marker=".",
                label="pre-trained")
        for label in labels:
            xs, ys = [], []
            for n in lengths:
                values = _values(rows, label, scale, f"{metric_prefix}{n}")
                if not values:
                    continue
                mean, low, high = mean_ci(values, level)
                data.append({"scale": scale, "label": label, "method": methods[label], "metric": f"{metric_prefix}{n}",
                             "length": n, "n": len(values), "mean": mean, "ci_low": low, "ci_high": high})
                xs += [n] * len(values)
                ys += values
            if xs:
                sns.lineplot(x=xs, y=ys, ax=ax, estimator="mean", errorbar=band, marker=".", markeredgewidth=0,
                             label=label, err_kws={"alpha": 0.15, "linewidth": 0}, **label_style(label))
        ax.axvline(window, color="grey", linewidth=0.8, linestyle=":")
        ax.axvline(window * scale, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        _y_axis(ax, metric_prefix)
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_title(f"extended to {scale}L = {window * scale}")
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[0][0].set_ylabel(f"{Y_LABELS.get(metric_prefix, metric_prefix.rstrip('_'))}\n"
                          f"(mean, {level:.0%} t interval over seeds)")
    axes[0][-1].legend(loc="best", fontsize=6, ncol=2)
    data += [{"scale": 1, "label": "pretrained", "method": "none", "metric": f"{metric_prefix}{n}", "length": n,
              "n": 1, "mean": float(base[f"{metric_prefix}{n}"]), "ci_low": float("nan"), "ci_high": float("nan")}
             for n in lengths if f"{metric_prefix}{n}" in base]
    return fig, data


def plot_paired_differences(rows: Rows, metric_for_scale: Mapping[int, str], reference: str,
                            baselines: Sequence[str], scales: Sequence[int], lower_is_better: bool = True,
                            level: float = 0.95, alpha: float = 0.05, power: float = 0.8):
    """Per scale, ``reference`` - baseline of ``metric_for_scale[scale]`` for every seed both ran (points), with
    the mean difference and its t interval (bar) and a zero line; the y label says which sign favours the reference.

    Returns (figure, rows): per (scale, baseline) one row {kind "summary", scale, metric, reference, baseline, n,
    wins, mean_diff, ci_low, ci_high, sd_diff, p, detectable_effect} -- the last is
    :func:`ropelab.stats.detectable_effect` at (alpha, power) from this sd and n, NaN for n < 2 -- then one row
    {kind "seed", scale, metric, reference, baseline, seed, diff} per seed. Baselines with no pairs are left out.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    use_style()
    width = COLUMN_WIDTH if len(scales) == 1 else FULL_WIDTH
    fig, axes = plt.subplots(1, len(scales), figsize=(width, 2.4), squeeze=False)
    data = []
    better = "< 0" if lower_is_better else "> 0"
    for ax, scale in zip(axes[0], scales):
        metric = metric_for_scale[scale]
        names, diffs, summaries = [], [], []
        for baseline in baselines:
            cmp = paired_ci(rows, metric, scale, reference, baseline, level, lower_is_better)
            if cmp["n"] == 0:
                continue
            detectable = detectable_effect(cmp["sd_diff"], cmp["n"], alpha, power) if cmp["n"] >= 2 else float("nan")
            keys = {"scale": scale, "metric": metric, "reference": reference, "baseline": baseline}
            summaries.append(cmp)
            data.append({"kind": "summary", **keys, **{k: cmp[k] for k in (
                "n", "wins", "mean_diff", "ci_low", "ci_high", "sd_diff", "p")}, "detectable_effect": detectable})
            data += [{"kind": "seed", **keys, "seed": s, "diff": d} for s, d in zip(cmp["seeds"], cmp["diffs"])]
            names += [baseline] * cmp["n"]
            diffs += cmp["diffs"]
        order = list(dict.fromkeys(names))
        ax.axhline(0.0, color="grey", linewidth=0.8)
        if order:
            sns.stripplot(x=names, y=diffs, order=order, hue=names, hue_order=order, jitter=False, size=3,
                          palette={b: label_style(b)["color"] for b in order}, legend=False, ax=ax, zorder=2)
            for i, cmp in enumerate(summaries):
                mean = cmp["mean_diff"]
                ax.errorbar([i + 0.25], [mean], yerr=[[mean - cmp["ci_low"]], [cmp["ci_high"] - mean]],
                            fmt="D", markersize=3, color="black", capsize=2, linewidth=0.8, zorder=3)
        ax.set_xlabel("baseline")
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_title(f"{scale}x: {metric} (seeds; mean, {level:.0%} t interval)")
    axes[0][0].set_ylabel(f"{reference} - baseline\n({better} favours {reference})")
    return fig, data


def plot_correlation_panel(rows: Rows, window: int, outcomes: Sequence[str], level: float = 0.95):
    """Disturbance (log x) against each outcome at the target length (``<outcome><window * scale>``), one panel
    per outcome prefix (e.g. "ppl_", "copy_"): one point per (label, scale), the mean over seeds with t-interval
    bars on both axes, coloured by method family, marker by scale; Spearman's rho and p over the points in each
    title. Pass the rows to correlate (e.g. the main group's). A disturbance <= 0 cannot sit on the log axis:
    its point is in the rows and in rho but not drawn.

    Returns (figure, rows): per (outcome, label, scale) {outcome, metric, label, method, scale, n, disturbance_mean,
    disturbance_ci_low, disturbance_ci_high, mean, ci_low, ci_high, rho, p, points}; rho, p and points (the
    panel's point count) repeat over a panel's rows.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import NullFormatter

    use_style()
    width = COLUMN_WIDTH if len(outcomes) == 1 else FULL_WIDTH
    fig, axes = plt.subplots(1, len(outcomes), figsize=(width, 2.6), squeeze=False)
    cells = list(dict.fromkeys((r["label"], r["scale"]) for r in rows))
    methods = {r["label"]: r["method"] for r in rows}
    data = []
    for ax, prefix in zip(axes[0], outcomes):
        points = []
        for label, scale in cells:
            key = f"{prefix}{window * scale}"
            members = [r for r in rows if r["label"] == label and r["scale"] == scale and key in r
                       and "disturbance" in r]
            if not members:
                continue
            x, x_low, x_high = mean_ci([r["disturbance"] for r in members], level)
            y, y_low, y_high = mean_ci([r[key] for r in members], level)
            points.append({"outcome": prefix.rstrip("_"), "metric": key, "label": label, "method": methods[label],
                           "scale": scale, "n": len(members), "disturbance_mean": x, "disturbance_ci_low": x_low,
                           "disturbance_ci_high": x_high, "mean": y, "ci_low": y_low, "ci_high": y_high})
        nan = float("nan")
        rho, p = spearman([q["disturbance_mean"] for q in points], [q["mean"] for q in points]) if len(
            points) >= 3 else (nan, nan)
        data += [{**q, "rho": rho, "p": p, "points": len(points)} for q in points]
        if points:
            families = [label_family(q["label"]) for q in points]
            sns.scatterplot(x=[q["disturbance_mean"] for q in points], y=[q["mean"] for q in points], hue=families,
                            style=[q["scale"] for q in points], markers=SCALE_MARKERS,
                            palette={f: method_color(f) for f in families}, s=18, zorder=3, ax=ax,
                            legend=ax is axes[0][-1])
            for q in points:
                x, y = q["disturbance_mean"], q["mean"]
                ax.errorbar([x], [y], xerr=[[x - q["disturbance_ci_low"]], [q["disturbance_ci_high"] - x]],
                            yerr=[[y - q["ci_low"]], [q["ci_high"] - y]], fmt="none", linewidth=0.6,
                            color=method_color(label_family(q["label"])), zorder=2)
                ax.annotate(f"{q['label']} {q['scale']}x", (q["disturbance_mean"], q["mean"]), fontsize=5,
                            xytext=(2, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels collide at column width
        _y_axis(ax, prefix)
        ax.set_xlabel("disturbance (mean KL over pairs)")
        ax.set_ylabel(f"{Y_LABELS.get(prefix, prefix.rstrip('_'))} at target length")
        ax.set_title(f"Spearman rho = {rho:.2f} (p = {p:.2g}, n = {len(points)})")
    if axes[0][-1].get_legend() is not None:
        axes[0][-1].legend(fontsize=6)
    return fig, data
