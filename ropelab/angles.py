"""Rotary-angle distributions (DPRoPE, Wu et al. 2024, sec. 3.1).

Pair i at position m is rotated by m*theta_i. Reduced mod 2*pi and cut into ``bins`` equal bins, the angles
seen at positions 0 .. n-1 form the distribution P^i (bin counts / n).

Exactness: angles are reduced in 64-bit fixed point. theta_i / 2pi is written once as an integer number of
2^-64 turns (from the float64 theta_i and a 40-digit pi), so m * delta mod 2^64 is an exact integer product
that wraps at one full turn. No float rounding touches the reduction at any length; float64 ``m*theta % 2pi``
by contrast loses ~m*1e-16 rad and float32 (the authors' release) is visibly wrong past ~1e5 positions.
"""

from __future__ import annotations

from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np
import torch

from ropelab.spec import check_positive_int, check_precision

# Smallest normal float16: the authors' release starts every bin there so that KL stays finite.
SMOOTHING = float(torch.finfo(torch.float16).tiny)

getcontext().prec = 60
_TWO_PI = Fraction(Decimal("6.283185307179586476925286766559005768394338798750211641949889"))
_CHUNK = 1 << 14  # positions per block: keeps the uint64 work in cache


def check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def turns_fixed_point(inv_freq: np.ndarray) -> np.ndarray:
    """theta_i / 2pi in units of 2^-64 turn, rounded to nearest; shape (P,) uint64."""
    out = [round(Fraction(float(t)) * (1 << 64) / _TWO_PI) % (1 << 64) for t in np.asarray(inv_freq, np.float64)]
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
    slow = delta.astype(np.float64) * (bins / 2.0**64) < 0.999
    fast = ~slow
    if fast.any():
        counts[fast] = _counts_by_position(delta[fast], n, bins)
    for i in np.flatnonzero(slow):
        counts[i] = _counts_by_boundary(delta[i], n, bins)
    return counts


def _bin_of(delta: np.ndarray, m: np.ndarray, bins: int) -> np.ndarray:
    """Exact floor(frac(m*delta) * bins); delta (P, 1) or scalar, m (..., M) uint64."""
    b = np.uint64(bins)
    with np.errstate(over="ignore"):
        turns = delta * m  # fraction of a turn in 2^-64 units: wraps mod 2^64 = one full turn
    # floor(turns * bins / 2^64) without 128-bit integers, split into 32-bit halves (exact)
    high = (turns >> np.uint64(32)) * b
    low = ((turns & np.uint64(0xFFFFFFFF)) * b) >> np.uint64(32)
    return (high + low) >> np.uint64(32)


def _counts_by_position(delta: np.ndarray, n: int, bins: int) -> np.ndarray:
    n_pairs = delta.size
    offsets = (np.arange(n_pairs, dtype=np.uint64) * np.uint64(bins))[:, None]  # (P, 1)
    counts = np.zeros(n_pairs * bins, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        m = np.arange(start, min(start + _CHUNK, n), dtype=np.uint64)[None, :]  # (1, M)
        counts += np.bincount((_bin_of(delta[:, None], m, bins) + offsets).ravel(), minlength=n_pairs * bins)
    return counts.reshape(n_pairs, bins)


def _counts_by_boundary(delta: np.uint64, n: int, bins: int) -> np.ndarray:
    """Counts of one slow pair from the first position of each bin crossing (every bin holds >= 1 position)."""
    step = float(delta) * bins / 2.0**64  # bins crossed per position, < 1
    n_cross = int(np.ceil((n - 1) * step)) + 2  # bin crossings up to position n-1, with margin
    j = np.arange(1, n_cross + 1, dtype=np.float64)
    first = np.ceil(j / step).astype(np.int64)  # (J,) estimated first position of crossing j
    # Exact fix-up: the first position of crossing j lies in bin j mod b and its predecessor does not.
    target = (np.arange(1, n_cross + 1) % bins).astype(np.uint64)
    first += _bin_of(delta, first.astype(np.uint64), bins) != target
    first -= _bin_of(delta, (first - 1).astype(np.uint64), bins) == target
    edges = np.concatenate([[0], np.minimum(first, n)])  # (J+1,)
    return np.bincount(np.arange(n_cross) % bins, weights=np.diff(edges), minlength=bins).astype(np.int64)


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
    theta = torch.as_tensor(inv_freq, dtype=torch.float32)[:, None]  # (P, 1)
    positions = torch.arange(0, n)[None, :]  # (1, n) int64, promoted to float32 as in the release
    angles = (theta * positions) % (torch.pi * 2)  # (P, n) float32
    idx = torch.floor((bins / (torch.pi * 2)) * angles).long()
    # The release would index out of range if float32 rounding put an angle exactly on 2pi; keep it in range.
    idx = idx.clamp_(0, bins - 1)
    counts = torch.full((theta.shape[0], bins), SMOOTHING, dtype=torch.float32)
    counts.scatter_add_(1, idx, torch.ones_like(angles))
    return (counts / n).double().numpy()
