"""The memory-light next-token loss: LM head + cross-entropy a chunk of tokens at a time.

Full-vocabulary logits for a whole sequence (T x V floats: 8k x 32k x 4 bytes = 1 GiB per sequence) never exist:
the final hidden states go through the LM head and cross-entropy ``chunk_tokens`` tokens at a time, each chunk under
activation checkpointing, so only one chunk of logits lives at once, forward or backward. In float32 (no autocast)
the chunks go through torch's ``F.linear_cross_entropy`` (chunked by ``LinearCrossEntropyOptions``), which computes
the gradients in its forward instead of recomputing the logits in backward.

``benchmarks/bench_train.py loss`` (CPU, 1 thread, 2 shared cores, best of 2; N tokens, H hidden, V vocab):

=============================  ======================  ======================  ======================
forward + backward             checkpointed chunks      F.linear_cross_entropy   one chunk (reference)
=============================  ======================  ======================  ======================
N 2048, H 576, V 49152, c 1024  11.3-33 s, +675 MiB      9.9-10.4 s, +288 MiB     11.4-18 s, +1061 MiB
=============================  ======================  ======================  ======================

Same numbers: loss within 8e-8 and gradients within 1.3e-6 (relative to their largest value) of the checkpointed
chunks. Under autocast (bf16 on GPUs) the op ignores autocast and multiplies in float32: other numbers than
transformers' bf16 LM head, and an fp32 matmul where bf16 is cheaper, so there the checkpointed chunks stay. One
chunk (``chunk_tokens`` 0 or >= N: the tiny pre-training) stays plain: nothing to save.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint


def _chunk_ce(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()  # (n, V): only this chunk's logits exist
    return F.cross_entropy(logits, labels, reduction="none", ignore_index=-100)  # (n,)


def chunked_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int = 1024,
                    reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``labels`` without full-vocabulary logits for all tokens.

    Args:
        hidden: final hidden states, already shifted (position t predicts ``labels[t]``). # (B, T, H)
        weight: LM-head weight. # (V, H)
        labels: next-token ids, -100 ignored. # (B, T)
        chunk_tokens: tokens per chunk (0: everything at once). Under autograd each chunk is checkpointed, so its
            logits are recomputed in backward instead of kept.
        reduction: "mean" over non-ignored tokens, "sum", or "none" (per-token losses, shape (B, T)).
    """
    shape = labels.shape
    flat_h, flat_y = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)  # (N, H), (N,)
    n = flat_y.numel()
    step = chunk_tokens if chunk_tokens > 0 else n
    count = (flat_y != -100).sum().clamp(min=1)
    if step < n and _torch_chunked(flat_h, weight):
        options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=step)
        out = F.linear_cross_entropy(flat_h, weight, flat_y, reduction="none" if reduction == "none" else "sum",
                                     ignore_index=-100, options=options)
        if reduction == "none":
            return out.reshape(shape)
        return out if reduction == "sum" else out / count
    pieces = []
    for start in range(0, n, step):
        h, y = flat_h[start:start + step], flat_y[start:start + step]
        if torch.is_grad_enabled() and step < n:
            pieces.append(_checkpoint(_chunk_ce, h, weight, y, use_reentrant=False))
        else:
            pieces.append(_chunk_ce(h, weight, y))
    losses = torch.cat(pieces)  # (N,)
    if reduction == "none":
        return losses.reshape(shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / count


def _torch_chunked(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``F.linear_cross_entropy`` gives this loss's numbers: float32 in, no autocast (see the module doc)."""
    return (hidden.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled(hidden.device.type))


class ChunkedCausalLM(torch.nn.Module):
    """A causal LM whose forward returns the mean next-token loss, computed by :func:`chunked_lm_loss`.

    Wrapping the whole model (not calling its parts from outside) keeps DDP/FSDP hooks on the one forward.
    """

    def __init__(self, model: torch.nn.Module, chunk_tokens: int = 1024):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids: torch.Tensor, reduction: str = "mean",
                loss_mask: torch.Tensor | None = None) -> torch.Tensor:  # (B, T), (B, T) bool
        """``loss_mask``: which tokens are predicted and scored (None: all); the mean is over those."""
        body = getattr(self.model, self.model.base_model_prefix)
        hidden = body(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, H)
        head = self.model.get_output_embeddings()
        labels = input_ids[:, 1:]  # (B, T - 1)
        if loss_mask is not None:
            labels = labels.masked_fill(~loss_mask[:, 1:], -100)
        return chunked_lm_loss(hidden[:, :-1], head.weight, labels, self.chunk_tokens, reduction)


@torch.no_grad()
def position_losses(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int = 4, chunk_tokens: int = 1024,
                    progress: bool = False) -> torch.Tensor:
    """Mean next-token loss at each position over ``blocks`` (no sliding window): where a model breaks past L.

    Args:
        blocks: token ids. # (N, T)
    Returns:
        loss of predicting token t+1 from tokens 0..t, averaged over blocks. # (T - 1,)
    """
    from tqdm.auto import tqdm

    wrapper = ChunkedCausalLM(model, chunk_tokens).eval()
    device = next(model.parameters()).device
    total = torch.zeros(blocks.shape[1] - 1, dtype=torch.float64)
    for start in tqdm(range(0, len(blocks), batch_size), desc="per-position loss", disable=not progress):
        batch = blocks[start:start + batch_size].to(device)
        total += wrapper(batch, reduction="none").double().sum(0).cpu()
    return total / len(blocks)
