"""The paper's experiment in miniature: pre-train at L, extend to 2L and 4L with each method, fine-tune, measure.

Wu et al. (EMNLP 2024, sec. 4) fine-tune LLaMA2 from 4k to 8k and 16k with PI, YaRN, CLEX and DPRoPE under one
recipe and compare perplexity, passkey and LongBench. Here a tiny LLaMA (:mod:`ropelab.tiny`) pre-trained at L
is extended by every method under the same budget (steps, data order, seed), and each run is scored on held-out
documents:

* perplexity at L/2, L, 2L, 4L, 8L -- *truncated* protocol on segments of 8L tokens cut from the held-out split
  (every length scores the first n tokens of the same segments; no sliding window);
* retention inside the original window: ppl at L/2 and L relative to the pre-trained model;
* the plan's disturbance (KL, b bins; METHOD.md sec. 3);
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
import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.config import flatten, load_config, to_dict
from ropelab.synthetic import PasskeyMix
from ropelab.tiny import TinyConfig
from ropelab.train import TrainConfig

MAIN_METHODS = ("none", "pi", "ntk", "yarn", "dprope", "dprope_paper")
BASELINES = ("none", "pi", "ntk", "yarn")
PAPER_NHAT_RATIO = {2: 80 / 128, 4: 64 / 128}  # Wu et al. sec. 4.1: n_hat = 80 (8k) and 64 (16k) of 128 dims
EVAL_FILE = "study_eval-{key}.json"


def _finetune_recipe() -> TrainConfig:
    return TrainConfig(steps=20, global_batch=4, micro_batch=4, learning_rate=1e-4, loss_chunk_tokens=0,
                       trackers="none", log_every=1)


@dataclass(frozen=True)
class EvalConfig:
    """How every run is scored (the same tokens for every method)."""

    split: str = "validation"  # held-out documents (never trained on)
    length_multiples: tuple = (0.5, 1, 2, 4, 8)  # perplexity lengths, in units of L
    segments: int = 16  # held-out segments of max(length) tokens, spread over the split's documents
    passkey_multiples: tuple = (1, 2, 4)  # passkey prompt lengths, in units of L
    passkey_depths: tuple = (0.0, 0.5, 1.0)  # key positions (fraction of the filler before the key)
    passkey_trials: int = 4  # keys per (length, depth) cell
    passkey_seed: int = 271828  # evaluation keys; excluded from the training passkey documents

    def __post_init__(self) -> None:
        object.__setattr__(self, "length_multiples", tuple(float(m) for m in self.length_multiples))
        object.__setattr__(self, "passkey_multiples", tuple(float(m) for m in self.passkey_multiples))
        object.__setattr__(self, "passkey_depths", tuple(float(d) for d in self.passkey_depths))


@dataclass(frozen=True)
class StudyConfig:
    """One study profile (configs/study/<profile>.yaml)."""

    name: str = "quick"  # label of the study's run folders
    base_model: str = "tiny"  # "tiny": pre-train ``tiny`` here; else a HF model folder (its window is L)
    corpus: str = "shakespeare"  # ropelab.data corpus: train split for training, eval.split for scoring
    max_docs: int | None = None  # first N documents of the corpus's training split (None: all)
    tiny: TinyConfig = field(default_factory=TinyConfig)  # the tiny LLaMA (its corpus is set to the mixture)
    finetune: TrainConfig = field(default_factory=_finetune_recipe)  # one recipe for every method
    steps_per_scale: dict = field(default_factory=dict)  # e.g. {2: 1000, 4: 500} (the paper); else finetune.steps
    scales: tuple = (2, 4)  # target lengths, in units of L
    methods: tuple = MAIN_METHODS  # none | pi | ntk | yarn | dprope (argmin) | dprope_paper (n_hat ratio)
    seeds: tuple = (0, 1)  # fine-tuning seeds (data order and everything random)
    paper_nhat_ratio: dict = field(default_factory=lambda: dict(PAPER_NHAT_RATIO))  # scale -> share of dims
    sweep_scale: int = 2  # the scale of the n_hat, bins and metric sweeps
    sweep_seeds: tuple = (0,)  # seeds of the sweeps
    nhat_sweep: tuple = ()  # n_hat values (interpolated dims) for dprope, e.g. (24, 32, 40, 48)
    bins_sweep: tuple = ()  # b values for dprope, e.g. (90, 180, 360, 720)
    metric_sweep: tuple = ()  # divergences besides kl: js, tv, wasserstein
    bins: int = 360  # b of every main plan (the paper's)
    passkey: PasskeyMix = field(default_factory=PasskeyMix)  # synthetic passkey documents in training
    eval: EvalConfig = field(default_factory=EvalConfig)
    threads: int = 1  # torch threads (fixed: the same numbers on every run)
    reference_notebook: str = "06"  # notebook (number or stem) whose metrics.json holds the zero-shot SmolLM2 result

    def __post_init__(self) -> None:
        for name in ("scales", "methods", "seeds", "sweep_seeds", "nhat_sweep", "bins_sweep", "metric_sweep"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        object.__setattr__(self, "steps_per_scale", {int(k): int(v) for k, v in (self.steps_per_scale or {}).items()})
        object.__setattr__(self, "paper_nhat_ratio", {int(k): float(v) for k, v in self.paper_nhat_ratio.items()})
        unknown = [m for m in self.methods if m not in MAIN_METHODS]
        if unknown:
            raise ValueError(f"unknown study method {unknown[0]!r}; allowed: {', '.join(MAIN_METHODS)}")
        if not self.seeds or any(not isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        if any(not isinstance(s, int) or s < 2 for s in self.scales) or not self.scales:
            raise ValueError(f"scales must be integers >= 2, got {self.scales!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads!r}")


def load_study_config(source: str | Path | Mapping = "quick", overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """A StudyConfig from a profile name (configs/study/<name>.yaml), a YAML path or a dict."""
    if isinstance(source, str) and "/" not in source and not source.endswith((".yaml", ".yml")):
        source = f"study/{source}"
    return load_config(StudyConfig, source, overrides)


# --- the runs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One extension to fine-tune: a label (table row), a ropelab method, a scale and plan options."""

    label: str
    method: str
    scale: int
    options: tuple = ()  # sorted (name, value) pairs given to make_plan
    group: str = "main"  # main | nhat | bins | metric

    def plan(self, spec):
        from ropelab.methods import make_plan

        return make_plan(self.method, spec, spec.original_length * self.scale, **dict(self.options))


def even_dims(ratio: float, rotary_dim: int) -> int:
    """n_hat = round(ratio * rotary_dim) rounded to an even number (2 dims per pair), at least 2."""
    return max(2, 2 * round(ratio * rotary_dim / 2))


def variants(cfg: StudyConfig, spec) -> list[Variant]:
    """The main grid (methods x scales) and the sweeps at ``sweep_scale``, without duplicates."""
    out: list[Variant] = []
    for scale in cfg.scales:
        for label in cfg.methods:
            if label == "dprope_paper":
                ratio = cfg.paper_nhat_ratio.get(scale)
                if ratio is None:
                    continue
                opts = (("bins", cfg.bins), ("n_hat", even_dims(ratio, spec.rotary_dim)))
                out.append(Variant(label, "dprope", scale, opts))
            else:
                out.append(Variant(label, label, scale, (("bins", cfg.bins),)))
    s = cfg.sweep_scale
    out += [Variant(f"dprope_nhat{n}", "dprope", s, (("bins", cfg.bins), ("n_hat", int(n))), "nhat")
            for n in cfg.nhat_sweep]
    out += [Variant(f"dprope_b{b}", "dprope", s, (("bins", int(b)),), "bins") for b in cfg.bins_sweep]
    out += [Variant(f"dprope_{m}", "dprope", s, (("bins", cfg.bins), ("metric", m)), "metric")
            for m in cfg.metric_sweep]
    return out


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def set_determinism(threads: int) -> None:
    """Fixed thread count and deterministic kernels: a re-run gives the same numbers."""
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def study_root(cfg: StudyConfig, root: str | Path | None = None) -> Path:
    from ropelab.models import cache_folder

    return Path(root) if root is not None else cache_folder() / "study" / cfg.name


def pretrained_model(cfg: StudyConfig, root: str | Path | None = None, progress: bool = True) -> tuple[Path, str]:
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


def launch_commands(cfg: StudyConfig, root: str | Path | None = None,
                    accelerate_config: str = "configs/accelerate/deepspeed-zero3.yaml") -> list[str]:
    """One ``accelerate launch`` line per (variant, seed), each with its recipe written to ``<run>/study_recipe.yaml``.

    For GPU clusters: run the lines (in any order, on any nodes sharing the cache), then run notebook 07 (or
    :func:`run_study`) with the same profile: it finds the finished runs by their hash and only evaluates them.
    """
    from ropelab.config import save_config
    from ropelab.spec import RopeSpec
    from ropelab.train import config_hash

    root = study_root(cfg, root)
    base_dir, corpus = Path(cfg.base_model), cfg.corpus
    if cfg.base_model == "tiny":
        raise ValueError("launch_commands is for a real base_model (a HF folder); the tiny study runs in-process")
    spec = RopeSpec.from_hf_config(base_dir / "config.json")
    lines = []
    for variant in variants(cfg, spec):
        for seed in cfg.seeds if variant.group == "main" else cfg.sweep_seeds:
            plan = variant.plan(spec)
            recipe = run_recipe(cfg, variant, plan, corpus, base_dir, seed)
            run_dir = root / "runs" / f"{variant.label}-x{variant.scale}-seed{seed}-{config_hash(recipe, plan)}"
            save_config(dataclasses.replace(recipe, output_dir=str(run_dir)), run_dir / "study_recipe.yaml")
            lines.append(f"accelerate launch --config_file {accelerate_config} -m ropelab.train "
                         f"--config {run_dir / 'study_recipe.yaml'} --output-dir {run_dir}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m ropelab.study commands --profile gpu [--accelerate-config X]``: print the launch lines."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ropelab.study", description=main.__doc__)
    parser.add_argument("what", choices=["commands"])
    parser.add_argument("--profile", default="gpu", help="configs/study/<profile>.yaml or a YAML path")
    parser.add_argument("--accelerate-config", default="configs/accelerate/deepspeed-zero3.yaml")
    args = parser.parse_args(argv)
    print("\n".join(launch_commands(load_study_config(args.profile), accelerate_config=args.accelerate_config)))
    return 0


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


# --- evaluation ------------------------------------------------------------------------------------------------


def eval_lengths(cfg: StudyConfig, window: int) -> list[int]:
    return [round(m * window) for m in cfg.eval.length_multiples]


def heldout_segments(cfg: StudyConfig, tokenizer: Any, window: int) -> list[tuple[str, np.ndarray]]:
    """``eval.segments`` segments of max-length tokens, spread evenly over the held-out documents."""
    from ropelab.data import document_tokens

    size = max(eval_lengths(cfg, window))
    pieces = []
    for doc_id, ids in document_tokens(cfg.corpus, cfg.eval.split, tokenizer):
        pieces += [(f"{doc_id}#{k}", ids[k * size:(k + 1) * size]) for k in range(len(ids) // size)]
    if not pieces:
        raise ValueError(f"no document of split {cfg.eval.split!r} of {cfg.corpus!r} has {size} tokens")
    chosen = np.unique(np.linspace(0, len(pieces) - 1, min(cfg.eval.segments, len(pieces))).round().astype(int))
    return [pieces[i] for i in chosen]


def evaluate_model(model_dir: str | Path, cfg: StudyConfig, window: int, out_dir: str | Path,
                   progress: bool = False) -> dict[str, Any]:
    """Perplexity at each length and passkey accuracy of one model folder; cached as JSON in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.eval.passkey import evaluate_passkey
    from ropelab.eval.perplexity import perplexity

    key = _hash({"eval": to_dict(cfg.eval), "corpus": cfg.corpus, "window": window, "version": 1})
    path = Path(out_dir) / EVAL_FILE.format(key=key)
    if path.is_file():
        return json.loads(path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if gpu and cfg.finetune.mixed_precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa",
                                                 device_map="cuda" if gpu else None).eval()
    segments = heldout_segments(cfg, tokenizer, window)
    result: dict[str, Any] = {"ppl": {}, "passkey": {}, "segments": len(segments)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lengths past the configured window are the point here
        for n in eval_lengths(cfg, window):
            result["ppl"][str(n)] = perplexity(model, segments, n, protocol="truncated", progress=False).ppl
        lengths = [round(m * window) for m in cfg.eval.passkey_multiples]
        _, summary = evaluate_passkey(model, tokenizer, lengths=lengths, depths=cfg.eval.passkey_depths,
                                      trials=cfg.eval.passkey_trials, seed=cfg.eval.passkey_seed, progress=progress)
    result["passkey"] = {"accuracy": summary["accuracy"], "cells": summary["cells"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return result


def band_ppl(ppl: Mapping[str, float]) -> dict[str, float]:
    """Perplexity of the positions between consecutive lengths, from truncated ppl on the same segments.

    The truncated protocol scores tokens 1..n-1 of each segment, so the positions ``prev .. n-1`` have mean NLL
    ``((n-1) ln ppl_n - (prev-1) ln ppl_prev) / (n - prev)``. ``band_{n}`` is its exp: where a model breaks.
    """
    lengths = sorted(int(n) for n in ppl)
    out = {}
    for prev, n in itertools.pairwise(lengths):
        nll = ((n - 1) * math.log(ppl[str(n)]) - (prev - 1) * math.log(ppl[str(prev)])) / (n - prev)
        out[str(n)] = math.exp(nll)
    return out


def run_row(variant: Variant | None, seed: int | None, plan, evaluation: Mapping[str, Any], window: int,
            base_eval: Mapping[str, Any], train_loss: float | None = None) -> dict[str, Any]:
    """One flat result row: identity, plan numbers, ppl per length, retention, passkey per length."""
    row: dict[str, Any] = {
        "label": variant.label if variant else "pretrained", "method": variant.method if variant else "none",
        "group": variant.group if variant else "pretrained", "scale": variant.scale if variant else 1,
        "seed": seed if seed is not None else -1,
        "disturbance": plan.disturbance if plan is not None else 0.0,
        "n_interp_dims": plan.n_interpolated_dims if plan is not None else 0,
    }
    for n, value in evaluation["ppl"].items():
        row[f"ppl_{n}"] = value
    for n, value in band_ppl(evaluation["ppl"]).items():
        row[f"band_{n}"] = value
    for n in (window // 2, window):
        if str(n) in evaluation["ppl"]:
            row[f"retention_{n}"] = evaluation["ppl"][str(n)] / base_eval["ppl"][str(n)]
    by_length: dict[int, list[float]] = {}
    for cell in evaluation["passkey"]["cells"]:
        by_length.setdefault(int(cell["length"]), []).append(cell["accuracy"])
    for n, values in sorted(by_length.items()):
        row[f"passkey_{n}"] = float(np.mean(values))
    row["passkey"] = evaluation["passkey"]["accuracy"]
    if train_loss is not None:
        row["train_loss"] = train_loss
    return row


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

    set_determinism(cfg.threads)
    root = study_root(cfg, root)
    base_dir, corpus = pretrained_model(cfg, root, progress)
    spec = RopeSpec.from_hf_config(Path(base_dir) / "config.json")
    window = spec.original_length
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base_eval = evaluate_model(base_dir, cfg, window, root / "pretrained" / _hash(str(base_dir)), progress=False)
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


# --- statistics --------------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and count."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0, len(x)


def cell_summary(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Mean +- std over seeds of each metric per (label, scale), in first-seen order."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["scale"]), []).append(row)
    out = []
    for (label, scale), members in groups.items():
        entry: dict[str, Any] = {"label": label, "method": members[0]["method"], "group": members[0]["group"],
                                 "scale": scale, "n": len(members)}
        for metric in metrics:
            values = [m[metric] for m in members if metric in m]
            if values:
                entry[f"{metric}_mean"], entry[f"{metric}_std"], _ = mean_std(values)
        out.append(entry)
    return out


def paired_comparison(rows: Sequence[Mapping[str, Any]], metric: str, scale: int, reference: str = "dprope",
                      baseline: str = "pi", lower_is_better: bool = True) -> dict[str, float]:
    """``reference`` against ``baseline`` at ``scale``, paired by seed.

    Returns wins (seeds where the reference is better), n (paired seeds), mean_diff (reference - baseline) and
    p (two-sided paired t-test; NaN when n < 3 or all differences are equal).
    """
    from scipy import stats

    def by_seed(label: str) -> dict[int, float]:
        return {r["seed"]: r[metric] for r in rows if r["label"] == label and r["scale"] == scale and metric in r}

    ref, base = by_seed(reference), by_seed(baseline)
    seeds = sorted(set(ref) & set(base))
    diff = np.array([ref[s] - base[s] for s in seeds], dtype=np.float64)
    wins = int(np.sum(diff < 0) if lower_is_better else np.sum(diff > 0))
    p = float("nan")
    if len(diff) >= 3 and np.ptp(diff) > 0:
        p = float(stats.ttest_rel([ref[s] for s in seeds], [base[s] for s in seeds]).pvalue)
    return {"wins": wins, "n": len(seeds), "mean_diff": float(diff.mean()) if len(diff) else float("nan"), "p": p}


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its p-value (scipy)."""
    from scipy import stats

    result = stats.spearmanr(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)


def disturbance_points(rows: Sequence[Mapping[str, Any]], window: int, multiple: int | None = None) -> list[dict]:
    """One point per main (method, scale): disturbance and mean ppl at the target length (or ``multiple`` x L)."""
    points = []
    for cell in cell_summary([r for r in rows if r["group"] == "main"], ["disturbance"]):
        n = window * (multiple or cell["scale"])
        values = [r[f"ppl_{n}"] for r in rows if r["label"] == cell["label"] and r["scale"] == cell["scale"]]
        points.append({"label": cell["label"], "method": cell["method"], "scale": cell["scale"],
                       "disturbance": cell["disturbance_mean"], "ppl": float(np.mean(values)), "length": n})
    return points


# --- tables and metrics ----------------------------------------------------------------------------------------


def table_metrics(window: int, cfg: StudyConfig) -> list[str]:
    ppl = [f"ppl_{n}" for n in eval_lengths(cfg, window)]
    passkey = [f"passkey_{round(m * window)}" for m in cfg.eval.passkey_multiples]
    return ["disturbance", "n_interp_dims", *ppl, f"retention_{window // 2}", f"retention_{window}", *passkey,
            "passkey"]


def study_table(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any], metrics: Sequence[str]) -> list[dict]:
    """The study's main table: the pre-trained model, then one row per (label, scale) with mean and std."""
    table = [{"label": "pretrained", "method": "none", "group": "pretrained", "scale": 1, "n": 1,
              **{f"{m}_mean": base[m] for m in metrics if m in base}, **{f"{m}_std": 0.0 for m in metrics if m in base}}]
    return table + cell_summary(rows, metrics)


def write_study_table(table: Sequence[Mapping[str, Any]], metrics: Sequence[str], directory: str | Path | None = None,
                      name: str = "study_results", title: str = "Study") -> tuple[Path, Path]:
    """``<dir>/<name>.md`` (mean +- std per cell) and ``<name>.csv`` (mean and std columns); dir: figures/."""
    from ropelab import figures

    out = Path(directory) if directory is not None else figures.FIGURE_DIR
    out.mkdir(parents=True, exist_ok=True)
    columns = ["label", "method", "group", "scale", "n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    csv_path = figures.write_csv([{c: r.get(c, "") for c in columns} for r in table], out / f"{name}.csv")
    lines = [f"# {title}", "", ("mean +- std over seeds; ppl_N: truncated perplexity of the first N tokens of held-out"
                                " segments; retention_N: ppl_N / pre-trained ppl_N; passkey_N: accuracy at N tokens."), "",
             "| method | scale | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]
    for r in table:
        cells = [_pm(r.get(f"{m}_mean"), r.get(f"{m}_std")) for m in metrics]
        lines.append(f"| {r['label']} | {r['scale']}x | {r['n']} | " + " | ".join(cells) + " |")
    md_path = out / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 4 if abs(mean) < 0.1 else 3
    return f"{mean:.{digits}g} +- {std:.2g}" if std else f"{mean:.{digits}g}"


def reference_metrics(profile_dir: str | Path, notebook: str, pattern: str = r"ppl|passkey|perplexity") -> dict:
    """Numbers of another notebook's metrics.json (keys matching ``pattern``), or {} when it has not run."""
    import re

    found = sorted(Path(profile_dir).glob(f"{notebook}*/metrics.json"))
    if not found:
        return {}
    data = json.loads(found[0].read_text())
    return {k: v for k, v in sorted(data.items()) if re.search(pattern, k)}


def study_metrics(result: Mapping[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    """Every number of the study as a flat dict for metrics.json (see the notebook for the key names)."""
    rows, base, window = result["rows"], result["base"], result["window"]
    metrics = table_metrics(window, cfg)
    out: dict[str, Any] = {"window": window, "runs": len(rows)}  # not how many were cached: same file either way
    out["pretrained"] = {k: v for k, v in base.items() if k.startswith(("ppl_", "band_", "passkey"))}
    # positions L/2..L-1 (inside the window) against the worst band of positions past L, same segments
    out["check.pretrained_ppl_inside"] = base.get(f"band_{window}", float("nan"))
    out["check.pretrained_ppl_past"] = max((base[f"band_{n}"] for n in eval_lengths(cfg, window) if n > window),
                                           default=float("nan"))
    out["check.pretrained_break_ratio"] = out["check.pretrained_ppl_past"] / out["check.pretrained_ppl_inside"]
    expected = {(label, s) for label in cfg.methods for s in cfg.scales
                if label != "dprope_paper" or s in cfg.paper_nhat_ratio}
    table = cell_summary(rows, metrics)
    present = {(c["label"], c["scale"]) for c in table if all(
        math.isfinite(c.get(f"ppl_{n}_mean", math.nan)) for n in eval_lengths(cfg, window))}
    out["check.main_rows_expected"] = len(expected)
    out["check.main_rows_finite"] = len(expected & present)
    for cell in table:
        prefix = f"cell.{cell['label']}.x{cell['scale']}"
        for key, value in cell.items():
            if key.endswith(("_mean", "_std")):
                out[f"{prefix}.{key}"] = value
    for scale in cfg.scales:
        target = f"ppl_{window * scale}"
        for reference in ("dprope", "dprope_paper"):
            for baseline in [b for b in BASELINES if b in cfg.methods]:
                if reference not in cfg.methods:
                    continue
                cmp = paired_comparison(rows, target, scale, reference, baseline)
                for key, value in cmp.items():
                    if not (isinstance(value, float) and math.isnan(value)):
                        out[f"paired.{reference}_vs_{baseline}.x{scale}.{key}"] = value
    points = disturbance_points(rows, window)
    if len(points) >= 3:
        rho, p = spearman([p["disturbance"] for p in points], [p["ppl"] for p in points])
        out["spearman.disturbance_vs_ppl.rho"], out["spearman.disturbance_vs_ppl.p"] = rho, p
        out["spearman.disturbance_vs_ppl.n"] = len(points)
    return {k: v for k, v in flatten(out).items() if isinstance(v, (int, float)) and math.isfinite(v)}


if __name__ == "__main__":
    raise SystemExit(main())
