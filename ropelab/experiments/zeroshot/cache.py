"""The zero-shot result cache: one JSON file per result under ``$ROPELAB_CACHE/zeroshot/``, keyed by everything that
decides its numbers (model, dtype, threads, weights, torch, plan, tokens or prompts, and the code that scores them).

Results are stored one document or one retrieval prompt at a time, so an interrupted run resumes where it stopped
and a new document or prompt computes only itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.storage import atomic_write_text, cache_path, content_key

VERSION = 2  # 2: one result per document / prompt (1: one per variant and kind)


def weights_fingerprint(model: Any) -> str:
    """A short hash of the model's config and a sample of its weights (cheap; a different model gives another).

    The folder the model was loaded from (``_name_or_path``) is left out: moving a cache must not change a result's
    key, and it is not what decides the numbers.
    """
    import torch

    params = list(model.parameters())
    sample = [p.detach().flatten()[:4096].to(torch.float32).cpu().numpy().tobytes()
              for p in params[:: max(1, len(params) // 8)]]
    config = {k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"}
    return content_key(config, blobs=sample)


def entry_path(settings: Mapping[str, Any]) -> Path:
    """The cache file of one result: its kind and the content key of everything that decides it."""
    return cache_path("zeroshot", f"{settings['kind']}-{content_key(settings, digits=20)}.json")


def cached(settings: Mapping[str, Any], enabled: bool = True) -> dict[str, Any] | None:
    path = entry_path(settings)
    if not enabled or not path.exists():
        return None
    return json.loads(path.read_text())


def store(settings: Mapping[str, Any], result: Mapping[str, Any], enabled: bool = True) -> None:
    if enabled:
        atomic_write_text(entry_path(settings), json.dumps(dict(result), default=_plain))


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in the zero-shot cache")
