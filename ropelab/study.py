"""The paper's experiment in miniature: pre-train at L, extend to 2L and 4L with each method, fine-tune, measure.

Wu et al. (EMNLP 2024, sec. 4) fine-tune LLaMA2 from 4k to 8k and 16k with PI, YaRN, CLEX and DPRoPE under one
recipe and compare perplexity, passkey and LongBench. Here a tiny LLaMA (:mod:`ropelab.tiny`) pre-trained at L
is extended by every method under the same budget (steps, data order, seed), and each run is scored on held-out
documents:

* perplexity at L/2, L, 2L, 4L, 8L -- *truncated* protocol on segments of 8L tokens cut from the held-out split
  (every length scores the first n tokens of the same segments; no sliding window);
* retention inside the original window: ppl at L/2 and L relative to the pre-trained model;
* the plan's disturbance (KL, b bins; docs/method.md sec. 3);
* passkey accuracy over lengths x depths with keys never seen in training (:mod:`ropelab.synthetic` explains the
  passkey documents mixed into training).

Reported: mean +- std per (method, scale), DPRoPE paired against each baseline across seeds, Spearman's rho of
disturbance vs perplexity (the paper's Fig. 5), an n_hat sweep (Table 4), a bins sweep (Table 6) and other
divergences (JS, TV, Wasserstein-1) in place of KL.

Caching: the pre-trained model by its config hash (:func:`ropelab.tiny.pretrain`), each fine-tuning run folder
by the hash of its recipe + plan + seed (:func:`ropelab.train.finetune`), each evaluation as JSON beside its run
(keyed by the evaluation settings). A second run redoes only what changed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ropelab.config import to_dict
from ropelab.determinism import pinned_numerics
from ropelab.io import content_key
from ropelab.study_config import StudyConfig, Variant, variants
from ropelab.study_eval import evaluate_model, run_row
from ropelab.train import TrainConfig


def study_root(cfg: StudyConfig, root: str | Path | None = None) -> Path:
    from ropelab.models import cache_folder

    return Path(root) if root is not None else cache_folder() / "study" / cfg.name


def pretrained_model(cfg: StudyConfig, progress: bool = True) -> tuple[Path, str]:
    """``(model folder, training corpus)``: the tiny LLaMA pre-trained at L on text + passkey documents (cached).

    For ``base_model`` other than "tiny" the folder itself and ``cfg.corpus`` are returned.
    """
    from ropelab.models import cache_folder
    from ropelab.synthetic import mixed_corpus
    from ropelab.tiny import pretrain

    if cfg.base_model != "tiny":
        return Path(cfg.base_model), cfg.corpus
    corpus = cfg.corpus
    if cfg.passkey.fraction > 0:
        corpus = mixed_corpus(cfg.corpus, cfg.tiny.window, cfg.passkey, cache_folder() / "study" / "corpora",
                              exclude_keys=eval_keys(cfg), max_docs=cfg.max_docs)
    tiny = dataclasses.replace(cfg.tiny, corpus=corpus, max_docs=None if corpus != cfg.corpus else cfg.max_docs)
    return pretrain(tiny, progress=progress), corpus


def eval_keys(cfg: StudyConfig) -> list[int]:
    """The passkey keys of the evaluation grid (never put in training documents)."""
    from ropelab.eval.passkey import draw_keys

    e = cfg.eval
    return draw_keys(e.passkey_seed, len(e.passkey_multiples) * len(e.passkey_depths) * e.passkey_trials)


def finetune_corpus(cfg: StudyConfig, tokenizer: Any, length: int) -> str:
    """The fine-tuning corpus at ``length``: the base corpus plus passkey documents sized with the real tokenizer."""
    from ropelab.models import cache_folder
    from ropelab.synthetic import measure_tokens_per_filler, mixed_corpus

    if cfg.base_model != "tiny" or cfg.passkey.fraction <= 0:
        return cfg.corpus
    mix = dataclasses.replace(cfg.passkey, tokens_per_filler=measure_tokens_per_filler(tokenizer))
    return mixed_corpus(cfg.corpus, length, mix, cache_folder() / "study" / "corpora",
                        exclude_keys=eval_keys(cfg), max_docs=cfg.max_docs)


def run_recipe(cfg: StudyConfig, variant: Variant, plan, corpus: str, base_dir: Path, seed: int) -> TrainConfig:
    """The fine-tuning config of one run: the study's recipe, the variant's plan, the seed."""
    from ropelab.train import DataConfig

    steps = cfg.steps_per_scale.get(variant.scale, cfg.finetune.steps)
    data = dataclasses.replace(cfg.finetune.data, corpus=corpus, split="train",
                               max_docs=None if corpus != cfg.corpus else cfg.max_docs)
    # method + target_length + method_options rebuild exactly ``plan`` (make_plan), so the same recipe run by
    # ``accelerate launch -m ropelab.train --config <run>/study_recipe.yaml`` has the same hash and is reused here
    return dataclasses.replace(cfg.finetune, model=str(base_dir), method=plan.method,
                               target_length=plan.target_length, method_options=dict(variant.options), plan=None,
                               data=DataConfig(**to_dict(data)), steps=steps, seed=int(seed))


@pinned_numerics()
def finetune_run(cfg: StudyConfig, variant: Variant, seed: int, base_dir: Path, corpus: str, root: Path,
                 progress: bool = True) -> tuple[Path, bool]:
    """Fine-tune one (variant, seed); ``(run folder, trained)`` -- ``trained`` False when a finished run was reused."""
    from ropelab.spec import RopeSpec
    from ropelab.train import DONE_FILE, MODEL_SUBDIR, config_hash, finetune

    spec = RopeSpec.from_hf_config(Path(base_dir) / "config.json")
    plan = variant.plan(spec)
    recipe = run_recipe(cfg, variant, plan, corpus, base_dir, seed)
    key = config_hash(recipe, plan)
    run_dir = root / "runs" / f"{variant.label}-x{variant.scale}-seed{seed}-{key}"
    done = run_dir / MODEL_SUBDIR / DONE_FILE
    reused = done.is_file() and json.loads(done.read_text()).get("key") == key
    finetune(base_dir, plan, recipe, seed, run_dir, progress=progress)  # returns at once when reused
    return run_dir, not reused


@pinned_numerics()
def run_study(cfg: StudyConfig, root: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Pre-train (or load), fine-tune every variant x seed (or reuse), evaluate (or read the JSON).

    Returns ``{"rows": [...], "base": pretrained model row, "window": L, "passkey_cells": {...},
    "trained": runs trained now, "reused": runs reused, "corpus": training corpus, "passkey_doc_tokens": [...]}``.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from ropelab.spec import RopeSpec
    from ropelab.synthetic import passkey_token_lengths
    from ropelab.train import read_metrics

    root = study_root(cfg, root)
    base_dir, corpus = pretrained_model(cfg, progress)
    spec = RopeSpec.from_hf_config(Path(base_dir) / "config.json")
    window = spec.original_length
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base_eval = evaluate_model(base_dir, cfg, window, root / "pretrained" / content_key(str(base_dir)), progress=False)
    base_row = run_row(None, None, None, base_eval, window, base_eval)
    jobs = [(v, s) for v in variants(cfg, spec) for s in (cfg.seeds if v.group == "main" else cfg.sweep_seeds)]
    corpora = {scale: finetune_corpus(cfg, tokenizer, window * scale) for scale in sorted({v.scale for v, _ in jobs})}
    rows, cells, trained, reused = [], {}, 0, 0
    for variant, seed in tqdm(jobs, desc=f"study {cfg.name}", unit="run", disable=not progress):
        run_dir, fresh = finetune_run(cfg, variant, seed, Path(base_dir), corpora[variant.scale], root, progress=False)
        trained, reused = trained + fresh, reused + (not fresh)
        evaluation = evaluate_model(run_dir / "model", cfg, window, run_dir)
        loss = (read_metrics(run_dir) or [{}])[-1].get("loss")
        rows.append(run_row(variant, seed, variant.plan(spec), evaluation, window, base_eval, loss))
        cells[(variant.label, variant.scale, seed)] = evaluation["passkey"]["cells"]
    doc_tokens = passkey_token_lengths(corpus, tokenizer) if corpus.startswith("text:") else []
    return {"rows": rows, "base": base_row, "window": window, "passkey_cells": cells, "trained": trained,
            "reused": reused, "corpus": corpus, "passkey_doc_tokens": doc_tokens, "spec": spec,
            "base_dir": str(base_dir)}
