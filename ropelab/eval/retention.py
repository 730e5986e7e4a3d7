"""Short-context retention: perplexity inside the original window before and after an extension.

The DPRoPE paper (Wu et al., 2024, sec. 4.4, Table 6) checks that extension does not hurt short-text tasks
(TruthfulQA, HellaSwag, MMLU, ARC-c). The form that runs on a CPU: the same documents, the same tokens, scored
at lengths no longer than the pre-training window L, by the original model and by the model with each plan
applied (zero-shot). A ratio ppl_extended / ppl_original near 1 means the plan kept short-context behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ropelab.eval.perplexity import DEFAULT_STRIDE, perplexity
from ropelab.rope.plan import RopePlan
from ropelab.runtime.hf import model_spec, plan_applied


def retention(model: Any, documents: Sequence[tuple[str, Sequence[int]]], plans: Sequence[RopePlan], *,
              lengths: Sequence[int] | None = None, protocol: str = "truncated", stride: int = DEFAULT_STRIDE,
              max_docs: int | None = None, progress: bool = True, **kwargs: Any) -> list[dict[str, Any]]:
    """Perplexity of the original model and of each plan at ``lengths`` (default: the window L itself).

    Returns one row per (method, length) -- the original model as method ``none`` first -- with ``ppl``,
    ``ppl_original`` and ``ratio = ppl / ppl_original``. Raises ValueError for a length past the window.
    """
    window = model_spec(model).original_length
    lengths = [int(n) for n in (lengths or [window])]
    past = [n for n in lengths if n > window]
    if past:
        raise ValueError(f"retention is measured inside the original window of {window} tokens; length {past[0]} "
                         "is past it (use `ropelab eval ppl` for longer lengths)")
    options = dict(protocol=protocol, stride=stride, max_docs=max_docs, progress=progress, **kwargs)
    rows: list[dict[str, Any]] = []
    baseline = {}
    for length in lengths:
        result = perplexity(model, documents, length, **options)
        baseline[length] = result.ppl
        rows.append(result.row(method="none", target_length=window, ppl_original=result.ppl, ratio=1.0))
    for plan in plans:
        with plan_applied(model, plan):
            for length in lengths:
                result = perplexity(model, documents, length, **options)
                ratio = result.ppl / baseline[length] if baseline[length] > 0 else math.nan
                rows.append(result.row(method=plan.method, target_length=plan.target_length,
                                       ppl_original=baseline[length], ratio=ratio))
    return rows
