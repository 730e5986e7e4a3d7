"""Planning speed: ropelab's vectorised DPRoPE selector against a naive per-element reference.

The reference does what the authors' released selector does (DPRoPE/DPRope.py): a Python loop over every
(pair, position) that bins one float32 angle at a time. It is re-implemented here, not imported.

    python benchmarks/bench_plan.py            # LLaMA2 4k->8k, both sides; then 1M-token targets
    python benchmarks/bench_plan.py --quick    # the naive side on a 1/8 slice of the pairs, scaled up

Everything runs on one thread: OMP/MKL/OpenBLAS thread counts are set to 1 before numpy and torch load, and
torch.set_num_threads(1) (the histograms use numpy's sort and search, which are single-threaded anyway).

Targets (issue 2): >= 1000x faster than the naive loop on LLaMA2 4k->8k, and a 1M-token plan in under 2 s.
Continuous per-pair factors (issue 11, dprope_continuous): LLaMA2 4k->8k under 1 s on one thread, 1M under 10 s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy and torch load: one thread throughout

import argparse
import time

import torch

from ropelab import RopeSpec, make_plan


def naive_distribution(inv_freq: torch.Tensor, n: int, bins: int) -> torch.Tensor:
    """As the release: all angles at once in float32, then one Python iteration per (pair, position) to bin them."""
    angles = (inv_freq[:, None] * torch.arange(n)[None, :]) % (2 * torch.pi)  # (P, n)
    counts = torch.full((inv_freq.shape[0], bins), torch.finfo(torch.float16).tiny)
    for i in range(angles.shape[0]):
        for m in range(n):
            counts[i][int(torch.floor(bins / (2 * torch.pi) * angles[i][m]))] += 1
    return counts / n


def naive_dprope(spec: RopeSpec, target: int, bins: int = 360, pairs: int | None = None) -> torch.Tensor:
    """Per-pair argmin of KL between the L-distribution and the extrapolated / interpolated L'-distributions."""
    inv = torch.from_numpy(spec.inv_freq("float32")).float()[:pairs]
    s = target / spec.original_length
    ref = naive_distribution(inv, spec.original_length, bins)
    kls = []
    for cand in (inv, inv / s):
        q = naive_distribution(cand, target, bins)
        kls.append(torch.nn.functional.kl_div(q.log(), ref, reduction="none").sum(-1))
    return torch.stack(kls).argmin(0)  # 0 extrapolate, 1 interpolate


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="time the naive loop on 8 of 64 pairs and scale up")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = RopeSpec.preset("llama2-7b")

    pairs = 8 if args.quick else None
    start = time.perf_counter()
    naive_choice = naive_dprope(spec, 8192, pairs=pairs)
    naive = (time.perf_counter() - start) * (64 / 8 if args.quick else 1)
    plan32 = make_plan("dprope", spec, 8192, precision="float32")
    agree = [int(f > 1) for f in plan32.factors[: len(naive_choice)]] == naive_choice.tolist()
    fast = best_of(lambda: make_plan("dprope", spec, 8192), repeat=5)
    fast32 = best_of(lambda: make_plan("dprope", spec, 8192, precision="float32"), repeat=5)

    print("LLaMA2-7B 4k -> 8k, DPRoPE selection, one thread")
    print(f"{'implementation':<34} {'seconds':>10} {'speed-up':>10}")
    print(f"{'naive per-element loop (baseline)':<34} {naive:>10.3f} {1.0:>10.1f}" + (" (scaled from 8 pairs)" if args.quick else ""))
    print(f"{'ropelab exact':<34} {fast:>10.4f} {naive / fast:>10.0f}")
    print(f"{'ropelab float32 (release parity)':<34} {fast32:>10.4f} {naive / fast32:>10.0f}")
    print(f"same choices as the naive loop: {agree}   target: >= 1000x")
    for options in ({}, {"beta": None}):
        seconds = best_of(lambda options=options: make_plan("dprope_continuous", spec, 8192, **options), repeat=3)
        print(f"{'dprope_continuous ' + str(options):<34} {seconds:>10.4f} {naive / seconds:>10.0f}   target: < 1 s")

    print("\nLong targets, exact angles, one thread (seconds)")
    print(f"{'preset':<14} {'L':>6} -> {'target':>8} {'dprope':>8} {'continuous':>11} {'beta=None':>10}")
    for name, target in (("llama2-7b", 1 << 20), ("llama3-8b", 1 << 20), ("smollm2-135m", 1 << 20)):
        preset = RopeSpec.preset(name)
        argmin = best_of(lambda preset=preset, target=target: make_plan("dprope", preset, target), repeat=2)
        times = [best_of(lambda preset=preset, target=target, options=options:
                         make_plan("dprope_continuous", preset, target, **options), repeat=1)
                 for options in ({}, {"beta": None})]
        print(f"{name:<14} {preset.original_length:>6} -> {target:>8} {argmin:>8.2f} "
              f"{times[0]:>11.2f} {times[1]:>10.2f}")
    print("targets: dprope < 2 s, dprope_continuous < 10 s")

if __name__ == "__main__":
    main()
