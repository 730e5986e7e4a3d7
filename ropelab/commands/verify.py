"""``ropelab verify``: what transformers, vLLM and llama.cpp really compute for an extended model, vs its plan."""

from __future__ import annotations

import argparse

NAME = "verify"
HELP = ("Check the frequencies and attention scaling that transformers, vLLM or llama.cpp use for an extended "
        "model folder or GGUF against its plan.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="extended model folder (transformers + vLLM) or .gguf file (llama.cpp)")
    parser.add_argument("--plan", help="plan JSON (default: the folder's ropelab_plan.json or the GGUF's own)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from ropelab.rope.plan import RopePlan
    from ropelab.runtime.verify import verify

    result = verify(args.model, RopePlan.load(args.plan) if args.plan else None)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    return 0 if result.ok else 1
