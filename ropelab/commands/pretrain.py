"""``ropelab pretrain``: train the tokenizer and pre-train the tiny LLaMA at its short window (cached)."""

from __future__ import annotations

import argparse

NAME = "pretrain"
HELP = "Pre-train the tiny LLaMA at a short window L (the CPU stand-in for LLaMA2); prints its model folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="pretrain-quick",
                        help="TinyConfig YAML or profile (pretrain-quick, pretrain-full)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, YAML value, dotted keys (e.g. --set train.steps=50)")
    parser.add_argument("--report", action="store_true", help="also print perplexity at L/2, L, 2L, 4L")
    parser.add_argument("--force", action="store_true", help="pre-train again even when cached")


def run(args: argparse.Namespace) -> int:
    from ropelab.commands.train import parse_set
    from ropelab.experiments.tiny import load_tiny_config, pretrain, window_report

    cfg = load_tiny_config(args.config, parse_set(args.set))
    model_dir = pretrain(cfg, force=args.force)
    print(model_dir)
    if args.report:
        report = window_report(model_dir, cfg.window, cfg.corpus)
        for length, ppl in report["ppl"].items():
            print(f"ppl@{length}: {ppl:.2f}")
    return 0
