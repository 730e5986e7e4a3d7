"""``ropelab eval``: every evaluation, one subcommand each (ppl, retention, passkey, niah, longbench, ...).

Layers: the evaluations themselves are library code in :mod:`ropelab.eval` (they take a loaded model and
tokenizer and return rows and a summary; they never import ``ropelab.commands``). Their command-line glue lives
here, in the package :mod:`ropelab.commands._eval` (the leading underscore: ``ropelab/cli.py`` does not take it
for a command):

- ``_eval/options.py``: what every evaluation shares: ``add_model_arguments`` (--model/--dtype/--device and the
  optional --method/--target-length), the one model loader ``model_from_args`` and ``model_and_plans``,
  ``evaluate_from_args`` (load, apply the one plan, label the rows), list/grid/text arguments and writing rows;
- ``_eval/<evaluation>.py``: one small module per evaluation, a command like every other (``NAME``, ``HELP``,
  ``add_arguments(parser)``, ``run(args) -> int``), added by :func:`ropelab.commands.add_subcommands`.

Adding an evaluation is adding its library module under ``ropelab/eval/`` and one ``_eval/<name>.py`` with
``NAME``/``HELP``/``add_arguments``/``run`` built from ``options``; it is found automatically (module-name order).
"""

from __future__ import annotations

import argparse

import ropelab.commands._eval

NAME = "eval"
HELP = "Evaluate a model (optionally extended with a plan): perplexity, retention, passkey, NIAH, LongBench-E."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ropelab.commands.add_subcommands(parser, ropelab.commands._eval, dest="evaluation", attribute="_evaluation")


def run(args: argparse.Namespace) -> int:
    return int(args._evaluation(args) or 0)
