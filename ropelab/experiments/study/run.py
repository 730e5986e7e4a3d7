"""The paper's experiment in miniature: pre-train at L, extend to 2L and 4L with each method, fine-tune, measure.

Wu et al. (EMNLP 2024, sec. 4) fine-tune LLaMA2 from 4k to 8k and 16k with PI, YaRN, CLEX and DPRoPE under one
recipe and compare perplexity, passkey and LongBench. Here a tiny LLaMA (:mod:`ropelab.experiments.tiny`) is pre-trained at L on
a long-range mix (:mod:`ropelab.train.mixture`: text, copying, multi-key recall, passkeys), so that it really uses its
context and really fails past L, then extended by every method under the same budget (steps, data order, seed) and
scored on held-out rows and documents (the "test" split; the search variant tunes on "validation"):

* perplexity at L/2, L, 2L, 4L, 8L -- *truncated* protocol on held-out text segments of 8L tokens;
* retention inside the original window: ppl at L/2 and L relative to the pre-trained model;
* retrieval at L, 2L, 4L, 8L: teacher-forced copy, recall and passkey accuracy (:mod:`ropelab.eval.answers`), and
  generated passkeys in the standard prompt where L holds one;
* the plan's disturbance (KL, b bins; docs/method.md sec. 3).

Reported (notebook 07): mean and 95% t-intervals over seeds, every method paired with DPRoPE by seed, Spearman's
rho of disturbance against each outcome (the paper's Fig. 5), the n_hat sweep (Table 4), the bins sweep (Table 6)
and other divergences (JS, TV, Wasserstein-1).

Caching: the pre-trained model by its config hash (:func:`ropelab.experiments.tiny.pretrain`), each fine-tuning run folder
by the hash of its recipe + plan + seed (:func:`ropelab.train.finetune`), each evaluation as JSON beside its run
(keyed by the evaluation settings), the searched plans by the base model and search settings. A second run redoes
only what changed. Runs go ``cfg.workers`` at a time, one thread each: the numbers do not depend on how many.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ropelab.determinism import pinned_numerics
from ropelab.experiments.study.config import StudyConfig, Variant, variants
from ropelab.experiments.study.evaluate import evaluate_model, run_row
from ropelab.storage import content_key
from ropelab.train import TrainConfig


def study_root(cfg: StudyConfig, root: str | Path | None = None) -> Path:
    from ropelab.storage import cache_path

    return Path(root) if root is not None else cache_path("study", cfg.name)


def pretrained_model(cfg: StudyConfig, progress: bool = True) -> Path:
    """The tiny LLaMA pre-trained at L on the study's mix (cached); for ``base_model`` other than "tiny", that
    folder itself."""
    from ropelab.experiments.tiny import pretrain

    if cfg.base_model != "tiny":
        return Path(cfg.base_model)
    return pretrain(dataclasses.replace(cfg.tiny, corpus=cfg.corpus, max_docs=cfg.max_docs, mix=cfg.mix),
                    progress=progress)


def run_recipe(cfg: StudyConfig, variant: Variant, plan, base_dir: Path, seed: int) -> TrainConfig:
    """The fine-tuning config of one run: the study's recipe on the mix at the target length, the plan, the seed."""
    from ropelab.train import DataConfig

    steps = cfg.steps_per_scale.get(variant.scale, cfg.finetune.steps)
    data = DataConfig(corpus=cfg.corpus, split="train", max_docs=cfg.max_docs,
                      mix=cfg.mix if cfg.base_model == "tiny" else cfg.finetune.data.mix)
    # method + target_length + method_options rebuild exactly ``plan`` (make_plan), so the same recipe run by
    # ``accelerate launch -m ropelab.train --config <run>/study_recipe.yaml`` has the same hash and is reused here
    return dataclasses.replace(cfg.finetune, model=str(base_dir), method=plan.method,
                               target_length=plan.target_length, method_options=dict(variant.options), plan=None,
                               data=data, steps=steps, seed=int(seed))


def run_folder(root: Path, variant: Variant, seed: int, recipe: TrainConfig, plan) -> Path:
    from ropelab.train import config_hash

    return root / "runs" / f"{variant.label}-x{variant.scale}-seed{seed}-{config_hash(recipe, plan)}"


@pinned_numerics()
def finetune_run(cfg: StudyConfig, variant: Variant, seed: int, base_dir: Path, root: Path,
                 progress: bool = True) -> tuple[Path, bool]:
    """Fine-tune one (variant, seed); ``(run folder, trained)`` -- ``trained`` False when a finished run was reused."""
    from ropelab.rope.spec import RopeSpec
    from ropelab.train import MODEL_SUBDIR, config_hash, finetune, finished

    spec = RopeSpec.from_hf_config(Path(base_dir) / "config.json")
    plan = variant.plan(spec)
    recipe = run_recipe(cfg, variant, plan, base_dir, seed)
    key = config_hash(recipe, plan)
    run_dir = run_folder(root, variant, seed, recipe, plan)
    reused = finished(run_dir / MODEL_SUBDIR, key)
    finetune(base_dir, plan, recipe, seed, run_dir, progress=progress)  # returns at once when reused
    return run_dir, not reused


def run_job(cfg: StudyConfig, variant: Variant, seed: int, base_dir: Path, root: Path) -> dict[str, Any]:
    """Fine-tune (or reuse) and evaluate (or read) one (variant, seed): what a worker process does."""
    from ropelab.train import read_metrics

    run_dir, fresh = finetune_run(cfg, variant, seed, base_dir, root, progress=False)
    evaluation = evaluate_model(run_dir / "model", cfg, base_window(base_dir), run_dir)
    loss = (read_metrics(run_dir) or [{}])[-1].get("loss")
    return {"run_dir": str(run_dir), "fresh": fresh, "evaluation": evaluation, "loss": loss}


def base_window(base_dir: Path) -> int:
    from ropelab.rope.spec import RopeSpec

    return RopeSpec.from_hf_config(Path(base_dir) / "config.json").original_length


def map_jobs(fn, jobs: list[tuple], workers: int, desc: str, progress: bool) -> list[Any]:
    """``[fn(*job) for job in jobs]``, ``workers`` processes at a time (spawned: no forked OpenMP state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="run", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for job in jobs:
            out.append(fn(*job))
            bar.update(1)
        bar.close()
        return out
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for future in futures:
            future.add_done_callback(lambda _: bar.update(1))
        out = [f.result() for f in futures]
    bar.close()
    return out


@pinned_numerics()
def run_study(cfg: StudyConfig, root: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Pre-train (or load), search, fine-tune every variant x seed (or reuse), evaluate (or read the JSON).

    Returns ``{"rows": [...], "base": pretrained model row, "window": L, "passkey_cells": {...},
    "trained": runs trained now, "reused": runs reused, "spec": RopeSpec, "base_dir": folder, "searches": {...}}``.
    """
    from ropelab.experiments.study.search import resolve_searches
    from ropelab.rope.spec import RopeSpec

    root = study_root(cfg, root)
    base_dir = pretrained_model(cfg, progress)
    spec = RopeSpec.from_hf_config(Path(base_dir) / "config.json")
    window = spec.original_length
    base_eval = evaluate_model(base_dir, cfg, window, root / "pretrained" / content_key(str(base_dir)), progress=False)
    base_row = run_row(None, None, None, base_eval, window, base_eval)
    grid, searches = resolve_searches(cfg, variants(cfg, spec), base_dir, root, progress)
    jobs = [(cfg, v, s, Path(base_dir), root) for v in grid for s in (cfg.seeds if v.group == "main" else cfg.sweep_seeds)]
    results = map_jobs(run_job, jobs, cfg.workers, f"study {cfg.name}", progress)
    rows, cells = [], {}
    for (_, variant, seed, _, _), result in zip(jobs, results):
        rows.append(run_row(variant, seed, variant.plan(spec), result["evaluation"], window, base_eval,
                            result["loss"]))
        cells[(variant.label, variant.scale, seed)] = result["evaluation"]["passkey"].get("cells", [])
    trained = sum(r["fresh"] for r in results)
    return {"rows": rows, "base": base_row, "window": window, "passkey_cells": cells, "trained": trained,
            "reused": len(results) - trained, "spec": spec, "base_dir": str(base_dir), "searches": searches}
