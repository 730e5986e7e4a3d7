"""Context-extension fine-tuning with accelerate: the recipe of Wu et al. (2024, sec. 4.1), at any scale.

The recipe (same for every method, so that methods can be compared): apply the plan to the pre-trained model, then
train on sequences of the target length with AdamW (beta 0.9, 0.999), a constant learning rate, no warm-up, no
weight decay, gradient accumulation to a global batch (64 in the paper: 1000 steps to 8k, 500 steps to 16k,
lr 2e-5, bf16). The same code pre-trains the tiny LLaMA of :mod:`ropelab.tiny` (method "none" at its window).

Design (after jquesnelle/yarn's ``finetune.py``, without its per-model classes):

* Batches come from a deterministic sampler: optimizer step ``k`` reads samples ``k*G .. (k+1)*G - 1`` of a
  seeded permutation of the packed blocks (G = global batch), each process its own slice. Resuming at step ``k``
  therefore needs no skipping and sees exactly the batches an uninterrupted run would.
* The loss never materialises full-vocabulary logits for the whole sequence: the final hidden states go through
  the LM head and cross-entropy ``loss_chunk_tokens`` tokens at a time, each chunk under activation checkpointing
  (so only one chunk of logits lives at once, forward or backward).
* Checkpoints go through :mod:`ropelab.checkpoint` (accelerate ``save_state`` + atomic rename).

Entry points: :func:`finetune` (Python), ``ropelab train``, ``python -m ropelab.train``,
``accelerate launch --config_file configs/accelerate/<x>.yaml -m ropelab.train --config configs/train/<y>.yaml``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from ropelab import checkpoint as ckpt
from ropelab.config import flatten, load_config, save_config, to_dict
from ropelab.determinism import numerics_key, pinned_numerics
from ropelab.io import content_key
from ropelab.plan import RopePlan
from ropelab.seeding import seed_everything

PRECISIONS = ("no", "bf16", "fp16")
SCHEDULES = ("constant", "cosine")
TRACKERS = ("auto", "none", "tensorboard", "wandb")
TINY_PREFIX = "tiny:"  # model: "tiny:<pretrain profile>" = the cached tiny LLaMA of ropelab.tiny
MODEL_SUBDIR = "model"
METRICS_JSONL, METRICS_CSV = "metrics.jsonl", "metrics.csv"
DONE_FILE = "ropelab_run.json"


@dataclass(frozen=True)
class DataConfig:
    """Where the training text comes from (a :mod:`ropelab.data` corpus; packed rows of the target length)."""

    corpus: str = "shakespeare"  # shakespeare | paul_graham | stdlib | text:<folder or file> | hf:<dataset> (online)
    split: str = "train"  # documents of this split only (ropelab.data splits by document)
    max_docs: int | None = None  # first N documents of the split (None: all)
    max_blocks: int | None = None  # first N packed rows (None: all): a cap for tiny runs


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's fine-tuning recipe (sec. 4.1) except the sizes."""

    model: str = "tiny:pretrain-quick"  # HF folder or hub id, or "tiny:<profile>" (configs/train/<profile>.yaml)
    method: str = "none"  # any ropelab.METHODS name; "none" fine-tunes at the target length with RoPE unchanged
    target_length: int = 128  # L': the sequence length trained on (must exceed the model's window L)
    method_options: dict = field(default_factory=dict)  # e.g. {n_hat: 80} for dprope, {beta_fast: 32} for yarn
    plan: str | None = None  # a plan JSON (ropelab plan --out); overrides method/target_length/method_options
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 50  # optimizer steps (paper: 1000 to 8k, 500 to 16k)
    global_batch: int = 8  # sequences per optimizer step, over all processes (paper: 64)
    micro_batch: int = 1  # sequences per forward pass per process; global_batch / (processes x micro) = accumulation
    learning_rate: float = 2e-5  # paper: 2e-5, constant
    betas: tuple = (0.9, 0.999)  # AdamW betas (paper)
    weight_decay: float = 0.0  # paper: none
    warmup_steps: int = 0  # paper: none (pre-training uses some)
    schedule: str = "constant"  # constant (paper) | cosine (pre-training)
    max_grad_norm: float = 0.0  # 0: no clipping (the paper states none)
    seed: int = 0  # one seed for the data order and everything random
    mixed_precision: str = "no"  # no | bf16 (paper, GPU) | fp16
    gradient_checkpointing: bool = False  # recompute decoder layers in backward: long sequences on small memory
    attn_implementation: str = "sdpa"  # sdpa | flash_attention_2 (when installed) | eager
    loss_chunk_tokens: int = 1024  # tokens per LM-head + cross-entropy chunk (0: one chunk, full logits)
    checkpoint_every: int = 0  # save an accelerate state every N steps (0: only at the end when resumable runs)
    keep_checkpoints: int = 2  # newest checkpoints kept
    log_every: int = 1  # metrics every N steps
    trackers: str = "auto"  # auto (tensorboard when installed) | none | tensorboard | wandb
    output_dir: str = "outputs/train/run"  # run folder: config, metrics, checkpoints, model/

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "method_options", dict(self.method_options or {}))
        for name in ("target_length", "steps", "global_batch", "micro_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        for name, allowed in (("mixed_precision", PRECISIONS), ("schedule", SCHEDULES), ("trackers", TRACKERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.loss_chunk_tokens < 0 or self.checkpoint_every < 0 or self.warmup_steps < 0:
            raise ValueError("loss_chunk_tokens, checkpoint_every and warmup_steps must be >= 0")


# --- the memory-light loss ------------------------------------------------------------------------------------


def _chunk_ce(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()  # (n, V): only this chunk's logits exist
    return F.cross_entropy(logits, labels, reduction="none", ignore_index=-100)  # (n,)


def chunked_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int = 1024,
                    reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``labels`` without full-vocabulary logits for all tokens.

    Args:
        hidden: final hidden states, already shifted (position t predicts ``labels[t]``). # (B, T, H)
        weight: LM-head weight. # (V, H)
        labels: next-token ids, -100 ignored. # (B, T)
        chunk_tokens: tokens per chunk (0: everything at once). Under autograd each chunk is checkpointed, so its
            logits are recomputed in backward instead of kept.
        reduction: "mean" over non-ignored tokens, "sum", or "none" (per-token losses, shape (B, T)).
    """
    shape = labels.shape
    flat_h, flat_y = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)  # (N, H), (N,)
    n = flat_y.numel()
    step = chunk_tokens if chunk_tokens > 0 else n
    pieces = []
    for start in range(0, n, step):
        h, y = flat_h[start:start + step], flat_y[start:start + step]
        if torch.is_grad_enabled() and step < n:
            pieces.append(_checkpoint(_chunk_ce, h, weight, y, use_reentrant=False))
        else:
            pieces.append(_chunk_ce(h, weight, y))
    losses = torch.cat(pieces)  # (N,)
    if reduction == "none":
        return losses.reshape(shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / (flat_y != -100).sum().clamp(min=1)


class ChunkedCausalLM(torch.nn.Module):
    """A causal LM whose forward returns the mean next-token loss, computed by :func:`chunked_lm_loss`.

    Wrapping the whole model (not calling its parts from outside) keeps DDP/FSDP hooks on the one forward.
    """

    def __init__(self, model: torch.nn.Module, chunk_tokens: int = 1024):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:  # (B, T)
        body = getattr(self.model, self.model.base_model_prefix)
        hidden = body(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, H)
        head = self.model.get_output_embeddings()
        return chunked_lm_loss(hidden[:, :-1], head.weight, input_ids[:, 1:], self.chunk_tokens, reduction)


@torch.no_grad()
def position_losses(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int = 4, chunk_tokens: int = 1024,
                    progress: bool = False) -> torch.Tensor:
    """Mean next-token loss at each position over ``blocks`` (no sliding window): where a model breaks past L.

    Args:
        blocks: token ids. # (N, T)
    Returns:
        loss of predicting token t+1 from tokens 0..t, averaged over blocks. # (T - 1,)
    """
    from tqdm.auto import tqdm

    wrapper = ChunkedCausalLM(model, chunk_tokens).eval()
    device = next(model.parameters()).device
    total = torch.zeros(blocks.shape[1] - 1, dtype=torch.float64)
    for start in tqdm(range(0, len(blocks), batch_size), desc="per-position loss", disable=not progress):
        batch = blocks[start:start + batch_size].to(device)
        total += wrapper(batch, reduction="none").double().sum(0).cpu()
    return total / len(blocks)


# --- data -----------------------------------------------------------------------------------------------------


def sample_indices(step: int, micro: int, rank: int, n_blocks: int, cfg: TrainConfig, processes: int) -> list[int]:
    """Block indices of one micro batch: a seeded permutation per epoch, read in order, G samples per step.

    Pure function of its arguments, so a resumed run reads exactly what an uninterrupted run would.
    """
    per_process = cfg.global_batch // processes
    out = []
    for j in range(cfg.micro_batch):
        sample = step * cfg.global_batch + rank * per_process + micro * cfg.micro_batch + j
        epoch, offset = divmod(sample, n_blocks)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        out.append(int(torch.randperm(n_blocks, generator=gen)[offset]))
    return out


def training_blocks(tokenizer: Any, data: DataConfig, length: int) -> torch.Tensor:
    """Packed token rows of ``length`` from the split's documents (:func:`ropelab.data.packed_sequences`). # (N, T)"""
    from ropelab.data import packed_sequences

    blocks = packed_sequences(data.corpus, data.split, tokenizer, length, data.max_docs)
    if data.max_blocks is not None:
        blocks = blocks[: data.max_blocks]
    if len(blocks) == 0:
        raise ValueError(f"data.corpus {data.corpus!r} has fewer than {length} tokens in split {data.split!r}")
    return blocks


# --- the loop -------------------------------------------------------------------------------------------------


def accumulation_steps(cfg: TrainConfig, processes: int) -> int:
    """global_batch / (processes x micro_batch); ValueError naming global_batch when it does not divide."""
    per_step = processes * cfg.micro_batch
    if cfg.global_batch % per_step:
        raise ValueError(
            f"global_batch {cfg.global_batch} does not divide into {processes} process(es) x micro_batch "
            f"{cfg.micro_batch}; use a multiple of {per_step}"
        )
    return cfg.global_batch // per_step


def _lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0
    return factor


def _trackers(cfg: TrainConfig) -> list[str]:
    if cfg.trackers == "none":
        return []
    if cfg.trackers == "auto":
        import importlib.util

        return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    return [cfg.trackers]


def process_state():
    """accelerate's PartialState as Accelerator builds it: ``ACCELERATE_USE_CPU=true`` (torchrun on CPU) makes the
    processes one gloo group; a bare ``PartialState()`` would make each its own single-process run."""
    from accelerate.state import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def make_accelerator(cfg: TrainConfig, run_dir: Path):
    """An Accelerator for ``cfg`` (its process count comes from ``accelerate launch`` or is 1)."""
    from accelerate import Accelerator
    processes = process_state().num_processes
    return Accelerator(
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=accumulation_steps(cfg, processes),
        log_with=_trackers(cfg) or None, project_dir=str(run_dir),
        step_scheduler_with_optimizer=False,
    )


def train_model(model: torch.nn.Module, blocks: torch.Tensor, cfg: TrainConfig, run_dir: str | Path, *,
                resume: bool = False, stop_after_steps: int | None = None, accelerator: Any = None,
                desc: str = "train", progress: bool = True) -> dict[str, Any]:
    """Train ``model`` on ``blocks`` (N, T) with ``cfg``'s optimizer and batch; returns the run summary.

    The model is trained in place (its parameters end up trained). The caller ends the run with :func:`save_model`
    (trackers and process group stay open until then). ``stop_after_steps`` kills this process with
    SIGKILL right after that step (and its checkpoint) -- a real crash, for the resume test.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    accelerator = accelerator or make_accelerator(cfg, run_dir)
    processes, rank = accelerator.num_processes, accelerator.process_index
    accum = accumulation_steps(cfg, processes)
    seq_len = blocks.shape[1]
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    wrapper = ChunkedCausalLM(model, cfg.loss_chunk_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    start = 0
    if resume:
        ckpt.clean_partial(run_dir) if accelerator.is_main_process else None
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is not None:
            start = int(ckpt.load_checkpoint(accelerator, latest[1])["step"])
    if accelerator.is_main_process:
        _truncate_metrics(run_dir, start)
    trackers = _trackers(cfg)
    if trackers:
        accelerator.init_trackers("tensorboard", config={
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(to_dict(cfg)).items()})

    tokens_per_step = cfg.global_batch * seq_len
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc, unit="step",
               disable=not (progress and accelerator.is_local_main_process), dynamic_ncols=True)
    last: dict[str, Any] = {}
    for step in bar:
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=accelerator.device)
        for micro in range(accum):
            idx = sample_indices(step, micro, rank, len(blocks), cfg, processes)
            batch = blocks[idx].to(accelerator.device)  # (micro, T)
            with accelerator.accumulate(wrapper):
                loss = wrapper(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(wrapper.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
        scheduler.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss_value = accelerator.reduce(loss_sum / accum, reduction="mean").item()
            seconds = time.perf_counter() - t0
            last = {"step": done, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                    "tokens": done * tokens_per_step, "tokens_per_s": tokens_per_step / seconds}
            if accelerator.is_main_process:
                _append_metrics(run_dir, last)
            if trackers:
                accelerator.log({k: v for k, v in last.items() if k != "step"}, step=done)
            bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{last['tokens_per_s']:.0f}")
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            ckpt.save_checkpoint(accelerator, run_dir, done, {"tokens": done * tokens_per_step},
                                 keep=cfg.keep_checkpoints)
        if stop_after_steps is not None and done >= stop_after_steps and done < cfg.steps:
            bar.close()
            sys.stdout.flush(), sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    accelerator.wait_for_everyone()
    return {"accelerator": accelerator, "wrapper": wrapper, "last": last, "seq_len": seq_len}


def _append_metrics(run_dir: Path, row: Mapping[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / METRICS_JSONL).open("a") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")
    path = run_dir / METRICS_CSV
    new = not path.is_file()
    with path.open("a", newline="") as fh:  # one column order, also for rows rewritten by a resume
        writer = csv.DictWriter(fh, fieldnames=["step", *sorted(k for k in row if k != "step")], lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metric rows after ``step`` (a resumed run rewrites them)."""
    rows = read_metrics(run_dir)
    for name in (METRICS_JSONL, METRICS_CSV):
        (run_dir / name).unlink(missing_ok=True)
    for row in rows:
        if row["step"] <= step:
            _append_metrics(run_dir, row)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metric rows of a run (``metrics.jsonl``), oldest first."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- fine-tuning a pre-trained model --------------------------------------------------------------------------


def resolve_model(source: str) -> str:
    """A model folder (or hub id) for ``cfg.model``; "tiny:<profile>" pre-trains the tiny LLaMA once, then caches."""
    if source.startswith(TINY_PREFIX):
        from ropelab.tiny import TinyConfig, pretrain

        return str(pretrain(load_config(TinyConfig, f"train/{source[len(TINY_PREFIX):]}")))
    return source


def base_spec(source: str):
    """The RoPE of ``cfg.model`` without loading weights (config only; pre-trains nothing)."""
    from ropelab.spec import RopeSpec

    if source.startswith(TINY_PREFIX):
        from ropelab.tiny import TinyConfig, llama_config

        tiny = load_config(TinyConfig, f"train/{source[len(TINY_PREFIX):]}")
        return RopeSpec.from_hf_config(llama_config(tiny, tiny.vocab_size))
    path = Path(source)
    if path.exists() or source.startswith((".", "/")):
        if not (path / "config.json").is_file():
            raise ValueError(f"model: no config.json in {source!r}")
        return RopeSpec.from_hf_config(path / "config.json")
    from transformers import AutoConfig

    return RopeSpec.from_hf_config(AutoConfig.from_pretrained(source))


def make_run_plan(cfg: TrainConfig) -> RopePlan:
    """The plan of a run: ``cfg.plan`` (a JSON file) or ``cfg.method`` at ``cfg.target_length`` for the model."""
    from ropelab.methods import make_plan

    spec = base_spec(cfg.model)
    if cfg.plan is not None:
        if not Path(cfg.plan).is_file():
            raise ValueError(f"plan: no plan file at {cfg.plan!r}")
        plan = RopePlan.load(cfg.plan)
        if plan.spec != spec:
            raise ValueError(f"plan: made for {plan.spec}, but model {cfg.model!r} has {spec}")
    else:
        if cfg.target_length <= spec.original_length:
            raise ValueError(
                f"target_length {cfg.target_length} must be above the model's original window "
                f"{spec.original_length}"
            )
        plan = make_plan(cfg.method, spec, cfg.target_length, **cfg.method_options)
    if plan.target_length <= spec.original_length:
        raise ValueError(f"target_length {plan.target_length} must be above the original window {spec.original_length}")
    return plan


def check_data(data: DataConfig) -> None:
    """Fail early on a data source that cannot exist (an unknown corpus name, a missing folder or file)."""
    from ropelab.data import SPLITS, check_corpus

    try:
        check_corpus(data.corpus)
    except ValueError as err:
        raise ValueError(f"data.corpus: {err}") from None
    if data.corpus.startswith("text:") and not Path(data.corpus[5:]).expanduser().exists():
        raise ValueError(f"data.corpus: no folder or file {data.corpus[5:]!r}")
    if data.split not in (*SPLITS, "all"):
        raise ValueError(f"data.split must be one of {', '.join(SPLITS)}, all; got {data.split!r}")


def validate(cfg: TrainConfig, processes: int = 1) -> RopePlan:
    """Every check that can fail before work starts; returns the run's plan."""
    accumulation_steps(cfg, processes)
    check_data(cfg.data)
    return make_run_plan(cfg)


def config_hash(cfg: TrainConfig, plan: RopePlan) -> str:
    payload = {"config": to_dict(dataclasses.replace(cfg, output_dir="")), "plan": plan.to_dict(),
               "numerics": numerics_key()}
    return content_key(payload)


@pinned_numerics()
def finetune(base_dir: str | Path | None = None, plan: RopePlan | None = None, cfg: TrainConfig | None = None,
             seed: int | None = None, run_dir: str | Path | None = None, *, resume: bool = False,
             stop_after_steps: int | None = None, force: bool = False, progress: bool = True) -> Path:
    """Extend a pre-trained model with ``plan`` and fine-tune it with ``cfg``'s recipe; returns the run folder.

    Args:
        base_dir: pre-trained model folder (default: ``cfg.model``, "tiny:<profile>" resolved).
        plan: the extension (default: from ``cfg``: ``plan`` file or ``method`` + ``target_length``).
        cfg: the recipe (default ``TrainConfig()``); ``seed`` overrides ``cfg.seed``.
        run_dir: where everything goes (default ``cfg.output_dir``). A finished run with the same config and plan
            is reused unless ``force``.
        resume: continue from the newest checkpoint in ``run_dir``.

    The run folder holds ``config.yaml`` (resolved), ``plan.json``, ``metrics.jsonl``/``.csv``, ``checkpoints/``
    and ``model/``: a checkpoint stock transformers loads with the plan in its ``config.rope_parameters``, plus
    ``ropelab_plan.json``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.hf import apply_plan

    cfg = cfg or TrainConfig()
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=int(seed))
    if base_dir is not None:
        cfg = dataclasses.replace(cfg, model=str(base_dir))
    run_dir = Path(run_dir or cfg.output_dir).resolve()
    cfg = dataclasses.replace(cfg, output_dir=str(run_dir))
    processes = process_state().num_processes
    accumulation_steps(cfg, processes)
    check_data(cfg.data)
    if plan is None:
        plan = make_run_plan(cfg)
    key = config_hash(cfg, plan)
    done_file = run_dir / MODEL_SUBDIR / DONE_FILE
    if not force and not resume and done_file.is_file() and json.loads(done_file.read_text()).get("key") == key:
        return run_dir

    model_dir = resolve_model(cfg.model)
    seed_everything(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation=cfg.attn_implementation)
    apply_plan(model, plan)
    blocks = training_blocks(tokenizer, cfg.data, plan.target_length)
    accelerator = make_accelerator(cfg, run_dir)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        plan.save(run_dir / "plan.json")
        if not resume:
            for name in (METRICS_JSONL, METRICS_CSV):
                (run_dir / name).unlink(missing_ok=True)
    result = train_model(model, blocks, cfg, run_dir, resume=resume, stop_after_steps=stop_after_steps,
                         accelerator=accelerator, desc=f"{plan.method} {plan.spec.original_length}->"
                         f"{plan.target_length}", progress=progress)
    save_model(result["accelerator"], result["wrapper"], tokenizer, plan, run_dir / MODEL_SUBDIR,
               {"key": key, "final": result["last"]})
    return run_dir


def save_model(accelerator: Any, wrapper: Any, tokenizer: Any, plan: RopePlan | None, out_dir: Path,
               record: Mapping[str, Any]) -> Path:
    """Write the trained model as a plain HF checkpoint (+ tokenizer, ``ropelab_plan.json``, a run record), then end
    the run: ``accelerator.end_training()`` closes the trackers and destroys the process group, which must come after
    the last collective (gathering the shards here), so this is the last call of every run."""
    state = accelerator.get_state_dict(wrapper)  # gathers FSDP / ZeRO-3 shards
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(wrapper).model
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, state_dict=state)
        tokenizer.save_pretrained(out_dir)
        if plan is not None:
            plan.save(out_dir / "ropelab_plan.json")
        (out_dir / DONE_FILE).write_text(json.dumps(dict(record), indent=1, sort_keys=True, default=str) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m ropelab.train`` and ``accelerate launch -m ropelab.train``: the ``ropelab train`` command."""
    from ropelab.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
