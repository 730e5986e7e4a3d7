"""The searched variant of a zero-shot profile: per-pair factors found against needle perplexity, cached."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Mapping
from typing import Any

from ropelab.experiments.zeroshot.cache import cached, store
from ropelab.experiments.zeroshot.config import ZeroShotConfig
from ropelab.storage import content_key


def searched_plan(model: Any, tokenizer: Any, spec: Any, cfg: ZeroShotConfig, base: Mapping[str, Any],
                  cache: bool = True, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """The plan of ``cfg.search`` on the loaded model, and a record of the search: its curve (best objective after
    each evaluation), moves, evaluations, seconds (of the original search, also when cached), the objective's
    sample seeds and haystack documents. Cached as plan JSON on ``base`` (model, dtype, threads, weights, ...),
    the target, the search settings, the start plan, the objective's prompts and the code that scores them."""
    from ropelab.eval.ruler import needle_ppl
    from ropelab.rope.plan import RopePlan
    from ropelab.rope.registry import make_plan
    from ropelab.rope.search import coordinate_search
    from ropelab.runtime.hf import plan_applied

    search = cfg.search
    samples, haystack = objective_samples(cfg, tokenizer)
    start = make_plan(search.start, spec, cfg.target_length, **search.options)
    prompts = content_key([[s.task, s.length, s.seed, list(s.ids), list(s.answer_ids)] for s in samples], digits=64)
    settings = {**base, "kind": "search", "target_length": cfg.target_length,
                "search": {k: v for k, v in dataclasses.asdict(search).items() if k != "label"},
                "start": start.to_dict(), "prompts": prompts,
                "code": content_key([inspect.getsource(coordinate_search), inspect.getsource(needle_ppl)])}
    stored = cached(settings, cache)
    if stored is not None:
        plan = RopePlan.from_dict(stored["plan"])
    else:
        def objective(candidate: Any) -> float:
            with plan_applied(model, candidate):
                return needle_ppl.needle_perplexity(model, samples)

        plan = coordinate_search(objective, spec, cfg.target_length, budget=search.budget, start=search.start,
                                 values=search.values or None, progress=progress, **search.options)
        store(settings, {"plan": plan.to_dict()}, cache)
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
