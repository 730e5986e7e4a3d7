"""Scoring one study run: truncated perplexity at L/2 .. 8L on held-out segments, teacher-forced retrieval at
L .. 8L and generated passkeys (cached).

Every run is scored on the same tokens: ``eval.segments`` segments of 8L tokens spread over the held-out split,
each length taking the first n tokens of each segment (no sliding window), and ``eval.retrieval_rows`` held-out
rows per (task, length) of the study's mix (:mod:`ropelab.train.mixture`; one copied span as far back as the row
allows). The result is cached as JSON beside the run, keyed by the evaluation settings.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.config import to_dict
from ropelab.determinism import numerics_key, pinned_numerics
from ropelab.experiments.study.config import StudyConfig, Variant, eval_lengths
from ropelab.storage import atomic_write_text, content_key
from ropelab.train.mixture import rows_key

EVAL_FILE = "study_eval-{key}.json"


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


@pinned_numerics()
def evaluate_model(model_dir: str | Path, cfg: StudyConfig, window: int, out_dir: str | Path,
                   progress: bool = False) -> dict[str, Any]:
    """Perplexity at each length and passkey accuracy of one model folder; cached as JSON in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.eval.passkey import evaluate_passkey
    from ropelab.eval.perplexity import perplexity

    key = content_key({"eval": to_dict(cfg.eval), "corpus": cfg.corpus, "window": window, "version": 2,
                       "mix": to_dict(cfg.mix), "numerics": numerics_key(), **rows_key(cfg.mix)})
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
        result["retrieval"] = retrieval(model, tokenizer, cfg, window)
        if cfg.eval.passkey_trials > 0:
            lengths = [round(m * window) for m in cfg.eval.passkey_multiples]
            _, summary = evaluate_passkey(model, tokenizer, lengths=lengths, depths=cfg.eval.passkey_depths,
                                          trials=cfg.eval.passkey_trials, seed=cfg.eval.passkey_seed,
                                          progress=progress)
            result["passkey"] = {"accuracy": summary["accuracy"], "cells": summary["cells"]}
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def held_out_rows(cfg: StudyConfig, tokenizer: Any, tasks, length: int, split: str, seed: int, rows: int):
    """Rows of the study's mix restricted to ``tasks`` (equal shares), one span per copy row (the far layout: the
    repeat is most of a row away), drawn from ``split`` with ``seed``. # (N, T) ids and answers"""
    import dataclasses

    from ropelab.train.mixture import mix_rows

    mix = dataclasses.replace(cfg.mix, shares={t: 1 / len(tasks) for t in tasks}, copy_spans=(1, 1), seed=seed)
    return mix_rows(mix, tokenizer, cfg.corpus, split, length, rows, cfg.max_docs)


def retrieval_rows(cfg: StudyConfig, tokenizer: Any, task: str, length: int):
    """The held-out rows of ``task`` at ``length``: ``eval.retrieval_rows`` rows of ``eval.split`` drawn with
    ``eval.retrieval_seed``. # (N, T) ids and answers"""
    return held_out_rows(cfg, tokenizer, [task], length, cfg.eval.split, cfg.eval.retrieval_seed,
                         cfg.eval.retrieval_rows)


def retrieval(model: Any, tokenizer: Any, cfg: StudyConfig, window: int) -> dict[str, dict[str, float]]:
    """``{task: {length: accuracy}}``: teacher-forced answer accuracy per retrieval task of the mix and length."""
    from ropelab.eval.answers import answer_accuracy

    out: dict[str, dict[str, float]] = {}
    for task in cfg.retrieval_tasks():
        for m in cfg.eval.retrieval_multiples:
            n = round(m * window)
            ids, answers = retrieval_rows(cfg, tokenizer, task, n)
            out.setdefault(task, {})[str(n)] = answer_accuracy(model, ids, answers)["accuracy"]
    return out


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
    for task, by_n in evaluation.get("retrieval", {}).items():
        for n, value in by_n.items():
            row[f"{task}_{n}"] = value
    by_length: dict[int, list[float]] = {}
    for cell in evaluation["passkey"].get("cells", []):
        by_length.setdefault(int(cell["length"]), []).append(cell["accuracy"])
    for n, values in sorted(by_length.items()):
        row[f"generated_passkey_{n}"] = float(np.mean(values))
    if "accuracy" in evaluation["passkey"]:
        row["generated_passkey"] = evaluation["passkey"]["accuracy"]
    if train_loss is not None:
        row["train_loss"] = train_loss
    return row
