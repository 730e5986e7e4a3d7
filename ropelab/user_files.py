"""The files a command is given: JSON read with one-line errors naming the file, and output paths checked before
any work starts (a bad ``--csv``/``--out`` found after an hour of evaluation throws the hour away)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The parsed content of ``path``; a missing, unreadable or malformed file is a ValueError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no {what} at {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {what} {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {err.msg} at line {err.lineno} column "
                         f"{err.colno}") from None


def check_output_path(path: str | os.PathLike, flag: str, *, folder: bool = False) -> Path:
    """``path`` as a Path, if something can be written there: raise ValueError naming ``flag`` and the path when
    it is a folder where a file is wanted (or a file where a folder is), lies under a file, or its nearest
    existing folder is not writable. Nothing is created."""
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a file, not a folder")
    if not folder and path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {str(path)!r} is not writable")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {str(path)!r} lies under {str(parent)!r}, which is a file")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(path)!r}: folder {str(parent)!r} is not writable")
    return path
