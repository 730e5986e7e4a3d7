"""Teacher-forced answer accuracy: how many answers of a row set a model predicts exactly, in one forward pass.

The rows of :mod:`ropelab.mixture` mark their answer tokens (a copied token, a recall query's digits, a passkey)
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
    (``by_position`` tells which token of an answer fails: e.g. a recall value's first digit, after a ``=`` that
    every pair shares).

    Args:
        ids: token rows. # (N, T)
        answers: 0 for unscored tokens, g > 0 for the tokens of answer g of that row. # (N, T)
    """
    if ids.shape != answers.shape:
        raise ValueError(f"ids {tuple(ids.shape)} and answers {tuple(answers.shape)} must have the same shape")
    device = next(model.parameters()).device
    groups_right = groups = tokens_right = tokens = 0
    by_position: list[list[int]] = []  # [right, seen] per token index within an answer
    for start in range(0, len(ids), batch_size):
        batch, marks = ids[start:start + batch_size].to(device), answers[start:start + batch_size, 1:]  # (B, T)
        logits = model(batch).logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
        hit = (logits.argmax(-1) == batch[:, 1:]).cpu()  # (B, T-1)
        scored = marks > 0
        tokens += int(scored.sum())
        tokens_right += int((hit & scored).sum())
        for row_hit, row_marks in zip(hit, marks):
            labels = row_marks[row_marks > 0]
            if len(labels) == 0:
                continue
            size = int(labels.max()) + 1
            wrong = torch.zeros(size, dtype=torch.long).index_add_(0, labels, (~row_hit[row_marks > 0]).long())
            present = torch.bincount(labels, minlength=size) > 0
            groups += int(present.sum())
            groups_right += int((present & (wrong == 0)).sum())
            row_right = row_hit[row_marks > 0]  # (n,) in row order
            for g in labels.unique():
                for k, right in enumerate(row_right[labels == g].tolist()):
                    if k == len(by_position):
                        by_position.append([0, 0])
                    by_position[k][0] += int(right)
                    by_position[k][1] += 1
    if groups == 0:
        raise ValueError("the rows hold no answer tokens (every answers entry is 0)")
    return {"accuracy": groups_right / groups, "token_accuracy": tokens_right / tokens, "answers": groups,
            "by_position": [right / seen for right, seen in by_position]}


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
