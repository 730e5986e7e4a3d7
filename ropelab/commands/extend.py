"""``ropelab extend``: write an extended checkpoint (weights, config, tokenizer if the source has one,
ropelab_plan.json)."""

from __future__ import annotations

import argparse

from ropelab.commands.plan import add_method_arguments, method_options_from_args

NAME = "extend"
HELP = "Extend a model's context window with a plan and save a checkpoint that stock transformers loads."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="local HF model folder, 'smollm2-135m' (offline GGUF), or a hub id (online)")
    add_method_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder (must be empty or absent unless --force)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:

    from ropelab.export import export_checkpoint
    from ropelab.files import check_output_path
    from ropelab.methods import METHODS, make_plan
    from ropelab.models import load_model
    from ropelab.spec import RopeSpec

    out = check_output_path(args.out, "--out", folder=True)  # every check before loading the model
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"output folder {str(out)!r} is not empty; pass --force to replace it")
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; allowed: {', '.join(METHODS)}")
    options = method_options_from_args(args)
    model, tokenizer = load_model(args.model, need_tokenizer=False)  # a weights-only checkpoint is extended too
    spec = RopeSpec.from_hf_config(model.config.get_text_config())
    plan = make_plan(args.method, spec, args.target_length, bins=args.bins, metric=args.metric,
                     precision=args.precision, **options)
    folder = export_checkpoint(model, tokenizer, plan, out, force=args.force)
    print(f"{plan.method}: {spec.original_length} -> {plan.target_length} tokens, "
          f"{plan.n_interpolated_dims}/{spec.rotary_dim} dims interpolated, "
          f"rope_type {model.config.get_text_config().rope_parameters['rope_type']}; wrote {folder}"
          + ("" if tokenizer is not None else " (no tokenizer: the source folder has none)"))
    return 0
