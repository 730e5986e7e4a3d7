"""Atomic training checkpoints on top of accelerate's ``save_state`` / ``load_state``.

A checkpoint is written into ``checkpoints/.tmp-step_NNNNNNN`` and only then renamed to ``checkpoints/step_NNNNNNN``
(a directory rename is atomic on POSIX file systems): a crash mid-write leaves a ``.tmp-`` folder that is ignored
and cleaned up, and the previous checkpoint stays intact. ``trainer_state.json`` inside each checkpoint records the
number of optimizer steps done, which is all the deterministic sampler of :mod:`ropelab.train` needs to resume at
the next unseen batch.
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
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=1, sort_keys=True) + "\n")
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
