"""RULER's per-prompt results as committed evidence: one row per (method, task, length, sample), written beside a
run's figures as ``06_ruler_samples.csv``, and read back from several runs to pool them.

Why: a grid larger than one session (e.g. 11 tasks x 10 samples x 5 plans at four lengths, ~10 h on 2 cores) is run
in parts, and the answer cache of one machine is not there for the next part. The scores of each part are small and
hold no third-party text (no prompt or answer text: the prompt is named by a hash of its token ids), so they are
committed, and the pooled figures and paired tests are drawn from them alone (``ropelab pool``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.storage import content_key

SAMPLES_FILE = "06_ruler_samples.csv"
COLUMNS = ("method", "task", "length", "index", "depth", "n_tokens", "prompt", "window", "score")


def prompt_id(ids: Sequence[int]) -> str:
    """16 hex digits naming a prompt by its token ids (the same prompt under every method has the same id)."""
    return content_key(blobs=[np.asarray(ids, dtype=np.int64).tobytes()], digits=16)


def sample_rows(rows: Iterable[Mapping[str, Any]], window: int) -> list[dict[str, Any]]:
    """The committed columns of scored RULER rows (:data:`COLUMNS`). The score is written with 17 significant
    digits, so that a multi-answer task's fraction (e.g. 1/3) reads back as the same float."""
    return [{"method": r["method"], "task": r["task"], "length": int(r["length"]), "index": int(r["index"]),
             "depth": "" if r.get("depth") is None else float(r["depth"]), "n_tokens": int(r["n_tokens"]),
             "prompt": r["prompt"], "window": int(window), "score": format(float(r["score"]), ".17g")}
            for r in rows]


def read_samples(folders: Sequence[str | Path]) -> tuple[list[dict[str, Any]], int]:
    """The union of the ``06_ruler_samples.csv`` of ``folders`` as scored rows, and their model window.

    A row given by several folders must agree on its prompt and score; the prompt of a (task, length, index) must be
    the same under every method; every folder must come from the same window. Otherwise one line names the
    disagreement (pooling runs of different prompts or models would compare unlike with unlike)."""
    if not folders:
        raise ValueError("pool needs at least one folder with a 06_ruler_samples.csv, got none")
    rows: dict[tuple, dict[str, Any]] = {}
    prompts: dict[tuple, tuple[str, Path]] = {}
    window: tuple[int, Path] | None = None
    for folder in map(Path, folders):
        path = folder / SAMPLES_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: pool reads the {SAMPLES_FILE} that notebook 06 writes")
        with open(path, newline="") as fh:
            for raw in csv.DictReader(fh):
                r = _parsed(raw, path)
                window = window or (r["window"], path)
                if r["window"] != window[0]:
                    raise ValueError(f"{path} is of a model with window {r['window']}, {window[1]} of one with "
                                     f"window {window[0]}: pool one model")
                cell = (r["task"], r["length"], r["index"])
                seen, where = prompts.setdefault(cell, (r["prompt"], path))
                if seen != r["prompt"]:
                    raise ValueError(f"{path}: {r['task']} sample {r['index']} at {r['length']} is prompt "
                                     f"{r['prompt']}, in {where} prompt {seen}: these runs drew other prompts")
                key = (r["method"], *cell)
                if key in rows and rows[key]["score"] != r["score"]:
                    raise ValueError(f"{path}: {r['method']} on {r['task']} sample {r['index']} at {r['length']} "
                                     f"scores {r['score']}, another folder {rows[key]['score']}")
                rows.setdefault(key, r)
    if window is None:
        raise ValueError(f"{', '.join(map(str, folders))}: no scored prompt in the {SAMPLES_FILE} given")
    return list(rows.values()), window[0]


def _parsed(raw: Mapping[str, str], path: Path) -> dict[str, Any]:
    missing = [c for c in COLUMNS if c not in raw]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; a samples file has {list(COLUMNS)}")
    return {"method": raw["method"], "task": raw["task"], "length": int(raw["length"]), "index": int(raw["index"]),
            "depth": float(raw["depth"]) if raw["depth"] else None, "n_tokens": int(raw["n_tokens"]),
            "prompt": raw["prompt"], "window": int(raw["window"]), "score": float(raw["score"])}
