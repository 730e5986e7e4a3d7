"""``ropelab notebooks run``: execute the numbered notebooks with papermill and collect their results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# ropelab.notebooks is imported in the functions below: it loads matplotlib, and the CLI imports every command module

NAME = "notebooks"
HELP = "Run the notebooks headlessly (papermill) into outputs/<profile>/ and regenerate figures/."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ropelab.notebooks import PROFILES

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run_parser = sub.add_parser("run", help="execute notebooks/NN_*.ipynb in order",
                                description="Execute notebooks/NN_*.ipynb in numeric order with papermill.")
    run_parser.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)} (default quick)")
    run_parser.add_argument("--only", help="comma-separated notebook numbers or stems, e.g. 03,04")
    run_parser.add_argument("--force", action="store_true", help="re-run notebooks whose inputs did not change")
    run_parser.add_argument("--figures", help="figure folder (default figures/ or $ROPELAB_FIGURES)")
    run_parser.add_argument("--outputs", help="output root (default outputs/)")
    run_parser.add_argument("--notebooks", help="folder of NN_slug.ipynb notebooks (default notebooks/)")
    run_parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="extra",
                            help="set a further (string) parameter the notebooks declare, e.g. zeroshot=ruler12k "
                                 "for notebook 06; repeatable")
    clean_parser = sub.add_parser("clean", help="strip outputs and execution counts, then check the convention",
                                  description="Strip outputs and execution counts from notebooks (all by "
                                              "default) and report any that break the convention.")
    clean_parser.add_argument("paths", nargs="*", help="notebooks to clean (default notebooks/NN_*.ipynb)")


def run(args: argparse.Namespace) -> int:
    from ropelab.notebooks import NotebookFailed, run_notebooks

    if args.action == "clean":
        return clean(args)
    from ropelab.user_files import check_output_path

    for flag, value in (("--outputs", args.outputs), ("--figures", args.figures)):
        if value:
            check_output_path(value, flag, folder=True)
    only = args.only.split(",") if args.only else None
    kwargs = {"extra": parse_extra(args.extra)} if args.extra else {}
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


def parse_extra(pairs: list[str]) -> dict[str, str]:
    """``--set NAME=VALUE`` pairs as a dict; one line naming the pair when one is not of that form."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--set {pair!r} is not NAME=VALUE with NAME a parameter name")
        out[name] = value
    return out


def clean(args: argparse.Namespace) -> int:
    from ropelab.notebooks import NOTEBOOK_DIR, clean_notebook, discover, notebook_problems

    paths = [Path(p) for p in args.paths] or discover(NOTEBOOK_DIR)
    status = 0
    for path in paths:
        if not path.is_file():
            raise ValueError(f"no notebook at {str(path)!r}")
        clean_notebook(path)
        for problem in notebook_problems(path):
            print(f"{path.name}: {problem}", file=sys.stderr)
            status = 1
    return status
