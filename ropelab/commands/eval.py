"""``ropelab eval``: every evaluation, one subcommand each (ppl, retention, passkey, niah, longbench, ...).

Layers: the evaluations themselves are library code in :mod:`ropelab.eval` (they take a loaded model and
tokenizer and return rows and a summary; they never import ``ropelab.commands``). Their command-line glue lives
here, in the package :mod:`ropelab.commands._eval` (the leading underscore: ``ropelab/cli.py`` does not take it
for a command):

- ``_eval/options.py``: what every evaluation shares: ``add_model_arguments`` (--model/--dtype/--device and the
  optional --method/--target-length), the one model loader ``load_model`` and ``model_and_plans``,
  ``evaluate_from_args`` (load, apply the one plan, label the rows), list/grid/text arguments and writing rows;
- ``_eval/<evaluation>.py``: one small module per evaluation defining ``add_cli(subparsers)``, which adds its
  subcommand and sets ``func`` to its ``run_cli(args) -> int``.

Adding an evaluation is adding its library module under ``ropelab/eval/`` and one ``_eval/<name>.py`` with
``add_cli``/``run_cli`` built from ``options``; it is found automatically (module-name order).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import ropelab.commands._eval

NAME = "eval"
HELP = "Evaluate a model (optionally extended with a plan): perplexity, retention, passkey, NIAH, LongBench-E."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="evaluation", required=True, metavar="EVALUATION")
    for info in sorted(pkgutil.iter_modules(ropelab.commands._eval.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ropelab.commands._eval.{info.name}")
        if callable(getattr(module, "add_cli", None)):
            module.add_cli(sub)


def run(args: argparse.Namespace) -> int:
    return int(args.func(args) or 0)
