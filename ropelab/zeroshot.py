"""Zero-shot extension of a real pretrained model: every method past the model's window, on the same tokens.

The real-model experiment of notebook 06 (profiles in ``configs/zeroshot/``). A pretrained model (SmolLM2-135M,
trained to L = 8192) is given each extension plan *without fine-tuning* and scored on held-out text and synthetic
retrieval prompts that are the same for every method:

* **perplexity against length**, truncated protocol: the first n tokens of each held-out document, for every n of
  ``ppl_lengths``. For a causal model whose RoPE does not depend on the sequence length (every static plan), the
  loss of token t depends on tokens < t only, so *one* forward pass over the longest length gives the truncated
  perplexity at every shorter length too: ``ppl(n) = exp(sum_{t<n} nll_t / (n - 1))`` (tested against
  :func:`ropelab.eval.perplexity.perplexity`). Length-dependent plans (dynamic NTK) are refused;
* **retention** inside the window: ``ppl(method, n) / ppl(none, n)`` for n <= L, from the same numbers;
* **retrieval**: passkey (:mod:`ropelab.eval.passkey`), needle-in-a-haystack (:mod:`ropelab.eval.niah`) and the
  RULER tasks of ``retrieval.ruler_tasks`` (:mod:`ropelab.eval.ruler`, samples generated once) over the
  retrieval lengths, for the ``retrieval`` subset of variants;
* a **searched variant** (``search``, :class:`SearchConfig`): per-pair factors found by
  :func:`ropelab.search.coordinate_search` from DPRoPE's against the needle-driven perplexity, on needles in
  documents nothing reported uses; resolved (and cached) first, then scored like every other variant.

The model and every document are loaded and tokenised once for all methods; a plan is applied and removed in place
(:func:`ropelab.eval.loading.plan_applied`). Every result is cached in ``$ROPELAB_CACHE/zeroshot/`` under a key of
everything that decides its numbers (model, dtype, threads, plan, tokens, evaluation settings, torch version), so
a notebook re-run with warm caches only draws the figures, and a changed setting recomputes only what it touches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.config import load_config
from ropelab.io import atomic_write_text, content_key

STATIC_ONLY = ("dynamic_ntk",)
DTYPES = ("float32", "bfloat16", "float16")  # plans whose frequencies change with the sequence length
CACHE_VERSION = 1


@dataclass(frozen=True)
class RetrievalConfig:
    """The passkey and NIAH grid (the same prompts for every variant)."""

    variants: tuple = ()  # labels of the variants scored on retrieval (a subset of ``variants``; () = all)
    lengths: tuple = (4096, 8192, 12288, 16384)  # prompt lengths in tokens
    passkey_depths: tuple = (0.5,)  # key depth (fraction of the filler before the key)
    passkey_trials: int = 2  # keys per (length, depth) cell
    niah_depths: tuple = (0.5,)  # needle depth in the Paul Graham essays
    ruler_tasks: tuple = ()  # RULER tasks (ropelab.eval.ruler.TASKS) at the same lengths; () skips RULER
    ruler_samples: int = 1  # samples per RULER task and length
    seed: int = 0  # passkey keys and RULER samples

    def __post_init__(self) -> None:
        for name in ("variants", "lengths", "passkey_depths", "niah_depths", "ruler_tasks"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        _check_lengths("retrieval.lengths", self.lengths, allow_empty=True)
        for name in ("passkey_depths", "niah_depths"):
            bad = [d for d in getattr(self, name) if not 0.0 <= float(d) <= 1.0]
            if bad:
                raise ValueError(f"retrieval.{name} must be fractions in [0, 1], got {bad[0]!r}")
        for name in ("passkey_trials", "ruler_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"retrieval.{name} must be an integer >= 1, got {value!r}")
        if self.ruler_tasks:
            from ropelab.eval.ruler.tasks import check_tasks

            check_tasks(list(self.ruler_tasks))


@dataclass(frozen=True)
class SearchConfig:
    """A searched variant: :func:`ropelab.search.coordinate_search` (LongRoPE2's idea, Shang et al. 2025, sec. 3.3)
    from ``start``'s factors against the needle-driven perplexity (:func:`ropelab.eval.ruler.needle_perplexity`)
    of the loaded model, zero-shot; the plan it finds is then scored as one more variant.

    Documents kept apart: the objective's NIAH samples put their needles in a haystack of ``corpus``/``split``
    (default the Shakespeare *train* plays) instead of the Paul Graham essays, and draw keys, values and depths
    from ``seed``. What is reported uses other text: the perplexity the profile's ``split`` (test plays), the
    passkey its filler, NIAH and RULER the Paul Graham essays with ``retrieval.seed`` (which must differ).
    """

    label: str = "dprope_search"  # the variant's label in every table and figure
    start: str = "dprope"  # registry method the search starts from: the paper's argmin rule (dprope_robust's fix is
    #                        reported beside it, so the search is compared with the hand-made fix, not built on it)
    options: dict = field(default_factory=dict)  # the start method's options (e.g. {bins: 360})
    budget: int = 12  # objective evaluations, the start's included (each: `samples` forwards of `length` tokens)
    task: str = "niah_single_2"  # the objective's NIAH task (ropelab.eval.ruler.TASKS, family niah)
    samples: int = 2  # NIAH samples per evaluation
    length: int | None = None  # their length in tokens (None: target_length)
    seed: int = 1  # draws the objective's needles; must differ from retrieval.seed
    corpus: str = "shakespeare"  # ropelab.data corpus of the haystack (essay-haystack tasks)
    split: str = "train"  # its split: must not be the perplexity's split of the same corpus
    values: tuple = ()  # factors a pair may take, within [1, s] (() = 1, sqrt(s), s)

    def __post_init__(self) -> None:
        from ropelab.data import SPLITS, check_corpus
        from ropelab.eval.ruler.tasks import TASKS, check_tasks
        from ropelab.methods import METHODS

        object.__setattr__(self, "values", tuple(float(v) for v in self.values or ()))
        for name in ("budget", "samples", "seed", *(("length",) if self.length is not None else ())):
            value = getattr(self, name)
            low = 0 if name == "seed" else 2 if name == "length" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"search.{name} must be an integer >= {low}, got {value!r}")
        if self.start not in METHODS or self.start in (*STATIC_ONLY, "none"):
            allowed = ", ".join(m for m in METHODS if m not in (*STATIC_ONLY, "none"))
            raise ValueError(f"search.start {self.start!r} is not a static registry method; allowed: {allowed}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"search.options must be a mapping of {self.start} options, got {self.options!r}")  # noqa: TRY004 (a bad config)
        check_tasks([self.task])
        if TASKS[self.task].family != "niah":
            niah = ", ".join(t for t, v in TASKS.items() if v.family == "niah")
            raise ValueError(f"search.task {self.task!r} is not a NIAH task; allowed: {niah}")
        check_corpus(self.corpus)
        if self.corpus == "paul_graham":
            raise ValueError("search.corpus 'paul_graham' is the reported NIAH/RULER haystack; use another corpus")
        if self.split not in (*SPLITS, "all"):
            raise ValueError(f"search.split {self.split!r} is not allowed; allowed: {', '.join(SPLITS)}, all")
        if not self.label or ":" in self.label:
            raise ValueError(f"search.label must be a non-empty name without ':', got {self.label!r}")


@dataclass(frozen=True)
class ZeroShotConfig:
    """One zero-shot profile (``configs/zeroshot/<name>.yaml``)."""

    name: str = "quick"  # label of the profile
    model: str = "smollm2-135m"  # the pretrained model: smollm2-135m (offline), a local folder or a hub id
    dtype: str = "bfloat16"  # weights and activations; the CPU's AVX-512 BF16 runs a 4k forward ~1.8x faster
    threads: int = 2  # torch threads, pinned while the work runs (the numbers depend on it)
    device: str = "cpu"  # torch device; "auto": cuda when torch sees a GPU
    target_length: int = 16384  # L' of every plan
    corpus: str = "shakespeare"  # ropelab.data corpus of the perplexity documents
    split: str = "test"  # held-out split (a fixed hash of each document id)
    docs: int = 3  # first N documents of the split that are at least max(ppl_lengths) tokens long
    ppl_lengths: tuple = (2048, 4096, 8192, 12288, 16384)  # truncated-perplexity lengths in tokens
    variants: dict = field(default_factory=lambda: {"none": {"method": "none"}})  # label -> {method, options...}
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    search: SearchConfig | None = None  # a searched variant (scored like the others); None: no search

    def __post_init__(self) -> None:
        object.__setattr__(self, "ppl_lengths", tuple(int(n) for n in self.ppl_lengths))
        _check_lengths("ppl_lengths", self.ppl_lengths)
        if not isinstance(self.variants, Mapping) or not self.variants:
            raise ValueError(f"variants must be a non-empty mapping label -> {{method: ..}}, got {self.variants!r}")
        for label, spec in self.variants.items():
            if not isinstance(spec, Mapping) or "method" not in spec:
                raise ValueError(f"variant {label!r} needs a 'method' key, got {spec!r}")
            if spec["method"] in STATIC_ONLY:
                raise ValueError(f"variant {label!r}: method {spec['method']!r} depends on the sequence length; "
                                 f"the one-pass perplexity needs a static plan")
        if self.search is not None:
            _check_search(self)
        unknown = [v for v in self.retrieval.variants if v not in self.labels]
        if unknown:
            raise ValueError(f"retrieval variant {unknown[0]!r} is not in variants ({', '.join(self.labels)})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not allowed; allowed: {', '.join(DTYPES)}")
        for name in ("threads", "docs", "target_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def labels(self) -> tuple:
        """Every variant's label: ``variants``, then the searched one."""
        return (*self.variants, *((self.search.label,) if self.search is not None else ()))

    @property
    def retrieval_variants(self) -> tuple:
        return self.retrieval.variants or self.labels


def _check_search(cfg: ZeroShotConfig) -> None:
    """The search block against the rest of the profile: its label is new, its documents are not reported."""
    search = cfg.search
    if search.label in cfg.variants:
        raise ValueError(f"search.label {search.label!r} is already a variant; give the searched one another label")
    if search.seed == cfg.retrieval.seed:
        raise ValueError(f"search.seed {search.seed} is retrieval.seed: the objective's needles would be the "
                         f"reported ones; pick another seed")
    if search.corpus == cfg.corpus and (search.split == cfg.split or "all" in (search.split, cfg.split)):
        raise ValueError(f"search.split {search.split!r} of {search.corpus} overlaps the perplexity documents "
                         f"({cfg.corpus}/{cfg.split}); pick another split or corpus")


def load_zeroshot_config(source: str | Path | Mapping = "quick",
                         overrides: Mapping[str, Any] | None = None) -> ZeroShotConfig:
    """A ZeroShotConfig from a profile name (configs/zeroshot/<name>.yaml), a YAML path or a dict."""
    if isinstance(source, str) and "/" not in source and not source.endswith((".yaml", ".yml")):
        source = f"zeroshot/{source}"
    return load_config(ZeroShotConfig, source, overrides)


def _check_lengths(name: str, lengths: Sequence, allow_empty: bool = False) -> None:
    if not lengths and not allow_empty:
        raise ValueError(f"{name} must list at least one length")
    bad = [n for n in lengths if isinstance(n, bool) or not isinstance(n, int) or n < 2]
    if bad:
        raise ValueError(f"{name} must be integers >= 2 (tokens), got {bad[0]!r}")


# --- perplexity at every prefix length from one pass -------------------------------------------------------


def prefix_nll(model: Any, ids: Sequence[int]) -> np.ndarray:
    """NLL (float64) of tokens ``ids[1:]`` given everything before them, from one forward pass, shape (n - 1,)."""
    import torch

    from ropelab.eval.perplexity import token_nll

    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64)[None], device=device)  # (1, n)
    with torch.inference_mode():
        hidden = model.get_decoder()(input_ids=x, use_cache=False).last_hidden_state[0, :-1]  # (n - 1, H)
        return token_nll(model, hidden, x[0, 1:]).cpu().numpy()  # (n - 1,)


def prefix_perplexities(nll: Sequence[np.ndarray], lengths: Sequence[int],
                        window: int | None = None) -> list[dict[str, Any]]:
    """Truncated perplexity at each length, pooled over documents per token, from per-token NLLs.

    ``nll[d]`` holds the NLL of tokens 1..n_d of document d (:func:`prefix_nll`); length n scores tokens 1..n-1 of
    every document, so each document weighs n - 1 tokens. With ``window`` L, a length n > L also gets
    ``ppl_beyond``: the perplexity of the tokens at positions L..n-1 alone, the ones no pre-training position
    reached (the pooled ``ppl`` dilutes them with the n - L tokens before).
    """
    rows = []
    for n in lengths:
        if any(len(d) < n - 1 for d in nll):
            raise ValueError(f"length {n} is longer than a scored document ({min(len(d) for d in nll) + 1} tokens)")
        total = float(sum(d[: n - 1].sum() for d in nll))
        count = (n - 1) * len(nll)
        row = {"length": int(n), "ppl": math.exp(total / count), "nll": total / count, "n_tokens": count,
               "n_docs": len(nll)}
        if window is not None and n > window:
            # token t (position t) is predicted from positions < t: targets t >= L sit at nll index t - 1 >= L - 1
            beyond = float(sum(d[window - 1: n - 1].sum() for d in nll)) / ((n - window) * len(nll))
            row["ppl_beyond"] = math.exp(beyond)
        rows.append(row)
    return rows


# --- the experiment ----------------------------------------------------------------------------------------


def run_zero_shot(cfg: ZeroShotConfig, progress: bool = True, cache: bool = True) -> dict[str, Any]:
    """Every variant of ``cfg`` zero-shot on the same tokens; returns ``{"ppl": rows, "passkey": cells, ...}``.

    Rows carry ``method`` (the variant's label), ``length`` and the scores; ``seconds`` is the compute time of
    the part that was not cached (0 for cached parts), kept out of the figures' CSVs by the caller.
    """
    import torch
    from tqdm.auto import tqdm

    from ropelab.data import document_tokens, tokenizer_fingerprint
    from ropelab.eval.loading import model_spec, plan_applied
    from ropelab.methods import make_plan
    from ropelab.models import load_model

    dtype = getattr(torch, cfg.dtype)
    with pinned_threads(cfg.threads):
        model, tokenizer = load_model(cfg.model, dtype=dtype)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        model = model.to(device)
        spec = model_spec(model)
        plans = {label: None if v["method"] == "none" else make_plan(
            v["method"], spec, cfg.target_length, **{k: x for k, x in v.items() if k != "method"})
            for label, v in cfg.variants.items()}
        need = max(cfg.ppl_lengths)
        docs = [(d, ids[:need]) for d, ids in document_tokens(cfg.corpus, cfg.split, tokenizer) if len(ids) >= need]
        if len(docs) < cfg.docs:
            raise ValueError(f"{cfg.corpus}/{cfg.split} has {len(docs)} documents of >= {need} tokens, "
                             f"fewer than docs={cfg.docs}")
        docs = docs[: cfg.docs]
        base = {"version": CACHE_VERSION, "model": cfg.model, "dtype": cfg.dtype, "threads": cfg.threads,
                **({"device": device} if device != "cpu" else {}),
                "torch": torch.__version__, "tokenizer": tokenizer_fingerprint(tokenizer),
                "weights": _weights_fingerprint(model)}
        out: dict[str, Any] = {"ppl": [], "passkey": [], "niah": [], "ruler": [], "ruler_averages": [],
                               "plans": plans, "docs": [d for d, _ in docs],
                               "window": spec.original_length}
        if cfg.search is not None:
            plans[cfg.search.label], out["search"] = searched_plan(model, tokenizer, spec, cfg, base, cache, progress)
        jobs = [(label, "ppl") for label in cfg.labels]
        kinds = ("passkey", "niah", "ruler") if cfg.retrieval.ruler_tasks else ("passkey", "niah")
        jobs += [(label, kind) for label in cfg.retrieval_variants for kind in kinds if cfg.retrieval.lengths]
        samples = _ruler_samples(cfg, tokenizer) if "ruler" in kinds and cfg.retrieval.lengths else []
        bar = tqdm(jobs, desc="zero-shot", disable=not progress)
        for label, kind in bar:
            bar.set_postfix_str(f"{label} {kind}")
            plan = plans[label]
            settings = {**base, "kind": kind, "plan": plan.to_dict() if plan is not None else None,
                        **_settings(cfg, kind, docs, samples)}
            result = _cached(settings, cache)
            if result is None:
                start = time.perf_counter()
                with plan_applied(model, plan):
                    result = _evaluate(kind, model, tokenizer, cfg, docs, samples)
                result["seconds"] = time.perf_counter() - start
                _store(settings, result, cache)
            else:
                result["seconds"] = 0.0
            _collect(out, kind, label, result, cfg)
    return out


def searched_plan(model: Any, tokenizer: Any, spec: Any, cfg: ZeroShotConfig, base: Mapping[str, Any],
                  cache: bool = True, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """The plan of ``cfg.search`` on the loaded model, and a record of the search: its curve (best objective after
    each evaluation), moves, evaluations, seconds (of the original search, also when cached), the objective's
    sample seeds and haystack documents. Cached as plan JSON on ``base`` (model, dtype, threads, weights, ...),
    the target, the search settings, the start plan, the objective's prompts and the code that scores them."""
    from ropelab.eval.loading import plan_applied
    from ropelab.eval.ruler import needle_ppl
    from ropelab.methods import make_plan
    from ropelab.plan import RopePlan
    from ropelab.search import coordinate_search

    search = cfg.search
    samples, haystack = objective_samples(cfg, tokenizer)
    start = make_plan(search.start, spec, cfg.target_length, **search.options)
    prompts = content_key([[s.task, s.length, s.seed, list(s.ids), list(s.answer_ids)] for s in samples], digits=64)
    settings = {**base, "kind": "search", "target_length": cfg.target_length, "search": {k: v for k, v in dataclasses.asdict(search).items() if k != "label"},
                "start": start.to_dict(), "prompts": prompts,
                "code": _source_digest("ropelab.search", "ropelab.eval.ruler.needle_ppl")}
    stored = _cached(settings, cache)
    if stored is not None:
        plan = RopePlan.from_dict(stored["plan"])
    else:
        def objective(candidate: Any) -> float:
            with plan_applied(model, candidate):
                return needle_ppl.needle_perplexity(model, samples)

        plan = coordinate_search(objective, spec, cfg.target_length, budget=search.budget, start=search.start,
                                 values=search.values or None, progress=progress, **search.options)
        _store(settings, {"plan": plan.to_dict()}, cache)
    record = {key: plan.details["search"][key] for key in ("start", "start_objective", "objective", "curve",
                                                           "moves", "evaluations", "budget", "seconds")}
    record.update(label=search.label, cached=stored is not None, task=search.task,
                  length=samples[0].length, sample_seeds=sorted({s.seed for s in samples}),
                  haystack=f"{search.corpus}/{search.split}", haystack_docs=haystack)
    return plan, record


def objective_samples(cfg: ZeroShotConfig, tokenizer: Any) -> tuple[list, list[str]]:
    """The search objective's NIAH samples and the ids of the documents their haystack is cut from.

    The haystack is ``search.corpus``/``search.split`` (documents in id order, whitespace runs collapsed, as
    RULER does with the essays), never the Paul Graham essays of the reported NIAH and RULER cells; only as many
    documents as the longest prompt needs are listed (and used).
    """
    import re

    from ropelab.data import load_documents
    from ropelab.eval.ruler.tasks import TASKS, build_sample

    search = cfg.search
    length = search.length or cfg.target_length
    words: list[str] = []
    used: list[str] = []
    if TASKS[search.task].options["haystack"] == "essay":
        for doc in load_documents(search.corpus, search.split):
            words += re.sub(r"\s+", " ", doc.text).strip().split(" ")
            used.append(doc.doc_id)
            if len(words) >= 2 * length:  # a token is at least part of a word: twice the tokens in words is ample
                break
    samples = [build_sample(search.task, length, i, search.seed, tokenizer, haystack_words=words)
               for i in range(search.samples)]
    return samples, used


def _ruler_samples(cfg: ZeroShotConfig, tokenizer: Any) -> list:
    """The RULER samples of ``cfg``, generated and tokenised once for every variant."""
    from ropelab.eval.ruler import generate_samples

    r = cfg.retrieval
    return generate_samples(tokenizer, r.ruler_tasks, r.lengths, r.ruler_samples, r.seed, progress=False)


def _settings(cfg: ZeroShotConfig, kind: str, docs: Sequence[tuple[str, np.ndarray]],
              samples: Sequence[Any] = ()) -> dict[str, Any]:
    """What decides a result besides model, dtype, threads and plan: its tokens or prompts, and the code that
    builds and decodes the prompts (a changed prompt builder is a new key)."""
    if kind == "ppl":
        digest = content_key(blobs=[np.asarray(ids, dtype=np.int64).tobytes() for _, ids in docs], digits=64)
        return {"docs": [d for d, _ in docs], "tokens": digest, "length": int(max(cfg.ppl_lengths))}
    r = cfg.retrieval
    if kind == "passkey":
        return {"lengths": list(r.lengths), "depths": list(r.passkey_depths), "trials": r.passkey_trials,
                "seed": r.seed, "code": _source_digest("ropelab.eval.passkey")}
    if kind == "niah":
        return {"lengths": list(r.lengths), "depths": list(r.niah_depths),
                "code": _source_digest("ropelab.eval.passkey", "ropelab.eval.niah")}
    prompts = content_key([[s.task, s.length, list(s.ids), list(s.outputs)] for s in samples], digits=64)
    return {"prompts": prompts, "code": _source_digest("ropelab.eval.passkey", "ropelab.eval.ruler.evaluate",
                                                        "ropelab.eval.ruler.scoring")}


def _source_digest(*modules: str) -> str:
    import importlib

    return content_key(blobs=[Path(importlib.import_module(name).__file__).read_bytes() for name in modules])


def _evaluate(kind: str, model: Any, tokenizer: Any, cfg: ZeroShotConfig,
              docs: Sequence[tuple[str, np.ndarray]], samples: Sequence[Any] = ()) -> dict[str, Any]:
    r = cfg.retrieval
    if kind == "ppl":
        return {"nll": [prefix_nll(model, ids).tolist() for _, ids in docs]}
    if kind == "passkey":
        from ropelab.eval.passkey import evaluate_passkey

        rows, summary = evaluate_passkey(model, tokenizer, lengths=r.lengths, depths=r.passkey_depths,
                                         trials=r.passkey_trials, seed=r.seed, progress=False)
    elif kind == "niah":
        from ropelab.eval.niah import evaluate_niah

        rows, summary = evaluate_niah(model, tokenizer, lengths=r.lengths, depths=r.niah_depths, progress=False)
    else:
        from ropelab.eval.ruler import evaluate_ruler

        rows, summary = evaluate_ruler(model, tokenizer, samples, progress=False)
        return {"rows": rows, "cells": summary["cells"], "averages": summary["averages"]}
    return {"rows": rows, "cells": summary["cells"]}


def _collect(out: dict[str, Any], kind: str, label: str, result: Mapping[str, Any], cfg: ZeroShotConfig) -> None:
    if kind == "ppl":
        nll = [np.asarray(d, dtype=np.float64) for d in result["nll"]]
        rows = prefix_perplexities(nll, cfg.ppl_lengths, out["window"])
        out["ppl"] += [{"method": label, **row, "seconds": result["seconds"]} for row in rows]
    else:
        out[kind] += [{"method": label, **cell} for cell in result["cells"]]
        out["ruler_averages"] += [{"method": label, **a} for a in result.get("averages", [])]
        out.setdefault(f"{kind}_rows", []).extend({"method": label, **row} for row in result["rows"])


def with_retention(rows: Sequence[Mapping[str, Any]], window: int) -> list[dict[str, Any]]:
    """Rows inside the window (length <= ``window``) with ``ratio = ppl / ppl(none)`` at the same length."""
    base = {r["length"]: r["ppl"] for r in rows if r["method"] == "none"}
    return [{**r, "ratio": r["ppl"] / base[r["length"]]} for r in rows
            if r["length"] <= window and r["length"] in base]


# --- threads and the result cache ---------------------------------------------------------------------------


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Run a block with exactly ``n`` torch threads, and restore the previous number afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _weights_fingerprint(model: Any) -> str:
    """A short hash of the model's config and a sample of its weights (cheap; a different model gives another)."""
    import torch

    params = list(model.parameters())
    sample = [p.detach().flatten()[:4096].to(torch.float32).numpy().tobytes() for p in params[:: max(1, len(params) // 8)]]
    return content_key(blobs=[model.config.to_json_string(use_diff=False), *sample])


def _cache_path(settings: Mapping[str, Any]) -> Path:
    from ropelab.models import cache_folder

    key = content_key(settings, digits=20)
    return cache_folder() / "zeroshot" / f"{settings['kind']}-{key}.json"


def _cached(settings: Mapping[str, Any], enabled: bool) -> dict[str, Any] | None:
    path = _cache_path(settings)
    if not enabled or not path.exists():
        return None
    return json.loads(path.read_text())


def _store(settings: Mapping[str, Any], result: Mapping[str, Any], enabled: bool) -> None:
    if not enabled:
        return
    atomic_write_text(_cache_path(settings), json.dumps({k: v for k, v in result.items() if k != "seconds"},
                                                        default=_plain))


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in the zero-shot cache")
