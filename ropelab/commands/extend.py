"""``ropelab extend``: write an extended checkpoint (weights, config, tokenizer if the source has one,
ropelab_plan.json)."""

from __future__ import annotations

import argparse

from ropelab.commands.plan import add_layer_type_argument, add_method_arguments, method_options_from_args

NAME = "extend"
HELP = ("Extend a model's context window with a plan, save a checkpoint that stock transformers loads (and a GGUF "
        "for llama.cpp with --gguf), and verify what the runtimes compute.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="local HF model folder, 'smollm2-135m' or 'gemma3-270m' (offline GGUFs), or a hub id "
                        "(online)")
    add_method_arguments(parser)
    add_layer_type_argument(parser)
    parser.add_argument("--out", required=True, help="output folder (must be empty or absent unless --force)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output folder (and --gguf file)")
    parser.add_argument("--gguf", help="also write this .gguf for llama.cpp (its converter, then the plan's RoPE)")
    parser.add_argument("--gguf-converter", help="llama.cpp's convert_hf_to_gguf.py (default: $ROPELAB_GGUF_CONVERTER"
                        " or the copy scripts/engines.sh installs)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ropelab.rope.registry import METHODS, make_plan
    from ropelab.rope.spec import RopeSpec, default_layer_type
    from ropelab.runtime.export import export_checkpoint
    from ropelab.runtime.gguf import check_output, convert_checkpoint, find_converter, gguf_arch
    from ropelab.runtime.hf import layer_rope_parameters, text_config
    from ropelab.runtime.models import load_model
    from ropelab.runtime.verify import verify_folder, verify_gguf
    from ropelab.user_files import check_output_path

    out = check_output_path(args.out, "--out", folder=True)  # every check before loading the model
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"output folder {str(out)!r} is not empty; pass --force to replace it")
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; allowed: {', '.join(METHODS)}")
    if args.gguf:  # fail before loading the model
        check_output(Path(args.gguf), args.force)
        find_converter(args.gguf_converter)
    options = method_options_from_args(args)
    config_file = Path(args.model).expanduser() / "config.json"
    if config_file.is_file():  # a local folder: check --layer-type before loading the weights
        RopeSpec.from_hf_config(config_file, layer_type=default_layer_type(config_file, args.layer_type))
    model, tokenizer = load_model(args.model, need_tokenizer=False)  # a weights-only checkpoint is extended too
    if args.gguf:  # fail before writing anything
        gguf_arch(model.config)
    config = text_config(model)
    spec = RopeSpec.from_hf_config(config, layer_type=default_layer_type(config, args.layer_type))
    plan = make_plan(args.method, spec, args.target_length, bins=args.bins, metric=args.metric,
                     precision=args.precision, **options)
    folder = export_checkpoint(model, tokenizer, plan, out, force=args.force)
    print(f"{plan.method}: {spec.original_length} -> {plan.target_length} tokens, "
          f"{plan.n_interpolated_dims}/{spec.rotary_dim} dims interpolated, "
          f"rope_type {layer_rope_parameters(config, spec.layer_type)['rope_type']}"
          + (f" in the {spec.layer_type} layers (the others keep theirs)" if spec.layer_type else "")
          + f"; wrote {folder}"
          + ("" if tokenizer is not None else " (no tokenizer: the source folder has none)"))
    results = [verify_folder(folder, plan)]
    if args.gguf:
        gguf = convert_checkpoint(folder, plan, args.gguf, converter=args.gguf_converter, force=args.force)
        print(f"wrote {gguf}")
        results.append(verify_gguf(gguf, plan))
    for result in results:
        print(result.table())
    return 0 if all(r.ok for r in results) else 1
