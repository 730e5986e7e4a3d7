"""Divergences between per-pair angle distributions, shape (..., bins) -> (...).

``kl`` is the paper's disturbance D^i = KL(P_L^i || P_L'^i) (DPRoPE sec. 3.2, in the direction of the released
code and the paper's Table 3; eq. 8 prints it the other way round). The others answer the paper's open question
on alternative metrics: Jensen-Shannon, total variation, and Wasserstein-1 on the circle (in bins), which alone
sees *how far* mass moved round the circle rather than only *whether* it moved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ropelab.rope.elementary import log


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """sum_k p_k log(p_k / q_k) (nats); the log is :func:`ropelab.rope.elementary.log`, the same on every CPU."""
    return np.sum(p * log(p / q), axis=-1)


def js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence of the normalised p, q (nats, at most log 2)."""
    p, q = _normalise(p), _normalise(q)
    mid = 0.5 * (p + q)
    return 0.5 * kl(p, mid) + 0.5 * kl(q, mid)


def tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation 0.5 * sum |p - q| of the normalised p, q (in [0, 1])."""
    return 0.5 * np.sum(np.abs(_normalise(p) - _normalise(q)), axis=-1)


def wasserstein(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Circular Wasserstein-1 in bins: min_c sum_k |F_p(k) - F_q(k) - c| (Werman et al. 1986), c = median."""
    diff = np.cumsum(_normalise(p) - _normalise(q), axis=-1)  # (..., bins)
    shift = np.median(diff, axis=-1, keepdims=True)
    return np.sum(np.abs(diff - shift), axis=-1)


DIVERGENCES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "kl": kl,
    "js": js,
    "tv": tv,
    "wasserstein": wasserstein,
}


def get_divergence(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(DIVERGENCES)}")
    return DIVERGENCES[name]


def _normalise(p: np.ndarray) -> np.ndarray:
    return p / p.sum(axis=-1, keepdims=True)
