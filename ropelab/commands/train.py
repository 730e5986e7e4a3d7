"""``ropelab train``: extend a pre-trained model with a plan and fine-tune it (accelerate; any number of devices).

    ropelab train --config configs/train/tiny-2x.yaml --method dprope
    accelerate launch --config_file configs/accelerate/fsdp.yaml -m ropelab.train --config configs/train/llama2-7b-8k.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ropelab.commands.plan import add_method_arguments, method_options_from_args

NAME = "train"
HELP = "Fine-tune a model extended with any plan (the paper's recipe), with checkpoints and exact resume."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TrainConfig YAML (configs/train/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, YAML value, dotted keys (e.g. --set steps=10 --set data.max_docs=3)")
    parser.add_argument("--model", dest="train_model", metavar="MODEL", help="override `model` (HF folder, hub id or tiny:<profile>)")
    parser.add_argument("--plan", help="a plan JSON (ropelab plan --out); replaces --method/--target-length")
    parser.add_argument("--output-dir", help="run folder (default: the config's output_dir)")
    parser.add_argument("--seed", type=int, help="override `seed`")
    parser.add_argument("--resume", nargs="?", const="latest", choices=["latest", "latest-intact"],
                        help="continue from the newest checkpoint of the run (refused when it is damaged); "
                             "'--resume latest-intact' from the newest intact one")
    parser.add_argument("--force", action="store_true", help="train again even if this exact run has finished")
    parser.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # debug: SIGKILL after step N
    add_method_arguments(parser, required=False)


def parse_set(items: list[str]) -> dict:
    """``["a.b=3", ...]`` -> ``{"a.b": 3}`` (values parsed as YAML)."""
    import yaml

    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Dotted-key overrides of the TrainConfig from the command line."""
    overrides = parse_set(args.set)
    for field, value in (("model", args.train_model), ("method", args.method), ("target_length", args.target_length),
                         ("plan", args.plan), ("output_dir", args.output_dir), ("seed", args.seed)):
        if value is not None:
            overrides[field] = value
    options = method_options_from_args(args)
    if options:
        overrides["method_options"] = options
    for name, default in (("bins", 360), ("metric", "kl"), ("precision", "exact")):
        if getattr(args, name) != default:
            overrides.setdefault("method_options", {})[name] = getattr(args, name)
    return overrides


def run(args: argparse.Namespace) -> int:
    from ropelab.config import load_config
    from ropelab.experiments.tiny import resolve_model, resolve_spec
    from ropelab.train import TrainConfig, checkpoint, finetune, process_state, validate
    from ropelab.user_files import check_output_path

    if args.output_dir:
        check_output_path(args.output_dir, "--output-dir", folder=True)
    overrides = overrides_from_args(args)
    if (args.method is not None and "method_options" not in overrides
            and load_config(TrainConfig, args.config).method != args.method):
        overrides["method_options"] = {}  # the config's options belong to the config's method
    cfg = load_config(TrainConfig, args.config, overrides)
    # every check before any work (a tiny model is pre-trained only once the run is known good)
    plan = validate(cfg, process_state().num_processes, spec=resolve_spec(cfg.model))
    if args.resume:
        checkpoint.resume_point(Path(cfg.output_dir).resolve(), args.resume)
    run_dir = finetune(resolve_model(cfg.model), plan, cfg, resume=args.resume or False,
                       stop_after_steps=args.stop_after_steps, force=args.force)
    if process_state().is_main_process:
        print(Path(run_dir) / "model")
    return 0
