"""What a training run is: :class:`TrainConfig` (+ :class:`DataConfig`) and every check that can fail before work.

Each field is checked where the config is built (``__post_init__``: types and ranges); :func:`validate` adds what
needs more than the config (the process count, the data source, the model's RoPE and the plan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropelab.rope.plan import RopePlan
from ropelab.train.mixture import MixConfig

PRECISIONS = ("no", "bf16", "fp16")
SCHEDULES = ("constant", "cosine")
TRACKERS = ("auto", "none", "tensorboard", "wandb")
# model: "tiny:<pretrain profile>" names the cached tiny LLaMA; ropelab.experiments.tiny resolves it (ropelab train does), the
# training library only loads folders and hub ids.
TINY_PREFIX = "tiny:"


def _check_int(owner: str, name: str, value: Any, minimum: int, optional: bool = False) -> None:
    """``value`` is an int >= ``minimum`` (a bool is not: YAML ``true`` must not train with batch 1)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{owner}{name} must be {what}{' or null' if optional else ''}, got {value!r}")


def _check_number(name: str, value: Any, minimum: float, strict: bool = False) -> None:
    """``value`` is a real number (not a bool) >= ``minimum`` (> with ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the training text comes from (a :mod:`ropelab.data` corpus; packed rows of the target length)."""

    corpus: str = "shakespeare"  # shakespeare | paul_graham | stdlib | text:<folder or file> | hf:<dataset> (online)
    split: str = "train"  # documents of this split only (ropelab.data splits by document)
    max_docs: int | None = None  # first N documents of the split (None: all)
    max_blocks: int | None = None  # first N packed rows (None: all): a cap for tiny runs
    mix: MixConfig | None = None  # a long-range mix (ropelab.train.mixture) instead of packed text: one row per sample

    def __post_init__(self) -> None:
        for name in ("max_docs", "max_blocks"):
            _check_int("data.", name, getattr(self, name), 1, optional=True)


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
    checkpoint_every: int = 0  # save an accelerate state every N steps and at the end (0: never; no --resume)
    keep_checkpoints: int = 2  # newest checkpoints kept (0: all)
    log_every: int = 1  # metrics every N steps
    trackers: str = "auto"  # auto (tensorboard when installed) | none | tensorboard | wandb
    output_dir: str = "outputs/train/run"  # run folder: config, metrics, checkpoints, model/

    def __post_init__(self) -> None:
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for beta in self.betas:
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
                raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not isinstance(self.method_options or {}, dict):
            raise TypeError(f"method_options must be a mapping, got {self.method_options!r}")
        object.__setattr__(self, "method_options", dict(self.method_options or {}))
        if not isinstance(self.data, DataConfig):
            raise TypeError(f"data must be a DataConfig (a mapping in YAML), got {self.data!r}")
        for name in ("target_length", "steps", "global_batch", "micro_batch", "log_every"):
            _check_int("", name, getattr(self, name), 1)
        for name in ("warmup_steps", "loss_chunk_tokens", "checkpoint_every", "keep_checkpoints", "seed"):
            _check_int("", name, getattr(self, name), 0)
        _check_number("learning_rate", self.learning_rate, 0.0, strict=True)
        _check_number("weight_decay", self.weight_decay, 0.0)
        _check_number("max_grad_norm", self.max_grad_norm, 0.0)
        if not isinstance(self.gradient_checkpointing, bool):
            raise TypeError(f"gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")
        for name, allowed in (("mixed_precision", PRECISIONS), ("schedule", SCHEDULES), ("trackers", TRACKERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def accumulation_steps(cfg: TrainConfig, processes: int) -> int:
    """global_batch / (processes x micro_batch); ValueError naming global_batch when it does not divide."""
    per_step = processes * cfg.micro_batch
    if cfg.global_batch % per_step:
        raise ValueError(
            f"global_batch {cfg.global_batch} does not divide into {processes} process(es) x micro_batch "
            f"{cfg.micro_batch}; use a multiple of {per_step}"
        )
    return cfg.global_batch // per_step


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


def base_spec(source: str):
    """The RoPE of a model folder or hub id without loading weights (its config only)."""
    from ropelab.rope.spec import RopeSpec

    if source.startswith(TINY_PREFIX):
        raise ValueError(f"model {source!r}: a tiny model is resolved by ropelab.experiments.tiny.resolve_model (ropelab train "
                         "does it); give its folder here")
    path = Path(source)
    if path.exists() or source.startswith((".", "/")):
        if not (path / "config.json").is_file():
            raise ValueError(f"model: no config.json in {source!r}")
        return RopeSpec.from_hf_config(path / "config.json")
    from transformers import AutoConfig

    return RopeSpec.from_hf_config(AutoConfig.from_pretrained(source))


def make_run_plan(cfg: TrainConfig, spec: Any = None) -> RopePlan:
    """The plan of a run: ``cfg.plan`` (a JSON file) or ``cfg.method`` at ``cfg.target_length`` for the model.

    ``spec``: the model's RoPE (default :func:`base_spec` of ``cfg.model``).
    """
    from ropelab.rope.registry import make_plan

    spec = spec if spec is not None else base_spec(cfg.model)
    if cfg.plan is not None:
        if not Path(cfg.plan).is_file():
            raise ValueError(f"plan: no plan file at {cfg.plan!r}")
        plan = RopePlan.load(cfg.plan)
        if plan.spec != spec:
            raise ValueError(f"plan: made for {plan.spec}, but model {cfg.model!r} has {spec}")
    else:
        if cfg.target_length <= spec.original_length:
            raise ValueError(f"target_length {cfg.target_length} must be above the model's original window "
                             f"{spec.original_length}")
        plan = make_plan(cfg.method, spec, cfg.target_length, **cfg.method_options)
    check_plan(plan, spec)
    return plan


def check_plan(plan: RopePlan, spec: Any) -> None:
    """A plan trains past the window: its target length must exceed the model's original window."""
    if plan.spec != spec:
        raise ValueError(f"plan: made for {plan.spec}, but the model has {spec}")
    if plan.target_length <= spec.original_length:
        raise ValueError(f"target_length {plan.target_length} must be above the model's original window "
                         f"{spec.original_length}")


def validate(cfg: TrainConfig, processes: int = 1, plan: RopePlan | None = None, spec: Any = None) -> RopePlan:
    """Every check that can fail before work starts; returns the run's plan (``plan``, checked, or made from
    ``cfg``). ``spec``: the model's RoPE when ``cfg.model`` is not a folder or hub id (a tiny profile)."""
    accumulation_steps(cfg, processes)
    check_data(cfg.data)
    if plan is None:
        return make_run_plan(cfg, spec)
    check_plan(plan, spec if spec is not None else base_spec(cfg.model))
    return plan
