"""Passkey generation: ropelab's trials (:func:`ropelab.eval.passkey.evaluate_passkey`) against a plain greedy
``model.generate`` over each of the same prompts, same model and length.

Sides, alternated within one process (plain, ropelab, ..., then reversed, ``--repeats`` times) so that a machine
whose speed drifts slows all alike:

* ``plain``: ``model.generate(prompt, max_new_tokens=6, do_sample=False)`` per trial, the prompt whole;
* ``ropelab``: ``evaluate_passkey`` over the same (length, depth, key) grid: prefix reuse where
  :func:`ropelab.eval.generation.prefix_pays`, the rest after a cache in chunks;
* ``before`` (``--before``): the previous behaviour, for the record: every cell's prefix cached and the rest fed in
  one forward (the path that left SDPA's causal kernel for its masked one).

Reported per trial: wall seconds and process CPU seconds (CPU time is the steadier figure on a shared machine),
medians over repeats, and the ratio to ``plain``; the answers of all sides must agree. Target (issue): ropelab
within 10% of plain (ratio <= 1.10) at 12,288 tokens.

    python benchmarks/bench_generate.py                                   # SmolLM2-135M, 4096 tokens, CPU
    python benchmarks/bench_generate.py --length 12288 --repeats 1        # the issue's length (~1 min a trial)
    python benchmarks/bench_generate.py --length 2048 --depths 0,0.5,1 --trials 2 --threads 1 --before
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="passkey depths (comma-separated)")
    parser.add_argument("--trials", type=int, default=5, help="keys per depth (passkey's default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--before", action="store_true", help="also time the previous reuse-everything path")
    args = parser.parse_args()

    import torch

    from ropelab.eval import generation, passkey
    from ropelab.runtime.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
    model = model.to(args.device).eval()
    depths = [float(d) for d in args.depths.split(",")]
    prompter = passkey.PasskeyPrompter(tokenizer)
    keys = passkey.draw_keys(0, len(depths) * args.trials)
    prompts = [prompter(args.length, d, keys[i * args.trials + t]) for i, d in enumerate(depths)
               for t in range(args.trials)]
    cuda = args.device.startswith("cuda")

    def plain() -> list:
        answers = []
        for prompt in prompts:
            ids = torch.tensor([prompt.ids], device=model.device)  # (1, T)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
            answers.append(passkey.parse_answer(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)))
        return answers

    def ropelab() -> list:
        rows, _ = passkey.evaluate_passkey(model, tokenizer, lengths=[args.length], depths=depths,
                                           trials=args.trials, seed=0, progress=False)
        return [r["answer"] for r in rows]

    def before() -> list:
        answers = []
        for i, depth in enumerate(depths):
            cache = generation.prefix_cache(model, prompter.prefix(args.length, depth))
            for prompt in prompts[i * args.trials:(i + 1) * args.trials]:
                new = generation.greedy_generate(model, prompt.suffix, 6, cache, chunk=None)
                answers.append(passkey.parse_answer(tokenizer.decode(new, skip_special_tokens=True)))
        return answers

    sides = {"plain": plain, "ropelab": ropelab, **({"before": before} if args.before else {})}
    passkey.evaluate_passkey(model, tokenizer, lengths=[256], depths=[0.5], trials=2, progress=False)  # warm-up
    times: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    answers = {}
    for rep in range(args.repeats):
        for side in (list(sides) if rep % 2 == 0 else list(sides)[::-1]):
            if cuda:
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            answers[side] = sides[side]()
            if cuda:
                torch.cuda.synchronize()
            times[side].append((time.perf_counter() - wall, time.process_time() - cpu))
    n = len(prompts)
    rows = {side: {"wall_per_trial": statistics.median(w for w, _ in t) / n,
                   "cpu_per_trial": statistics.median(c for _, c in t) / n} for side, t in times.items()}
    print(f"{args.model}, {args.length} tokens, depths {args.depths}, "
          f"{args.trials} trials each ({n} prompts), {args.repeats} repeats, {torch.get_num_threads()} threads")
    print(f"{'side':>8} {'wall s/trial':>13} {'cpu s/trial':>12} {'wall ratio':>11} {'cpu ratio':>10}")
    for side, row in rows.items():
        print(f"{side:>8} {row['wall_per_trial']:>13.2f} {row['cpu_per_trial']:>12.2f} "
              f"{row['wall_per_trial'] / rows['plain']['wall_per_trial']:>11.3f} "
              f"{row['cpu_per_trial'] / rows['plain']['cpu_per_trial']:>10.3f}")
    same = all(a == answers["plain"] for a in answers.values())
    print(f"answers agree: {same}; target ropelab/plain <= 1.10: "
          f"{rows['ropelab']['cpu_per_trial'] / rows['plain']['cpu_per_trial'] <= 1.10} (cpu)")
    print(json.dumps({"length": args.length, "prompts": n, "sides": rows, "answers_agree": same,
                      "all_seconds": times}))


if __name__ == "__main__":
    main()
