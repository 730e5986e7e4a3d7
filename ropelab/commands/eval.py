"""``ropelab eval``: every evaluation, one subcommand each (ppl, retention, passkey, niah, longbench, ...).

Each module of the :mod:`ropelab.eval` package that defines ``add_cli(subparsers)`` adds its own subcommand
(setting ``func`` to the function that runs it); they are found automatically, in module-name order.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import ropelab.eval

NAME = "eval"
HELP = "Evaluate a model (optionally extended with a plan): perplexity, retention, passkey, NIAH, LongBench-E."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="evaluation", required=True, metavar="EVALUATION")
    for info in sorted(pkgutil.iter_modules(ropelab.eval.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ropelab.eval.{info.name}")
        if callable(getattr(module, "add_cli", None)):
            module.add_cli(sub)


def run(args: argparse.Namespace) -> int:
    return int(args.func(args) or 0)
