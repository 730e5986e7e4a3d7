"""One fine-tuning run, end to end: check everything, extend the model with the plan, train, save.

The run folder holds ``config.yaml`` (resolved), ``plan.json``, ``metrics.jsonl``/``.csv``, ``checkpoints/`` and
``model/``: a checkpoint stock transformers loads with the plan in its ``config.rope_parameters``, plus
``ropelab_plan.json`` and ``ropelab_run.json`` (written last: the run's key and final metrics).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

import ropelab.train.checkpoint as ckpt
from ropelab.config import save_config, to_dict
from ropelab.determinism import numerics_key, pinned_numerics, seed_everything
from ropelab.rope.plan import RopePlan
from ropelab.storage import content_key
from ropelab.train.config import TrainConfig, validate
from ropelab.train.loop import MODEL_SUBDIR, finished, make_accelerator, process_state, save_model, train_model
from ropelab.train.metrics import truncate_metrics
from ropelab.train.mixture import rows_key
from ropelab.train.sampler import training_blocks


def config_hash(cfg: TrainConfig, plan: RopePlan) -> str:
    """16 hex digits over the recipe (without its output folder) and the plan: a finished run with the same key
    is reused."""
    payload = {"config": to_dict(dataclasses.replace(cfg, output_dir="")), "plan": plan.to_dict(),
               "numerics": numerics_key(), **rows_key(cfg.data.mix)}
    return content_key(payload)


def resume_mode(resume: bool | str) -> str | None:
    """``resume`` as a :data:`ropelab.train.checkpoint.RESUME_MODES` name (True: "latest"), or None (no resume)."""
    if resume is False or resume is None:
        return None
    mode = "latest" if resume is True else resume
    if mode not in ckpt.RESUME_MODES:
        raise ValueError(f"resume must be one of {', '.join(ckpt.RESUME_MODES)}, got {resume!r}")
    return mode


@pinned_numerics()
def finetune(base_dir: str | Path | None = None, plan: RopePlan | None = None, cfg: TrainConfig | None = None,
             seed: int | None = None, run_dir: str | Path | None = None, *, resume: bool | str = False,
             stop_after_steps: int | None = None, force: bool = False, progress: bool = True) -> Path:
    """Extend a pre-trained model with ``plan`` and fine-tune it with ``cfg``'s recipe; returns the run folder.

    Args:
        base_dir: pre-trained model folder or hub id (default: ``cfg.model``; it replaces ``cfg.model``).
            A "tiny:<profile>" name is resolved first by :func:`ropelab.experiments.tiny.resolve_model`.
        plan: the extension (default: from ``cfg``: ``plan`` file or ``method`` + ``target_length``).
        cfg: the recipe (default ``TrainConfig()``); ``seed`` overrides ``cfg.seed``.
        run_dir: where everything goes (default ``cfg.output_dir``). A finished run with the same config and plan
            is reused unless ``force``.
        resume: continue from the newest checkpoint in ``run_dir`` (True or "latest"; ValueError when there is none
            or it is damaged) or from the newest intact one ("latest-intact"; newer damaged ones are renamed
            ``*.damaged``).

    Every check (config, data source, plan, the checkpoint to resume from) runs before anything is written.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.runtime.hf import apply_plan

    cfg = cfg or TrainConfig()
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=int(seed))
    if base_dir is not None:
        cfg = dataclasses.replace(cfg, model=str(base_dir))
    run_dir = Path(run_dir or cfg.output_dir).resolve()
    cfg = dataclasses.replace(cfg, output_dir=str(run_dir))
    mode = resume_mode(resume)
    plan = validate(cfg, process_state().num_processes, plan)
    start_from = ckpt.resume_point(run_dir, mode) if mode else None
    key = config_hash(cfg, plan)
    if not force and not mode and finished(run_dir / MODEL_SUBDIR, key):
        return run_dir

    seed_everything(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32,
                                                 attn_implementation=cfg.attn_implementation)
    apply_plan(model, plan)
    blocks, mask = training_blocks(tokenizer, cfg.data, plan.target_length, rows=cfg.steps * cfg.global_batch)
    accelerator = make_accelerator(cfg, run_dir)
    if accelerator.is_main_process:  # the inputs are good: now the run folder is written
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        plan.save(run_dir / "plan.json")
        if start_from is None:
            truncate_metrics(run_dir, 0)
        else:
            ckpt.set_aside_after(run_dir, start_from[0])
    result = train_model(model, blocks, cfg, run_dir, resume=start_from[1] if start_from else False,
                         stop_after_steps=stop_after_steps, accelerator=accelerator, loss_mask=mask,
                         desc=f"{plan.method} {plan.spec.original_length}->{plan.target_length}", progress=progress)
    save_model(result["accelerator"], result["wrapper"], tokenizer, plan, run_dir / MODEL_SUBDIR,
               {"key": key, "final": result["last"]})
    return run_dir
