"""The study (ropelab.experiments.study.run): profiles, statistics checked by hand, caching, and one real end-to-end mini run."""

from __future__ import annotations

import math

import pytest

from ropelab import RopeSpec
from ropelab.experiments.study.config import load_study_config, variants
from ropelab.experiments.study.evaluate import band_ppl
from ropelab.experiments.study.tables import study_table, write_study_table
from ropelab.rope.paper import even_dims
from ropelab.stats import cell_summary, mean_std, paired_comparison, spearman

# optimizer steps of every fine-tuning run per scale: one budget for every method (the paper: 1000 to 8k, 500 to 16k)
PROFILE_STEPS = {"quick": {2: 20, 4: 10}, "full": {2: 200, 4: 100}, "gpu": {2: 1000, 4: 500}}


@pytest.mark.parametrize("profile", ["quick", "full", "gpu"])
def test_profiles_parse(profile, tmp_path):
    from ropelab.experiments.study.run import run_recipe

    cfg = load_study_config(profile)
    assert cfg.name == profile
    assert {"none", "pi", "yarn", "dprope", "dprope_robust", "dprope_search"} <= set(cfg.methods)
    assert tuple(cfg.scales) == (2, 4)
    assert len(cfg.seeds) >= (5 if profile == "full" else 1)
    assert set(cfg.steps_per_scale) <= set(cfg.scales)  # no budget for a scale that is not studied
    spec = RopeSpec.preset("llama2-7b") if profile == "gpu" else RopeSpec(10000.0, 64, 128)
    steps = {}
    for variant in variants(cfg, spec):
        if variant.label == "dprope_search":  # its factors come from the search (tested below)
            continue
        recipe = run_recipe(cfg, variant, variant.plan(spec), tmp_path, 0)
        steps.setdefault(variant.scale, set()).add(recipe.steps)
    assert steps == {scale: {n} for scale, n in PROFILE_STEPS[profile].items()}  # the same for every method


def test_gpu_profile_is_the_paper_recipe():
    cfg = load_study_config("gpu")
    assert cfg.finetune.global_batch == 64 and cfg.finetune.learning_rate == 2e-5
    assert cfg.steps_per_scale == {2: 1000, 4: 500} and cfg.finetune.mixed_precision == "bf16"
    labels = {(v.label, v.scale): dict(v.options) for v in variants(cfg, RopeSpec.preset("llama2-7b"))}
    assert labels[("dprope_paper", 2)]["n_hat"] == 80 and labels[("dprope_paper", 4)]["n_hat"] == 64


def test_unknown_key_and_method_fail_with_one_line():
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        load_study_config("quick", {"bogus": 1})
    with pytest.raises(ValueError, match="unknown study method 'clex'"):
        load_study_config("quick", {"methods": ["pi", "clex"]})


def test_paper_nhat_scaled_to_the_tiny_head():
    assert even_dims(80 / 128, 64) == 40 and even_dims(64 / 128, 64) == 32
    assert even_dims(80 / 128, 128) == 80 and even_dims(0.01, 64) == 2


def test_variants_of_the_quick_profile():
    cfg = load_study_config("quick")
    vs = variants(cfg, RopeSpec(10000.0, 64, 128))
    main = [v for v in vs if v.group == "main"]
    assert len(main) == 12
    assert [v.label for v in vs if v.group != "main"] == ["dprope_nhat24", "dprope_b90", "dprope_js"]
    assert all(v.scale == 2 for v in vs if v.group != "main")


def test_repeat_rows_train_but_are_not_scored():
    """Repeat rows copy at most L/2 back (seen in training): the study scores copy rows, whose repeat is far."""
    assert load_study_config("quick").retrieval_tasks() == ("copy",)
    assert load_study_config("full").retrieval_tasks() == ("copy", "recall", "needle")
    assert load_study_config("full").mix.shares["repeat"] > 0


@pytest.mark.parametrize("multiples, far", [([1, 2, 4], 0.25), ([1], None)])
def test_pretrained_checks_read_inside_past_and_far(multiples, far):
    """``check.pretrained_copy_far`` is the pre-trained model at the longest rows scored, absent when none is past L."""
    from ropelab.experiments.study.tables import study_metrics

    cfg = load_study_config("quick", {"eval.retrieval_multiples": multiples, "methods": ["none"]})
    base = {"ppl_32": 50.0, "ppl_64": 40.0, "copy_64": 0.95, "copy_128": 0.5, "copy_256": 0.25,
            **{f"band_{n}": 41.0 for n in (64, 128, 256, 512)}}
    out = study_metrics({"rows": [], "base": base, "window": 64}, cfg)
    assert out["check.pretrained_copy_inside"] == 0.95 and out["check.pretrained_context_ratio"] == 0.8
    assert out.get("check.pretrained_copy_far") == far


def test_mean_std_by_hand():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert mean_std([5.0]) == (5.0, 0.0, 1)


def _rows(label, values, scale=2, metric="ppl_256"):
    return [{"label": label, "method": label, "group": "main", "scale": scale, "seed": s, metric: v}
            for s, v in enumerate(values)]


def test_paired_comparison_by_hand():
    rows = _rows("dprope", [1.0, 2.0, 3.0]) + _rows("pi", [2.0, 2.5, 5.0])
    cmp = paired_comparison(rows, "ppl_256", 2, "dprope", "pi")
    # differences -1, -0.5, -2: mean -7/6, sd sqrt(7/12), t = -2.6458 with 2 d.o.f.;
    # for 2 d.o.f. the two-sided p is 1 - |t| / sqrt(2 + t^2) = 1 - sqrt(7)/3
    assert cmp["wins"] == 3 and cmp["n"] == 3
    assert cmp["mean_diff"] == pytest.approx(-7 / 6)
    assert cmp["p"] == pytest.approx(1 - math.sqrt(7) / 3, rel=1e-9)
    two = paired_comparison(rows[:2] + rows[3:5], "ppl_256", 2, "dprope", "pi")
    assert two["n"] == 2 and math.isnan(two["p"])  # no test with fewer than 3 pairs
    higher = paired_comparison(rows, "ppl_256", 2, "dprope", "pi", lower_is_better=False)
    assert higher["wins"] == 0


def test_spearman_by_hand():
    rho, _ = spearman([1, 2, 3, 4], [10, 20, 40, 30])
    assert rho == pytest.approx(1 - 6 * 2 / (4 * 15))  # rank differences 0, 0, 1, 1
    assert spearman([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)


def test_band_ppl_by_hand():
    # ppl_2 = e (1 scored token, nll 1), ppl_4 = e^2 (3 tokens, total nll 6): positions 2..3 carry nll 5 / 2
    assert band_ppl({"2": math.e, "4": math.e ** 2})["4"] == pytest.approx(math.exp(2.5))


def test_cell_summary_and_table(tmp_path):
    rows = _rows("pi", [10.0, 12.0]) + _rows("pi", [20.0], scale=4)
    cells = cell_summary(rows, ["ppl_256"])
    assert [(c["label"], c["scale"], c["n"]) for c in cells] == [("pi", 2, 2), ("pi", 4, 1)]
    assert cells[0]["ppl_256_mean"] == 11.0 and cells[0]["ppl_256_std"] == pytest.approx(math.sqrt(2))
    table = study_table(rows, {"ppl_256": 9.0}, ["ppl_256"])
    md, csv_path = write_study_table(table, ["ppl_256"], tmp_path)
    text = md.read_text()
    assert "| pretrained | 1x | 1 | 9 |" in text and "| pi | 2x | 2 | 11 +- 1.4 |" in text
    assert csv_path.read_text().splitlines()[0].startswith("label,method,group,scale,n,ppl_256_mean")


@pytest.mark.slow
def test_figures_are_byte_identical(tmp_path):
    from ropelab.figures import save_figure
    from ropelab.plots.study import plot_disturbance_scatter

    points = [{"label": m, "method": m, "scale": 2, "disturbance": d, "ppl": p}
              for m, d, p in (("pi", 0.2, 30.0), ("dprope", 0.1, 28.0), ("yarn", 1.5, 29.0))]
    first = save_figure(plot_disturbance_scatter(points, 0.5, 0.7), "scatter", directory=tmp_path / "a")
    second = save_figure(plot_disturbance_scatter(points, 0.5, 0.7), "scatter", directory=tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".png").read_bytes() == second.with_suffix(".png").read_bytes()


# --- a real mini study -------------------------------------------------------------------------------------------

MINI = {
    "name": "mini", "max_docs": 3,
    "tiny": {"name": "study-test", "vocab_size": 320, "layers": 1, "hidden": 64, "heads": 1, "head_dim": 64,
             "intermediate": 128, "window": 128,
             "train": {"steps": 6, "global_batch": 4, "micro_batch": 4, "learning_rate": 0.003,
                       "warmup_steps": 0, "schedule": "constant", "loss_chunk_tokens": 0, "trackers": "none"}},
    "mix": {"shares": {"text": 0.5, "copy": 0.25, "recall": 0.25}, "recall_pairs": [2, 8], "recall_queries": 2},
    "finetune": {"steps": 2, "global_batch": 1, "micro_batch": 1, "learning_rate": 0.001,
                 "loss_chunk_tokens": 0, "trackers": "none"},
    "scales": [2], "methods": ["none", "pi"], "seeds": [0], "workers": 2, "search": {"budget": 3, "rows": 2},
    "eval": {"length_multiples": [0.5, 1, 2], "segments": 2, "passkey_trials": 0, "retrieval_multiples": [1, 2],
             "retrieval_rows": 2},
}


@pytest.fixture
def torch_settings():
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.mark.slow
def test_mini_study_end_to_end_and_cached(tmp_path, torch_settings):
    from ropelab.experiments.study.run import run_study
    from ropelab.experiments.study.tables import study_metrics

    cfg = load_study_config(MINI)
    first = run_study(cfg, root=tmp_path, progress=False)
    assert first["trained"] == 2 and first["reused"] == 0
    assert {(r["label"], r["scale"]) for r in first["rows"]} == {("none", 2), ("pi", 2)}
    for row in first["rows"]:
        assert all(math.isfinite(row[f"ppl_{n}"]) for n in (64, 128, 256))
        assert all(0.0 <= row[f"{task}_{n}"] <= 1.0 for task in ("copy", "recall") for n in (128, 256))
    pi = next(r for r in first["rows"] if r["label"] == "pi")
    assert pi["n_interp_dims"] == 64 and pi["disturbance"] > 0
    runs = sorted((tmp_path / "runs").iterdir())
    stamps = {p: (p / "model" / "ropelab_run.json").stat().st_mtime_ns for p in runs}

    # same config: nothing is trained again, the numbers are the same
    second = run_study(cfg, root=tmp_path, progress=False)
    assert second["trained"] == 0 and second["reused"] == 2
    assert second["rows"] == first["rows"]
    assert {p: (p / "model" / "ropelab_run.json").stat().st_mtime_ns for p in runs} == stamps

    # one thing changed (a method added): only that run is trained; the searched plan is cached with its curve
    more = load_study_config(MINI, {"methods": ["none", "pi", "dprope", "dprope_search"]})
    third = run_study(more, root=tmp_path, progress=False)
    assert third["trained"] == 2 and third["reused"] == 2
    search = third["searches"][2].details["search"]
    assert search["evaluations"] <= 3 and search["curve"] == sorted(search["curve"], reverse=True)
    searched = next(r for r in third["rows"] if r["label"] == "dprope_search")
    assert searched["method"] == "longrope"
    metrics = study_metrics(third, more)
    assert metrics["check.main_rows_finite"] == metrics["check.main_rows_expected"] == 4
    assert "paired.ppl.dprope_vs_pi.x2.wins" in metrics and math.isfinite(metrics["check.pretrained_break_ratio"])


def test_gpu_launch_commands_match_the_study_runs(tmp_path):
    """Each accelerate line's recipe rebuilds exactly the study's plan and hash, so notebook 07 reuses the run."""
    import json

    from ropelab.config import load_config
    from ropelab.experiments.study.launch import launch_commands
    from ropelab.train import TrainConfig, config_hash, make_run_plan

    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "rope_theta": 10000.0, "head_dim": 128, "hidden_size": 4096,
        "num_attention_heads": 32, "max_position_embeddings": 4096}))
    cfg = load_study_config("gpu", {"base_model": str(model), "corpus": f"text:{model}"})
    lines = launch_commands(cfg, root=tmp_path / "study")
    assert len(lines) == 16 + 4 + 3 + 3  # 8 methods x 2 scales (dprope_search needs --search), 10 sweeps
    line = next(x for x in lines if "/dprope_paper-x2-seed0-" in x)
    recipe_path = line.split("--config ")[1].split()[0]
    recipe = load_config(TrainConfig, recipe_path)
    plan = make_run_plan(recipe)
    assert plan.n_interpolated_dims == 80 and plan.target_length == 8192
    assert recipe.steps == 1000 and recipe.global_batch == 64
    assert recipe_path.split("/")[-2].endswith(config_hash(recipe, plan))
