"""Truncated perplexity at every prefix length of a document from one forward pass.

For a causal model whose RoPE does not depend on the sequence length (every static plan), the loss of token t
depends on tokens < t only, so one pass over the longest length gives the truncated perplexity (the first n tokens
of a document, :func:`ropelab.eval.perplexity.perplexity` with one window) at every shorter n as well:
``ppl(n) = exp(sum_{t<n} nll_t / (n - 1))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def prefix_nll(model: Any, ids: Sequence[int], chunk_tokens: int | None = None) -> np.ndarray:
    """NLL (float64) of tokens ``ids[1:]`` given everything before them, shape (n - 1,).

    One forward pass, or with ``chunk_tokens`` the same causal pass ``chunk_tokens`` tokens at a time through the
    model's KV cache (chunked prefill): every token still attends to all tokens before it, so the NLLs are the
    one-pass ones up to rounding, but no (n, n) attention mask or score matrix exists. That is what makes
    sliding-window models affordable at long lengths (Gemma 3: five of six layers keep 512 tokens of cache, where
    one pass would mask a full n x n product in each).
    """
    import torch

    from ropelab.eval.perplexity import token_nll

    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64)[None], device=device)  # (1, n)
    n = x.shape[1]
    size = n if chunk_tokens is None else int(chunk_tokens)
    decoder = model.get_decoder()
    out, cache = [], None
    with torch.inference_mode():
        for begin in range(0, n, size):
            piece = decoder(input_ids=x[:, begin:begin + size], cache=cache, use_cache=chunk_tokens is not None)
            cache = piece.cache
            hidden = piece.last_hidden_state[0]  # (c, H): predicts tokens begin + 1 .. begin + c
            targets = x[0, begin + 1:begin + size + 1]  # (c,) or (c - 1,) in the last chunk
            out.append(token_nll(model, hidden[: len(targets)], targets).cpu().numpy())
    return np.concatenate(out)  # (n - 1,)


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
