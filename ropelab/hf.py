"""Put a RopePlan into a Hugging Face transformers model, in a form stock transformers reloads; serve it elsewhere.

The plan is written into ``config.rope_parameters`` in a native transformers RoPE type; the model's rotary
embedding is then rebuilt *by transformers itself* from that config, so the frequencies in memory are exactly
those a fresh ``from_pretrained`` computes, with no ropelab import needed at load time. ``apply_plan`` then checks
the frequencies transformers uses at the target length against ``plan.inv_freq``.

Mapping (transformers v5 ``ROPE_INIT_FUNCTIONS``), recorded per method in the registry (``ropelab.methods``):
    pi -> linear; yarn -> yarn; dynamic_ntk -> dynamic; llama3 -> llama3; ntk -> default with the new base;
    none -> default; every other method (dprope and its variants, longrope) -> longrope with short_factor =
    long_factor = factors and an explicit attention_factor (1 for DPRoPE: no temperature). A plan with an attention
    temperature its native type cannot carry, and model classes that accept only default/longrope (Phi-3), get
    the same frequencies as longrope.

Serving (docs/serving.md): ``vllm_hf_overrides`` (vLLM's longrope reads short/long_mscale, not
attention_factor); llama.cpp's GGUF is written by ``ropelab.gguf``.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import torch

from ropelab.gguf import static_plan_check
from ropelab.methods import native_rope_parameters
from ropelab.plan import RopePlan
from ropelab.spec import RopeSpec

# rope types every consumer reads (``default``) or that have no static per-pair form (``dynamic``)
ALWAYS_NATIVE = ("default", "dynamic")


def rope_parameters(plan: RopePlan, native: bool = True) -> dict[str, Any]:
    """The ``config.rope_parameters`` dict that makes stock transformers compute ``plan``'s frequencies.

    The method's native type comes from the registry (``ropelab.methods.native_rope_parameters``); a method without
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
    else:  # any static per-pair plan
        params.update(
            rope_type="longrope", factor=plan.scale, original_max_position_embeddings=spec.original_length,
            long_factor=[float(f) for f in plan.factors],
            short_factor=[float(f) for f in plan.details.get("short_factors", plan.factors)],
            attention_factor=plan.attention_factor,
        )
    return params


def text_config(model: Any) -> Any:
    """The config that holds the RoPE (the text config of multimodal models)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def rotary_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Rotary embedding modules of ``model`` (those with an ``inv_freq`` buffer)."""
    return [m for m in model.modules() if isinstance(getattr(m, "inv_freq", None), torch.Tensor)]


def apply_plan(model: torch.nn.Module, plan: RopePlan) -> torch.nn.Module:
    """Extend ``model`` in place with ``plan``: its config and every rotary embedding's frequencies and scaling.

    The config gets the native transformers type of the plan (see the module docstring); a model class that
    refuses that type (Phi-3 accepts only ``default`` and ``longrope``) gets the same frequencies as ``longrope``.
    Afterwards the frequencies transformers uses at ``plan.target_length`` are checked against ``plan.inv_freq``
    (float32 tolerance). Dynamic NTK is checked at the plan's evaluation length: its frequencies follow the
    sequence length, so the in-memory ``inv_freq`` is the original one until a longer input arrives.

    Raises:
        ValueError: the model has no RoPE, uses per-layer-type RoPE (Gemma 3: one theta for sliding and one for
            full attention layers: a plan is made for one of them), the plan was made for a different RoPE
            (theta, head size, rotary fraction or window), or the model class cannot express the plan.
    Warns:
        UserWarning: sliding-window attention shorter than the target length (Mistral v0.1, Gemma 2): those layers
            never see the long distances the plan is made for; the plan is applied to every layer all the same.
    """
    config = text_config(model)
    old_params = getattr(config, "rope_parameters", None) or {}
    if old_params and all(isinstance(v, dict) for v in old_params.values()):
        raise ValueError(
            f"{type(model).__name__} uses per-layer-type RoPE ({', '.join(sorted(old_params))}) with different "
            "frequencies per layer type; ropelab does not guess which layers a plan is for"
        )
    modules = rotary_modules(model)
    if not modules:
        raise ValueError(f"model {type(model).__name__} has no rotary embedding: ropelab extends RoPE models only")
    model_spec = RopeSpec.from_hf_config(config)
    if model_spec != plan.spec:
        raise ValueError(f"plan was made for {plan.spec} but the model has {model_spec}")
    _warn_sliding_window(config, plan)
    params = _accepted_parameters(config, plan, old_params)
    config.rope_parameters = params
    if plan.method == "dynamic_ntk":
        config.max_position_embeddings = plan.spec.original_length  # transformers' dynamic NTK reads L from here
    else:
        config.max_position_embeddings = plan.target_length
    if getattr(config, "original_max_position_embeddings", None) is not None:  # Phi-3 keeps L here, read first
        config.original_max_position_embeddings = plan.spec.original_length
    for module in modules:
        _rebuild_rotary(module, config)
    check_frequencies(model, plan)
    return model


def model_frequencies(model: torch.nn.Module, seq_len: int) -> tuple[np.ndarray, float]:
    """``(inv_freq, attention_scaling)`` that ``model``'s rotary embedding uses for a ``seq_len``-token input.

    Read from the live module after a ``seq_len``-position forward of it (which makes longrope switch factor sets
    and dynamic NTK rescale, as in a real forward), not recomputed from the config: a module whose buffers or
    ``attention_scaling`` disagree with its config is caught.
    """
    module = rotary_modules(model)[0]
    position_ids = torch.arange(seq_len, device=module.inv_freq.device)[None]  # (1, T)
    with torch.no_grad():
        module(torch.zeros(1, dtype=torch.float32, device=module.inv_freq.device), position_ids)
    return module.inv_freq.detach().double().cpu().numpy(), float(module.attention_scaling)


def check_frequencies(model: torch.nn.Module, plan: RopePlan, rtol: float = 2e-6) -> None:
    """Raise RuntimeError unless ``model``'s rotary module uses ``plan``'s frequencies and attention factor at its
    target length (dynamic NTK: at its evaluation length)."""
    seq_len = int(plan.options.get("length") or plan.target_length) if plan.method == "dynamic_ntk" else None
    inv_freq, attention = model_frequencies(model, seq_len or plan.target_length)
    if inv_freq.shape != plan.inv_freq.shape or not np.allclose(inv_freq, plan.inv_freq, rtol=rtol, atol=0):
        worst = np.max(np.abs(inv_freq / plan.inv_freq - 1)) if inv_freq.shape == plan.inv_freq.shape else None
        raise RuntimeError(f"model frequencies differ from the {plan.method} plan (max relative error {worst})")
    if not math.isclose(attention, plan.attention_factor, rel_tol=1e-6):
        raise RuntimeError(f"model attention factor {attention} differs from the plan's {plan.attention_factor}")


def _accepted_parameters(config: Any, plan: RopePlan, old_params: dict[str, Any]) -> dict[str, Any]:
    """The plan's native rope_parameters, or its longrope form where the config class refuses the native type."""
    keep = {k: old_params[k] for k in ("partial_rotary_factor",) if k in old_params}  # Phi-3 requires the key
    native = {**keep, **rope_parameters(plan)}
    if _config_accepts(config, native, plan):
        return native
    model_type = getattr(config, "model_type", type(config).__name__)
    if plan.method == "dynamic_ntk":
        raise ValueError(
            f"{model_type} does not accept rope_type 'dynamic' and dynamic NTK has no static per-pair form; "
            "use ntk or a static method"
        )
    static = {**keep, **rope_parameters(plan, native=False)}
    if not _config_accepts(config, static, plan):
        raise ValueError(f"{model_type} accepts neither rope_type {native['rope_type']!r} nor 'longrope'")
    return static


def _config_accepts(config: Any, params: dict[str, Any], plan: RopePlan) -> bool:
    """Whether ``config``'s class validates ``params`` (as it will when the checkpoint is reloaded)."""
    candidate = copy.deepcopy(config)
    candidate.rope_parameters = copy.deepcopy(params)
    candidate.max_position_embeddings = plan.target_length
    try:
        candidate.validate_rope()
    except (ValueError, KeyError, TypeError):
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
    """Let transformers recompute the module's frequencies from the new config; copy them in place."""
    fresh = type(module)(config=config)
    device = module.inv_freq.device
    for name in ("inv_freq", "original_inv_freq"):
        if hasattr(fresh, name):
            setattr(module, name, getattr(fresh, name).to(device))
    for name in ("attention_scaling", "rope_type", "max_seq_len_cached", "original_max_seq_len", "config"):
        if hasattr(fresh, name):
            setattr(module, name, getattr(fresh, name))
    if hasattr(module, "long_inv_freq"):
        del module.long_inv_freq  # transformers caches longrope's long frequencies lazily


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
    if rope_key not in ("rope_parameters", "rope_scaling"):
        raise ValueError(f"rope_key must be 'rope_parameters' or 'rope_scaling', got {rope_key!r}")
    params = rope_parameters(plan, native=False)
    params.update(short_mscale=plan.attention_factor, long_mscale=plan.attention_factor)
    return {rope_key: params, "max_position_embeddings": plan.target_length}
