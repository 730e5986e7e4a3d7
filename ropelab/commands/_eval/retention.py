"""``ropelab eval retention``: perplexity inside the window before and after each plan
(:func:`ropelab.eval.retention.retention`)."""

from __future__ import annotations

import argparse
import json

from ropelab.commands._eval import options

NAME = "retention"
HELP = "perplexity inside the window before and after each extension (--method: one or more, comma-separated)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ropelab eval retention``."""
    options.add_model_arguments(parser)
    options.add_text_arguments(parser)
    parser.add_argument("--lengths", help="comma-separated lengths <= the window (default: the window)")
    parser.add_argument("--protocol", default="truncated", help="truncated (default) or sliding")


def run(args: argparse.Namespace) -> int:
    from ropelab.eval.retention import retention

    if not args.method:
        raise ValueError("retention needs --method (one or more, comma-separated) and --target-length")
    options.check_positive(args, "max_docs", "batch_tokens", "stride")
    lengths = options.parse_lengths(args.lengths) if args.lengths else None
    model, tokenizer, plans = options.model_and_plans(args)
    docs, source = options.documents_from_args(args, tokenizer)
    rows = retention(model, docs, plans, lengths=lengths, protocol=args.protocol, stride=args.stride,
                     max_docs=args.max_docs, batch_tokens=args.batch_tokens)
    rows = [{"model": args.model, **source, **row} for row in rows]
    options.write_rows(rows, args.csv)
    if args.json:
        out = {"model": args.model, **source, "plans": [json.loads(p.to_json()) for p in plans], "results": rows}
        print(json.dumps(options.json_ready(out), indent=2))
    else:
        print(f"{'method':<12}{'length':>8}{'ppl':>10}{'original':>10}{'ratio':>8}{'tokens':>9}")
        for r in rows:
            print(f"{r['method']:<12}{r['length']:>8}{r['ppl']:>10.3f}{r['ppl_original']:>10.3f}{r['ratio']:>8.4f}"
                  f"{r['n_tokens']:>9}")
    return 0
