"""The methods a researcher would pick instead of DPRoPE, one registered function each. Where transformers
implements the same method (``ROPE_INIT_FUNCTIONS``) the frequencies are equal (tests/test_methods.py).

References:
    PI: Chen et al. 2023, "Extending Context Window of LLMs via Positional Interpolation".
    NTK-aware: bloc97 (2023); base' = base * s^(d/(d-2)). Dynamic NTK: emozilla (2023).
    YaRN: Peng et al., ICLR 2024, eq. 17-20 (ramp over r_i = L / lambda_i, attention 0.1 ln s + 1).
    Llama 3: Meta (2024), wavelength bands with low/high frequency factors.
    LongRoPE: Ding et al. 2024, arbitrary per-pair factors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ropelab.rope.elementary import power
from ropelab.rope.plan import RopePlan
from ropelab.rope.registry import option_value, register
from ropelab.rope.scoring import Extension, Scoring
from ropelab.rope.spec import RopeSpec, check_positive_int


@register(native=lambda plan: {"rope_type": "default"})
def none(spec: RopeSpec, target_length: int, scoring: Scoring) -> Extension:
    """No change: every pair extrapolates (fine-tuning at L' alone)."""
    return Extension(np.ones(spec.n_pairs))


@register(native=lambda plan: {"rope_type": "linear", "factor": float(plan.factors[0])})
def pi(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None) -> Extension:
    """Position interpolation: every pair theta_i / s (Chen et al. 2023).

    Args:
        factor: scale s (default L'/L).
    """
    s = _factor(factor, target_length, spec)
    return Extension(np.full(spec.n_pairs, s))


@register(native=lambda plan: {"rope_type": "default", "rope_theta": float(plan.details["base"])})
def ntk(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None) -> Extension:
    """NTK-aware: base' = base * s^(d/(d-2)), every pair re-derived from the new base.

    Args:
        factor: scale s (default L'/L).
    """
    s = _factor(factor, target_length, spec)
    d = spec.rotary_dim
    return _from_base(spec, spec.theta * s ** (d / (d - 2)), scoring)


@register(native=lambda plan: {"rope_type": "dynamic", "factor": float(plan.details["factor"])}, dynamic=True)
def dynamic_ntk(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float = 1.0,
                length: int | None = None) -> Extension:
    """Dynamic NTK at sequence length ``length`` (default L'): base' = base * (f*n/L - (f-1))^(d/(d-2)), as
    transformers computes it. The default f = 1 makes it static NTK with s = n/L at every length n > L; a larger
    ``factor`` over-scales (f = s at n = L' gives base * (s^2 - s + 1)^(d/(d-2))).

    Args:
        factor: transformers' dynamic factor f (default 1).
        length: sequence length n to evaluate the frequencies at (default L').
    """
    f = _factor(factor, target_length, spec)
    n = max(check_positive_int("length", length or target_length), spec.original_length)
    d = spec.rotary_dim
    new_base = spec.theta * (f * n / spec.original_length - (f - 1)) ** (d / (d - 2))
    ext = _from_base(spec, new_base, scoring)
    return Extension(ext.factors, details={"base": new_base, "factor": f, "length": n})


def _native_yarn(plan: RopePlan) -> dict[str, Any]:
    return {"rope_type": "yarn", "factor": float(option_value(plan, "factor") or plan.scale),
            "original_max_position_embeddings": plan.spec.original_length,
            "beta_fast": float(option_value(plan, "beta_fast")), "beta_slow": float(option_value(plan, "beta_slow")),
            "attention_factor": plan.attention_factor, "truncate": bool(option_value(plan, "truncate"))}


@register(native=_native_yarn)
def yarn(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None,
         beta_fast: float = 32.0, beta_slow: float = 1.0, attention_factor: float | None = None,
         truncate: bool = True) -> Extension:
    """YaRN (Peng et al. 2024): interpolate pairs with under ``beta_slow`` turns in L, keep those with over
    ``beta_fast``, a linear ramp between (in pair-index space, as find_correction_range), temperature 0.1 ln s + 1.

    Args:
        factor: scale s (default L'/L).
        beta_fast: pairs with more turns in L are kept (eq. 18).
        beta_slow: pairs with fewer turns in L are interpolated.
        attention_factor: cos/sin scale (default 0.1 ln s + 1).
        truncate: round the ramp's ends to whole pairs, as the reference implementation.
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


@register(native=lambda plan: {
    "rope_type": "llama3", "factor": float(option_value(plan, "factor") or plan.scale),
    "low_freq_factor": float(option_value(plan, "low_freq_factor")),
    "high_freq_factor": float(option_value(plan, "high_freq_factor")),
    "original_max_position_embeddings": plan.spec.original_length,
})
def llama3(spec: RopeSpec, target_length: int, scoring: Scoring, factor: float | None = None,
           low_freq_factor: float = 1.0, high_freq_factor: float = 4.0) -> Extension:
    """Llama 3.1: wavelengths above L/low_freq_factor divided by ``factor``, below L/high_freq_factor kept,
    a smooth blend between.

    Args:
        factor: scale s (default L'/L).
        low_freq_factor: wavelengths above L / this are interpolated.
        high_freq_factor: wavelengths below L / this are kept.
    """
    s = _factor(factor, target_length, spec)
    if not 0 < low_freq_factor < high_freq_factor:
        raise ValueError(f"need 0 < low_freq_factor < high_freq_factor, got {low_freq_factor}, {high_freq_factor}")
    L = spec.original_length
    wavelen = spec.wavelengths()
    smooth = np.clip((L / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor), 0.0, 1.0)
    factors = 1.0 / ((1.0 - smooth) / s + smooth)
    return Extension(factors)


@register()
def longrope(spec: RopeSpec, target_length: int, scoring: Scoring, factors: Sequence[float] | None = None,
             short_factors: Sequence[float] | None = None, attention_factor: float | None = None) -> Extension:
    """LongRoPE-style user-given per-pair factors (Ding et al. 2024); attention sqrt(1 + ln s / ln L) by default.

    Args:
        factors: one factor per pair, used past L (comma-separated on the command line).
        short_factors: one factor per pair, used up to L (default: factors).
        attention_factor: cos/sin scale (default sqrt(1 + ln s / ln L)).
    """
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


def _factor(factor: float | None, target_length: int, spec: RopeSpec) -> float:
    s = target_length / spec.original_length if factor is None else factor
    if not isinstance(s, (int, float)) or not s >= 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    return float(s)


def _from_base(spec: RopeSpec, new_base: float, scoring: Scoring) -> Extension:
    d = spec.rotary_dim
    new_inv = power(new_base, -np.arange(0, d, 2, dtype=np.float64) / d)  # (d/2,)
    base = spec.inv_freq(scoring.precision)
    factors = np.divide(base, new_inv, out=np.ones_like(base), where=base > 0)  # p-RoPE's zero pairs: 1
    return Extension(factors, details={"base": new_base})


def _pair_factors(name: str, values: Sequence[float], spec: RopeSpec) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (spec.n_pairs,) or not np.all(arr > 0):
        raise ValueError(f"{name} must be {spec.n_pairs} positive numbers (one per pair), got {len(arr)} values")
    return arr
