"""The training rows and the order they are read in: a pure function of (step, micro batch, rank), so a resumed
run reads exactly the batches an uninterrupted run would, with nothing to skip."""

from __future__ import annotations

from typing import Any

import torch

from ropelab.train.config import DataConfig, TrainConfig


def sample_indices(step: int, micro: int, rank: int, n_blocks: int, cfg: TrainConfig, processes: int) -> list[int]:
    """Block indices of one micro batch: a seeded permutation per epoch, read in order, G samples per step.

    Optimizer step ``k`` reads samples ``k*G .. (k+1)*G - 1`` (G = global batch), each process its own slice of
    ``G / processes``, micro batch after micro batch. Sample ``s`` is block ``perm_e[s mod N]`` of epoch
    ``e = s // N``, with ``perm_e`` a permutation seeded by (seed, e): a new order every epoch.
    """
    per_process = cfg.global_batch // processes
    out = []
    for j in range(cfg.micro_batch):
        sample = step * cfg.global_batch + rank * per_process + micro * cfg.micro_batch + j
        epoch, offset = divmod(sample, n_blocks)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        out.append(int(torch.randperm(n_blocks, generator=gen)[offset]))
    return out


def training_blocks(tokenizer: Any, data: DataConfig, length: int,
                    rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token rows of ``length`` and which of their tokens the loss scores: packed text from the split's documents
    (:func:`ropelab.data.packed_sequences`; every token), or, with ``data.mix``, ``rows`` rows of that long-range
    mix (:func:`ropelab.train.mixture.mix_rows`, scored per :func:`ropelab.train.mixture.loss_mask`). # (N, T), (N, T) or None"""
    mask = None
    if data.mix is not None:
        from ropelab.train.mixture import loss_mask, mix_rows

        if rows is None:
            raise ValueError("a data.mix needs the number of rows to draw (steps x global_batch)")
        blocks, answers = mix_rows(data.mix, tokenizer, data.corpus, data.split, length, rows, data.max_docs)
        mask = loss_mask(data.mix, answers)
    else:
        from ropelab.data import packed_sequences

        blocks = packed_sequences(data.corpus, data.split, tokenizer, length, data.max_docs)
    if data.max_blocks is not None:
        blocks = blocks[: data.max_blocks]
        mask = None if mask is None else mask[: data.max_blocks]
    if len(blocks) == 0:
        raise ValueError(f"data.corpus {data.corpus!r} has fewer than {length} tokens in split {data.split!r}")
    return blocks, mask
