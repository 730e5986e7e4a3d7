"""Zero-shot extension of a real pretrained model: every method past the model's window, on the same tokens.

The real-model experiment of notebook 06 (profiles in ``configs/zeroshot/``). A pretrained model (SmolLM2-135M,
trained to L = 8192) is given each extension plan *without fine-tuning* and scored on held-out text and synthetic
retrieval prompts that are the same for every method:

* **perplexity against length**, truncated protocol: the first n tokens of each document of ``documents``, for
  every n of ``ppl_lengths``, from one forward pass per document (:mod:`ropelab.eval.prefix`); pooled per token
  over all documents, and per corpus. Length-dependent plans (dynamic NTK) are refused by the profile;
* **retention** inside the window: ``ppl(method, n) / ppl(none, n)`` for n <= L, from the same numbers;
* **retrieval**: passkey (:mod:`ropelab.eval.passkey`), optionally the Paul Graham needle (:mod:`ropelab.eval.niah`)
  and the RULER tasks of ``retrieval.ruler_tasks`` (:mod:`ropelab.eval.ruler`), each prompt answered greedily
  until end-of-sequence or until its score is decided (:mod:`ropelab.eval.generation`), for the ``retrieval``
  subset of variants; intervals and paired tests come from :mod:`ropelab.experiments.zeroshot.summary`;
* a **searched variant** (``search``): per-pair factors found by :func:`ropelab.rope.search.coordinate_search` against
  needle perplexity (:mod:`ropelab.experiments.zeroshot.search`), then scored like every other variant.

The model and every document are loaded and tokenised once for all methods; a plan is applied and removed in place
(:func:`ropelab.runtime.hf.plan_applied`). Every document's NLL and every prompt's answer is cached on its own
(:mod:`ropelab.experiments.zeroshot.cache`), so an interrupted run resumes, and a re-run with warm caches only
draws the figures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ropelab.experiments.zeroshot.cache import VERSION, cached, store, weights_fingerprint
from ropelab.experiments.zeroshot.config import ZeroShotConfig
from ropelab.storage import content_key


def run_zero_shot(cfg: ZeroShotConfig, progress: bool = True, cache: bool = True) -> dict[str, Any]:
    """Every variant of ``cfg`` zero-shot on the same tokens.

    Returns ``{"ppl": pooled rows, "ppl_corpus": rows per corpus, "ppl_docs": rows per document, "passkey": rows,
    "niah": rows, "ruler": rows, "plans", "docs", "window", "dtype", "search"?, "seconds"}``; every row carries
    ``method`` (the variant's label); ``dtype`` is the one computed in (:func:`ropelab.runtime.cpu_dtype.compute_dtype`:
    the profile's, or float32 for bfloat16 on a CPU without it); ``seconds`` is the compute time of what was not cached.
    """
    import torch
    from tqdm.auto import tqdm

    from ropelab.data import tokenizer_fingerprint
    from ropelab.experiments.zeroshot.search import searched_plan
    from ropelab.rope.registry import make_plan
    from ropelab.runtime.cpu_dtype import compute_dtype
    from ropelab.runtime.hf import model_spec, plan_applied
    from ropelab.runtime.models import load_model

    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    dtype = compute_dtype(cfg.dtype, device)
    with pinned_threads(cfg.threads):
        model, tokenizer = load_model(cfg.model, dtype=getattr(torch, dtype))
        model = model.to(device)
        spec = model_spec(model)
        plans = {label: None if v["method"] == "none" else make_plan(
            v["method"], spec, cfg.target_length, **{k: x for k, x in v.items() if k != "method"})
            for label, v in cfg.variants.items()}
        docs = ppl_documents(cfg, tokenizer)
        base = {"version": VERSION, "model": cfg.model, "dtype": dtype, "threads": cfg.threads,
                **({"device": device} if device != "cpu" else {}),
                "torch": torch.__version__, "tokenizer": tokenizer_fingerprint(tokenizer),
                "weights": weights_fingerprint(model)}
        out: dict[str, Any] = {"ppl_docs": [], "passkey": [], "niah": [], "ruler": [], "plans": plans,
                               "docs": [f"{c}/{d}" for c, d, _ in docs], "window": spec.original_length,
                               "dtype": dtype, "seconds": 0.0}
        if cfg.search is not None:
            plans[cfg.search.label], out["search"] = searched_plan(model, tokenizer, spec, cfg, base, cache, progress)
        prompts = retrieval_prompts(cfg, tokenizer)
        stop_ids = stop_token_ids_of(tokenizer, model)
        jobs = [(label, "ppl") for label in cfg.labels]
        jobs += [(label, "retrieval") for label in cfg.retrieval_variants if prompts]
        bar = tqdm(jobs, desc="zero-shot", disable=not progress)
        for label, kind in bar:
            bar.set_postfix_str(f"{label} {kind}")
            plan = plans[label]
            keyed = {**base, "plan": plan.to_dict() if plan is not None else None}
            start = time.perf_counter()
            with plan_applied(model, plan):
                if kind == "ppl":
                    out["ppl_docs"] += [{"method": label, **r} for r in _ppl(model, docs, keyed, cfg, cache)]
                else:
                    for name, rows in _retrieval(model, tokenizer, prompts, stop_ids, keyed, cache,
                                                 progress).items():
                        out[name] += [{"method": label, **r} for r in rows]
            out["seconds"] += time.perf_counter() - start
    out["ppl"], out["ppl_corpus"] = pooled_perplexities(out["ppl_docs"], cfg.ppl_lengths, out["window"])
    return out


# --- perplexity -----------------------------------------------------------------------------------------------


def ppl_documents(cfg: ZeroShotConfig, tokenizer: Any) -> list[tuple[str, str, np.ndarray]]:
    """``(corpus, doc_id, first max(ppl_lengths) token ids)`` of every document set of the profile."""
    from ropelab.data import document_tokens

    need = max(cfg.ppl_lengths)
    out = []
    for d in cfg.documents:
        found = [(d["corpus"], doc, ids[:need]) for doc, ids in document_tokens(d["corpus"], d["split"], tokenizer)
                 if len(ids) >= need]
        if len(found) < d["docs"]:
            raise ValueError(f"{d['corpus']}/{d['split']} has {len(found)} documents of >= {need} tokens, "
                             f"fewer than docs={d['docs']}")
        out += found[: d["docs"]]
    return out


def _ppl(model: Any, docs: Sequence[tuple[str, str, np.ndarray]], keyed: Mapping[str, Any], cfg: ZeroShotConfig,
         cache: bool) -> list[dict[str, Any]]:
    """Per-document NLL rows (one cached forward pass per document)."""
    from ropelab.eval.prefix import prefix_nll

    rows = []
    for corpus, doc, ids in docs:
        settings = {**keyed, "kind": "ppl", "corpus": corpus, "doc": doc, "length": int(max(cfg.ppl_lengths)),
                    "tokens": content_key(blobs=[np.asarray(ids, dtype=np.int64).tobytes()], digits=64),
                    # chunks round differently from one pass: keyed when set (one-pass entries keep their keys)
                    **({"prefill_chunk": cfg.prefill_chunk} if cfg.prefill_chunk is not None else {})}
        result = cached(settings, cache)
        if result is None:
            result = {"nll": prefix_nll(model, ids, cfg.prefill_chunk).tolist()}
            store(settings, result, cache)
        rows.append({"corpus": corpus, "doc": doc, "nll": np.asarray(result["nll"], dtype=np.float64)})
    return rows


def pooled_perplexities(doc_rows: Sequence[Mapping[str, Any]], lengths: Sequence[int],
                        window: int) -> tuple[list[dict], list[dict]]:
    """Truncated perplexity per method pooled over every document, and per (method, corpus)."""
    from ropelab.eval.prefix import prefix_perplexities

    pooled, by_corpus = [], []
    for method in dict.fromkeys(r["method"] for r in doc_rows):
        mine = [r for r in doc_rows if r["method"] == method]
        pooled += [{"method": method, **row} for row in prefix_perplexities([r["nll"] for r in mine], lengths, window)]
        for corpus in dict.fromkeys(r["corpus"] for r in mine):
            nll = [r["nll"] for r in mine if r["corpus"] == corpus]
            by_corpus += [{"method": method, "corpus": corpus, **row}
                          for row in prefix_perplexities(nll, lengths, window)]
    return pooled, by_corpus


def with_retention(rows: Sequence[Mapping[str, Any]], window: int) -> list[dict[str, Any]]:
    """Rows inside the window (length <= ``window``) with ``ratio = ppl / ppl(none)`` at the same length."""
    base = {r["length"]: r["ppl"] for r in rows if r["method"] == "none"}
    return [{**r, "ratio": r["ppl"] / base[r["length"]]} for r in rows
            if r["length"] <= window and r["length"] in base]


# --- retrieval ------------------------------------------------------------------------------------------------


def retrieval_prompts(cfg: ZeroShotConfig, tokenizer: Any) -> list[dict[str, Any]]:
    """Every retrieval prompt of the profile, the same for every variant: ``{kind, ids, max_new_tokens, item}``
    with ``item`` the passkey prompt, NIAH cell or RULER sample that scores the answer."""
    from ropelab.eval.niah import HaystackPrompter
    from ropelab.eval.passkey import spread_passkey_prompts
    from ropelab.eval.ruler import generate_samples

    r = cfg.retrieval
    if not r.lengths:
        return []
    out = [{"kind": "passkey", "ids": p["ids"], "max_new_tokens": 6, "item": p}
           for p in (spread_passkey_prompts(tokenizer, r.lengths, r.passkey_samples, r.depths, r.seed)
                     if r.passkey_samples else ())]
    if r.niah_depths:
        prompter = HaystackPrompter(tokenizer)
        for length in r.lengths:
            for depth in r.niah_depths:
                ids, position = prompter(length, depth)
                out.append({"kind": "niah", "ids": tuple(ids), "max_new_tokens": 16,
                            "item": {"length": length, "depth": depth, "position": position}})
    for task in r.ruler_tasks:
        for s in generate_samples(tokenizer, [task], r.lengths, r.samples_of(task), r.seed, progress=False,
                                  depths=r.depths):
            out.append({"kind": "ruler", "ids": s.ids, "max_new_tokens": s.max_new_tokens, "item": s})
    return out


def stop_token_ids_of(tokenizer: Any, model: Any) -> tuple[int, ...]:
    from ropelab.eval.generation import stop_token_ids

    return stop_token_ids(tokenizer, model)


def _retrieval(model: Any, tokenizer: Any, prompts: Sequence[Mapping[str, Any]], stop_ids: Sequence[int],
               keyed: Mapping[str, Any], cache: bool, progress: bool) -> dict[str, list[dict]]:
    """Scored rows of every prompt, by kind; answers cached one prompt at a time (the grid resumes)."""
    from ropelab.eval.generation import ANSWER_VERSION, answer_prompts

    # An answer is a pure function of its prompt ids, the model and plan, and the decoding (greedy, stop ids,
    # max_new_tokens, the early-stop rule): the prompt builders are covered by the ids, the decoding by
    # ANSWER_VERSION. Prompts run whole (reuse=False): a cache carried between prompts changes the kernels and so,
    # in bfloat16, rare near-tie answers, which would then depend on the grid around a prompt.
    settings = [{**keyed, "kind": "answer", "stop_ids": list(stop_ids), "code": ANSWER_VERSION,
                 "max_new_tokens": p["max_new_tokens"], "score": _score_key(p),
                 "ids": content_key(blobs=[np.asarray(p["ids"], dtype=np.int64).tobytes()], digits=64)}
                for p in prompts]
    answers: list[list[int] | None] = [None] * len(prompts)
    for i, s in enumerate(settings):
        found = cached(s, cache)
        if found is not None:
            answers[i] = found["tokens"]
    todo = [i for i, a in enumerate(answers) if a is None]
    if todo:
        def save(j: int, tokens: list[int]) -> None:
            answers[todo[j]] = tokens
            store(settings[todo[j]], {"tokens": tokens}, cache)

        answer_prompts(model, [prompts[i]["ids"] for i in todo], [prompts[i]["max_new_tokens"] for i in todo],
                       stop_ids=stop_ids, done=[_decided(prompts[i], tokenizer) for i in todo],
                       reuse=False, on_answer=save, progress=progress, desc="answers")
    out: dict[str, list[dict]] = {"passkey": [], "niah": [], "ruler": []}
    for p, tokens in zip(prompts, answers):
        out[p["kind"]].append(_row(p, tokenizer.decode(tokens, skip_special_tokens=True)))
    return out


def _score_key(prompt: Mapping[str, Any]) -> Any:
    """What the early stop of a prompt depends on besides its ids: the reference answer and the metric."""
    item = prompt["item"]
    if prompt["kind"] in ("passkey", "niah"):
        return [prompt["kind"]]  # the first integer is complete / the needle's answer is in the text
    return [item.metric, list(item.outputs)]  # the string-match score is 1


def _decided(prompt: Mapping[str, Any], tokenizer: Any) -> Any:
    from ropelab.eval.niah import is_correct
    from ropelab.eval.passkey import passkey_decided
    from ropelab.eval.ruler.evaluate import sample_decided

    if prompt["kind"] == "ruler":
        return sample_decided(prompt["item"], tokenizer)
    test = passkey_decided if prompt["kind"] == "passkey" else is_correct

    def done(tokens: list[int]) -> bool:
        return test(tokenizer.decode(tokens, skip_special_tokens=True))

    return done


def _row(prompt: Mapping[str, Any], text: str) -> dict[str, Any]:
    from ropelab.eval.niah import is_correct
    from ropelab.eval.passkey import passkey_row
    from ropelab.eval.ruler.evaluate import ruler_row
    from ropelab.experiments.zeroshot.samples import prompt_id

    item = prompt["item"]
    if prompt["kind"] == "passkey":
        return passkey_row(item, text)
    if prompt["kind"] == "niah":
        return {**item, "answer": text.strip(), "correct": is_correct(text), "n_tokens": len(prompt["ids"])}
    return {**ruler_row(item, text), "depth": item.depths[0] if len(item.depths) == 1 else None,
            "prompt": prompt_id(prompt["ids"])}


# --- threads ----------------------------------------------------------------------------------------------------


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
