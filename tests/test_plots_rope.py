"""Plot functions of ropelab.plots.rope: each draws the data it is given and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import ropelab
from ropelab.figures import save_figure
from ropelab.plots import rope as plots


@pytest.fixture(scope="module")
def spec():
    return ropelab.RopeSpec(theta=10000.0, head_dim=16, original_length=256)


@pytest.fixture(scope="module")
def plans(spec):
    return {m: ropelab.make_plan(m, spec, 512, bins=36) for m in ("none", "pi", "ntk", "yarn", "dprope")}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_interpolation_degree_is_zero_for_none_one_for_pi_and_the_ramp_for_yarn(plans):
    np.testing.assert_allclose(plots.interpolation_degree(plans["none"]), 0.0)
    np.testing.assert_allclose(plots.interpolation_degree(plans["pi"]), 1.0)
    np.testing.assert_allclose(plots.interpolation_degree(plans["yarn"]), plans["yarn"].details["ramp"], atol=1e-12)
    degree = plots.interpolation_degree(plans["dprope"])
    assert set(np.round(degree, 12)) <= {0.0, 1.0}
    assert list(np.flatnonzero(degree > 0.5)) == list(plans["dprope"].interpolated_pairs)


def test_wavelengths_draws_each_spec_and_its_training_length(spec):
    other = ropelab.RopeSpec(theta=500000.0, head_dim=16, original_length=1024)
    fig = plots.plot_wavelengths({"a": spec, "b": other})
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == spec.n_pairs]
    np.testing.assert_allclose(curves[0].get_ydata(), spec.wavelengths())
    np.testing.assert_allclose(curves[1].get_ydata(), other.wavelengths())
    horizontal = sorted({line.get_ydata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2})
    assert horizontal == [256, 1024]
    assert ax.get_yscale() == "log"


def test_pair_factors_draws_every_plan(plans, spec):
    fig = plots.plot_pair_factors(list(plans.values()), critical_pair=spec.critical_dimension() / 2)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(plans) <= set(lines)
    np.testing.assert_allclose(lines["pi"].get_ydata(), 2.0)


def test_angle_histograms_one_panel_per_pair_and_candidate(spec):
    theta = spec.inv_freq()
    ref = ropelab.angle_distribution(theta, 256, 36)
    cands = {"interp": ropelab.angle_distribution(theta / 2, 512, 36),
             "extrap": ropelab.angle_distribution(theta, 512, 36)}
    div = {k: ropelab.get_divergence("kl")(ref, v) for k, v in cands.items()}
    fig = plots.plot_angle_histograms([1, 5], ref, cands, div)
    assert len(fig.axes) == 4
    assert fig.axes[1].get_title().startswith("pair 1: extrap")
    assert f"{div['extrap'][1]:.2e}" in fig.axes[1].get_title()
    np.testing.assert_allclose(fig.axes[3].get_lines()[0].get_ydata(), cands["extrap"][5])


def test_heatmap_one_image_per_distribution(spec):
    d = ropelab.angle_distribution(spec.inv_freq(), 256, 36)
    fig = plots.plot_distribution_heatmap({"a": d, "b": d / 2})
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 and images[0].get_array().shape == (spec.n_pairs, 36)


def test_pair_disturbance_shades_interpolated_pairs(plans):
    p = plans["dprope"]
    fig = plots.plot_pair_disturbance(np.array(p.details["d_extrap"]), np.array(p.details["d_interp"]),
                                      p.interpolated_pairs)
    ax = fig.axes[0]
    assert len(ax.patches) == len(p.interpolated_pairs)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), p.details["d_extrap"])


def test_bar_charts_draw_one_bar_per_value():
    rows = [{"method": "pi", "target": "8k", "paper": 24.08, "exact": 24.06, "float32": 24.08},
            {"method": "dprope", "target": "8k", "paper": 6.71, "exact": 6.72, "float32": 6.71}]
    fig = plots.plot_table3(rows)
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[0].patches)
    assert heights == [6.71, 6.71, 6.72, 24.06, 24.08, 24.08]
    metric_rows = [{"metric": m, "method": k, "target": "8k", "value": v}
                   for m in ("kl", "tv") for k, v in (("pi", 2.0), ("dprope", 1.0))]
    fig = plots.plot_metric_comparison(metric_rows)
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]


def test_scale_sweep_one_panel_per_preset_one_line_per_method():
    rows = [{"preset": p, "method": m, "scale": s, "disturbance": 0.01 * s * (1 + (m == "pi"))}
            for p in ("a", "b") for m in ("pi", "dprope") for s in (2, 4, 8)]
    fig = plots.plot_disturbance_vs_scale(rows)
    assert len(fig.axes) == 2
    pi_line = next(line for line in fig.axes[0].get_lines() if line.get_label() == "pi")
    np.testing.assert_allclose(pi_line.get_xdata(), [2, 4, 8])
    np.testing.assert_allclose(pi_line.get_ydata(), [0.04, 0.08, 0.16])


def test_selection_threshold_and_bins_figures(plans, tmp_path):
    rows = [{"label": k, "x": np.arange(8), "degree": plots.interpolation_degree(p)} for k, p in plans.items()]
    fig = plots.plot_selection(rows, vline=4, vline_label="critical")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(plans)
    t = np.array([0.0, 1e-3, 1e-2, 1e-1])
    fig2 = plots.plot_threshold_sweep(t, {"8k": np.array([10, 8, 4, 0])}, {"8k": 6})
    np.testing.assert_allclose(fig2.axes[0].get_lines()[0].get_ydata(), [10, 8, 4, 0])
    bins_rows = [{"target": 512, "bins": b, "n_interpolated_dims": 8, "disturbance": 0.1 * b} for b in (90, 360)]
    fig3 = plots.plot_bins_sensitivity(bins_rows)
    assert len(fig3.axes) == 2
    pdf = save_figure(fig, "selection", data=[{"a": 1}], directory=tmp_path)
    assert pdf.is_file() and pdf.with_suffix(".png").is_file() and pdf.with_suffix(".csv").is_file()
