"""A run's metrics: one row per logged step in ``metrics.jsonl`` and ``metrics.csv`` (same rows, one column order);
a resumed run drops the rows after its checkpoint and writes them again."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_JSONL, METRICS_CSV = "metrics.jsonl", "metrics.csv"


def append_metrics(run_dir: str | Path, row: Mapping[str, Any]) -> None:
    """Add one row (a dict with ``step``) to both files."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / METRICS_JSONL).open("a") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")
    path = run_dir / METRICS_CSV
    new = not path.is_file()
    with path.open("a", newline="") as fh:  # one column order, also for rows rewritten by a resume
        writer = csv.DictWriter(fh, fieldnames=["step", *sorted(k for k in row if k != "step")], lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Drop metric rows after ``step`` (a resumed run rewrites them); ``step`` 0 removes both files."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    for name in (METRICS_JSONL, METRICS_CSV):
        (run_dir / name).unlink(missing_ok=True)
    for row in rows:
        if row["step"] <= step:
            append_metrics(run_dir, row)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metric rows of a run (``metrics.jsonl``), oldest first."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
