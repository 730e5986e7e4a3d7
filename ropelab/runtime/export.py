"""Write an extended checkpoint that stock transformers (and vLLM) load without ropelab.

The folder holds what ``save_pretrained`` writes (safetensors weights, ``config.json`` whose ``rope_parameters``
describe the plan in a native transformers type, generation config, tokenizer) plus ``ropelab_plan.json``, the
plan itself. A per-layer-type model (Gemma 3) is written with per-layer-type ``rope_parameters``: the plan's layer
type extended, the others as they were. Writing is atomic (a temporary folder beside ``out_dir``, renamed at the end) and deterministic: the
same model and plan give byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ropelab.rope.plan import RopePlan
from ropelab.runtime.hf import apply_plan, layer_rope_parameters, rope_parameters, text_config
from ropelab.storage import publish_permissions

PLAN_FILE = "ropelab_plan.json"


def export_checkpoint(model: Any, tokenizer: Any, plan: RopePlan, out_dir: str | os.PathLike,
                      force: bool = False) -> Path:
    """Apply ``plan`` to ``model`` (unless its config already carries it) and save model, tokenizer and plan.

    ``tokenizer`` None (a weights-only source checkpoint) writes the folder without one.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``force`` is False.
        ValueError: ``out_dir`` is a file, lies under a file or cannot be written.
    """
    from ropelab.user_files import check_output_path

    out = check_output_path(out_dir, "output", folder=True).absolute()
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"output folder {str(out)!r} is not empty; pass force=True (--force) to replace it")
    if not _carries(model, plan):
        apply_plan(model, plan)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        plan.save(tmp / PLAN_FILE)
        publish_permissions(tmp)
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _carries(model: Any, plan: RopePlan) -> bool:
    """Whether ``model``'s config already holds ``plan`` (apply_plan was called)."""
    params = layer_rope_parameters(text_config(model), plan.spec.layer_type)
    params.pop("partial_rotary_factor", None)
    wanted = [rope_parameters(plan), rope_parameters(plan, native=False)]
    for want in wanted:
        want.pop("partial_rotary_factor", None)
    return params in wanted


def _replace(new: Path, out: Path) -> None:
    """Move folder ``new`` to ``out``; an existing ``out`` is moved aside first and deleted after."""
    if not out.exists():
        new.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
    out.rename(old / "x")
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
