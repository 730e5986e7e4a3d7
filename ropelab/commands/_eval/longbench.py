"""``ropelab eval longbench``: LongBench-E per-task scores and length buckets
(:func:`ropelab.eval.longbench.evaluate_longbench`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ropelab.commands._eval import options

NAME = "longbench"
HELP = "LongBench-E: per-task scores and 0-4k/4-8k/8k+ buckets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ropelab eval longbench``."""
    from ropelab.eval import longbench

    options.add_model_arguments(parser)
    parser.add_argument("--data-dir", required=True, help="folder with the official <task>_e.jsonl files")
    parser.add_argument("--tasks", default=",".join(longbench.TASKS), help="comma-separated subset of the 13 tasks")
    parser.add_argument("--max-length", type=int, help="prompt budget in tokens (default: window - max new tokens)")
    parser.add_argument("--limit", type=int, help="at most this many samples per task")
    parser.add_argument("--max-new-tokens", type=int, help="cap on the official generation budgets (smoke tests)")
    parser.add_argument("--csv", help="write per-sample rows to this CSV (and the summary beside it)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from ropelab.eval.longbench import check_folder, check_tasks, evaluate_longbench, summary_rows
    from ropelab.user_files import check_output_path

    options.check_positive(args, "max_length", "limit", "max_new_tokens")
    tasks = check_tasks(t.strip() for t in args.tasks.split(",") if t.strip())
    check_folder(args.data_dir, tasks)
    if args.csv:
        check_output_path(Path(args.csv).with_suffix(".summary.csv"), "--csv (its .summary.csv)")
    rows, summary = options.evaluate_from_args(args, lambda model, tokenizer: evaluate_longbench(
        model, tokenizer, args.data_dir, tasks=tasks, max_length=args.max_length, limit=args.limit,
        max_new_tokens=args.max_new_tokens))
    if args.csv:
        options.write_rows(rows, args.csv)
        options.write_rows(summary_rows(summary), Path(args.csv).with_suffix(".summary.csv"))
    print(json.dumps(options.json_ready(summary), indent=2) if args.json else format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """The summary table: one row per task and the average, a column per length bucket."""
    from ropelab.eval.longbench import summary_rows

    def cell(v: float) -> str:
        return "    -" if isinstance(v, float) and math.isnan(v) else f"{v:6.2f}"

    lines = [f"{'task':<22}{'0-4k':>8}{'4-8k':>8}{'8k+':>8}{'all':>8}{'n':>6}"]
    for row in summary_rows(summary):
        lines.append(f"{row['task']:<22}" + "".join(f"{cell(row[k]):>8}" for k in ("0-4k", "4-8k", "8k+", "all"))
                     + f"{row.get('n', ''):>6}")
    return "\n".join(lines)
