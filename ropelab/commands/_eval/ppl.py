"""``ropelab eval ppl``: perplexity at several lengths (:func:`ropelab.eval.perplexity.perplexity_at_lengths`)."""

from __future__ import annotations

import argparse
import json

from ropelab.commands._eval import options

NAME = "ppl"
HELP = "perplexity at several lengths (sliding window or truncated)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ropelab eval ppl``."""
    options.add_model_arguments(parser)
    options.add_text_arguments(parser)
    parser.add_argument("--lengths", default="2048,4096", help="comma-separated context lengths in tokens")
    parser.add_argument("--protocol", default="sliding", help="sliding (default) or truncated")


def run(args: argparse.Namespace) -> int:
    from ropelab.eval.perplexity import check_protocol, perplexity_at_lengths
    from ropelab.runtime.hf import plan_applied

    options.check_positive(args, "max_docs", "batch_tokens", "stride")
    lengths = options.parse_lengths(args.lengths)
    for length in lengths:
        check_protocol(args.protocol, length, args.stride)
    if args.method and "," in args.method:
        raise ValueError(f"ppl takes one --method, got {args.method!r}")
    model, tokenizer, plans = options.model_and_plans(args)
    plan = plans[0] if plans else None
    docs, source = options.documents_from_args(args, tokenizer)
    with plan_applied(model, plan):
        results = perplexity_at_lengths(model, docs, lengths, protocol=args.protocol, stride=args.stride,
                                        max_docs=args.max_docs, batch_tokens=args.batch_tokens)
    extra = {"model": args.model, "method": plan.method if plan else "none",
             "target_length": plan.target_length if plan else None, **source}
    rows = [r.row(**extra) for r in results]
    options.write_rows(rows, args.csv)
    if args.json:
        out = {**extra, "plan": json.loads(plan.to_json()) if plan else None, "results": rows}
        print(json.dumps(options.json_ready(out), indent=2))
    else:
        print(f"{'length':>8}{'protocol':>11}{'ppl':>11}{'tokens':>10}{'docs':>6}{'skipped':>9}{'seconds':>9}")
        for r in rows:
            print(f"{r['length']:>8}{r['protocol']:>11}{r['ppl']:>11.4f}{r['n_tokens']:>10}{r['n_docs']:>6}"
                  f"{r['n_skipped']:>9}{r['seconds']:>9.1f}")
    return 0
