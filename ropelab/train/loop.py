"""The training loop (accelerate): AdamW, the learning-rate schedule, gradient accumulation, metrics, atomic
checkpoints, exact resume; and :func:`save_model`, which writes the result and ends the run.

The loop is the same for fine-tuning (:func:`ropelab.train.finetune`) and for pre-training the tiny LLaMA
(:func:`ropelab.experiments.tiny.pretrain`), after jquesnelle/yarn's ``finetune.py`` without its per-model classes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import ropelab.train.checkpoint as ckpt
from ropelab.config import flatten, to_dict
from ropelab.rope.plan import RopePlan
from ropelab.storage import atomic_folder
from ropelab.train.config import TrainConfig, accumulation_steps
from ropelab.train.loss import ChunkedCausalLM
from ropelab.train.metrics import append_metrics, truncate_metrics
from ropelab.train.sampler import sample_indices

MODEL_SUBDIR = "model"  # <run>/model: the trained model, a plain HF checkpoint
DONE_FILE = "ropelab_run.json"  # <run>/model/ropelab_run.json: written last, marks a finished run


def finished(model_dir: Path, key: str) -> bool:
    """Whether ``model_dir`` holds a finished run of the configuration whose hash is ``key`` (its :data:`DONE_FILE`)."""
    done = Path(model_dir) / DONE_FILE
    return done.is_file() and json.loads(done.read_text()).get("key") == key


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
                resume: bool | str | Path = False, stop_after_steps: int | None = None, accelerator: Any = None,
                desc: str = "train", progress: bool = True, loss_mask: torch.Tensor | None = None) -> dict[str, Any]:
    """Train ``model`` on ``blocks`` (N, T) with ``cfg``'s optimizer and batch; returns the run summary.

    ``loss_mask`` (N, T) bool: the tokens of each block the loss scores (None: all; see
    :func:`ropelab.train.sampler.training_blocks`).

    ``resume``: False starts at step 0; a checkpoint folder continues from it; True continues from the newest
    checkpoint of ``run_dir`` when there is one (ValueError naming it when it is damaged). The model is trained in
    place. The caller ends the run with :func:`save_model` (trackers and process group stay open until then).
    ``stop_after_steps`` kills this process with SIGKILL right after that step (and its checkpoint) -- a real
    crash, for the resume test.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    start_from = None
    if isinstance(resume, (str, Path)):
        start_from = Path(resume)
    elif resume and ckpt.list_checkpoints(run_dir):
        start_from = ckpt.resume_point(run_dir)[1]
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
    if resume and accelerator.is_main_process:
        ckpt.clean_partial(run_dir)
    if start_from is not None:
        start = int(ckpt.load_checkpoint(accelerator, start_from)["step"])
    if accelerator.is_main_process:
        truncate_metrics(run_dir, start)
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
            mask = None if loss_mask is None else loss_mask[idx].to(accelerator.device)  # (micro, T)
            with accelerator.accumulate(wrapper):
                loss = wrapper(batch, loss_mask=mask)
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
                append_metrics(run_dir, last)
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


def save_model(accelerator: Any, wrapper: Any, tokenizer: Any, plan: RopePlan | None, out_dir: Path,
               record: Mapping[str, Any]) -> Path:
    """Write the trained model as a plain HF checkpoint (+ tokenizer, ``ropelab_plan.json``, a run record) into a
    temporary folder and rename it to ``out_dir`` (:func:`ropelab.storage.atomic_folder`: a reader in another process
    sees the old model or the new one, never half of one), then end the run: ``accelerator.end_training()`` closes the trackers and destroys the process group, which must come after
    the last collective (gathering the shards here), so this is the last call of every run."""
    state = accelerator.get_state_dict(wrapper)  # gathers FSDP / ZeRO-3 shards
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(wrapper).model
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        with atomic_folder(out_dir, replace=True) as tmp:
            model.save_pretrained(tmp, state_dict=state)
            tokenizer.save_pretrained(tmp)
            if plan is not None:
                plan.save(tmp / "ropelab_plan.json")
            (tmp / DONE_FILE).write_text(json.dumps(dict(record), indent=1, sort_keys=True, default=str) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out_dir
