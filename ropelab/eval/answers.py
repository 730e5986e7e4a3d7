"""Teacher-forced answer accuracy: how many answers of a row set a model predicts exactly, in one forward pass.

The rows of :mod:`ropelab.train.mixture` mark their answer tokens (a copied token, a recall query's digits, a passkey)
with group numbers. A group is right when the model's argmax at every one of its tokens is the token itself, given
everything before it (teacher forcing: what greedy decoding would produce for that answer, without generating).
One forward pass per batch of rows scores every answer at once, so retrieval can be measured at every length of a
study for the cost of a perplexity evaluation.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def answer_accuracy(model: Any, ids: torch.Tensor, answers: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """``{"accuracy": share of answer groups right, "token_accuracy": share of answer tokens right, "answers": n,
    "by_position": [share right of the k-th token of every answer with more than k tokens, k = 0, 1, ...]}``
    (``by_position`` tells which token of an answer fails: e.g. a first digit whose cue is shared by every pair).

    Args:
        ids: token rows. # (N, T)
        answers: 0 for unscored tokens, g > 0 for the tokens of answer g of that row. # (N, T)
    """
    if ids.shape != answers.shape:
        raise ValueError(f"ids {tuple(ids.shape)} and answers {tuple(answers.shape)} must have the same shape")
    device = next(model.parameters()).device
    groups_right = groups = tokens_right = tokens = 0
    seen_at = right_at = torch.zeros(0, dtype=torch.long)  # per token index k within an answer
    for start in range(0, len(ids), batch_size):
        batch, marks = ids[start:start + batch_size].to(device), answers[start:start + batch_size, 1:]  # (B, T)
        logits = model(batch).logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
        hit = (logits.argmax(-1) == batch[:, 1:]).cpu()  # (B, T-1)
        scored = marks > 0
        tokens += int(scored.sum())
        tokens_right += int((hit & scored).sum())
        for row_hit, row_marks in zip(hit, marks):
            labels = row_marks[row_marks > 0]  # (n,) in row order
            if len(labels) == 0:
                continue
            right = row_hit[row_marks > 0].long()  # (n,)
            size = int(labels.max()) + 1
            counts = torch.bincount(labels, minlength=size)  # (size,)
            wrong = counts - torch.zeros(size, dtype=torch.long).index_add_(0, labels, right)
            groups += int((counts > 0).sum())
            groups_right += int(((counts > 0) & (wrong == 0)).sum())
            order = torch.argsort(labels, stable=True)  # tokens grouped by answer, row order kept inside each
            k = torch.arange(len(labels)) - (counts.cumsum(0) - counts)[labels[order]]  # (n,) index within answer
            width = max(len(seen_at), int(k.max()) + 1)
            seen_at = torch.nn.functional.pad(seen_at, (0, width - len(seen_at))) + torch.bincount(k, minlength=width)
            right_at = torch.nn.functional.pad(right_at, (0, width - len(right_at))) + torch.bincount(
                k, weights=right[order].double(), minlength=width).long()
    if groups == 0:
        raise ValueError("the rows hold no answer tokens (every answers entry is 0)")
    return {"accuracy": groups_right / groups, "token_accuracy": tokens_right / tokens, "answers": groups,
            "by_position": (right_at / seen_at).tolist()}


@torch.no_grad()
def answer_nll(model: Any, ids: torch.Tensor, answers: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token NLL of the answer tokens (``answers > 0``) of ``ids``: a needle-driven loss (LongRoPE2's
    objective, Shang et al. 2025), lower is better. # ids, answers: (N, T)"""
    if ids.shape != answers.shape:
        raise ValueError(f"ids {tuple(ids.shape)} and answers {tuple(answers.shape)} must have the same shape")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch, marks = ids[start:start + batch_size].to(device), answers[start:start + batch_size, 1:].to(device)
        logits = model(batch).logits[:, :-1].float()  # (B, T-1, V)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")  # (B, T-1)
        total += float(nll[marks > 0].double().sum())
        count += int((marks > 0).sum())
    if count == 0:
        raise ValueError("the rows hold no answer tokens (every answers entry is 0)")
    return total / count
