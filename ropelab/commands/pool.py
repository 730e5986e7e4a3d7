"""``ropelab pool``: RULER's figures and paired tests of several runs pooled from their committed per-prompt scores."""

from __future__ import annotations

import argparse

NAME = "pool"
HELP = ("Pool the RULER results of several notebook-06 runs (the 06_ruler_samples.csv in each figure folder) into "
        "one heatmap, per-task intervals, averages, effective lengths and paired tests.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ropelab.experiments.zeroshot.config import PASS_THRESHOLD

    parser.add_argument("folders", nargs="+", help="figure folders of notebook 06 runs, e.g. figures/full/ruler4k")
    parser.add_argument("--figures", required=True, help="folder for the pooled figures and tables")
    parser.add_argument("--pass-threshold", type=float, default=PASS_THRESHOLD,
                        help=f"RULER's absolute effective-length bar (default {PASS_THRESHOLD}: Llama-2-7B at 4k)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ropelab.plots.ruler_report import pooled_report

    if not 0.0 < args.pass_threshold <= 1.0:
        raise ValueError(f"--pass-threshold must be in (0, 1], got {args.pass_threshold}")
    for line in pooled_report(args.folders, Path(args.figures), args.pass_threshold):
        print(line)
    return 0
