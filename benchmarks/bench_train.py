"""Benchmarks of ``ropelab train`` on CPU.

speed (default): ``ropelab.train.train_model`` (accelerate, accumulation, metrics files, tqdm, atomic checkpoints)
    against a bare PyTorch loop doing the same work (same model, plan, rows, batch, length, steps, the same chunked
    loss), alternating runs; prints tokens/s of both and the overhead (target < 5%).
memory: peak resident memory of one training step (forward + backward + AdamW) of the tiny model against sequence
    length, with and without gradient checkpointing and the chunked loss; each point in a fresh process.
loss: the LM head + cross-entropy alone, forward + backward: ropelab's chunked loss against torch's
    ``F.linear_cross_entropy`` (chunked with ``LinearCrossEntropyOptions``, and its reference path): the largest
    difference in loss and gradients, seconds (best of --repeats, implementations alternating) and peak resident
    memory of the first call, each implementation in a fresh process.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_train.py speed --steps 20
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_train.py memory --lengths 512 1024 2048 4096
    OMP_NUM_THREADS=1 python benchmarks/bench_train.py loss --tokens 2048 --hidden 576 --vocab 49152 --chunk 1024
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _setup(profile: str, target: int):
    import torch
    from transformers import AutoModelForCausalLM

    from ropelab.config import load_config
    from ropelab.experiments.tiny import load_tiny_config, pretrain
    from ropelab.rope.registry import make_plan
    from ropelab.rope.spec import RopeSpec
    from ropelab.runtime.hf import apply_plan
    from ropelab.train import TrainConfig, training_blocks

    base = pretrain(load_tiny_config(f"pretrain-{profile}"))
    cfg = load_config(TrainConfig, f"train/tiny-{profile}-2x")
    spec = RopeSpec.from_hf_config(base / "config.json")
    plan = make_plan("dprope", spec, target or cfg.target_length)

    def model():
        m = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="sdpa")
        return apply_plan(m, plan)

    from transformers import AutoTokenizer

    blocks, _ = training_blocks(AutoTokenizer.from_pretrained(base), cfg.data, plan.target_length)
    return cfg, model, blocks


def bare_loop(model, blocks, cfg) -> float:
    """Plain PyTorch: the same sampler, accumulation, chunked loss and AdamW; returns seconds."""
    import torch

    from ropelab.train import ChunkedCausalLM, sample_indices

    wrapper = ChunkedCausalLM(model, cfg.loss_chunk_tokens).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=cfg.betas, weight_decay=0.0)
    accum = cfg.global_batch // cfg.micro_batch
    start = time.perf_counter()
    for step in range(cfg.steps):
        for micro in range(accum):
            batch = blocks[sample_indices(step, micro, 0, len(blocks), cfg, 1)]
            (wrapper(batch) / accum).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def ropelab_loop(model, blocks, cfg, run_dir: Path) -> float:
    from ropelab.train import train_model

    start = time.perf_counter()
    train_model(model, blocks, cfg, run_dir, progress=True)
    return time.perf_counter() - start


def speed(args: argparse.Namespace) -> None:
    cfg, make_model, blocks = _setup(args.profile, args.target)
    cfg = dataclasses.replace(cfg, steps=args.steps, checkpoint_every=args.checkpoint_every, trackers=args.trackers)
    tokens = cfg.steps * cfg.global_batch * blocks.shape[1]
    best = {"bare": float("inf"), "ropelab": float("inf")}
    for rep in range(args.repeats):
        best["bare"] = min(best["bare"], bare_loop(make_model(), blocks, cfg))
        with tempfile.TemporaryDirectory() as tmp:
            best["ropelab"] = min(best["ropelab"], ropelab_loop(make_model(), blocks, cfg, Path(tmp)))
    bare, ours = tokens / best["bare"], tokens / best["ropelab"]
    print(f"model tiny:{args.profile}, L'={blocks.shape[1]}, {cfg.steps} steps x {cfg.global_batch} rows "
          f"(micro {cfg.micro_batch}), checkpoint every {cfg.checkpoint_every}, trackers {cfg.trackers}, "
          f"best of {args.repeats}")
    print(f"bare PyTorch loop : {bare:9.0f} tokens/s")
    print(f"ropelab train     : {ours:9.0f} tokens/s")
    print(f"ratio {ours / bare:.3f}  (overhead {100 * (1 - ours / bare):+.1f}%)")


def _one_step_peak(length: int, checkpointing: bool, chunk: int, profile: str) -> dict:
    """Peak RSS increase (MiB) of one forward + backward + AdamW step at ``length`` (run in a fresh process)."""
    import torch
    from transformers import LlamaForCausalLM

    from ropelab.experiments.tiny import llama_config, load_tiny_config
    from ropelab.rope.registry import make_plan
    from ropelab.rope.spec import RopeSpec
    from ropelab.runtime.hf import apply_plan
    from ropelab.train import ChunkedCausalLM

    tiny = load_tiny_config(f"pretrain-{profile}")  # random weights: memory does not depend on them
    config = llama_config(tiny, tiny.vocab_size)
    model = apply_plan(LlamaForCausalLM(config), make_plan("dprope", RopeSpec.from_hf_config(config), length))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    wrapper = ChunkedCausalLM(model, chunk).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (1, length))
    warm = torch.randint(0, model.config.vocab_size, (1, 8))  # allocate optimizer state first
    wrapper(warm).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    wrapper(ids).backward()
    opt.step()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"length": length, "gradient_checkpointing": checkpointing, "loss_chunk_tokens": chunk,
            "peak_mib": round((after - before) / 1024, 1), "seconds": round(seconds, 2)}


def memory(args: argparse.Namespace) -> None:
    rows = []
    for length in args.lengths:
        for checkpointing, chunk in ((False, 0), (True, 1024)):
            out = subprocess.run([sys.executable, __file__, "_point", str(length), str(int(checkpointing)), str(chunk),
                                  args.profile], capture_output=True, text=True, check=False)
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"T={length:>6}  checkpointing={'on ' if checkpointing else 'off'} loss chunk={chunk or 'full':>5}  "
                  f"peak +{r['peak_mib']:8.1f} MiB  {r['seconds']:6.2f} s", flush=True)


LOSSES = ("ropelab", "torch_chunked", "torch_reference")


def _loss_point(impl: str, tokens: int, hidden: int, vocab: int, chunk: int, repeats: int, out: str) -> dict:
    """Forward + backward of one loss implementation on seeded inputs (run in a fresh process); saves loss + grads."""
    import torch
    import torch.nn.functional as F

    from ropelab.train import chunked_lm_loss

    gen = torch.Generator().manual_seed(0)
    h = torch.randn(1, tokens, hidden, generator=gen).requires_grad_()  # (1, N, H)
    w = (0.05 * torch.randn(vocab, hidden, generator=gen)).requires_grad_()  # (V, H)
    y = torch.randint(0, vocab, (1, tokens), generator=gen)  # (1, N)
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk or tokens)

    def loss():
        if impl == "ropelab":
            return chunked_lm_loss(h, w, y, chunk)
        return F.linear_cross_entropy(h.reshape(-1, hidden), w, y.reshape(-1),
                                      options=options if impl == "torch_chunked" else None)

    seconds = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(repeats + 1):  # the first call: its peak is the memory; then the timed calls
        h.grad = w.grad = None
        start = time.perf_counter()
        value = loss()
        value.backward()
        seconds.append(time.perf_counter() - start)
        if len(seconds) == 1:
            peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    torch.save({"loss": value.detach(), "grad_hidden": h.grad, "grad_weight": w.grad}, out)
    return {"impl": impl, "seconds": min(seconds[1:] or seconds), "peak_mib": round(peak, 1)}


def loss_benchmark(args: argparse.Namespace) -> None:
    import torch

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # alternate, one timed call per process, best over processes
            for impl in LOSSES:
                out = subprocess.run([sys.executable, __file__, "_loss", impl, str(args.tokens), str(args.hidden),
                                      str(args.vocab), str(args.chunk), "1", f"{tmp}/{impl}.pt"],
                                     capture_output=True, text=True, check=False)
                if out.returncode:
                    raise SystemExit(out.stderr[-2000:])
                row = json.loads(out.stdout.strip().splitlines()[-1])
                best = rows.setdefault(impl, row)
                best["seconds"] = min(best["seconds"], row["seconds"])
                best["peak_mib"] = min(best["peak_mib"], row["peak_mib"])
        ref = torch.load(f"{tmp}/ropelab.pt")
        for impl in LOSSES:
            other = torch.load(f"{tmp}/{impl}.pt")
            rows[impl]["max_rel_diff"] = {k: float((other[k] - ref[k]).abs().max() / ref[k].abs().max()) for k in ref}
    print(f"N={args.tokens} H={args.hidden} V={args.vocab} chunk={args.chunk or 'none'} float32, "
          f"{torch.get_num_threads()} thread(s), best of {args.repeats}")
    for impl, r in rows.items():
        diff = " ".join(f"{k} {v:.1e}" for k, v in r["max_rel_diff"].items())
        print(f"{impl:<16} {r['seconds']:7.3f} s  peak +{r['peak_mib']:7.1f} MiB  rel. diff vs ropelab: {diff}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_point":
        length, ckpt, chunk, profile = sys.argv[2:6]
        print(json.dumps(_one_step_peak(int(length), bool(int(ckpt)), int(chunk), profile)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_loss":
        impl, tokens, hidden, vocab, chunk, repeats, out = sys.argv[2:9]
        print(json.dumps(_loss_point(impl, int(tokens), int(hidden), int(vocab), int(chunk), int(repeats), out)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    sp = sub.add_parser("speed")
    sp.add_argument("--profile", default="quick", choices=["quick", "full"])
    sp.add_argument("--target", type=int, default=0, help="sequence length (default: the 2x config's)")
    sp.add_argument("--steps", type=int, default=20)
    sp.add_argument("--repeats", type=int, default=2)
    sp.add_argument("--checkpoint-every", type=int, default=10)
    sp.add_argument("--trackers", default="none")
    mp = sub.add_parser("memory")
    mp.add_argument("--profile", default="quick", choices=["quick", "full"])
    mp.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    lp = sub.add_parser("loss")
    lp.add_argument("--tokens", type=int, default=2048, help="positions scored (rows x length)")
    lp.add_argument("--hidden", type=int, default=576, help="hidden size (SmolLM2-135M: 576)")
    lp.add_argument("--vocab", type=int, default=49152, help="vocabulary (SmolLM2: 49152)")
    lp.add_argument("--chunk", type=int, default=1024, help="tokens per chunk (0: one chunk)")
    lp.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(sys.argv[1:] if len(sys.argv) > 1 else ["speed"])
    {"memory": memory, "loss": loss_benchmark}.get(args.mode, speed)(args)


if __name__ == "__main__":
    main()
