"""Perplexity evaluation: ropelab against the plain loop of the transformers guide, same model, text and stride.

The guide ("Perplexity of fixed-length models") slides a window of ``length`` tokens by ``stride``, calls the full
model with ``labels`` (context positions set to -100) and weights each window's mean loss by its token count; it
is re-implemented as :func:`ropelab.eval.perplexity.guide_perplexity`, calling the model with its default
``use_cache`` as the guide does. ropelab (:func:`perplexity`) runs the decoder body on batched windows and the LM
head on scored positions only, in chunks.

Times cover the evaluation only (model loading and a 256-token warm-up excluded). Two measurements:

* speed: ``--speed-length`` (default 4096), stride ``--stride``, on a text of ``--windows`` sliding windows, in one
  process that alternates the two sides (guide, ropelab, then ropelab, guide, ...) ``--repeats`` times, so that
  a machine whose speed drifts slows both alike; medians are reported. The protocol scores every token of a
  document's first window and ``stride`` tokens of each later one, so the total over a few windows understates
  what a long document (a PG-19 book is hundreds of windows) sees. Each repeat therefore also times the first
  window alone, and ``per_window`` = (time of all windows - time of the first) / (windows - 1) is the
  steady-state cost of one further window: the figure that decides a long evaluation;
* memory: one window of ``--memory-length`` (default 16384) tokens, each side in a fresh subprocess, so that its
  peak is its own: peak RSS (``getrusage`` maxrss) on CPU, ``torch.cuda.max_memory_allocated`` on CUDA. The
  guide's default ``use_cache`` also keeps every layer's keys and values until a window's outputs are dropped.

    python benchmarks/bench_perplexity.py                                  # SmolLM2-135M, 4k and 16k, CPU
    python benchmarks/bench_perplexity.py --speed-length 1024 --memory-length 4096 --windows 3   # a quick run
    python benchmarks/bench_perplexity.py --device cuda --dtype bfloat16 --model <folder> --random-weights llama2-7b

``--random-weights`` builds the model from the folder's config (or LLaMA2-7B's layer sizes over the folder's
tokenizer) with seeded random weights, for machines that have a tokenizer but not the weights: values are then
meaningless as perplexities but still compared, and the timings are those of the architecture.

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

# LLaMA2-7B's layer sizes (Touvron et al. 2023; meta-llama/Llama-2-7b-hf config.json)
SHAPES = {"llama2-7b": {
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "head_dim": 128, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}}


def load(args: argparse.Namespace):
    """The model (on ``--device`` in ``--dtype``) and its tokenizer."""
    import torch

    from ropelab.runtime.models import load_model

    dtype = getattr(torch, args.dtype)
    if args.random_weights is None:
        model, tokenizer = load_model(args.model, dtype=dtype)
        return model.to(args.device).eval(), tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(args.model)
    for key, value in SHAPES.get(args.random_weights, {}).items():
        setattr(config, key, value)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval(), AutoTokenizer.from_pretrained(args.model)


def peak_mib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(args: argparse.Namespace) -> None:
    """Load once and print one JSON line per measurement: ``--worker speed`` (both sides, alternating) or the
    memory run of one side (``--worker guide|ropelab``)."""
    import statistics

    import torch

    from ropelab.data import document_tokens
    from ropelab.eval.perplexity import guide_perplexity, perplexity, windows

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load(args)
    doc_id, ids = document_tokens(args.corpus, args.split, tokenizer)[0]
    if len(ids) < args.tokens:
        raise SystemExit(f"{doc_id} has only {len(ids)} tokens, {args.tokens} needed")
    text, length = ids[: args.tokens], args.length
    sides = {
        "guide": lambda tokens: guide_perplexity(model, tokens, length, args.stride),
        "ropelab": lambda tokens: perplexity(model, [(doc_id, tokens)], length, stride=args.stride,
                                             progress=False).ppl,
    }
    cuda = args.device.startswith("cuda")

    def timed(side: str, tokens) -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        ppl = sides[side](tokens)
        if cuda:
            torch.cuda.synchronize()
        return ppl, time.perf_counter() - start

    n_windows = len(windows(len(text), length, stride=args.stride))
    common = {"length": length, "tokens": len(text), "windows": n_windows, "threads": torch.get_num_threads()}
    guide_perplexity(model, ids[:256], 128, 128)  # warm-up: thread pools, allocator, kernels
    if args.worker != "speed":
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        ppl, seconds = timed(args.worker, text)
        print(json.dumps({"side": args.worker, "ppl": ppl, "seconds": seconds, "peak_mib": peak_mib(args.device),
                          **common}), flush=True)
        return
    runs: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    ppls = {}
    for rep in range(args.repeats):
        for side in (("guide", "ropelab") if rep % 2 == 0 else ("ropelab", "guide")):
            first = timed(side, text[:length])[1] if n_windows > 1 else 0.0
            ppls[side], seconds = timed(side, text)
            runs[side].append((seconds, (seconds - first) / (n_windows - 1) if n_windows > 1 else seconds))
    for side, times in runs.items():
        print(json.dumps({"side": side, "ppl": ppls[side], "seconds": statistics.median(t for t, _ in times),
                          "per_window": statistics.median(w for _, w in times),
                          "all_seconds": [t for t, _ in times], "all_per_window": [w for _, w in times],
                          **common}), flush=True)


def measure(args: argparse.Namespace, worker_kind: str, length: int, tokens: int) -> dict[str, dict]:
    """Run a worker in a fresh process; its rows by side."""
    command = [sys.executable, __file__, "--worker", worker_kind, "--length", str(length), "--tokens", str(tokens)]
    for key in ("stride", "model", "corpus", "split", "threads", "device", "dtype", "random_weights", "repeats"):
        if getattr(args, key) is not None:
            command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{worker_kind} at {length} failed: {done.stderr.strip().splitlines()[-3:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {row["side"]: row for row in rows}


def report(name: str, g: dict, r: dict, keys: list[tuple[str, str]]) -> None:
    """Rows ``guide | ropelab | ratio`` for ``keys``, then the one-line verdict."""
    for key, fmt in keys:
        print(f"{name:<8}{g['length']:>7}{g['tokens']:>8} {key:<10}{g[key]:>12{fmt}}{r[key]:>13{fmt}}"
              f"{r[key] / g[key]:>11.3f}")
    verdict = [f"relative difference {abs(r['ppl'] - g['ppl']) / g['ppl']:.2e} (target <= 1e-4)"]
    if "per_window" in g:
        verdict.append(f"speed-up {g['seconds'] / r['seconds']:.2f}x over {g['windows']} windows, "
                       f"{g['per_window'] / r['per_window']:.2f}x per further window (medians of "
                       f"{len(g['all_seconds'])}; per-repeat: "
                       + ", ".join(f"{a / b:.2f}x" for a, b in zip(g["all_per_window"], r["all_per_window"])) + ")")
    if "peak_mib" in g:
        verdict.append(f"memory {r['peak_mib'] / g['peak_mib']:.2f}x of the guide's")
    print(f"{'':<24}" + "; ".join(verdict) + f"; threads {g['threads']}")


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
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--random-weights", nargs="?", const="config", choices=["config", *SHAPES],
                        help="random weights with the folder's config (or LLaMA2-7B's layer sizes)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of the speed run")
    parser.add_argument("--worker", choices=["speed", "guide", "ropelab"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    weights = f", random weights ({args.random_weights})" if args.random_weights else ""
    print(f"model {args.model}{weights}, {args.device} {args.dtype}; text: first {args.split} document of "
          f"{args.corpus}, stride {args.stride}")
    print(f"{'run':<8}{'length':>7}{'tokens':>8} {'':<10}{'guide':>12}{'ropelab':>13}{'ratio r/g':>11}")
    results = {}
    speed_tokens = args.speed_length + (args.windows - 1) * args.stride
    results["speed"] = measure(args, "speed", args.speed_length, speed_tokens)
    report("speed", results["speed"]["guide"], results["speed"]["ropelab"],
           [("ppl", ".5f"), ("seconds", ".2f"), ("per_window", ".2f")])
    if args.memory_length:
        results["memory"] = {side: measure(args, side, args.memory_length, args.memory_length)[side]
                             for side in ("guide", "ropelab")}
        report("memory", results["memory"]["guide"], results["memory"]["ropelab"],
               [("ppl", ".5f"), ("seconds", ".2f"), ("peak_mib", ".0f")])
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), **results}, f, indent=2)


if __name__ == "__main__":
    main()
