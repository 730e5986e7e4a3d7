"""``ropelab notebooks run``: execute the numbered notebooks with papermill and collect their results."""

from __future__ import annotations

import argparse
import sys

from ropelab.notebooks import PROFILES, NotebookFailed, run_notebooks

NAME = "notebooks"
HELP = "Run the notebooks headlessly (papermill) into outputs/<profile>/ and regenerate figures/."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run_parser = sub.add_parser("run", help="execute notebooks/NN_*.ipynb in order",
                                description="Execute notebooks/NN_*.ipynb in numeric order with papermill.")
    run_parser.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)} (default quick)")
    run_parser.add_argument("--only", help="comma-separated notebook numbers or stems, e.g. 03,04")
    run_parser.add_argument("--force", action="store_true", help="re-run notebooks whose inputs did not change")
    run_parser.add_argument("--figures", help="figure folder (default figures/ or $ROPELAB_FIGURES)")
    run_parser.add_argument("--outputs", help="output root (default outputs/)")
    run_parser.add_argument("--notebooks", help="folder of NN_slug.ipynb notebooks (default notebooks/)")


def run(args: argparse.Namespace) -> int:
    only = args.only.split(",") if args.only else None
    kwargs = {}
    if args.outputs:
        kwargs["output_root"] = args.outputs
    if args.notebooks:
        kwargs["notebook_dir"] = args.notebooks
    try:
        runs = run_notebooks(args.profile, only=only, force=args.force, figure_dir=args.figures, **kwargs)
    except NotebookFailed as err:
        print(f"ropelab: error: {err}", file=sys.stderr)
        return 1
    for r in runs:
        took = f"{r.seconds:.1f} s" if r.status == "ran" else "unchanged"
        print(f"{r.name}: {r.status} ({took}) -> {r.output_dir}")
    return 0
