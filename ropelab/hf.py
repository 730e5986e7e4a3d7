"""Put a RopePlan into a Hugging Face transformers model, in a form stock transformers reloads.

The plan is written into ``config.rope_parameters`` in a native transformers RoPE type; the model's rotary
embedding is then rebuilt *by transformers itself* from that config, so the frequencies in memory are exactly
those a fresh ``from_pretrained`` computes, with no ropelab import needed at load time.

Mapping (transformers v5 ``ROPE_INIT_FUNCTIONS``):
    pi -> linear; yarn -> yarn; dynamic_ntk -> dynamic; llama3 -> llama3; ntk -> default with the new base;
    none -> default; dprope, longrope -> longrope with short_factor = long_factor = factors and an explicit
    attention_factor (1 for DPRoPE: no temperature), which vLLM and llama.cpp read too.
"""

from __future__ import annotations

from typing import Any

import torch

from ropelab.plan import RopePlan
from ropelab.spec import RopeSpec


def rope_parameters(plan: RopePlan) -> dict[str, Any]:
    """The ``config.rope_parameters`` dict that makes stock transformers compute ``plan``'s frequencies."""
    spec, opts = plan.spec, plan.options
    params: dict[str, Any] = {"rope_theta": spec.theta}
    if spec.partial_rotary_factor != 1.0:
        params["partial_rotary_factor"] = spec.partial_rotary_factor
    if plan.method == "none":
        params["rope_type"] = "default"
    elif plan.method == "ntk":
        params.update(rope_type="default", rope_theta=float(plan.details["base"]))
    elif plan.method == "pi":
        params.update(rope_type="linear", factor=float(plan.factors[0]))
    elif plan.method == "dynamic_ntk":
        params.update(rope_type="dynamic", factor=float(opts.get("factor") or plan.scale))
    elif plan.method == "yarn":
        params.update(
            rope_type="yarn", factor=float(opts.get("factor") or plan.scale),
            original_max_position_embeddings=spec.original_length,
            beta_fast=float(opts.get("beta_fast", 32.0)), beta_slow=float(opts.get("beta_slow", 1.0)),
            attention_factor=plan.attention_factor, truncate=bool(opts.get("truncate", True)),
        )
    elif plan.method == "llama3":
        params.update(
            rope_type="llama3", factor=float(opts.get("factor") or plan.scale),
            low_freq_factor=float(opts.get("low_freq_factor", 1.0)),
            high_freq_factor=float(opts.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=spec.original_length,
        )
    else:  # dprope, longrope and any static per-pair plan
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

    Raises ValueError when the model has no RoPE, uses per-layer-type RoPE, or was not the model the plan was made
    for (different theta, head size or window).
    """
    config = text_config(model)
    modules = rotary_modules(model)
    if not modules:
        raise ValueError(f"model {type(model).__name__} has no rotary embedding: ropelab extends RoPE models only")
    rope_params = getattr(config, "rope_parameters", None) or {}
    if rope_params and all(isinstance(v, dict) for v in rope_params.values()):
        raise ValueError(
            f"{type(model).__name__} uses per-layer-type RoPE ({', '.join(sorted(rope_params))}); ropelab does not "
            "guess which layers to extend"
        )
    model_spec = RopeSpec.from_hf_config(config)
    if model_spec != plan.spec:
        raise ValueError(f"plan was made for {plan.spec} but the model has {model_spec}")
    config.rope_parameters = rope_parameters(plan)
    if plan.method == "dynamic_ntk":
        config.max_position_embeddings = plan.spec.original_length  # transformers' dynamic NTK reads L from here
    else:
        config.max_position_embeddings = plan.target_length
    for module in modules:
        _rebuild_rotary(module, config)
    return model


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
