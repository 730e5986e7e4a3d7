"""The study's searched variant: per-pair factors found by :func:`ropelab.rope.search.coordinate_search` (LongRoPE2's
idea, Shang et al. 2025) against the pre-trained model, then fine-tuned like every other method.

Objective: the mean NLL of the answer tokens of held-out copy and recall rows at the target length (the tiny
model's analogue of LongRoPE2's needle-driven perplexity), with the plan applied zero-shot. The rows come from the
"validation" split, the reported results from "test": the search never sees what it is judged on. Each searched
plan is cached as JSON, keyed by the base model, scale and search settings, with its curve and cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ropelab.determinism import numerics_key, pinned_numerics
from ropelab.experiments.study.config import StudyConfig, Variant
from ropelab.storage import content_key

SEARCH_LABEL = "dprope_search"
OBJECTIVE_SPLIT = "validation"


def objective_rows(cfg: StudyConfig, tokenizer: Any, length: int):
    """``(ids, answers)`` of the objective: ``search.rows`` copy + recall rows of ``length`` (validation split)."""
    from ropelab.experiments.study.evaluate import held_out_rows

    tasks = [t for t in ("copy", "recall") if cfg.mix.shares.get(t, 0) > 0] or ["copy"]
    return held_out_rows(cfg, tokenizer, tasks, length, OBJECTIVE_SPLIT, cfg.search.seed, cfg.search.rows)


@pinned_numerics()
def search_plan(cfg: StudyConfig, base_dir: str | Path, scale: int, root: Path, progress: bool = True):
    """The searched plan for ``scale`` x L (cached JSON under ``root/search``); its ``details["search"]`` holds the
    curve, the moves, the evaluations and the seconds it took."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.eval.answers import answer_nll
    from ropelab.rope.plan import RopePlan
    from ropelab.rope.search import coordinate_search
    from ropelab.rope.spec import RopeSpec
    from ropelab.runtime.hf import plan_applied

    spec = RopeSpec.from_hf_config(Path(base_dir) / "config.json")
    key = content_key({"base": str(base_dir), "scale": scale, "search": dataclasses.asdict(cfg.search),
                       "mix": dataclasses.asdict(cfg.mix), "bins": cfg.bins, "numerics": numerics_key(), "version": 1})
    path = root / "search" / f"x{scale}-{key}.json"
    if path.is_file():
        return RopePlan.load(path)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    ids, answers = objective_rows(cfg, tokenizer, spec.original_length * scale)

    def objective(plan) -> float:
        with plan_applied(model, plan):
            return answer_nll(model, ids, answers)

    plan = coordinate_search(objective, spec, spec.original_length * scale, budget=cfg.search.budget,
                             start="dprope", bins=cfg.bins, progress=progress)
    plan.save(path)
    return plan


def resolve_searches(cfg: StudyConfig, grid: Sequence[Variant], base_dir: str | Path, root: Path,
                     progress: bool = True) -> tuple[list[Variant], dict[int, Any]]:
    """The grid with every ``dprope_search`` variant given its searched factors (as ``longrope`` options that
    :func:`ropelab.rope.registry.make_plan` rebuilds exactly), and ``{scale: searched plan}``."""
    out, plans = [], {}
    for variant in grid:
        if variant.label != SEARCH_LABEL:
            out.append(variant)
            continue
        plan = search_plan(cfg, base_dir, variant.scale, root, progress)
        plans[variant.scale] = plan
        options = (("attention_factor", float(plan.attention_factor)), ("bins", plan.bins),
                   ("factors", tuple(float(f) for f in plan.factors)))
        out.append(dataclasses.replace(variant, method=plan.method, options=options))
    return out, plans
