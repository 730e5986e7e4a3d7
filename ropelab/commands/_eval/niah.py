"""``ropelab eval niah``: needle-in-a-haystack over lengths x depths (:func:`ropelab.eval.niah.evaluate_niah`)."""

from __future__ import annotations

import argparse

from ropelab.commands._eval import options

NAME = "niah"
HELP = "needle-in-a-haystack over the Paul Graham essays"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ropelab eval niah``."""
    from ropelab.eval import niah

    options.add_model_arguments(parser)
    options.add_grid_arguments(parser, niah.DEFAULT_LENGTHS, niah.DEFAULT_DEPTHS, "cell")


def run(args: argparse.Namespace) -> int:
    from ropelab.eval.niah import essay_files, evaluate_niah

    essay_files()  # fail early, before loading the model
    return options.run_grid(args, lambda model, tokenizer, lengths, depths: evaluate_niah(
        model, tokenizer, lengths=lengths, depths=depths))
