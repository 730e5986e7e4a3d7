"""Rotary-angle distributions (DPRoPE, Wu et al. 2024, sec. 3.1).

Pair i at position m is rotated by m*theta_i. Reduced mod 2*pi and cut into ``bins`` equal bins, the angles
seen at positions 0 .. n-1 form the distribution P^i (bin counts / n).

Exactness: angles are reduced in 64-bit fixed point. theta_i / 2pi is written once as an integer number of
2^-64 turns (from the float64 theta_i and 60 digits of pi), so m * delta mod 2^64 is an exact integer product
that wraps at one full turn. No float rounding touches the reduction at any length; float64 ``m*theta % 2pi``
by contrast loses ~m*1e-16 rad and float32 (the authors' release) is visibly wrong past ~1e5 positions.
"""

from __future__ import annotations

import math

import numpy as np

from ropelab.rope.spec import check_positive_int, check_precision

# Smallest normal float16: the authors' release starts every bin there so that KL stays finite.
SMOOTHING = float(np.finfo(np.float16).tiny)  # 2^-14, as torch.finfo(torch.float16).tiny

# 2^192 / 2pi as an integer (from 60 digits of pi): turns = theta * 2^64 / 2pi in exact integer arithmetic.
_INV_TWO_PI_Q192 = (1 << 192) * 10**60 // 6283185307179586476925286766559005768394338798750211641949889
_CHUNK = 1 << 14  # positions per block when binning each position: keeps the uint64 work in cache
_BY_POSITION = 1 << 15  # up to this length binning each position beats sorting blocks (per-pair overhead)


def check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def turns_fixed_point(inv_freq: np.ndarray) -> np.ndarray:
    """theta_i / 2pi in units of 2^-64 turn, rounded to nearest; shape (P,) uint64."""
    out = []
    for theta in np.asarray(inv_freq, np.float64).tolist():
        num, den = theta.as_integer_ratio()  # exact: den is a power of two
        out.append(((num * _INV_TWO_PI_Q192 // den + (1 << 127)) >> 128) % (1 << 64))
    return np.array(out, dtype=np.uint64)


def angle_counts(inv_freq: np.ndarray, n: int, bins: int = 360) -> np.ndarray:
    """Exact bin counts of (m*theta_i mod 2pi) for m = 0 .. n-1; shape (P, bins) int64.

    Short lengths bin every position. Longer ones are cut into blocks of B ~ sqrt(n * bins) positions: block j is
    block 0 turned by j*B*theta_i, so with block 0's turns sorted once per pair, each block's count below each bin
    edge is a binary search. A pair then costs ~ 2 sqrt(n * bins) log B operations instead of n (a 1M-token
    histogram of LLaMA2's 64 pairs: 0.1 s on one thread, 0.7 s binning every position), with identical counts.
    """
    n = check_positive_int("length", n)
    bins = check_bins(bins)
    delta = turns_fixed_point(inv_freq)  # (P,)
    if n <= _BY_POSITION:
        return _counts_by_position(delta, 0, n, bins)
    block = math.isqrt(n * bins)
    n_blocks = n // block
    return _counts_by_block(delta, block, n_blocks, bins) + _counts_by_position(delta, n_blocks * block, n, bins)


def bin_of(turns: np.ndarray, bins: int) -> np.ndarray:
    """floor(frac * bins) for turns (any shape, uint64, 2^-64 turn units); int64, the same shape.

    The top 53 bits of a turn convert to float64 without rounding, so the bin is exact except within 2^-52 of a
    bin edge, where the float product rounds (the definition every count here follows).
    """
    return ((turns >> np.uint64(11)).astype(np.float64) * (bins / 2.0**53)).astype(np.int64)


def bin_edges(bins: int) -> np.ndarray:
    """Smallest turn (2^-64 units) of each bin 1 .. bins-1 under :func:`bin_of`, shape (bins-1,) uint64.

    ``bin_of`` is monotone in the turn, so each bin starts at one integer: next to ceil(k 2^53 / bins) in units of
    2^11, since the float product errs by less than one such unit.
    """
    bins = check_bins(bins)
    guess = np.array([-(-(k << 53) // bins) for k in range(1, bins)], dtype=np.int64)  # (bins-1,)
    window = np.clip(guess[:, None] + np.arange(-3, 4), 0, (1 << 53) - 1).astype(np.uint64)  # (bins-1, 7)
    binned = bin_of(window << np.uint64(11), bins)
    k = np.arange(1, bins)
    if not ((binned[:, 0] < k) & (binned[:, -1] >= k)).all():
        raise ValueError(f"bins={bins} is too many for 53-bit turns; allowed: up to 2^40")
    return window[np.arange(bins - 1), np.argmax(binned >= k[:, None], axis=1)] << np.uint64(11)


def _counts_by_position(delta: np.ndarray, start: int, stop: int, bins: int) -> np.ndarray:
    """Counts of positions start .. stop-1, each binned by :func:`bin_of`; (P, bins) int64."""
    n_pairs = delta.size
    offsets = (np.arange(n_pairs, dtype=np.int64) * bins)[:, None]  # (P, 1)
    counts = np.zeros(n_pairs * bins, dtype=np.int64)
    for first in range(start, stop, _CHUNK):
        m = np.arange(first, min(first + _CHUNK, stop), dtype=np.uint64)[None, :]  # (1, M)
        with np.errstate(over="ignore"):  # the uint64 product wraps mod 2^64: exactly at one full turn
            turns = delta[:, None] * m  # (P, M)
        counts += np.bincount((bin_of(turns, bins) + offsets).ravel(), minlength=n_pairs * bins)
    return counts.reshape(n_pairs, bins)


def _counts_by_block(delta: np.ndarray, block: int, n_blocks: int, bins: int) -> np.ndarray:
    """Counts of positions 0 .. n_blocks*block - 1 from block 0's sorted turns; (P, bins) int64.

    Position j*block + r turns by o_j + t_r (mod 2^64), o_j = j*block*delta, t_r = r*delta. It lies below edge
    e iff t_r is in the cyclic interval [-o_j, -o_j + e): a difference of two searches, plus the block size where
    the interval wraps past 2^64.
    """
    edges = bin_edges(bins)  # (K,) K = bins-1
    r = np.arange(block, dtype=np.uint64)
    first = np.arange(n_blocks, dtype=np.uint64) * np.uint64(block)  # (J,)
    with np.errstate(over="ignore"):
        turns = np.sort(delta[:, None] * r[None, :], axis=1)  # (P, B) block 0's turns, sorted
        lows = np.uint64(0) - delta[:, None] * first[None, :]  # (P, J) -o_j
        highs = lows[:, :, None] + edges[None, None, :]  # (P, J, K)
    wraps = (highs < lows[:, :, None]).sum(axis=1)  # (P, K)
    below = block * wraps  # (P, K) positions below each edge
    for i in range(delta.size):
        below[i] += np.searchsorted(turns[i], highs[i].ravel()).reshape(n_blocks, -1).sum(axis=0)
        below[i] -= np.searchsorted(turns[i], lows[i]).sum()
    total = np.full((delta.size, 1), n_blocks * block)
    return np.diff(below, axis=1, prepend=0, append=total)


def angle_distribution(inv_freq: np.ndarray, n: int, bins: int = 360, precision: str = "exact") -> np.ndarray:
    """P^i: (SMOOTHING + count) / n per bin, shape (P, bins) float64 (rows sum to 1 + bins*SMOOTHING/n).

    ``precision="float32"`` reproduces the authors' released selector bit for bit: float32 angles,
    float32 ``% 2pi``, float32 bin index and float32 counts (returned widened to float64).
    """
    check_precision(precision)
    if precision == "float32":
        return _float32_distribution(np.asarray(inv_freq), check_positive_int("length", n), check_bins(bins))
    return (SMOOTHING + angle_counts(inv_freq, n, bins)) / n


def _float32_distribution(inv_freq: np.ndarray, n: int, bins: int) -> np.ndarray:
    import torch  # here, not at module level: the CLI imports this module and must start fast

    theta = torch.as_tensor(inv_freq, dtype=torch.float32)[:, None]  # (P, 1)
    positions = torch.arange(0, n)[None, :]  # (1, n) int64, promoted to float32 as in the release
    angles = (theta * positions) % (torch.pi * 2)  # (P, n) float32
    idx = torch.floor((bins / (torch.pi * 2)) * angles).long()
    # The release would index out of range if float32 rounding put an angle exactly on 2pi; keep it in range.
    idx = idx.clamp_(0, bins - 1)
    counts = torch.full((theta.shape[0], bins), SMOOTHING, dtype=torch.float32)
    counts.scatter_add_(1, idx, torch.ones_like(angles))
    return (counts / n).double().numpy()
