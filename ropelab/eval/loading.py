"""A model and its extension plan for the evaluation commands, and a plan applied for the length of a block.

``--model smollm2-135m`` loads the offline SmolLM2-135M through :func:`ropelab.models.load_model`; any other
``--model`` (a local folder or a ``.gguf`` file) goes through :func:`ropelab.eval.passkey.model_from_args`, the
loader every ``ropelab eval`` generation command uses. The plan is made for the model's own RoPE
(:meth:`RopeSpec.from_hf_config`) from ``--method``/``--target-length`` and the method options of
:func:`ropelab.commands.plan.add_method_arguments`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

from ropelab.plan import RopePlan


def model_spec(model: Any):
    """The :class:`RopeSpec` of a loaded transformers model."""
    from ropelab.hf import text_config
    from ropelab.spec import RopeSpec

    return RopeSpec.from_hf_config(text_config(model))


def plan_for(model: Any, method: str, target_length: int, args: argparse.Namespace | None = None) -> RopePlan:
    """The plan of ``method`` to ``target_length`` for ``model``'s RoPE, with the method options found in ``args``."""
    from ropelab.commands.plan import method_options_from_args
    from ropelab.methods import make_plan

    options = method_options_from_args(args) if args is not None else {}
    scoring = {k: getattr(args, k) for k in ("bins", "metric", "precision") if getattr(args, k, None) is not None}
    return make_plan(method, model_spec(model), target_length, **scoring, **options)


def model_and_plans(args: argparse.Namespace) -> tuple[Any, Any, list[RopePlan]]:
    """``(model, tokenizer, plans)`` from eval-command arguments; the model is returned *without* a plan applied.

    ``--method`` may list several methods separated by commas (one plan each); none gives an empty list.
    """
    from ropelab.eval.passkey import model_from_args, resolve_device
    from ropelab.models import SMOLLM2, load_model

    methods = [m.strip() for m in (getattr(args, "method", None) or "").split(",") if m.strip()]
    if methods and not getattr(args, "target_length", None):
        raise ValueError("--method needs --target-length")
    if args.model == SMOLLM2:
        dtype = getattr(torch, args.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"--dtype {args.dtype!r} is not a torch dtype (float32, bfloat16, float16)")
        model, tokenizer = load_model(SMOLLM2, dtype=dtype)
        model = model.to(resolve_device(args.device))
    else:
        model, tokenizer = model_from_args(argparse.Namespace(**{**vars(args), "method": None}))
    return model, tokenizer, [plan_for(model, m, args.target_length, args) for m in methods]


_ROTARY_STATE = ("inv_freq", "original_inv_freq", "long_inv_freq", "attention_scaling", "rope_type",
                 "max_seq_len_cached", "original_max_seq_len", "config")


@contextlib.contextmanager
def plan_applied(model: Any, plan: RopePlan | None) -> Iterator[Any]:
    """Apply ``plan`` (:func:`ropelab.hf.apply_plan`) inside the block and restore the model exactly afterwards.

    Restores the text config's ``rope_parameters`` and ``max_position_embeddings`` and every rotary module's
    frequencies and scaling. ``plan=None`` leaves the model as it is.
    """
    from ropelab.hf import apply_plan, rotary_modules, text_config

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
