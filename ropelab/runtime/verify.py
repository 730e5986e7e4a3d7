"""What each runtime really computes for an extended model, against its plan: transformers, vLLM, llama.cpp.

Per runtime and length: the per-pair frequencies and the cos/sin (attention) scaling it uses, compared with the
plan's. Two lengths are checked, the original window L and the target L' (dynamic NTK: the plan's evaluation
length), because runtimes switch factor sets at different places: transformers' longrope and dynamic NTK follow
the *sequence length* (long factors past L), llama.cpp's ``get_rope_factors`` and vLLM's
``Phi3LongRoPEScaledRotaryEmbedding`` follow the *context size* (``n_ctx`` / ``max_model_len`` > L: long factors
for every position).

* transformers: the live rotary module of a stock ``from_pretrained`` (``ropelab.runtime.hf.model_frequencies``);
* llama.cpp: the GGUF's metadata and factor tensors as its loader reads them (``ropelab.runtime.gguf.read_gguf_rope``);
* vLLM: the folder's ``config.json``, with or without ``--hf-overrides``, as vLLM's ``get_rope`` builds its
  rotary embedding (``vllm/model_executor/layers/rotary_embedding/__init__.py``; longrope in
  ``phi3_long_rope_scaled_rope.py``: cos/sin scaled by ``short_mscale``/``long_mscale``, else by
  ``sqrt(1 + ln(max_position_embeddings / L) / ln L)``). Modelled for the types ropelab writes for vLLM
  (``default``, ``linear``, ``longrope``); other types are reported as not modelled, never as passing.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.rope.plan import RopePlan, max_relative_error

RTOL = 1e-5  # float32 runtimes: llama.cpp builds base^(-2i/d) by repeated float32 products (~1e-6 relative)


@dataclass(frozen=True)
class Check:
    """One runtime at one length: what it computes against what the plan says."""

    runtime: str
    length: int
    factors: str  # which factor set the runtime uses there
    max_rel_error: float | None  # frequencies, max over pairs of |runtime / plan - 1|; None: not modelled
    attention: float | None
    expected_attention: float
    note: str = ""
    required: bool = True  # False: shown for information (vLLM without overrides), never fails the verification

    @property
    def status(self) -> str:
        if self.max_rel_error is None or self.attention is None:
            return "n/a"
        ok = self.max_rel_error <= RTOL and math.isclose(self.attention, self.expected_attention, rel_tol=RTOL)
        return "pass" if ok else ("FAIL" if self.required else "differs")


@dataclass(frozen=True)
class Verification:
    model: str
    plan: RopePlan
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """No required check failed and at least one passed (checks not modelled, ``n/a``, pass nothing)."""
        required = [c for c in self.checks if c.required]
        return all(c.status != "FAIL" for c in required) and any(c.status == "pass" for c in required)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.plan.method, "original_length": self.plan.spec.original_length,
                "target_length": self.plan.target_length, "ok": self.ok,
                "checks": [{**c.__dict__, "status": c.status} for c in self.checks]}

    def table(self) -> str:
        """A plain-text table, one line per check."""
        rows = [("runtime", "length", "factors", "freq max rel err", "attention (plan)", "status")]
        for c in self.checks:
            err = "-" if c.max_rel_error is None else f"{c.max_rel_error:.2e}"
            att = "-" if c.attention is None else f"{c.attention:.6g} ({c.expected_attention:.6g})"
            rows.append((c.runtime, str(c.length), c.factors, err, att, c.status + (f": {c.note}" if c.note else "")))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
        head = (f"{self.model}: {self.plan.method} {self.plan.spec.original_length} -> {self.plan.target_length} "
                f"tokens: {'pass' if self.ok else 'FAIL'}")
        return "\n".join([head, *lines])


# --- what the plan says -------------------------------------------------------------------------------------


def lengths(plan: RopePlan) -> tuple[int, int]:
    """The two lengths checked: the original window and the target (dynamic NTK: its evaluation length)."""
    return plan.spec.original_length, plan.dynamic_length or plan.target_length


def expected(plan: RopePlan, length: int) -> tuple[np.ndarray, float]:
    """``(inv_freq, attention)`` the plan prescribes for a sequence (or context) of ``length`` tokens.

    Up to L: LongRoPE's short factors, or the original frequencies for dynamic NTK; past L the plan's own.
    """
    if length <= plan.spec.original_length and plan.dynamic:
        return plan.spec.inv_freq(plan.precision), 1.0
    if length <= plan.spec.original_length and "short_factors" in plan.details:
        return plan.spec.inv_freq(plan.precision) / np.asarray(plan.details["short_factors"]), plan.attention_factor
    return plan.inv_freq, plan.attention_factor


def _check(runtime: str, plan: RopePlan, length: int, inv_freq: np.ndarray | None, attention: float | None,
           factors: str, note: str = "", required: bool = True) -> Check:
    want, want_attention = expected(plan, length)
    error = None
    if inv_freq is not None:
        error = max_relative_error(inv_freq, want)
    return Check(runtime, length, factors, error, attention, float(want_attention), note, required)


def check_pairs(plan: RopePlan, n_pairs: int, where: str) -> None:
    """Raise ValueError unless ``plan`` was made for a RoPE with ``n_pairs`` frequency pairs (any other mismatch,
    a base included, shows as failing checks)."""
    if n_pairs != plan.spec.n_pairs:
        raise ValueError(f"plan has {plan.spec.n_pairs} frequency pairs but {where} rotates {n_pairs}")


# --- runtimes -------------------------------------------------------------------------------------------------


def verify_transformers(model: Any, plan: RopePlan) -> list[Check]:
    """The live rotary module of ``model`` at the original window and the target length (in the layers of the
    plan's layer type, for per-layer-type RoPE)."""
    from ropelab.runtime.hf import layer_rope_parameters, model_frequencies, text_config

    layer_type = plan.spec.layer_type
    factors = str(layer_rope_parameters(text_config(model), layer_type).get("rope_type", "default"))
    runtime = "transformers" if layer_type is None else f"transformers ({layer_type})"
    checks = []
    for length in lengths(plan):
        inv_freq, attention = model_frequencies(model, length, layer_type)
        checks.append(_check(runtime, plan, length, inv_freq, attention, factors))
    return checks


def verify_vllm(config: dict[str, Any], plan: RopePlan, overrides: dict[str, Any] | None) -> list[Check]:
    """vLLM's rotary embedding for ``config.json`` (a dict) plus ``--hf-overrides`` ``overrides``, served with
    ``--max-model-len`` L and L'. Without overrides the checks are informative (``required=False``)."""
    runtime, required = ("vllm (overrides)", True) if overrides else ("vllm (as is)", False)
    merged = {**config, **(overrides or {})}
    rope = dict(merged.get("rope_parameters") or merged.get("rope_scaling") or {})  # patch_rope_parameters
    rope.setdefault("rope_theta", merged.get("rope_theta", 10000))
    kind = rope.get("rope_type", rope.get("type", "default"))
    max_position = int(merged["max_position_embeddings"])
    base = float(rope["rope_theta"]) ** (-np.arange(0, 2 * plan.spec.n_pairs, 2) / (2 * plan.spec.n_pairs))
    checks = []

    def check(*args: Any, **kwargs: Any) -> None:
        checks.append(_check(runtime, plan, *args, required=required, **kwargs))

    for length in lengths(plan):
        if length > max_position:
            check(length, None, None, kind,
                  note=f"vLLM refuses --max-model-len {length} > max_position_embeddings {max_position}")
        elif kind == "default":
            check(length, base, 1.0, kind)
        elif kind == "linear":
            check(length, base / float(rope["factor"]), 1.0, kind)
        elif kind == "longrope":
            original = int(rope["original_max_position_embeddings"])
            scale = max_position / original
            mscale = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0
            long = length > original  # use_long_rope = max_model_len > original_max_position_embeddings
            factors = np.asarray(rope["long_factor" if long else "short_factor"], dtype=np.float64)
            attention = float(rope.get("long_mscale" if long else "short_mscale", mscale))
            check(length, base / factors, attention, "long_factor" if long else "short_factor")
        else:
            check(length, None, None, kind, note=f"vLLM's own {kind!r} implementation is not modelled here")
    return checks


def verify_gguf(path: str | os.PathLike, plan: RopePlan | None = None) -> Verification:
    """llama.cpp on the GGUF at ``path``, with a context of L and of L' tokens."""
    from ropelab.runtime.gguf import read_gguf_rope

    rope = read_gguf_rope(path)
    plan = plan or rope.plan
    if plan is None:
        raise ValueError(f"{str(path)!r} holds no ropelab plan; pass one (--plan plan.json)")
    check_pairs(plan, rope.n_rot // 2, str(path))
    checks = []
    for length in lengths(plan):
        inv_freq, attention, source = rope.frequencies(length)
        note = "" if source != "none" else f"no factor tensor (rope.scaling.type {rope.scaling_type})"
        checks.append(_check("llama.cpp", plan, length, inv_freq, attention, source, note))
    return Verification(str(path), plan, tuple(checks))


def verify_folder(folder: str | os.PathLike, plan: RopePlan | None = None) -> Verification:
    """transformers (stock ``from_pretrained``) and vLLM (as is, and with ``vllm_hf_overrides(plan)``)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ropelab.runtime.export import PLAN_FILE
    from ropelab.runtime.hf import model_frequencies, rotary_modules, vllm_hf_overrides

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"no model folder at {str(folder)!r} (config.json)")
    config = AutoConfig.from_pretrained(folder)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not getattr(text, "rope_parameters", None):
        raise ValueError(f"model {config.model_type!r} at {str(folder)!r} has no RoPE: nothing to verify")
    if plan is None:
        if not (folder / PLAN_FILE).is_file():
            raise ValueError(f"{str(folder)!r} holds no {PLAN_FILE}; pass a plan (--plan plan.json)")
        plan = RopePlan.load(folder / PLAN_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    modules = rotary_modules(model)
    if not modules:
        raise ValueError(f"model {type(model).__name__} has no rotary embedding: nothing to verify")
    layer_type = plan.spec.layer_type
    if layer_type is not None:
        from ropelab.rope.spec import check_layer_type, rope_layer_types

        check_layer_type(layer_type, rope_layer_types(text))
    check_pairs(plan, model_frequencies(model, 1, layer_type)[0].size, str(folder))
    checks = verify_transformers(model, plan)
    raw = json.loads((folder / "config.json").read_text())
    raw = raw.get("text_config", raw)
    if layer_type is not None:  # vLLM's per-layer-type RoPE (Gemma 3's two bases) is not modelled here
        checks += [_check("vllm", plan, n, None, None, "-", "per-layer-type RoPE is not modelled for vLLM")
                   for n in lengths(plan)]
        return Verification(str(folder), plan, tuple(checks))
    checks += verify_vllm(raw, plan, None)
    if plan.dynamic:
        checks += [_check("vllm (overrides)", plan, n, None, None, "-", f"{plan.method} has no static vLLM form")
                   for n in lengths(plan)]
    else:
        checks += verify_vllm(raw, plan, vllm_hf_overrides(plan))
    return Verification(str(folder), plan, tuple(checks))


def verify(model: str | os.PathLike, plan: RopePlan | None = None) -> Verification:
    """:func:`verify_gguf` for a ``.gguf`` file, else :func:`verify_folder`."""
    path = Path(model)
    if path.suffix == ".gguf" or path.is_file():
        return verify_gguf(path, plan)
    if not path.is_dir():
        raise ValueError(f"no model folder or GGUF file at {str(path)!r}")
    return verify_folder(path, plan)
