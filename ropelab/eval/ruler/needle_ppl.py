"""Needle-driven perplexity (LongRoPE2, Shang et al. 2025, sec. 3.3): perplexity over the answer tokens only.

Each NIAH sample's prompt (which ends in RULER's answer prefix, "... mentioned in the provided text is") is
followed by its answer, " v1, v2, ..." (:func:`ropelab.eval.ruler.tasks.answer_text`); every label but the answer's is -100, so the score measures how well the
model retrieves the needles, not how well it models the haystack. One forward per sample and no generation:
cheap enough to serve as a search objective (lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ropelab.eval.ruler.tasks import TASKS, RulerSample


def needle_labels(prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> list[int]:
    """Labels of ``prompt_ids + answer_ids``: -100 on the prompt, the token ids on the answer."""
    return [-100] * len(prompt_ids) + list(answer_ids)


def needle_perplexity(model: Any, samples: Sequence[RulerSample]) -> float:
    """exp(mean negative log-likelihood of the answer tokens), pooled over the answer tokens of all ``samples``.

    ``samples``: NIAH samples of :func:`ropelab.eval.ruler.generate_samples` (``niah_*`` tasks); each carries
    its answer's token ids (:func:`ropelab.eval.ruler.tasks.answer_text`).
    """
    from tqdm.auto import tqdm

    bad = sorted({s.task for s in samples if TASKS[s.task].family != "niah"})
    if not samples or bad:
        raise ValueError(f"needle perplexity needs NIAH samples, got {', '.join(bad) or 'none'}")
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for sample in tqdm(samples, desc="needle ppl", leave=False, disable=len(samples) < 4):
            answer = sample.answer_ids
            ids = torch.tensor([[*sample.ids, *answer]], device=model.device)  # (1, T + A)
            labels = torch.tensor(needle_labels(sample.ids, answer), device=model.device)  # (T + A,)
            # logits of the last A + 1 positions only: those predicting the answer tokens (and one past them)
            logits = model(input_ids=ids, logits_to_keep=len(answer) + 1).logits[0, :-1].float()  # (A, V)
            total += float(torch.nn.functional.cross_entropy(logits, labels[-len(answer):], reduction="sum"))
            count += len(answer)
    return math.exp(total / count)
