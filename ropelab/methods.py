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

from ropelab.angles import SMOOTHING, angle_distribution, check_bins
from ropelab.divergence import get_divergence
from ropelab.plan import DYNAMIC_METHODS, RopePlan
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
        log_p = np.log(reference).astype(np.float32)
        log_q = np.log(extended).astype(np.float32)
        per_bin = p32 * (log_p - log_q)  # (P, bins) float32, elementwise IEEE: the same on every CPU
        divergence = per_bin.astype(np.float64).sum(axis=-1)
    else:
        divergence = get_divergence(scoring.metric)(reference, extended)
    return np.where(np.asarray(inv_freq) == 0, 0.0, divergence)


# --- the registry -----------------------------------------------------------------------------------------------

METHODS: dict[str, Callable[..., Extension]] = {}
# method -> the transformers ``rope_parameters`` of its native type, from its plan (see ``native_rope_parameters``)
_NATIVE: dict[str, Callable[[RopePlan], dict[str, Any]]] = {}
DYNAMIC = DYNAMIC_METHODS  # methods whose frequencies follow the sequence length: no static per-pair form


def register(native: Callable[[RopePlan], dict[str, Any]] | None = None, dynamic: bool = False):
    """Add a method function to ``METHODS`` under its own name; adding a method is adding one function.

    Its options are its keyword parameters after (spec, target_length, scoring); each needs a type annotation and a
    line ``name: help`` under ``Args:`` in its docstring (the CLI builds ``--name`` from them). ``native`` builds the
    transformers rope type that computes the same frequencies; without one the plan goes to transformers as
    ``longrope`` (per-pair factors), which expresses any static plan.
    """
    def add(function: Callable[..., Extension]) -> Callable[..., Extension]:
        METHODS[function.__name__] = function
        if native is not None:
            _NATIVE[function.__name__] = native
        if dynamic:
            DYNAMIC.add(function.__name__)
        _function_options(function)  # fail at import on an option without type or help
        return function

    return add


@dataclass(frozen=True)
class Option:
    """One method option: ``kind`` is float, int, bool, str or floats (a list of numbers)."""

    name: str
    kind: str
    default: Any
    help: str


_KINDS = {"float": "float", "int": "int", "bool": "bool", "str": "str", "Sequence[float]": "floats"}


def option_specs(method: str) -> tuple[Option, ...]:
    """The options of ``method``, from its signature (types) and the ``Args:`` section of its docstring (help)."""
    _check_method(method)
    return _function_options(METHODS[method])


def _function_options(function: Callable[..., Extension]) -> tuple[Option, ...]:
    helps = _docstring_args(function.__doc__ or "")
    out = []
    for param in list(inspect.signature(function).parameters.values())[3:]:
        annotation = param.annotation if isinstance(param.annotation, str) else inspect.formatannotation(param.annotation)
        annotation = annotation.replace(" | None", "").replace("collections.abc.", "")
        if annotation not in _KINDS or param.name not in helps:
            raise TypeError(f"method {function.__name__!r} option {param.name!r} needs one of the types "
                            f"{', '.join(_KINDS)} (got {param.annotation!r}) and a line under Args: in its docstring")
        out.append(Option(param.name, _KINDS[annotation], param.default, helps[param.name]))
    return tuple(out)


def method_options(method: str) -> list[str]:
    """Names of the options ``method`` takes."""
    return [option.name for option in option_specs(method)]


def option_value(plan: RopePlan, name: str) -> Any:
    """The value of option ``name`` in ``plan``: as given, else the method's default."""
    value = plan.options.get(name)
    if value is None:
        value = next(o.default for o in option_specs(plan.method) if o.name == name)
    return value


def native_rope_parameters(plan: RopePlan) -> dict[str, Any] | None:
    """The rope type (and its keys) of ``plan``'s method as transformers computes it, or None where it has none or
    cannot carry the plan's attention factor (only yarn and longrope take one).

    p-RoPE: transformers' ``proportional`` type takes ``rope_theta`` and a ``factor`` dividing every pair, so it
    carries none, pi and ntk (the registry's ``default``/``linear`` forms); other methods have no native p-RoPE form.
    """
    _check_method(plan.method)
    if plan.method not in _NATIVE:
        return None
    params = _NATIVE[plan.method](plan)
    if "attention_factor" not in params and not math.isclose(plan.attention_factor, 1.0, rel_tol=1e-12):
        return None
    if plan.spec.proportional:
        if params["rope_type"] not in ("default", "linear"):
            return None
        params = {**params, "rope_type": "proportional", "partial_rotary_factor": plan.spec.partial_rotary_factor}
    return params


def _docstring_args(doc: str) -> dict[str, str]:
    """``{name: help}`` from a Google-style ``Args:`` section (continuation lines joined)."""
    lines, out, name = doc.splitlines(), {}, None
    inside = False
    for line in lines:
        text = line.strip()
        if text == "Args:":
            inside = True
            continue
        if not inside:
            continue
        if not text or (text.endswith(":") and " " not in text):
            break
        head, sep, rest = text.partition(": ")
        if sep and head.isidentifier():
            name = head
            out[name] = rest.strip()
        elif name is not None:
            out[name] += " " + text
    return out


# --- the methods ----------------------------------------------------------------------------------------------


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

        grid = np.geomspace(low, high, points)  # (K,)
        # (K, P); at factor 1 it is D_extrap, already measured
        scores = np.stack([d_extrap[searched] if g == 1.0 else score(np.full(searched.size, g)) for g in grid])
        k = np.argmin(scores, axis=0)  # (P,) first minimum: ties go to the smaller factor
        f_best, d_best = grid[k], scores[k, np.arange(searched.size)]
        lo, hi = np.log(grid[np.maximum(k - 1, 0)]), np.log(grid[np.minimum(k + 1, points - 1)])  # (P,) brackets
        ratio = (math.sqrt(5) - 1) / 2
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)  # (P,) log-factors
        f1, f2 = score(np.exp(x1)), score(np.exp(x2))
        tried = [(x1, f1), (x2, f2)]
        for _ in range(refine):
            left = f1 < f2  # the minimum is bracketed by [lo, x2]
            lo, hi = np.where(left, lo, x1), np.where(left, x2, hi)
            x_new = np.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
            f_new = score(np.exp(x_new))
            x1, x2 = np.where(left, x_new, x2), np.where(left, x1, x_new)
            f1, f2 = np.where(left, f_new, f2), np.where(left, f1, f_new)
            tried.append((x_new, f_new))
        for x, fx in tried:
            better = fx < d_best
            f_best, d_best = np.where(better, np.exp(x), f_best), np.where(better, fx, d_best)
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


def make_plan(method: str, spec: RopeSpec, target_length: int, *, bins: int = 360, metric: str = "kl",
              precision: str = "exact", attention_temperature: bool | float | None = None,
              **options: Any) -> RopePlan:
    """Plan the extension of ``spec`` to ``target_length`` with ``method`` and score its disturbance.

    ``attention_temperature`` overrides the method's attention factor (cos/sin scale) for any static method:
    True gives YaRN's 0.1 ln s + 1 (Peng et al. 2024, eq. 22), a number that factor, False 1; it is recorded in
    the plan's options.

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
    attention = float(ext.attention_factor)
    if attention_temperature is not None:
        attention = _temperature(attention_temperature, method, target_length / spec.original_length, options)
        options = {**options, "attention_temperature": attention_temperature}
    # p-RoPE's unrotated pairs (frequency 0) are the same at any factor: 1, so no method reports them interpolated
    factors = np.where(spec.inv_freq(precision) > 0, np.asarray(ext.factors, dtype=np.float64), 1.0)
    per_pair = ext.disturbance_per_pair
    if per_pair is None:
        per_pair = disturbance_per_pair(spec, spec.inv_freq(precision) / factors, target_length, scoring)
    return RopePlan(
        method=method, spec=spec, target_length=target_length, options=_jsonable(options),
        factors=tuple(factors.tolist()), attention_factor=attention,
        disturbance_per_pair=tuple(np.asarray(per_pair, dtype=np.float64).tolist()),
        bins=bins, metric=metric, precision=precision, details=ext.details or {},
    )


# --- helpers --------------------------------------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")


def _temperature(value: bool | float, method: str, s: float, options: dict[str, Any]) -> float:
    """The attention factor ``attention_temperature`` asks for (see make_plan)."""
    if method in DYNAMIC:
        raise ValueError(f"attention_temperature needs a static method; {method} frequencies follow the length")
    if options.get("attention_factor") is not None:
        raise ValueError("give attention_temperature or attention_factor, not both")
    if isinstance(value, bool):
        return 0.1 * math.log(s) + 1.0 if value else 1.0
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"attention_temperature must be true, false or a number > 0, got {value!r}")
    return float(value)


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


def _factor(factor: float | None, target_length: int, spec: RopeSpec) -> float:
    s = target_length / spec.original_length if factor is None else factor
    if not isinstance(s, (int, float)) or not s >= 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    return float(s)


def _from_base(spec: RopeSpec, new_base: float, scoring: Scoring) -> Extension:
    d = spec.rotary_dim
    new_inv = new_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # (d/2,)
    base = spec.inv_freq(scoring.precision)
    factors = np.divide(base, new_inv, out=np.ones_like(base), where=base > 0)  # p-RoPE's zero pairs: 1
    return Extension(factors, details={"base": new_base})


def _pair_factors(name: str, values: Sequence[float], spec: RopeSpec) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (spec.n_pairs,) or not np.all(arr > 0):
        raise ValueError(f"{name} must be {spec.n_pairs} positive numbers (one per pair), got {len(arr)} values")
    return arr


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (np.asarray(v).tolist() if isinstance(v, (np.ndarray, list, tuple)) else v) for k, v in options.items()}
