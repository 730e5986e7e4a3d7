"""``ropelab eval niah``: needle-in-a-haystack over lengths x depths (:func:`ropelab.eval.niah.evaluate_niah`)."""

from __future__ import annotations

import argparse
from typing import Any

from ropelab.commands._eval import options


def add_cli(subparsers: Any) -> None:
    """``ropelab eval niah``."""
    from ropelab.eval import niah

    parser = subparsers.add_parser("niah", help="needle-in-a-haystack over the Paul Graham essays",
                                   description=niah.__doc__.splitlines()[0])
    options.add_model_arguments(parser)
    options.add_grid_arguments(parser, niah.DEFAULT_LENGTHS, niah.DEFAULT_DEPTHS, "cell")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from ropelab.eval.niah import essay_files, evaluate_niah

    essay_files()  # fail early, before loading the model
    return options.run_grid(args, lambda model, tokenizer, lengths, depths: evaluate_niah(
        model, tokenizer, lengths=lengths, depths=depths))
