"""``ropelab eval ruler``: the RULER synthetic suite (:mod:`ropelab.eval.ruler`) over tasks x lengths.

Arguments are checked before the model is loaded; samples are generated with the model's tokenizer before any
forward pass; the CSV is written only when every sample has been answered.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ropelab.commands._eval import options

NAME = "ruler"
HELP = "RULER synthetic tasks (NIAH variants, VT, CWE, FWE, QA) x lengths"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ropelab eval ruler``."""
    from ropelab.eval.ruler import DEFAULT_LENGTHS, SYNTHETIC_TASKS, TASKS
    from ropelab.eval.ruler.scoring import DEFAULT_RELATIVE

    options.add_model_arguments(parser)
    parser.add_argument("--tasks", default=",".join(SYNTHETIC_TASKS),
                        help=f"comma-separated, from: {', '.join(TASKS)} (qa_* need --qa-file)")
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)), help="lengths in tokens")
    parser.add_argument("--samples", type=int, default=5, help="samples per task and length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qa-file", help="RULER's SQuAD (qa_1) or HotpotQA (qa_2) JSON file")
    parser.add_argument("--pass-threshold", type=float, default=None,
                        help=f"effective length's threshold on the average score, in [0, 1] (default: "
                             f"{DEFAULT_RELATIVE} x the score at the shortest length; RULER's is 0.856)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="cap on generated tokens (default: RULER's)")
    parser.add_argument("--no-prefix-reuse", action="store_true", help="run every prompt whole")
    parser.add_argument("--csv", help="write per-sample rows here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from ropelab.eval.ruler import TASKS, evaluate_ruler, generate_samples
    from ropelab.eval.ruler.tasks import check_tasks

    tasks = check_tasks([t.strip() for t in args.tasks.split(",") if t.strip()])
    lengths = options.parse_lengths(args.lengths)
    options.check_positive(args, "samples", "max_new_tokens")
    if any(TASKS[t].family == "qa" for t in tasks) and not args.qa_file:
        raise ValueError("qa_1/qa_2 need --qa-file (RULER's SQuAD or HotpotQA JSON)")
    if args.pass_threshold is not None and not 0.0 <= args.pass_threshold <= 1.0:
        raise ValueError(f"--pass-threshold must be in [0, 1], got {args.pass_threshold}")

    def evaluate(model: Any, tokenizer: Any) -> tuple[list[dict], dict]:
        samples = generate_samples(tokenizer, tasks, lengths, args.samples, args.seed, args.qa_file)
        rows, summary = evaluate_ruler(model, tokenizer, samples, reuse_prefix=not args.no_prefix_reuse,
                                       max_new_tokens=args.max_new_tokens, threshold=args.pass_threshold)
        return rows, {**summary, "seed": args.seed, "samples": args.samples}

    rows, summary = options.evaluate_from_args(args, evaluate)
    options.write_rows([{**r, "outputs": " | ".join(r["outputs"])} for r in rows], args.csv)
    print(json.dumps(options.json_ready(summary), indent=2) if args.json else format_table(summary))
    return 0


def format_table(summary: dict) -> str:
    """Score table: one row per task, one column per length, then the averages and the effective length."""
    lengths = sorted({c["length"] for c in summary["cells"]})
    tasks = list(dict.fromkeys(c["task"] for c in summary["cells"]))
    score = {(c["task"], c["length"]): c["score"] for c in summary["cells"]}
    width = max(len(t) for t in [*tasks, "average"]) + 2
    lines = ["task".ljust(width) + "".join(f"{n:>8}" for n in lengths)]
    lines += [t.ljust(width) + "".join(f"{score.get((t, n), float('nan')):>8.2f}" for n in lengths) for t in tasks]
    averages = {a["length"]: a["score"] for a in summary["averages"]}
    lines.append("average".ljust(width) + "".join(f"{averages[n]:>8.2f}" for n in lengths))
    lines.append(f"effective length {summary['effective_length']} (threshold {summary['threshold']:.3f})")
    return "\n".join(lines)
