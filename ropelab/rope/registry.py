"""The one registry of RoPE extension methods: pure functions (spec, target_length, scoring, **options), added by
:func:`register`; their options read from their signatures and docstrings; :func:`make_plan` turns a method's
per-pair ``factors`` (theta_i' = theta_i / factor_i), attention factor and details into a scored RopePlan.
The methods themselves are in :mod:`ropelab.rope.baselines` and :mod:`ropelab.rope.dprope`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ropelab.rope.plan import DYNAMIC_METHODS, RopePlan
from ropelab.rope.scoring import Extension, Scoring, disturbance_per_pair
from ropelab.rope.spec import RopeSpec, check_positive_int

METHODS: dict[str, Callable[..., Extension]] = {}


# method -> the transformers ``rope_parameters`` of its native type, from its plan (see ``native_rope_parameters``)
_NATIVE: dict[str, Callable[[RopePlan], dict[str, Any]]] = {}


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
            DYNAMIC_METHODS.add(function.__name__)
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


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")


def _temperature(value: bool | float, method: str, s: float, options: dict[str, Any]) -> float:
    """The attention factor ``attention_temperature`` asks for (see make_plan)."""
    if method in DYNAMIC_METHODS:
        raise ValueError(f"attention_temperature needs a static method; {method} frequencies follow the length")
    if options.get("attention_factor") is not None:
        raise ValueError("give attention_temperature or attention_factor, not both")
    if isinstance(value, bool):
        return 0.1 * math.log(s) + 1.0 if value else 1.0
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"attention_temperature must be true, false or a number > 0, got {value!r}")
    return float(value)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (np.asarray(v).tolist() if isinstance(v, (np.ndarray, list, tuple)) else v) for k, v in options.items()}
