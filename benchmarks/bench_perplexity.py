"""Perplexity evaluation: ropelab against the plain loop of the transformers guide, same model, text and stride.

The guide ("Perplexity of fixed-length models") slides a window of ``length`` tokens by ``stride``, calls the full
model with ``labels`` (context positions set to -100) and weights each window's mean loss by its token count; it
is re-implemented as :func:`ropelab.eval.perplexity.guide_perplexity`. ropelab (:func:`perplexity`) runs the decoder
body on batched windows and the LM head on scored positions only, in chunks.

Every measurement runs in a fresh subprocess (``--worker``), so its peak RSS (``resource.getrusage`` maxrss) is its
own; the time covers the evaluation only (model loading excluded). Two measurements per side:

* speed: ``--speed-length`` (default 4096) over ``--windows`` sliding windows (stride ``--stride``); values and time;
* memory: one window of ``--memory-length`` (default 16384) tokens; value and peak RSS.

    python benchmarks/bench_perplexity.py                                  # SmolLM2-135M, 4k and 16k
    python benchmarks/bench_perplexity.py --speed-length 1024 --memory-length 4096 --windows 3   # a quick run

Targets (issue 4): same value to 1e-4 relative; >= 1.2x faster at 4k on CPU; <= 0.5x the guide's peak memory
at 16k. Text: the first document of Shakespeare's test split (long plays: ~50k tokens).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def worker(args: argparse.Namespace) -> None:
    """Load, evaluate one side once, print a JSON line with ppl, seconds and peak RSS (MiB)."""
    import torch

    from ropelab.data import document_tokens
    from ropelab.eval.perplexity import guide_perplexity, perplexity
    from ropelab.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    doc_id, ids = document_tokens(args.corpus, args.split, tokenizer)[0]
    ids = ids[: args.tokens]
    if len(ids) < args.tokens:
        raise SystemExit(f"{doc_id} has only {len(ids)} tokens, {args.tokens} needed")
    start = time.perf_counter()
    if args.worker == "guide":
        ppl = guide_perplexity(model, ids, args.length, args.stride)
    else:
        ppl = perplexity(model, [(doc_id, ids)], args.length, stride=args.stride, progress=False).ppl
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"side": args.worker, "doc": doc_id, "length": args.length, "tokens": len(ids), "ppl": ppl,
                      "seconds": seconds, "peak_mib": peak, "threads": torch.get_num_threads()}))


def measure(args: argparse.Namespace, side: str, length: int, tokens: int) -> dict:
    command = [sys.executable, __file__, "--worker", side, "--length", str(length), "--tokens", str(tokens),
               "--stride", str(args.stride), "--model", args.model, "--corpus", args.corpus, "--split", args.split,
               "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} at {length} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m or a local model folder")
    parser.add_argument("--corpus", default="shakespeare")
    parser.add_argument("--split", default="test")
    parser.add_argument("--stride", type=int, default=256)
    parser.add_argument("--speed-length", type=int, default=4096)
    parser.add_argument("--windows", type=int, default=4, help="sliding windows in the speed run")
    parser.add_argument("--memory-length", type=int, default=16384, help="0 skips the memory run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker", choices=["guide", "ropelab"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    runs = [("speed", args.speed_length, args.speed_length + (args.windows - 1) * args.stride)]
    if args.memory_length:
        runs.append(("memory", args.memory_length, args.memory_length))
    print(f"model {args.model}, text: first {args.split} document of {args.corpus}, stride {args.stride}")
    print(f"{'run':<8}{'length':>7}{'tokens':>8} {'':<8}{'guide':>12}{'ropelab':>12}{'ratio r/g':>11}")
    for name, length, tokens in runs:
        g, r = measure(args, "guide", length, tokens), measure(args, "ropelab", length, tokens)
        rel = abs(r["ppl"] - g["ppl"]) / g["ppl"]
        for key, fmt in (("ppl", ".5f"), ("seconds", ".1f"), ("peak_mib", ".0f")):
            print(f"{name:<8}{length:>7}{tokens:>8} {key:<8}{g[key]:>12{fmt}}{r[key]:>12{fmt}}"
                  f"{r[key] / g[key]:>11.3f}")
        print(f"{'':<24}relative difference {rel:.2e} (target <= 1e-4); speed-up {g['seconds'] / r['seconds']:.2f}x; "
              f"memory {r['peak_mib'] / g['peak_mib']:.2f}x of the guide's; threads {g['threads']}")


if __name__ == "__main__":
    main()
