"""Put a RopePlan into a Hugging Face transformers model, in a form stock transformers reloads; serve it elsewhere.

The plan is written into ``config.rope_parameters`` in a native transformers RoPE type; the model's rotary
embedding is then rebuilt *by transformers itself* from that config, so the frequencies in memory are exactly
those a fresh ``from_pretrained`` computes, with no ropelab import needed at load time. ``apply_plan`` then checks
the frequencies transformers uses at the target length against ``plan.inv_freq``.

Mapping (transformers v5 ``ROPE_INIT_FUNCTIONS``), recorded per method in the registry (``ropelab.rope.registry``):
    pi -> linear; yarn -> yarn; dynamic_ntk -> dynamic; llama3 -> llama3; ntk -> default with the new base;
    none -> default; every other method (dprope and its variants, longrope) -> longrope with short_factor =
    long_factor = factors and an explicit attention_factor (1 for DPRoPE: no temperature). A plan with an attention
    temperature its native type cannot carry, and model classes that accept only default/longrope (Phi-3), get
    the same frequencies as longrope. A p-RoPE plan (``proportional``) keeps that type for none, pi (its
    ``factor``) and ntk (its ``rope_theta``); every other method is longrope over the whole head with an infinite
    factor, that is frequency 0, for each unrotated pair (JSON ``Infinity``, which Python's json reads).

Per-layer-type RoPE (Gemma 3: ``config.rope_parameters = {"full_attention": {...}, "sliding_attention": {...}}``):
a plan is for one layer type (``plan.spec.layer_type``); ``apply_plan`` rewrites that entry only, and checks that the
other layer types' frequencies are unchanged. Extending the full-attention layers and keeping the sliding ones is
what Gemma 3 itself does for 128k (its linear factor 8 is on ``full_attention`` only).

Serving (docs/serving.md): ``vllm_hf_overrides`` (vLLM's longrope reads short/long_mscale, not
attention_factor); llama.cpp's GGUF is written by ``ropelab.runtime.gguf``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ropelab.rope.plan import RopePlan, max_relative_error
from ropelab.rope.registry import native_rope_parameters
from ropelab.rope.spec import RopeSpec, check_layer_type, default_layer_type, rope_layer_types
from ropelab.runtime.gguf import static_plan_check

# rope types every consumer reads (``default``) or that have no static per-pair form (``dynamic``)
ALWAYS_NATIVE = ("default", "dynamic")


def rope_parameters(plan: RopePlan, native: bool = True) -> dict[str, Any]:
    """The ``config.rope_parameters`` dict that makes stock transformers compute ``plan``'s frequencies.

    The method's native type comes from the registry (``ropelab.rope.registry.native_rope_parameters``); a method without
    one, or a plan whose attention factor its native type cannot carry, is written as ``longrope``.
    ``native=False`` writes every other static plan as ``longrope`` (per-pair factors, explicit attention factor): the
    form for model classes that accept only ``default``/``longrope`` (Phi-3) and for vLLM / llama.cpp.
    """
    spec = plan.spec
    params: dict[str, Any] = {"rope_theta": spec.theta}
    if spec.partial_rotary_factor != 1.0:
        params["partial_rotary_factor"] = spec.partial_rotary_factor
    own = native_rope_parameters(plan)
    if own is not None and (native or own["rope_type"] in ALWAYS_NATIVE):
        params.update(own)
        return params
    # any static per-pair plan; p-RoPE: over the whole head (no partial_rotary_factor), unrotated pairs at factor inf
    rotated = spec.inv_freq() > 0  # (d/2,)
    if spec.proportional:
        params.pop("partial_rotary_factor", None)

    def per_pair(factors: Any) -> list[float]:
        return [float(f) if r else math.inf for f, r in zip(factors, rotated)]

    params.update(
        rope_type="longrope", factor=plan.scale, original_max_position_embeddings=spec.original_length,
        long_factor=per_pair(plan.factors), short_factor=per_pair(plan.details.get("short_factors", plan.factors)),
        attention_factor=plan.attention_factor,
    )
    return params


def text_config(model: Any) -> Any:
    """The config that holds the RoPE (the text config of multimodal models)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def rotary_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Rotary embedding modules of ``model``: those with an ``inv_freq`` buffer, or ``{layer_type}_inv_freq`` ones
    (Gemma 3's single module for every layer type)."""
    def rotary(module: torch.nn.Module) -> bool:
        return any(name == "inv_freq" or name.endswith("_inv_freq") for name, _ in module.named_buffers(recurse=False))

    return [m for m in model.modules() if rotary(m)]


def layer_rope_parameters(config: Any, layer_type: str | None) -> dict[str, Any]:
    """``config.rope_parameters``, or its ``layer_type`` entry for per-layer-type RoPE."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    return dict(params.get(layer_type) or {}) if layer_type is not None else params


def apply_plan(model: torch.nn.Module, plan: RopePlan) -> torch.nn.Module:
    """Extend ``model`` in place with ``plan``: its config and every rotary embedding's frequencies and scaling.

    The config gets the native transformers type of the plan (see the module docstring); a model class that
    refuses that type (Phi-3 accepts only ``default`` and ``longrope``) gets the same frequencies as ``longrope``.
    Afterwards the frequencies transformers uses at ``plan.target_length`` are checked against ``plan.inv_freq``
    (float32 tolerance). Dynamic NTK is checked at the plan's evaluation length: its frequencies follow the
    sequence length, so the in-memory ``inv_freq`` is the original one until a longer input arrives.

    A per-layer-type model (Gemma 3) takes a plan made for one of its layer types (``plan.spec.layer_type``, from
    ``RopeSpec.from_hf_config(config, layer_type=...)``); the other layer types keep their RoPE, checked exactly.

    Raises:
        ValueError: the model has no RoPE, uses per-layer-type RoPE and the plan names no layer type (or one it
            lacks), the plan was made for a different RoPE (theta, head size, rotary fraction or window), or the
            model class cannot express the plan.
    Warns:
        UserWarning: sliding-window attention shorter than the target length (Mistral v0.1, Gemma 2) in layers the
            plan applies to: they never see the long distances the plan is made for; it is applied all the same.
    """
    config = text_config(model)
    modules = rotary_modules(model)
    if not modules:
        raise ValueError(f"model {type(model).__name__} has no rotary embedding: ropelab extends RoPE models only")
    layer_type, types = plan.spec.layer_type, rope_layer_types(config)
    if types and layer_type is None:
        raise ValueError(
            f"{type(model).__name__} uses per-layer-type RoPE ({', '.join(types)}) with different frequencies per "
            "layer type; make the plan for one of them (RopeSpec.from_hf_config(config, layer_type=...))"
        )
    if layer_type is not None and types:
        check_layer_type(layer_type, types)
        if layer_type not in (getattr(config, "layer_types", None) or [layer_type]):
            raise ValueError(f"{type(model).__name__} has no {layer_type} layers (layer_types: "
                             f"{', '.join(sorted(set(config.layer_types)))})")
    model_spec = RopeSpec.from_hf_config(config, layer_type=layer_type)
    if model_spec != plan.spec:
        raise ValueError(f"plan was made for {plan.spec} but the model has {model_spec}")
    if layer_type is None or "sliding" in layer_type:
        _warn_sliding_window(config, plan)
    used = set(getattr(config, "layer_types", None) or types)
    kept = {other: model_frequencies(model, plan.target_length, other) for other in types
            if other != layer_type and other in used}
    params = _accepted_parameters(config, plan, layer_rope_parameters(config, layer_type))
    config.rope_parameters = _with_layer(config, layer_type, params)
    if plan.dynamic:
        config.max_position_embeddings = plan.spec.original_length  # transformers' dynamic NTK reads L from here
    else:
        config.max_position_embeddings = plan.target_length
    if getattr(config, "original_max_position_embeddings", None) is not None:  # Phi-3 keeps L here, read first
        config.original_max_position_embeddings = plan.spec.original_length
    for module in modules:
        _rebuild_rotary(module, config)
    check_frequencies(model, plan)
    for other, (inv_freq, attention) in kept.items():
        now, now_attention = model_frequencies(model, plan.target_length, other)
        if not (np.array_equal(now, inv_freq) and now_attention == attention):
            raise RuntimeError(f"applying the {layer_type} plan changed the {other} layers' frequencies")
    return model


def _with_layer(config: Any, layer_type: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """The whole ``rope_parameters`` with ``params`` for ``layer_type`` (all of it when None)."""
    if layer_type is None:
        return params
    return {**copy.deepcopy(dict(config.rope_parameters)), layer_type: params}


def model_frequencies(model: torch.nn.Module, seq_len: int, layer_type: str | None = None) -> tuple[np.ndarray, float]:
    """``(inv_freq, attention_scaling)`` that ``model``'s rotary embedding uses for a ``seq_len``-token input (in
    the layers of ``layer_type``, for per-layer-type RoPE).

    Read from the live module after a ``seq_len``-position forward of it (which makes longrope switch factor sets
    and dynamic NTK rescale, as in a real forward), not recomputed from the config: a module whose buffers or
    ``attention_scaling`` disagree with its config is caught.
    """
    module = rotary_modules(model)[0]
    prefix, kwargs = (f"{layer_type}_", {"layer_type": layer_type}) if layer_type is not None else ("", {})
    device = getattr(module, f"{prefix}inv_freq").device
    position_ids = torch.arange(seq_len, device=device)[None]  # (1, T)
    with torch.no_grad():
        module(torch.zeros(1, dtype=torch.float32, device=device), position_ids, **kwargs)
    inv_freq = getattr(module, f"{prefix}inv_freq")
    return inv_freq.detach().double().cpu().numpy(), float(getattr(module, f"{prefix}attention_scaling"))


def check_frequencies(model: torch.nn.Module, plan: RopePlan, rtol: float = 2e-6) -> None:
    """Raise RuntimeError unless ``model``'s rotary module uses ``plan``'s frequencies and attention factor at its
    target length (dynamic NTK: at its evaluation length), in the plan's layer type."""
    inv_freq, attention = model_frequencies(model, plan.dynamic_length or plan.target_length, plan.spec.layer_type)
    worst = max_relative_error(inv_freq, plan.inv_freq)
    if not worst <= rtol:
        raise RuntimeError(f"model frequencies differ from the {plan.method} plan (max relative error {worst:.3g})")
    if not math.isclose(attention, plan.attention_factor, rel_tol=1e-6):
        raise RuntimeError(f"model attention factor {attention} differs from the plan's {plan.attention_factor}")


def _accepted_parameters(config: Any, plan: RopePlan, old_params: dict[str, Any]) -> dict[str, Any]:
    """The plan's native rope_parameters, or its longrope form where the config class refuses the native type."""
    keep = {k: old_params[k] for k in ("partial_rotary_factor",) if k in old_params and not plan.spec.proportional}
    native = {**keep, **rope_parameters(plan)}  # keep: Phi-3 requires the key
    if _config_accepts(config, native, plan):
        return native
    model_type = getattr(config, "model_type", type(config).__name__)
    if plan.dynamic:
        raise ValueError(
            f"{model_type} does not accept rope_type 'dynamic' and dynamic NTK has no static per-pair form; "
            "use ntk or a static method"
        )
    static = {**keep, **rope_parameters(plan, native=False)}
    if not _config_accepts(config, static, plan):
        tried = " nor ".join(repr(t) for t in dict.fromkeys((native["rope_type"], "longrope")))
        raise ValueError(f"{model_type} accepts no form of the {plan.method} plan: neither rope_type {tried}")
    return static


def _config_accepts(config: Any, params: dict[str, Any], plan: RopePlan) -> bool:
    """Whether ``config``'s class validates ``params`` (as it will when the checkpoint is reloaded)."""
    candidate = copy.deepcopy(config)
    candidate.rope_parameters = _with_layer(config, plan.spec.layer_type, copy.deepcopy(params))
    candidate.max_position_embeddings = plan.target_length
    try:
        candidate.validate_rope()
    except (ValueError, KeyError, TypeError, RuntimeError):  # Gemma 4: its head size is ambiguous to longrope
        return False
    return True


def _warn_sliding_window(config: Any, plan: RopePlan) -> None:
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False or window >= plan.target_length:
        return
    layer_types = getattr(config, "layer_types", None) or []
    where = "some layers" if "full_attention" in layer_types else "every layer"
    warnings.warn(
        f"{getattr(config, 'model_type', 'model')} uses sliding-window attention ({window} tokens) in {where}: "
        f"those layers never see distances beyond {window}, so a plan for {plan.target_length} tokens is "
        "ambiguous there; ropelab applies it to every layer",
        UserWarning, stacklevel=3,
    )


def _rebuild_rotary(module: torch.nn.Module, config: Any) -> None:
    """Let transformers recompute the module's frequencies from the new config; copy them in place (every buffer
    and plain attribute: ``inv_freq`` or Gemma 3's ``{layer_type}_inv_freq``, attention scaling, rope types)."""
    fresh = type(module)(config=config)
    buffers = dict(module.named_buffers(recurse=False))
    device = next(iter(buffers.values())).device
    for name, value in fresh.named_buffers(recurse=False):
        setattr(module, name, value.to(device))
    for name, value in vars(fresh).items():
        if not name.startswith("_") and name != "training":
            setattr(module, name, value)
    for name in [n for n in vars(module) if n.endswith("long_inv_freq") and n not in vars(fresh)]:
        delattr(module, name)  # transformers caches longrope's long frequencies lazily


# --- serving: vLLM ---------------------------------------------------------------------------------------------------


def vllm_hf_overrides(plan: RopePlan, rope_key: str = "rope_parameters") -> dict[str, Any]:
    """JSON-able ``--hf-overrides`` for ``vllm serve`` that runs ``plan`` with vLLM's longrope kernel.

    Every static plan is written as ``longrope`` (vLLM's ``Phi3LongRoPEScaledRotaryEmbedding``) with per-pair
    factors. vLLM ignores ``attention_factor`` there and derives its own cos/sin scale from
    ``max_position_embeddings / original_max_position_embeddings`` unless ``short_mscale``/``long_mscale`` are
    given, so both are set to the plan's attention factor (1 for DPRoPE). ``rope_key="rope_scaling"`` for vLLM
    builds on transformers v4.
    """
    static_plan_check(plan, "vLLM")
    if plan.spec.layer_type is not None:
        raise ValueError(f"vLLM overrides for per-layer-type RoPE (a {plan.spec.layer_type} plan) are not modelled: "
                         "serve the exported folder's config.json as it is")
    if rope_key not in ("rope_parameters", "rope_scaling"):
        raise ValueError(f"rope_key must be 'rope_parameters' or 'rope_scaling', got {rope_key!r}")
    params = rope_parameters(plan, native=False)
    params.update(short_mscale=plan.attention_factor, long_mscale=plan.attention_factor)
    return {rope_key: params, "max_position_embeddings": plan.target_length}


# --- a plan for the length of a block (how every evaluation compares a model with and without it) -------------


def model_spec(model: Any, layer_type: str | None = None):
    """The :class:`RopeSpec` of a loaded transformers model; of its ``layer_type`` layers for per-layer-type RoPE,
    by default the full-attention ones (:func:`ropelab.rope.spec.default_layer_type`, as the CLI)."""
    config = text_config(model)
    return RopeSpec.from_hf_config(config, layer_type=default_layer_type(config, layer_type))


_ROTARY_STATE = ("inv_freq", "original_inv_freq", "long_inv_freq", "attention_scaling", "rope_type",
                 "max_seq_len_cached", "original_max_seq_len", "config")


@contextlib.contextmanager
def plan_applied(model: Any, plan: RopePlan | None) -> Iterator[Any]:
    """Apply ``plan`` (:func:`apply_plan`) inside the block and restore the model exactly afterwards.

    Restores the text config's ``rope_parameters`` and ``max_position_embeddings`` and every rotary module's
    frequencies and scaling. ``plan=None`` leaves the model as it is.
    """
    if plan is None:
        yield model
        return
    config = text_config(model)
    saved_config = (copy.deepcopy(getattr(config, "rope_parameters", None)), config.max_position_embeddings)
    saved_modules = [(m, {k: getattr(m, k) for k in _ROTARY_STATE if hasattr(m, k)}) for m in rotary_modules(model)]
    saved_modules = [(m, {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()})
                     for m, s in saved_modules]
    try:
        apply_plan(model, plan)
        yield model
    finally:
        config.rope_parameters, config.max_position_embeddings = saved_config
        for module, state in saved_modules:
            for name in _ROTARY_STATE:
                if name in state:
                    setattr(module, name, state[name])
                elif hasattr(module, name):
                    delattr(module, name)
