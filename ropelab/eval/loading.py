"""A loaded model's RoPE (:func:`model_spec`) and an extension plan applied for the length of a block
(:func:`plan_applied`): how every evaluation compares a model with and without a plan on one loaded copy.
"""

from __future__ import annotations

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
