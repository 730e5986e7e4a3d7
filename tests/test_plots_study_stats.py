"""ropelab.plots.study_stats: the rows behind each figure hold the means, t intervals and paired differences
computed here by hand, the figures draw exactly those numbers, and save_figure writes them byte-stably."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from ropelab.figures import save_figure
from ropelab.plots.study_stats import plot_correlation_panel, plot_metric_bands, plot_paired_differences

T_975_4 = 2.7764451051977987  # Student t, 0.975 quantile, 4 d.o.f. (tables): 5 seeds
WINDOW, LENGTHS, SCALES = 64, [32, 64, 128, 256], [2, 4]
SEED_NOISE = np.array([0.0, 1.0, -1.0, 2.0, -2.0])  # mean 0, sd sqrt(2.5)
GAP = {"pi": 0.0, "dprope": -1.5, "dprope_paper": -0.5}  # ppl offset from pi
SPREAD = {"pi": 1.0, "dprope": 0.5, "dprope_paper": 2.0}  # seed noise scale: interval bounds rank unlike the means
DISTURBANCE = {"pi": 0.2, "dprope": 0.05, "dprope_paper": 0.1}


def _ppl(label, scale, n, seed):
    return 10.0 + n / 32 + scale + GAP[label] + SEED_NOISE[seed] * SPREAD[label]


def _rows():
    rows = []
    for scale in SCALES:
        for label in GAP:
            for seed in range(5):
                row = {"label": label, "method": "dprope" if label.startswith("dprope") else label, "group": "main",
                       "scale": scale, "seed": seed, "disturbance": DISTURBANCE[label] * scale * (1 + 0.01 * seed)}
                row.update({f"ppl_{n}": _ppl(label, scale, n, seed) for n in LENGTHS})
                row.update({f"copy_{n}": 0.9 - DISTURBANCE[label] - 0.01 * seed for n in LENGTHS if n >= WINDOW})
                rows.append(row)
    return rows


BASE = {**{f"ppl_{n}": 9.0 + n for n in LENGTHS}, "copy_64": 0.95}


def _t_interval(values):
    x = np.asarray(values, dtype=np.float64)
    half = T_975_4 * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def test_metric_bands_rows_and_drawn_band():
    rows = _rows()
    fig, data = plot_metric_bands(rows, BASE, "ppl_", LENGTHS, SCALES, WINDOW, ["pi", "dprope"])
    assert len(fig.axes) == 2
    assert len(data) == 2 * 2 * len(LENGTHS) + len(LENGTHS)
    for row in data[:-len(LENGTHS)]:
        mean, low, high = _t_interval([_ppl(row["label"], row["scale"], row["length"], s) for s in range(5)])
        assert row["n"] == 5 and row["metric"] == f"ppl_{row['length']}"
        assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high), rel=1e-12)
    pre = data[-len(LENGTHS):]
    assert [(r["label"], r["scale"], r["mean"]) for r in pre] == [("pretrained", 1, 9.0 + n) for n in LENGTHS]
    assert all(math.isnan(r["ci_low"]) for r in pre)
    # the drawn band of pi at 2x (the first band in the first panel) spans exactly the rows' interval
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    for n in LENGTHS:
        ys = band[np.isclose(band[:, 0], n), 1]
        row = next(r for r in data if (r["label"], r["scale"], r["length"]) == ("pi", 2, n))
        assert (ys.min(), ys.max()) == pytest.approx((row["ci_low"], row["ci_high"]), rel=1e-9)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"


def test_metric_bands_skip_missing_lengths():
    fig, data = plot_metric_bands(_rows(), BASE, "copy_", LENGTHS, SCALES, WINDOW, ["pi"])
    assert sorted({r["length"] for r in data if r["label"] == "pi"}) == [64, 128, 256]
    assert [r["length"] for r in data if r["label"] == "pretrained"] == [64]
    assert fig.axes[0].get_yscale() == "linear"


def test_paired_differences_sign_and_interval():
    rows = _rows()
    metric = {2: "ppl_128", 4: "ppl_256"}
    fig, data = plot_paired_differences(rows, metric, "dprope", ["pi", "dprope_paper", "yarn"], SCALES)
    assert len(fig.axes) == 2
    summaries = [r for r in data if r["kind"] == "summary"]
    assert [(r["scale"], r["baseline"]) for r in summaries] == [(2, "pi"), (2, "dprope_paper"), (4, "pi"),
                                                                 (4, "dprope_paper")]  # no yarn rows: left out
    for r in summaries:
        diffs = [_ppl("dprope", r["scale"], int(r["metric"][4:]), s) - _ppl(r["baseline"], r["scale"],
                                                                             int(r["metric"][4:]), s)
                 for s in range(5)]
        mean, low, high = _t_interval(diffs)  # reference - baseline: dprope is lower, so < 0
        assert mean == pytest.approx(GAP["dprope"] - GAP[r["baseline"]]) and mean < 0
        assert (r["mean_diff"], r["ci_low"], r["ci_high"]) == pytest.approx((mean, low, high), rel=1e-9)
        assert r["n"] == 5 and r["wins"] == sum(d < 0 for d in diffs)
        assert r["p"] == pytest.approx(sps.ttest_1samp(diffs, 0.0).pvalue, rel=1e-9)
        seeds = [x for x in data if x["kind"] == "seed" and (x["scale"], x["baseline"]) == (r["scale"], r["baseline"])]
        assert [x["diff"] for x in seeds] == pytest.approx(diffs)
        assert r["detectable_effect"] > 2.80 * r["sd_diff"] / math.sqrt(5)  # a t-test on 5 pairs needs more
    # what is drawn: the points are the per-seed differences, the bar the interval
    ax = fig.axes[0]
    assert sorted(ax.collections[0].get_offsets()[:, 1]) == pytest.approx(sorted(
        x["diff"] for x in data if x["kind"] == "seed" and x["scale"] == 2 and x["baseline"] == "pi"))
    from matplotlib.collections import LineCollection

    bar = next(c for c in ax.collections if isinstance(c, LineCollection)).get_segments()[0]  # first bar: pi
    assert (bar[:, 1].min(), bar[:, 1].max()) == pytest.approx((summaries[0]["ci_low"], summaries[0]["ci_high"]))
    assert "< 0 favours dprope" in ax.get_ylabel()
    higher = plot_paired_differences(rows, metric, "dprope", ["pi"], [2], lower_is_better=False)
    assert "> 0 favours dprope" in higher[0].axes[0].get_ylabel() and higher[1][0]["wins"] == 5 - summaries[0]["wins"]


def test_correlation_panel_means_and_spearman():
    rows = _rows()
    fig, data = plot_correlation_panel(rows, WINDOW, ["ppl_", "copy_"])
    assert len(fig.axes) == 2 and len(data) == 2 * 3 * 2
    for prefix, ax in zip(["ppl", "copy"], fig.axes):
        panel = [r for r in data if r["outcome"] == prefix]
        for r in panel:
            key = f"{prefix}_{WINDOW * r['scale']}"
            members = [x for x in rows if (x["label"], x["scale"]) == (r["label"], r["scale"])]
            assert r["metric"] == key and r["n"] == 5
            assert (r["mean"], r["ci_low"], r["ci_high"]) == pytest.approx(_t_interval([x[key] for x in members]))
            assert (r["disturbance_mean"], r["disturbance_ci_low"], r["disturbance_ci_high"]) == pytest.approx(
                _t_interval([x["disturbance"] for x in members]))
        rho, p = sps.spearmanr([r["disturbance_mean"] for r in panel], [r["mean"] for r in panel])
        assert all(r["rho"] == pytest.approx(rho) and r["p"] == pytest.approx(p) and r["points"] == 6
                   for r in panel)
        assert f"rho = {rho:.2f}" in ax.get_title()
        assert ax.get_xscale() == "log"


def test_save_figure_writes_pdf_png_and_the_rows(tmp_path):
    fig, data = plot_paired_differences(_rows(), {2: "ppl_128"}, "dprope", ["pi"], [2])
    pdf = save_figure(fig, "paired", data, directory=tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    lines = pdf.with_suffix(".csv").read_text().splitlines()
    assert lines[0] == ("kind,scale,metric,reference,baseline,n,wins,mean_diff,ci_low,ci_high,sd_diff,p,"
                        "detectable_effect,seed,diff")
    assert lines[1].startswith("summary,2,ppl_128,dprope,pi,5,") and len(lines) == 1 + 1 + 5


@pytest.mark.slow
def test_figures_are_byte_stable(tmp_path):
    rows = _rows()
    made = []
    for run in ("a", "b"):
        fig, data = plot_paired_differences(rows, {2: "ppl_128", 4: "ppl_256"}, "dprope", ["pi"], SCALES)
        made.append(save_figure(fig, "paired", data, directory=tmp_path / run))
        fig, data = plot_metric_bands(rows, BASE, "ppl_", LENGTHS, SCALES, WINDOW, ["pi", "dprope"])
        made.append(save_figure(fig, "bands", data, directory=tmp_path / run))
        fig, data = plot_correlation_panel(rows, WINDOW, ["ppl_"])
        made.append(save_figure(fig, "corr", data, directory=tmp_path / run))
    for first, second in zip(made[:3], made[3:]):
        for suffix in (".pdf", ".png", ".csv"):
            assert first.with_suffix(suffix).read_bytes() == second.with_suffix(suffix).read_bytes()
    assert (tmp_path / "a" / "bands.csv").read_text().startswith(
        "scale,label,method,metric,length,n,mean,ci_low,ci_high\n2,pi,pi,ppl_32,32,5,")
