"""``ropelab eval passkey``: passkey accuracy over lengths x depths (:func:`ropelab.eval.passkey.evaluate_passkey`)."""

from __future__ import annotations

import argparse

from ropelab.commands._eval import options

NAME = "passkey"
HELP = "passkey retrieval accuracy over lengths x depths"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ropelab eval passkey``."""
    from ropelab.eval import passkey

    options.add_model_arguments(parser)
    options.add_grid_arguments(parser, passkey.DEFAULT_LENGTHS, passkey.DEFAULT_DEPTHS, "trial")
    parser.add_argument("--trials", type=int, default=5, help="keys per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-prefix-reuse", action="store_true", help="run every prompt whole")


def run(args: argparse.Namespace) -> int:
    from ropelab.eval.passkey import evaluate_passkey

    options.check_positive(args, "trials")
    return options.run_grid(args, lambda model, tokenizer, lengths, depths: evaluate_passkey(
        model, tokenizer, lengths=lengths, depths=depths, trials=args.trials, seed=args.seed,
        reuse_prefix=not args.no_prefix_reuse))
