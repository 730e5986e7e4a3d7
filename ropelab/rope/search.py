"""Search per-pair RoPE factors against a measured objective, starting from a registry plan.

In the spirit of LongRoPE2 (Shang et al. 2025), which searches per-pair factors against a needle-driven
perplexity: here a greedy coordinate search. Pairs are visited in order of how close DPRoPE's two candidates are
(smallest |D_extrap - D_interp| first: where the angle distributions decide least), each tried at every value of
``values`` (default 1, sqrt(s), s); a move is kept when it lowers ``objective(plan)``. Sweeps repeat until one
changes nothing or the budget of objective evaluations is spent.

The objective is any callable ``objective(plan) -> float`` (lower is better), e.g. a perplexity of a model with
the plan applied (``ropelab.runtime.hf.plan_applied``). The result is a ``longrope`` plan (rebuildable with
``make_plan`` from its options) whose ``details["search"]`` records the curve and the cost.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ropelab.rope.plan import RopePlan
from ropelab.rope.registry import make_plan
from ropelab.rope.spec import RopeSpec


def coordinate_search(objective: Callable[[RopePlan], float], spec: RopeSpec, target_length: int, *,
                      budget: int = 32, start: str = "dprope", values: Sequence[float] | None = None,
                      progress: bool = True, **start_options: Any) -> RopePlan:
    """Greedy per-pair search from ``make_plan(start, spec, target_length, **start_options)``.

    Args:
        objective: plan -> number to minimise (called ``budget`` times at most, the start included).
        budget: objective evaluations allowed (>= 1).
        start: registry method whose factors and attention factor the search starts from.
        values: factors each pair may take, within [1, s] (default 1, sqrt(s), s).
        progress: show a tqdm bar.
    """
    from tqdm.auto import tqdm

    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive integer (objective evaluations), got {budget!r}")
    first = make_plan(start, spec, target_length, **start_options)
    s = first.scale
    values = [1.0, math.sqrt(s), s] if values is None else [float(v) for v in values]
    bad = [v for v in values if not 1.0 <= v <= s * (1 + 1e-12)]
    if bad or not values:
        raise ValueError(f"values must be factors in [1, s = {s:g}], got {values!r}")
    details = first.details
    if "d_extrap" in details and "d_interp" in details:
        order = np.argsort(np.abs(np.array(details["d_extrap"]) - np.array(details["d_interp"])), kind="stable")
    else:
        order = np.arange(spec.n_pairs)

    def plan_of(factors: np.ndarray) -> RopePlan:
        return make_plan("longrope", spec, target_length, bins=first.bins, metric=first.metric,
                         precision=first.precision, factors=factors.tolist(), attention_factor=first.attention_factor)

    began = time.perf_counter()
    best_factors = np.asarray(first.factors, dtype=np.float64)
    best = plan_of(best_factors)
    best_value = float(objective(best))
    curve, moves = [best_value], []
    bar = tqdm(total=budget, desc="search", unit="eval", disable=not progress, leave=False)
    bar.update(1)
    changed = True
    while changed and len(curve) < budget:
        changed = False
        for pair in order:
            for value in values:
                if len(curve) >= budget:
                    break
                if math.isclose(value, best_factors[pair], rel_tol=1e-12):
                    continue
                trial = best_factors.copy()
                trial[pair] = value
                plan = plan_of(trial)
                score = float(objective(plan))
                if score < best_value:
                    best_factors, best, best_value, changed = trial, plan, score, True
                    moves.append({"pair": int(pair), "factor": value, "objective": score, "evaluation": len(curve)})
                curve.append(best_value)
                bar.update(1)
    bar.close()
    search = {"start": start, "start_options": dict(start_options), "start_objective": curve[0],
              "objective": best_value, "curve": curve, "moves": moves, "evaluations": len(curve),
              "budget": budget, "seconds": time.perf_counter() - began, "values": values}
    return dataclasses.replace(best, details={**best.details, "search": search})
