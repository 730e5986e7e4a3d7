"""Rotary-angle distributions (DPRoPE, Wu et al. 2024, sec. 3.1).

Pair i at position m is rotated by m*theta_i. Reduced mod 2*pi and cut into ``bins`` equal bins, the angles
seen at positions 0 .. n-1 form the distribution P^i (bin counts / n).

Exactness: angles are reduced in 64-bit fixed point. theta_i / 2pi is written once as an integer number of
2^-64 turns (from the float64 theta_i and 60 digits of pi), so m * delta mod 2^64 is an exact integer product
that wraps at one full turn. No float rounding touches the reduction at any length; float64 ``m*theta % 2pi``
by contrast loses ~m*1e-16 rad and float32 (the authors' release) is visibly wrong past ~1e5 positions.
"""

from __future__ import annotations

import numpy as np

from ropelab.spec import check_positive_int, check_precision

# Smallest normal float16: the authors' release starts every bin there so that KL stays finite.
SMOOTHING = float(np.finfo(np.float16).tiny)  # 2^-14, as torch.finfo(torch.float16).tiny

# 2^192 / 2pi as an integer (from 60 digits of pi): turns = theta * 2^64 / 2pi in exact integer arithmetic.
_INV_TWO_PI_Q192 = (1 << 192) * 10**60 // 6283185307179586476925286766559005768394338798750211641949889
_CHUNK = 1 << 14  # positions per block: keeps the uint64 work in cache


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

    Fast pairs (a bin spans less than one position) are counted position by position; slow pairs, whose
    bins span at least one position each, by locating the first position of every bin, so a pair costs
    min(n, bins * turns) operations and a 1M-token histogram takes well under a second.
    """
    n = check_positive_int("length", n)
    bins = check_bins(bins)
    delta = turns_fixed_point(inv_freq)  # (P,)
    counts = np.zeros((delta.size, bins), dtype=np.int64)
    # 0.999, not 1: leaves room for float rounding in the boundary estimate below
    zero = delta == 0  # p-RoPE's unrotated pairs: angle 0 at every position
    counts[zero, 0] = n
    slow = (delta.astype(np.float64) * (bins / 2.0**64) < 0.999) & ~zero
    fast = ~slow & ~zero
    if fast.any():
        counts[fast] = _counts_by_position(delta[fast], n, bins)
    if slow.any():
        counts[slow] = _counts_by_boundary(delta[slow], n, bins)
    return counts


def _bin_of(delta: np.ndarray, m: np.ndarray, bins: int) -> np.ndarray:
    """floor(frac(m*delta) * bins) for delta (P, 1) or (J,) and m (..., M) uint64; returns int64.

    The product wraps mod 2^64, i.e. exactly at one full turn. Its top 53 bits convert to float64 without
    rounding, so the bin is exact except within 2^-52 of a bin edge.
    """
    with np.errstate(over="ignore"):
        turns = delta * m  # fraction of a turn in 2^-64 units
    turns >>= np.uint64(11)
    return (turns.astype(np.float64) * (bins / 2.0**53)).astype(np.int64)


def _counts_by_position(delta: np.ndarray, n: int, bins: int) -> np.ndarray:
    n_pairs = delta.size
    offsets = (np.arange(n_pairs, dtype=np.int64) * bins)[:, None]  # (P, 1)
    counts = np.zeros(n_pairs * bins, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        m = np.arange(start, min(start + _CHUNK, n), dtype=np.uint64)[None, :]  # (1, M)
        counts += np.bincount((_bin_of(delta[:, None], m, bins) + offsets).ravel(), minlength=n_pairs * bins)
    return counts.reshape(n_pairs, bins)


def _counts_by_boundary(delta: np.ndarray, n: int, bins: int) -> np.ndarray:
    """Counts of slow pairs (every bin holds >= 1 position) from the first position of each bin crossing."""
    step = delta.astype(np.float64) * (bins / 2.0**64)  # (P,) bins crossed per position, < 1
    n_cross = (np.ceil((n - 1) * step) + 2).astype(np.int64)  # crossings up to position n-1, with margin
    pair = np.repeat(np.arange(delta.size), n_cross)  # (J,) ragged crossings of all pairs, flattened
    j = np.arange(pair.size) - np.repeat(np.cumsum(n_cross) - n_cross, n_cross) + 1  # 1 .. n_cross per pair
    first = np.ceil(j / step[pair]).astype(np.int64)  # (J,) estimated first position of crossing j
    # Exact fix-up: the first position of crossing j lies in bin j mod b and its predecessor does not.
    d, target = delta[pair], j % bins
    first += _bin_of(d, first.astype(np.uint64), bins) != target
    first -= _bin_of(d, (first - 1).astype(np.uint64), bins) == target
    first = np.minimum(first, n)
    start = np.where(j == 1, 0, np.concatenate([[0], first[:-1]]))  # previous crossing (0 before the first)
    index = pair * bins + (j - 1) % bins
    counts = np.bincount(index, weights=first - start, minlength=delta.size * bins)
    return counts.astype(np.int64).reshape(delta.size, bins)


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
