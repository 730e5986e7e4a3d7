"""How a plan is scored: the disturbance of every pair's rotary-angle distribution against the original one
(Wu et al. 2024, sec. 3.1 and eq. 6-8), and what a method function returns (:class:`Extension`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ropelab.rope.angles import angle_distribution, check_bins
from ropelab.rope.divergence import get_divergence
from ropelab.rope.elementary import log
from ropelab.rope.spec import RopeSpec, check_precision


@dataclass(frozen=True)
class Scoring:
    """How angle distributions are compared: ``bins`` per turn, ``metric`` name, angle ``precision``."""

    bins: int = 360
    metric: str = "kl"
    precision: str = "exact"

    def __post_init__(self) -> None:
        check_bins(self.bins)
        get_divergence(self.metric)
        check_precision(self.precision)


@dataclass(frozen=True)
class Extension:
    """What a method function returns."""

    factors: np.ndarray  # (d/2,)
    attention_factor: float = 1.0
    details: dict[str, Any] | None = None
    disturbance_per_pair: np.ndarray | None = None  # when the method already measured it


def reference_distribution(spec: RopeSpec, scoring: Scoring) -> np.ndarray:
    """P_L^i: angles of the pre-trained frequencies over m < L, shape (d/2, bins)."""
    return angle_distribution(spec.inv_freq(scoring.precision), spec.original_length, scoring.bins, scoring.precision)


def disturbance_per_pair(spec: RopeSpec, inv_freq: np.ndarray, target_length: int, scoring: Scoring,
                         reference: np.ndarray | None = None) -> np.ndarray:
    """D^i = divergence(P_L^i || P_L'^i) for frequencies ``inv_freq`` used over m < L' (DPRoPE eq. 8), (d/2,).

    A zero frequency (p-RoPE's unrotated pairs) has angle 0 at every position, at L as at L': D = 0 exactly (the
    smoothed histograms of different lengths would otherwise differ by their smoothing alone).
    """
    if reference is None:
        reference = reference_distribution(spec, scoring)
    extended = angle_distribution(inv_freq, target_length, scoring.bins, scoring.precision)
    if scoring.precision == "float32" and scoring.metric == "kl":
        # The release: F.kl_div(log Q, P, reduction="mean") in float32, i.e. the sum over bins / bins. Its
        # float32 log is a SIMD kernel whose last bit depends on the CPU (AVX-512 vs AVX2 moved Table 3 by 4e-6);
        # here each log is float64 rounded to float32 and the bins are summed in float64, so every CPU agrees.
        p32 = reference.astype(np.float32)  # (P, bins)
        log_p = log(reference).astype(np.float32)
        log_q = log(extended).astype(np.float32)
        per_bin = p32 * (log_p - log_q)  # (P, bins) float32, elementwise IEEE: the same on every CPU
        divergence = per_bin.astype(np.float64).sum(axis=-1)
    else:
        divergence = get_divergence(scoring.metric)(reference, extended)
    return np.where(np.asarray(inv_freq) == 0, 0.0, divergence)
