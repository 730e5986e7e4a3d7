"""Atomic training checkpoints on top of accelerate's ``save_state`` / ``load_state``.

A checkpoint is written into ``checkpoints/.tmp-step_NNNNNNN`` and only then renamed to ``checkpoints/step_NNNNNNN``
(a directory rename is atomic on POSIX file systems): a crash mid-write leaves a ``.tmp-`` folder that is ignored
and cleaned up, and the previous checkpoint stays intact. ``trainer_state.json`` inside each checkpoint records the
number of optimizer steps done, which is all the deterministic sampler of :mod:`ropelab.train` needs to resume at
the next unseen batch, and the size of every file written: a file truncated later (a full disk, a bad copy) is
found before anything is loaded (:func:`checkpoint_problem`), and :func:`resume_point` refuses it by name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STEP_DIR = re.compile(r"^step_(\d{7})$")
STATE_FILE = "trainer_state.json"
TMP_PREFIX = ".tmp-"
DAMAGED_SUFFIX = ".damaged"  # a damaged checkpoint set aside when a run falls back to an older one
RESUME_MODES = ("latest", "latest-intact")  # continue from the newest checkpoint / from the newest intact one


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, path)``, oldest first (``.tmp-`` leftovers are not listed)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint ``(step, path)``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(accelerator: Any, run_dir: str | Path, step: int, state: Mapping[str, Any], keep: int = 2) -> Path:
    """``accelerator.save_state`` into a temporary folder, then rename it into place; keep the newest ``keep``.

    Every process must call this (accelerate gathers sharded state); only the main process renames and prunes.
    """
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:07d}"
    tmp = root / f"{TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        record = {"step": step, **state, "files": files}
        (tmp / STATE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (a resumed run): replace it only once the new one is complete
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        for _, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def clean_partial(run_dir: str | Path) -> list[Path]:
    """Remove ``.tmp-`` folders left by a crash during a save; returns what was removed."""
    root = checkpoint_dir(run_dir)
    removed = [p for p in root.glob(f"{TMP_PREFIX}*")] if root.is_dir() else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be loaded (a missing or truncated file), or None when it is intact.

    Checks the sizes recorded at save time and the header of every ``.safetensors`` file against its length
    (safetensors' own check); reads no tensor data.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        return f"{STATE_FILE} unreadable ({type(err).__name__})"
    for name, size in state.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    for file in sorted(path.rglob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError) as err:
            return f"{file.relative_to(path)} is unreadable ({str(err).splitlines()[0]})"
    return None


def resume_point(run_dir: str | Path, mode: str = "latest") -> tuple[int, Path]:
    """The checkpoint ``(step, path)`` a resumed run continues from; ValueError (one line) when there is none.

    ``mode`` "latest": the newest checkpoint, refused by name when damaged; "latest-intact": the newest intact one
    (newer damaged ones are then set aside by :func:`set_aside_after`). Reads only; loads nothing.
    """
    if mode not in RESUME_MODES:
        raise ValueError(f"resume must be one of {', '.join(RESUME_MODES)}, got {mode!r}")
    found = list_checkpoints(run_dir)
    if not found:
        raise ValueError(f"resume: no checkpoint in {checkpoint_dir(run_dir)} (nothing to continue)")
    damaged = []
    for step, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            if damaged and mode == "latest":
                newest, why = damaged[0]
                raise ValueError(f"resume: checkpoint {newest} is damaged: {why}; --resume latest-intact continues "
                                 f"from {path.name}")
            return step, path
        damaged.append((path, problem))
    newest, why = damaged[0]
    raise ValueError(f"resume: checkpoint {newest} is damaged: {why}; no older checkpoint in "
                     f"{checkpoint_dir(run_dir)} is intact")


def set_aside_after(run_dir: str | Path, step: int) -> list[Path]:
    """Rename the checkpoints newer than ``step`` to ``step_NNNNNNN.damaged`` (kept, no longer listed)."""
    moved = []
    for later, path in list_checkpoints(run_dir):
        if later > step:
            target = path.with_name(path.name + DAMAGED_SUFFIX)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(path, target)
            moved.append(target)
    return moved


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore model, optimizer, registered objects and RNG states; return the saved trainer state."""
    accelerator.load_state(str(path))
    return json.loads((Path(path) / STATE_FILE).read_text())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
