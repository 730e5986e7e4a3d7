"""bfloat16 against float32 on this CPU: the forward the zero-shot profiles run, side by side.

The profiles name bfloat16 because the machine of the committed figures (Intel Xeon, AVX-512 BF16 and AMX) runs a
4k SmolLM2-135M forward ~1.8x faster in it; on a CPU without native bfloat16 the runner computes in float32
instead (:mod:`ropelab.runtime.cpu_dtype`). This prints both timings, their ratio, and what the runner would pick,
so a user sees which holds on their machine. One process alternates the dtypes (float32, bfloat16, then
bfloat16, float32, ...) ``--repeats`` times so a drifting machine slows both alike; medians are reported. Model
loading and a 64-token warm-up are excluded; ``--threads`` torch threads (the profiles pin 2).

    python benchmarks/bench_dtype.py                      # SmolLM2-135M, 1024 tokens, 2 threads
    python benchmarks/bench_dtype.py --length 4096 --repeats 3

Target: none to meet; it reports. bfloat16 pays only where the ratio float32 / bfloat16 is above 1.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    from ropelab.runtime.cpu_dtype import compute_dtype, cpu_flags, native_bfloat16
    from ropelab.runtime.models import load_model

    torch.set_num_threads(args.threads)
    float32, _ = load_model(args.model, dtype=torch.float32)
    models = {"float32": float32.eval(), "bfloat16": load_model(args.model, dtype=torch.bfloat16)[0].eval()}
    ids = torch.randint(0, float32.config.vocab_size, (1, args.length), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(ids[:, :64])  # warm-up
        for r in range(args.repeats):
            for name in (list(models) if r % 2 == 0 else list(reversed(models))):
                start = time.perf_counter()
                models[name](ids)  # [1, length] -> logits [1, length, vocab]
                times[name].append(time.perf_counter() - start)
    f32, bf16 = (statistics.median(times[n]) for n in ("float32", "bfloat16"))
    print(f"cpu: {torch.backends.cpu.get_cpu_capability()}, native bfloat16: {native_bfloat16(cpu_flags())}; "
          f"{args.model}, {args.length} tokens, {args.threads} threads, median of {args.repeats}")
    print(f"float32  {f32:8.2f} s")
    print(f"bfloat16 {bf16:8.2f} s")
    print(f"ratio float32 / bfloat16: {f32 / bf16:.2f}x  (the runner computes in "
          f"{compute_dtype('bfloat16', 'cpu')} for a bfloat16 profile here)")


if __name__ == "__main__":
    main()
