"""One registry of RoPE extension methods: pure functions (spec, target_length, scoring, **options).

Each returns per-pair ``factors`` (theta_i' = theta_i / factor_i), an attention factor and details;
``make_plan`` turns that into a RopePlan with its disturbance. Where transformers implements the same method
(``ROPE_INIT_FUNCTIONS``) the frequencies are equal (tests/test_methods.py).

References:
    PI: Chen et al. 2023, "Extending Context Window of LLMs via Positional Interpolation".
    NTK-aware: bloc97 (2023); base' = base * s^(d/(d-2)). Dynamic NTK: emozilla (2023).
    YaRN: Peng et al., ICLR 2024, eq. 17-20 (ramp over r_i = L / lambda_i, attention 0.1 ln s + 1).
    Llama 3: Meta (2024), wavelength bands with low/high frequency factors.
    LongRoPE: Ding et al. 2024, arbitrary per-pair factors.
    DPRoPE: Wu et al., EMNLP 2024, sec. 3.2 and eq. 9.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ropelab.angles import angle_distribution, check_bins
from ropelab.divergence import get_divergence
from ropelab.plan import RopePlan
from ropelab.spec import RopeSpec, check_positive_int, check_precision


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
    """D^i = divergence(P_L^i || P_L'^i) for frequencies ``inv_freq`` used over m < L' (DPRoPE eq. 8), (d/2,)."""
    if reference is None:
        reference = reference_distribution(spec, scoring)
    extended = angle_distribution(inv_freq, target_length, scoring.bins, scoring.precision)
    if scoring.precision == "float32" and scoring.metric == "kl":
        # The release: F.kl_div(log Q, P, reduction="mean") in float32, i.e. the sum over bins / bins.
        import torch  # here, not at module level: the CLI imports this module and must start fast

        p, q = torch.from_numpy(reference).float(), torch.from_numpy(extended).float()
        per_bin_mean = torch.nn.functional.kl_div(q.log(), p, reduction="none").mean(dim=-1)
        return per_bin_mean.double().numpy() * scoring.bins
    return get_divergence(scoring.metric)(reference, extended)


# --- the methods ----------------------------------------------------------------------------------------------


def none(spec: RopeSpec, target_length: int, scoring: Scoring) -> Extension:
    """No change: every pair extrapolates (fine-tuning at L' alone)."""
    return Extension(np.ones(spec.n_pairs))


def pi(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None) -> Extension:
    """Position interpolation: every pair theta_i / s (Chen et al. 2023)."""
    s = _factor(factor, target_length, spec)
    return Extension(np.full(spec.n_pairs, s))


def ntk(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None) -> Extension:
    """NTK-aware: base' = base * s^(d/(d-2)), every pair re-derived from the new base."""
    s = _factor(factor, target_length, spec)
    d = spec.rotary_dim
    return _from_base(spec, spec.theta * s ** (d / (d - 2)), scoring)


def dynamic_ntk(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float = 1.0,
                length: int | None = None) -> Extension:
    """Dynamic NTK at sequence length ``length`` (default L'): base' = base * (f*n/L - (f-1))^(d/(d-2)), as
    transformers computes it. The default f = 1 makes it static NTK with s = n/L at every length n > L; a larger
    ``factor`` over-scales (f = s at n = L' gives base * (s^2 - s + 1)^(d/(d-2))).
    """
    f = _factor(factor, target_length, spec)
    n = max(check_positive_int("length", length or target_length), spec.original_length)
    d = spec.rotary_dim
    new_base = spec.theta * (f * n / spec.original_length - (f - 1)) ** (d / (d - 2))
    ext = _from_base(spec, new_base, scoring)
    return Extension(ext.factors, details={"base": new_base, "factor": f, "length": n})


def yarn(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None,
         beta_fast: float = 32.0, beta_slow: float = 1.0, attention_factor: float | None = None,
         truncate: bool = True) -> Extension:
    """YaRN (Peng et al. 2024): interpolate pairs with under ``beta_slow`` turns in L, keep those with over
    ``beta_fast``, a linear ramp between (in pair-index space, as find_correction_range), temperature 0.1 ln s + 1.
    """
    s = _factor(factor, target_length, spec)
    if not 0 < beta_slow < beta_fast:
        raise ValueError(f"need 0 < beta_slow < beta_fast, got beta_slow={beta_slow}, beta_fast={beta_fast}")
    d, L, base = spec.rotary_dim, spec.original_length, spec.theta

    def pair_of(turns: float) -> float:  # the (fractional) dimension whose wavelength fits ``turns`` times in L
        return d * math.log(L / (turns * 2 * math.pi)) / (2 * math.log(base))

    low, high = pair_of(beta_fast), pair_of(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001  # as the reference implementation: avoid dividing by zero
    ramp = np.clip((np.arange(spec.n_pairs, dtype=np.float64) - low) / (high - low), 0.0, 1.0)  # 0 keep .. 1 interp
    factors = 1.0 / (ramp / s + (1.0 - ramp))
    if attention_factor is not None and not attention_factor > 0:
        raise ValueError(f"attention_factor must be positive (it scales the logits), got {attention_factor}")
    if attention_factor is None:
        attention_factor = 0.1 * math.log(s) + 1.0 if s > 1 else 1.0
    return Extension(factors, float(attention_factor), {"ramp": ramp.tolist(), "low": low, "high": high})


def llama3(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None,
           low_freq_factor: float = 1.0, high_freq_factor: float = 4.0) -> Extension:
    """Llama 3.1: wavelengths above L/low_freq_factor divided by ``factor``, below L/high_freq_factor kept,
    a smooth blend between."""
    s = _factor(factor, target_length, spec)
    if not 0 < low_freq_factor < high_freq_factor:
        raise ValueError(f"need 0 < low_freq_factor < high_freq_factor, got {low_freq_factor}, {high_freq_factor}")
    L = spec.original_length
    wavelen = spec.wavelengths()
    smooth = np.clip((L / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor), 0.0, 1.0)
    factors = 1.0 / ((1.0 - smooth) / s + smooth)
    return Extension(factors)


def longrope(spec: RopeSpec, target_length: int, scoring: Scoring, factors: Sequence[float] | None = None,
             short_factors: Sequence[float] | None = None, attention_factor: float | None = None) -> Extension:
    """LongRoPE-style user-given per-pair factors (Ding et al. 2024); attention sqrt(1 + ln s / ln L) by default."""
    if factors is None:
        raise ValueError("longrope needs factors=[...] with one factor per frequency pair")
    long = _pair_factors("factors", factors, spec)
    short = _pair_factors("short_factors", short_factors, spec) if short_factors is not None else long
    s = target_length / spec.original_length
    if attention_factor is not None and not attention_factor > 0:
        raise ValueError(f"attention_factor must be positive (it scales the logits), got {attention_factor}")
    if attention_factor is None:
        attention_factor = math.sqrt(1 + math.log(s) / math.log(spec.original_length))
    return Extension(long, float(attention_factor), {"short_factors": short.tolist()})


def dprope(spec: RopeSpec, target_length: int, scoring: Scoring, threshold: float | None = None,
           n_hat: int | None = None) -> Extension:
    """DPRoPE (Wu et al. 2024, eq. 9): per pair, interpolate (theta_i / s) or extrapolate (theta_i), whichever
    disturbs the rotary-angle distribution less.

    Rule: argmin by default (the released code); ``threshold=t`` interpolates where D_extrap > D_interp + t;
    ``n_hat=N`` interpolates the N/2 pairs with the largest D_extrap - D_interp (N dimensions, as the paper counts).
    """
    if threshold is not None and n_hat is not None:
        raise ValueError("give threshold or n_hat, not both")
    if threshold is not None and not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    if n_hat is not None and (isinstance(n_hat, bool) or not isinstance(n_hat, (int, np.integer))
                              or n_hat % 2 or not 0 <= n_hat <= spec.rotary_dim):
        raise ValueError(f"n_hat must be an even integer in [0, {spec.rotary_dim}], got {n_hat!r}")
    s = target_length / spec.original_length
    base = spec.inv_freq(scoring.precision)
    reference = reference_distribution(spec, scoring)
    d_extrap = disturbance_per_pair(spec, base, target_length, scoring, reference)
    d_interp = disturbance_per_pair(spec, base / s, target_length, scoring, reference)
    margin = d_extrap - d_interp
    if n_hat is not None:
        chosen = np.zeros(spec.n_pairs, dtype=bool)
        chosen[np.argsort(-margin, kind="stable")[: n_hat // 2]] = True
    else:
        chosen = margin > (threshold or 0.0)
    details = {"d_extrap": d_extrap.tolist(), "d_interp": d_interp.tolist()}
    return Extension(np.where(chosen, s, 1.0), 1.0, details, np.where(chosen, d_interp, d_extrap))


METHODS: dict[str, Callable[..., Extension]] = {
    "none": none,
    "pi": pi,
    "ntk": ntk,
    "dynamic_ntk": dynamic_ntk,
    "yarn": yarn,
    "llama3": llama3,
    "longrope": longrope,
    "dprope": dprope,
}


def method_options(method: str) -> list[str]:
    """Names of the options ``method`` takes."""
    _check_method(method)
    params = list(inspect.signature(METHODS[method]).parameters.values())[3:]
    return [p.name for p in params]


def make_plan(method: str, spec: RopeSpec, target_length: int, *, bins: int = 360, metric: str = "kl",
              precision: str = "exact", **options: Any) -> RopePlan:
    """Plan the extension of ``spec`` to ``target_length`` with ``method`` and score its disturbance.

    Example: ``make_plan("dprope", RopeSpec.preset("llama2-7b"), 8192).disturbance * 1e3`` -> Table 3's 6.71.
    """
    _check_method(method)
    target_length = check_positive_int("target_length", target_length)
    if target_length <= spec.original_length:
        raise ValueError(
            f"target_length must be above the original length {spec.original_length}, got {target_length}"
        )
    unknown = sorted(set(options) - set(method_options(method)))
    if unknown:
        allowed = ", ".join(method_options(method)) or "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; allowed: {allowed}")
    scoring = Scoring(bins, metric, precision)
    ext = METHODS[method](spec, target_length, scoring, **options)
    factors = np.asarray(ext.factors, dtype=np.float64)
    per_pair = ext.disturbance_per_pair
    if per_pair is None:
        per_pair = disturbance_per_pair(spec, spec.inv_freq(precision) / factors, target_length, scoring)
    return RopePlan(
        method=method, spec=spec, target_length=target_length, options=_jsonable(options),
        factors=tuple(factors.tolist()), attention_factor=float(ext.attention_factor),
        disturbance_per_pair=tuple(np.asarray(per_pair, dtype=np.float64).tolist()),
        bins=bins, metric=metric, precision=precision, details=ext.details or {},
    )


# --- helpers --------------------------------------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")


def _factor(factor: float | None, target_length: int, spec: RopeSpec) -> float:
    s = target_length / spec.original_length if factor is None else factor
    if not isinstance(s, (int, float)) or not s >= 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    return float(s)


def _from_base(spec: RopeSpec, new_base: float, scoring: Scoring) -> Extension:
    d = spec.rotary_dim
    new_inv = new_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    return Extension(spec.inv_freq(scoring.precision) / new_inv, details={"base": new_base})


def _pair_factors(name: str, values: Sequence[float], spec: RopeSpec) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (spec.n_pairs,) or not np.all(arr > 0):
        raise ValueError(f"{name} must be {spec.n_pairs} positive numbers (one per pair), got {len(arr)} values")
    return arr


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (np.asarray(v).tolist() if isinstance(v, (np.ndarray, list, tuple)) else v) for k, v in options.items()}
