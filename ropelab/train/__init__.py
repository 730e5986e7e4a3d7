"""Context-extension fine-tuning with accelerate: the recipe of Wu et al. (2024, sec. 4.1), at any scale.

The recipe (same for every method, so that methods can be compared): apply the plan to the pre-trained model, then
train on sequences of the target length with AdamW (beta 0.9, 0.999), a constant learning rate, no warm-up, no
weight decay, gradient accumulation to a global batch (64 in the paper: 1000 steps to 8k, 500 steps to 16k,
lr 2e-5, bf16). The same loop pre-trains the tiny LLaMA of :mod:`ropelab.experiments.tiny` (method "none" at its window).

One file per job:

* :mod:`~ropelab.train.config` -- :class:`TrainConfig`, :class:`DataConfig` and :func:`validate` (every check that
  can fail before work: types, batch divisibility, data source, the plan);
* :mod:`~ropelab.train.loss` -- the chunked LM loss (no full-vocabulary logits for a whole sequence);
* :mod:`~ropelab.train.sampler` -- the packed rows and the deterministic order they are read in (exact resume);
* :mod:`~ropelab.train.loop` -- the accelerate loop :func:`train_model` and :func:`save_model`;
* :mod:`~ropelab.train.metrics` -- ``metrics.jsonl`` / ``metrics.csv``;
* :mod:`~ropelab.train.run` -- :func:`finetune`: one run end to end, reused when finished, resumed on request;
* ``__main__`` -- ``python -m ropelab.train`` / ``accelerate launch -m ropelab.train``: the ``ropelab train``
  command. Checkpoints are :mod:`ropelab.train.checkpoint` (accelerate ``save_state`` + atomic rename).

``accelerate launch --config_file configs/accelerate/<x>.yaml -m ropelab.train --config configs/train/<y>.yaml``
"""

from ropelab.train.config import (
    PRECISIONS,
    SCHEDULES,
    TINY_PREFIX,
    TRACKERS,
    DataConfig,
    TrainConfig,
    accumulation_steps,
    base_spec,
    check_data,
    make_run_plan,
    validate,
)
from ropelab.train.loop import (
    DONE_FILE,
    MODEL_SUBDIR,
    finished,
    make_accelerator,
    process_state,
    save_model,
    train_model,
)
from ropelab.train.loss import ChunkedCausalLM, chunked_lm_loss, position_losses
from ropelab.train.metrics import METRICS_CSV, METRICS_JSONL, read_metrics
from ropelab.train.run import config_hash, finetune
from ropelab.train.sampler import sample_indices, training_blocks

__all__ = [
    "DONE_FILE", "METRICS_CSV", "METRICS_JSONL", "MODEL_SUBDIR", "PRECISIONS", "SCHEDULES", "TINY_PREFIX", "TRACKERS",
    "ChunkedCausalLM", "DataConfig", "TrainConfig", "accumulation_steps", "base_spec", "check_data", "chunked_lm_loss",
    "config_hash", "finetune", "finished", "make_accelerator", "make_run_plan", "position_losses", "process_state",
    "read_metrics", "sample_indices", "save_model", "train_model", "training_blocks", "validate",
]
