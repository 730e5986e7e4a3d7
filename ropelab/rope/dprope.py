"""DPRoPE (Wu et al., EMNLP 2024, sec. 3.2 and eq. 9): per pair, interpolate where that disturbs the angle
distribution less than extrapolating; with the paper's threshold and n_hat rules, and ropelab's variants
(``dprope_robust``: only pairs with few turns in L; ``dprope_continuous``: a factor in [1, s] per pair;
``dprope_candidates``: the least disturbing of the baselines per pair).
"""

from __future__ import annotations

import math

import numpy as np

from ropelab.rope.angles import SMOOTHING
from ropelab.rope.baselines import llama3, ntk, pi, yarn
from ropelab.rope.divergence import get_divergence
from ropelab.rope.elementary import exp, geomspace, log
from ropelab.rope.registry import register
from ropelab.rope.scoring import Extension, Scoring, disturbance_per_pair, reference_distribution
from ropelab.rope.spec import RopeSpec, check_positive_int


@register()
def dprope(spec: RopeSpec, target_length: int, scoring: Scoring, threshold: float | None = None,
           n_hat: int | None = None) -> Extension:
    """DPRoPE (Wu et al. 2024, eq. 9): per pair, interpolate (theta_i / s) or extrapolate (theta_i), whichever
    disturbs the rotary-angle distribution less.

    Rule: argmin by default (the released code); ``threshold=t`` interpolates where D_extrap > D_interp + t;
    ``n_hat=N`` interpolates the N/2 pairs with the largest D_extrap - D_interp (N dimensions, as the paper counts).

    Args:
        threshold: interpolate where D_extrap > D_interp + t (eq. 9).
        n_hat: number of interpolated dimensions (two per pair), the pairs with the largest margin.
    """
    _check_rule(threshold, n_hat, spec)
    s, d_extrap, d_interp = _pure_disturbances(spec, target_length, scoring)
    chosen = _choose(d_extrap - d_interp, threshold, n_hat, np.ones(spec.n_pairs, dtype=bool))
    details = {"d_extrap": d_extrap.tolist(), "d_interp": d_interp.tolist()}
    return Extension(np.where(chosen, s, 1.0), 1.0, details, np.where(chosen, d_interp, d_extrap))


@register()
def dprope_robust(spec: RopeSpec, target_length: int, scoring: Scoring, beta: float = 32.0, floor: bool = False,
                  threshold: float | None = None, n_hat: int | None = None) -> Extension:
    """DPRoPE's rule (argmin, ``threshold`` or ``n_hat``) over the pairs with at most ``beta`` turns in L only;
    faster pairs always extrapolate (ropelab's variant; the guard is YaRN's beta_fast, Peng et al. 2024, eq. 18).

    Why: a pair that turns many times within L has near-uniform absolute angles under either strategy, so DPRoPE's
    margin D_extrap - D_interp is lattice noise there, yet interpolating it halves the per-token angle the model
    reads local order from. SmolLM2-135M 8k -> 16k, one Shakespeare test play (coriolanus, bf16), perplexity of
    its first 2048 tokens (inside the window; original 27.86): the argmin interpolates pairs 2,3,4,6,8 (73-635
    turns) and 12,14 (17, 8.5 turns) besides 15-31, at 33.81 (+21%); 15-31 alone 28.53; adding one of 2,3,4,6,8
    costs +0.3..+0.9 each and all of 2,3,4,6 together +3.4; 12 and 14 together +0.11; beta = 32 keeps 0-10 and
    gives 28.65 (YaRN 28.69). Margins of the fast pairs were 1e-5..2e-2: no threshold on them separates them
    (pair 4, 309 turns, has margin 1.6e-2 from the comb its near-periodic angles make over L).

    ``floor=True`` also extrapolates pairs whose margin is below :func:`lattice_noise`, the divergence two
    histograms can have while both are as uniform as integer counts allow. Past the window (same play, first
    16384 tokens): argmin 34.90, beta = 32 30.36, beta = 32 with a floor four times this one 30.69.

    Args:
        beta: pairs with more turns than this in L always extrapolate (YaRN's beta_fast).
        floor: also extrapolate pairs whose margin is below the lattice-noise floor.
        threshold: interpolate where D_extrap > D_interp + t.
        n_hat: number of interpolated dimensions, the eligible pairs with the largest margin.
    """
    _check_rule(threshold, n_hat, spec)
    eligible = _guard(spec, beta)
    s, d_extrap, d_interp = _pure_disturbances(spec, target_length, scoring)
    margin = d_extrap - d_interp
    if floor:
        eligible &= margin > lattice_noise(spec, target_length, scoring)
    chosen = _choose(margin, threshold, n_hat, eligible)
    details = {"d_extrap": d_extrap.tolist(), "d_interp": d_interp.tolist(), "guarded": np.flatnonzero(~eligible).tolist()}
    return Extension(np.where(chosen, s, 1.0), 1.0, details, np.where(chosen, d_interp, d_extrap))


def lattice_noise(spec: RopeSpec, target_length: int, scoring: Scoring) -> float:
    """Divergence between two histograms that are as uniform as integer counts allow: bin counts n/b + 1/2 and
    n/b - 1/2 alternating over L positions, the opposite over L'. Below it a margin is lattice noise.

    For KL it is about (b^2/8)(1/L + 1/L')^2 (chi^2 / 2); 5.4e-4 for SmolLM2 8k -> 16k at b = 360.
    """
    b, n, m = scoring.bins, spec.original_length, target_length
    sign = np.where(np.arange(b) % 2 == 0, 0.5, -0.5)  # (b,)
    p = (SMOOTHING + n / b + sign) / n
    q = (SMOOTHING + m / b - sign) / m
    return float(get_divergence(scoring.metric)(p, q))


@register()
def dprope_continuous(spec: RopeSpec, target_length: int, scoring: Scoring, points: int = 9, refine: int = 6,
                      beta: float | None = 32.0, min_factor: float = 1.0, max_factor: float | None = None) -> Extension:
    """Per pair a factor lambda_i in [min_factor, max_factor] (default [1, s]) that minimises D^i: DPRoPE's eq. 9
    over a continuum instead of {1, s} (ropelab's variant).

    Search: ``points`` geometrically spaced factors including both bounds, scored for every pair at once, then
    ``refine`` golden-section steps per pair inside the bracket of its best grid point. The result is never worse
    per pair than the best grid point, so never worse than the argmin when the bounds are 1 and s. Pairs with more
    than ``beta`` turns in L are kept at factor 1 and not searched (their D is lattice noise; see dprope_robust);
    ``beta=None`` searches every pair.

    Tolerance: the bracket spans two grid steps and each golden-section step keeps 0.618 of it, so the factor is
    located to within a ratio exp(2 ln(max/min) / (points-1) * 0.618^refine) of the bracketed minimum: by default
    exp(0.0139 ln s), 1% at s = 2 and 8% at s = 256. D^i is not unimodal in the factor (its lattice wiggles), so
    the grid picks the basin and the refinement only a point inside it. Cost: points + 2 + refine exact
    histograms of the searched pairs over L' (17 by default; at 1M positions ~0.1 s each on one thread).

    Args:
        points: grid points per pair, both bounds included (>= 2).
        refine: golden-section steps inside the best grid bracket (>= 0).
        beta: pairs with more turns in L keep factor 1 (none: search all pairs).
        min_factor: smallest factor searched (>= 1).
        max_factor: largest factor searched (<= s; default s).
    """
    s = target_length / spec.original_length
    points = check_positive_int("points", points)
    if points < 2:
        raise ValueError(f"points must be an integer >= 2, got {points!r}")
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise ValueError(f"refine must be an integer >= 0, got {refine!r}")
    low, high = float(min_factor), float(s if max_factor is None else max_factor)
    if not 1.0 <= low < high <= s * (1 + 1e-12):
        raise ValueError(f"factor bounds must satisfy 1 <= min_factor < max_factor <= s = {s:g}, "
                         f"got min_factor={min_factor!r}, max_factor={max_factor!r}")
    searched = np.flatnonzero(_guard(spec, beta))  # (P,) pair indices
    base = spec.inv_freq(scoring.precision)
    reference = reference_distribution(spec, scoring)
    d_extrap = disturbance_per_pair(spec, base, target_length, scoring, reference)
    factors, best = np.ones(spec.n_pairs), d_extrap.copy()
    if searched.size:
        ref, inv = reference[searched], base[searched]

        def score(f: np.ndarray) -> np.ndarray:  # f (P,) -> D (P,)
            return disturbance_per_pair(spec, inv / f, target_length, scoring, ref)

        grid = geomspace(low, high, points)  # (K,)
        # (K, P); at factor 1 it is D_extrap, already measured
        scores = np.stack([d_extrap[searched] if g == 1.0 else score(np.full(searched.size, g)) for g in grid])
        k = np.argmin(scores, axis=0)  # (P,) first minimum: ties go to the smaller factor
        f_best, d_best = grid[k], scores[k, np.arange(searched.size)]
        # (P,) brackets, in log-factor
        lo, hi = log(grid[np.maximum(k - 1, 0)]), log(grid[np.minimum(k + 1, points - 1)])
        ratio = (math.sqrt(5) - 1) / 2
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)  # (P,) log-factors
        f1, f2 = score(exp(x1)), score(exp(x2))
        tried = [(x1, f1), (x2, f2)]
        for _ in range(refine):
            left = f1 < f2  # the minimum is bracketed by [lo, x2]
            lo, hi = np.where(left, lo, x1), np.where(left, x2, hi)
            x_new = np.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
            f_new = score(exp(x_new))
            x1, x2 = np.where(left, x_new, x2), np.where(left, x1, x_new)
            f1, f2 = np.where(left, f_new, f2), np.where(left, f1, f_new)
            tried.append((x_new, f_new))
        for x, fx in tried:
            better = fx < d_best
            f_best, d_best = np.where(better, exp(x), f_best), np.where(better, fx, d_best)
        factors[searched], best[searched] = np.clip(f_best, low, high), d_best
    details = {"d_extrap": d_extrap.tolist(), "searched": searched.tolist(),
               "evaluations": points + 2 + refine - (low == 1.0) if searched.size else 0}
    return Extension(factors, 1.0, details, best)


CANDIDATES = ("extrapolate", "pi", "ntk", "yarn", "llama3")


@register()
def dprope_candidates(spec: RopeSpec, target_length: int, scoring: Scoring,
                      candidates: str = "extrapolate,pi,ntk,yarn") -> Extension:
    """Per pair, the candidate factor with the least D^i: 1 (extrapolate), s (pi), NTK's per-pair factor, YaRN's
    ramp value or Llama 3's band value (ropelab's variant; the DPRoPE release invites a larger candidate set).
    Ties go to the candidate listed first, so ``candidates="extrapolate,pi"`` is DPRoPE's argmin exactly.

    Args:
        candidates: comma-separated strategies among extrapolate, pi, ntk, yarn, llama3.
    """
    names = [c.strip() for c in str(candidates).split(",") if c.strip()]
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"candidates must be distinct names among {', '.join(CANDIDATES)}, got {candidates!r}")
    per_pair = {"extrapolate": lambda: np.ones(spec.n_pairs), "pi": lambda: pi(spec, target_length, scoring).factors,
                "ntk": lambda: ntk(spec, target_length, scoring).factors,
                "yarn": lambda: yarn(spec, target_length, scoring).factors,
                "llama3": lambda: llama3(spec, target_length, scoring).factors}
    table = np.stack([np.asarray(per_pair[c](), dtype=np.float64) for c in names])  # (C, P)
    base = spec.inv_freq(scoring.precision)
    reference = reference_distribution(spec, scoring)
    scores = np.stack([disturbance_per_pair(spec, base / f, target_length, scoring, reference) for f in table])
    pick = np.argmin(scores, axis=0)  # (P,) first minimum
    pairs = np.arange(spec.n_pairs)
    details = {"candidates": names, "choice": [names[i] for i in pick],
               **{f"d_{c}": scores[j].tolist() for j, c in enumerate(names)}}
    return Extension(table[pick, pairs], 1.0, details, scores[pick, pairs])


def _guard(spec: RopeSpec, beta: float | None) -> np.ndarray:
    """Pairs with at most ``beta`` turns in L (all pairs for None), (d/2,) bool."""
    if beta is None:
        return np.ones(spec.n_pairs, dtype=bool)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise ValueError(f"beta must be a number of turns > 0, got {beta!r}")
    return spec.original_length / spec.wavelengths() <= beta


def _check_rule(threshold: float | None, n_hat: int | None, spec: RopeSpec) -> None:
    if threshold is not None and n_hat is not None:
        raise ValueError("give threshold or n_hat, not both")
    if threshold is not None and not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    if n_hat is not None and (isinstance(n_hat, bool) or not isinstance(n_hat, (int, np.integer))
                              or n_hat % 2 or not 0 <= n_hat <= spec.rotary_dim):
        raise ValueError(f"n_hat must be an even integer in [0, {spec.rotary_dim}], got {n_hat!r}")


def _pure_disturbances(spec: RopeSpec, target_length: int, scoring: Scoring) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, D_extrap, D_interp): the disturbance of keeping and of dividing every pair by s, (d/2,) each."""
    s = target_length / spec.original_length
    base = spec.inv_freq(scoring.precision)
    reference = reference_distribution(spec, scoring)
    d_extrap = disturbance_per_pair(spec, base, target_length, scoring, reference)
    d_interp = disturbance_per_pair(spec, base / s, target_length, scoring, reference)
    return s, d_extrap, d_interp


def _choose(margin: np.ndarray, threshold: float | None, n_hat: int | None, eligible: np.ndarray) -> np.ndarray:
    """Pairs to interpolate among ``eligible``: margin > threshold (default 0), or the n_hat/2 largest margins."""
    if n_hat is None:
        return eligible & (margin > (threshold or 0.0))
    if n_hat // 2 > eligible.sum():
        raise ValueError(f"n_hat={n_hat} asks for more pairs than the {int(eligible.sum())} eligible ones")
    chosen = np.zeros(margin.size, dtype=bool)
    order = [i for i in np.argsort(-margin, kind="stable") if eligible[i]]
    chosen[order[: n_hat // 2]] = True
    return chosen
