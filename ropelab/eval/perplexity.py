"""Perplexity at a given context length, with bounded memory: the sliding-window and truncated protocols.

Protocols (each document on its own; a document with fewer than ``length`` tokens is skipped and counted):

* ``sliding`` -- the strided sliding window of Press et al. (2022), used for PG-19 by PI (Chen et al., 2023,
  sec. 3.2) and YaRN (Peng et al., 2024, sec. 4.3) with stride S = 256, and the loop of the transformers guide
  "Perplexity of fixed-length models": windows start at 0, S, 2S, ...; a window ends at ``min(start + length,
  n)``; it scores the tokens after the previous window's end (never its own first token, which has no context
  in it), so with ``stride < length`` every token but the document's first is scored exactly once, with up to
  ``length`` tokens of context. The last window may be shorter; the loop stops at the document's end.
* ``truncated`` -- one window over the first ``length`` tokens of each document; tokens 1 .. length-1 scored.

Perplexity is exp(total NLL / total scored tokens) over all documents (token-weighted, as the guide's
concatenated corpus). No BOS token is added: windows are token ids exactly as given.

Memory: the decoder body (``model.get_decoder()``) runs on a batch of windows; the LM head is applied only to
the hidden states of scored positions, ``chunk_tokens`` at a time, so full-vocabulary logits never exist for a
whole window. Per-token NLL comes from ``cross_entropy`` on float32 logits and is summed in float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PROTOCOLS = ("sliding", "truncated")
DEFAULT_STRIDE = 256  # PI / YaRN
# Tokens per decoder-body batch on an accelerator (windows of one length are stacked up to this). On CPU each window
# runs alone: stacking saves nothing there and pushes activations out of cache (SmolLM2, 2 cores, five 2k windows:
# 32.8 s one at a time vs 38.0 s four to a batch).
DEFAULT_BATCH_TOKENS = 8192
DEFAULT_LOGITS_ELEMENTS = 1 << 24  # at most this many logits (64 MiB in fp32) exist at once


@dataclass(frozen=True)
class Window:
    """Tokens ``[begin, end)`` of document ``doc`` go in; the targets ``[first, end)`` are scored."""

    doc: int
    begin: int
    end: int
    first: int


@dataclass
class PerplexityResult:
    """Perplexity of one protocol at one length over a set of documents."""

    length: int
    protocol: str
    stride: int | None
    ppl: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    n_tokens: int  # scored tokens
    n_docs: int  # documents evaluated
    n_skipped: int  # documents shorter than ``length``
    seconds: float
    doc_ppl: dict[str, float] = field(default_factory=dict)  # per document

    def row(self, **extra: Any) -> dict[str, Any]:
        """A flat row for CSV/JSON (without the per-document perplexities)."""
        row = {k: v for k, v in asdict(self).items() if k != "doc_ppl"}
        return {**extra, **row}


def windows(n_tokens: int, length: int, protocol: str = "sliding", stride: int = DEFAULT_STRIDE,
            doc: int = 0) -> list[Window]:
    """The windows of one document of ``n_tokens`` tokens (none when it is shorter than ``length``)."""
    check_protocol(protocol, length, stride)
    if n_tokens < length:
        return []
    if protocol == "truncated":
        return [Window(doc, 0, length, 1)]
    out, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + length, n_tokens)
        out.append(Window(doc, begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
    return out


def check_protocol(protocol: str, length: int, stride: int | None) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown perplexity protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    if length < 2:
        raise ValueError(f"perplexity length must be at least 2 tokens, got {length}")
    if protocol == "sliding" and (stride is None or not 1 <= stride <= length):
        raise ValueError(f"stride must be between 1 and the length {length}, got {stride}")


def perplexity(model: Any, documents: Sequence[tuple[str, Sequence[int]]], length: int, *,
               protocol: str = "sliding", stride: int = DEFAULT_STRIDE, max_docs: int | None = None,
               batch_tokens: int | None = None, logits_elements: int = DEFAULT_LOGITS_ELEMENTS,
               progress: bool = True) -> PerplexityResult:
    """Perplexity of ``model`` on token-id ``documents`` ``[(doc_id, ids)]`` at context ``length``.

    Args:
        protocol: ``sliding`` (stride ``stride``) or ``truncated`` (first ``length`` tokens); see the module doc.
        max_docs: evaluate at most this many of the documents that are long enough (in the given order).
        batch_tokens: windows of one length are batched up to this many tokens per forward pass (default
            :func:`default_batch_tokens` of the model's device: one window at a time on CPU).
        logits_elements: bound on the number of logits computed at once (memory).

    Raises ValueError when there is no text at all. A length past the model's configured window is allowed, with
    a warning naming both numbers. When every document is too short the result has ``ppl`` NaN.
    """
    from tqdm.auto import tqdm

    from ropelab.eval.prompts import warn_beyond_window

    check_protocol(protocol, length, stride)
    if max_docs is not None and max_docs < 1:
        raise ValueError(f"max_docs must be a positive integer or None, got {max_docs!r}")
    docs = [(str(doc_id), np.asarray(ids, dtype=np.int64)) for doc_id, ids in documents]
    if not docs or sum(len(ids) for _, ids in docs) == 0:
        raise ValueError("no text to evaluate: the documents are empty")
    warn_beyond_window(model, [length], "perplexity")
    long_enough = [i for i, (_, ids) in enumerate(docs) if len(ids) >= length]
    chosen = long_enough[:max_docs] if max_docs is not None else long_enough
    plan = [w for i in chosen for w in windows(len(docs[i][1]), length, protocol, stride, doc=i)]
    nll = np.zeros(len(docs), dtype=np.float64)
    count = np.zeros(len(docs), dtype=np.int64)
    if batch_tokens is None:
        batch_tokens = default_batch_tokens(next(model.parameters()).device)
    start = time.perf_counter()
    model.eval()
    bar = tqdm(total=len(plan), desc=f"ppl {protocol} {length}", unit="win", disable=not progress, leave=False)
    for batch in _batches(plan, batch_tokens):
        sums, ns = _score_batch(model, [docs[w.doc][1] for w in batch], batch, logits_elements)
        for w, s, n in zip(batch, sums, ns):
            nll[w.doc] += s
            count[w.doc] += n
        bar.update(len(batch))
    bar.close()
    total, n_tokens = float(nll.sum()), int(count.sum())
    mean = total / n_tokens if n_tokens else float("nan")
    return PerplexityResult(
        length=length, protocol=protocol, stride=stride if protocol == "sliding" else None,
        ppl=math.exp(mean) if n_tokens else float("nan"), nll=mean, n_tokens=n_tokens, n_docs=len(chosen),
        n_skipped=len(docs) - len(long_enough), seconds=time.perf_counter() - start,
        doc_ppl={docs[i][0]: math.exp(nll[i] / count[i]) for i in chosen if count[i]},
    )


def perplexity_at_lengths(model: Any, documents: Sequence[tuple[str, Sequence[int]]], lengths: Iterable[int],
                          **kwargs: Any) -> list[PerplexityResult]:
    """:func:`perplexity` at each of ``lengths`` (same documents, same options)."""
    return [perplexity(model, documents, int(length), **kwargs) for length in lengths]


def default_batch_tokens(device: torch.device | str) -> int:
    """Tokens per forward pass: :data:`DEFAULT_BATCH_TOKENS` on an accelerator, one window at a time on CPU."""
    return 1 if torch.device(device).type == "cpu" else DEFAULT_BATCH_TOKENS


def _batches(plan: Sequence[Window], batch_tokens: int) -> Iterable[list[Window]]:
    """Consecutive windows of equal size, at most ``batch_tokens`` tokens (and at least one window) per batch."""
    batch: list[Window] = []
    for w in plan:
        size = w.end - w.begin
        if batch and (size != batch[0].end - batch[0].begin or (len(batch) + 1) * size > batch_tokens):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


@torch.inference_mode()
def _score_batch(model: Any, token_arrays: Sequence[np.ndarray], batch: Sequence[Window],
                 logits_elements: int) -> tuple[list[float], list[int]]:
    """Summed NLL (float64) and number of scored tokens of each window of a batch of equal-size windows."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(np.stack([a[w.begin:w.end] for a, w in zip(token_arrays, batch)]), device=device)  # (B, T)
    hidden = model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state  # (B, T, H)
    # Position j of a window predicts token j + 1: the hidden states of targets [first, end) are [first-1, end-1).
    rows = [hidden[b, w.first - 1 - w.begin: w.end - 1 - w.begin] for b, w in enumerate(batch)]  # (n_b, H) each
    targets = [ids[b, w.first - w.begin: w.end - w.begin] for b, w in enumerate(batch)]  # (n_b,) each
    flat_h, flat_t = torch.cat(rows), torch.cat(targets)  # (M, H), (M,)
    per_token = token_nll(model, flat_h, flat_t, logits_elements)  # (M,) float64
    sizes = [len(t) for t in targets]
    return [float(part.sum()) for part in torch.split(per_token, sizes)], sizes


def token_nll(model: Any, hidden: torch.Tensor, targets: torch.Tensor,
              logits_elements: int = DEFAULT_LOGITS_ELEMENTS) -> torch.Tensor:
    """Negative log-likelihood of ``targets`` (M,) given final hidden states ``hidden`` (M, H), as float64 (M,).

    The LM head runs on chunks of at most ``logits_elements // vocab`` positions; Gemma-style final logit
    soft-capping is applied when the config has it.
    """
    head = model.get_output_embeddings()
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    softcap = getattr(config, "final_logit_softcapping", None)
    chunk = max(1, logits_elements // head.weight.shape[0])
    out = torch.empty(len(targets), dtype=torch.float64, device=hidden.device)
    for lo in range(0, len(targets), chunk):
        logits = head(hidden[lo:lo + chunk]).float()  # (c, V)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        out[lo:lo + chunk] = F.cross_entropy(logits, targets[lo:lo + chunk], reduction="none").double()
    return out


@torch.no_grad()
def guide_perplexity(model: Any, ids: Sequence[int], length: int, stride: int = DEFAULT_STRIDE,
                     progress: bool = False) -> float:
    """Reference: the strided loop of the transformers guide "Perplexity of fixed-length models", re-implemented.

    One window at a time through the full model with ``labels`` (context targets set to -100) and the model's
    default ``use_cache``, as the guide calls it, so the model computes full-vocabulary logits and its own mean
    loss. Each window's mean loss is weighted by the number of labels it averaged over,
    ``(labels[:, 1:] != -100).sum()`` (the guide subtracts the batch size from the valid-label count, which is
    exact for the first window only). Used by the tests and the benchmark to check :func:`perplexity`; not meant
    for long inputs (it holds ``length x vocab`` logits).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)[None]  # (1, n)
    n = ids.shape[1]
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in tqdm(range(0, n, stride), desc="guide loop", disable=not progress, leave=False):
        end = min(begin + length, n)
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        labels = input_ids.clone()
        labels[:, :-trg_len] = -100
        loss = model(input_ids=input_ids, labels=labels).loss
        counted = int((labels[:, 1:] != -100).sum())
        nll_sum += float(loss) * counted
        n_tokens += counted
        prev_end = end
        if end == n:
            break
    return math.exp(nll_sum / n_tokens)
