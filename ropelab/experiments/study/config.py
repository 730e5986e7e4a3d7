"""The study's configuration: its profiles (configs/study/<profile>.yaml) and the grid of runs they define.

The grid is Wu et al.'s (EMNLP 2024, sec. 4): every method x scale under one fine-tuning recipe, plus the n_hat
sweep (Table 4), the bins sweep (Table 6) and other divergences at one scale, and ropelab's own selection variants
(robust, continuous, searched). :mod:`ropelab.experiments.study.run` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropelab.config import load_config
from ropelab.experiments.tiny import TinyConfig
from ropelab.rope.paper import PAPER_NHAT_RATIO, even_dims
from ropelab.train import TrainConfig
from ropelab.train.mixture import TASKS, MixConfig

MAIN_METHODS = ("none", "pi", "ntk", "yarn", "dprope", "dprope_paper", "dprope_robust", "dprope_continuous",
                "dprope_search")
RETRIEVAL_TASKS = tuple(t for t in TASKS if t not in ("text", "repeat"))  # repeat rows train; copy rows test
BASELINES = ("none", "pi", "ntk", "yarn")



def _finetune_recipe() -> TrainConfig:
    return TrainConfig(steps=20, global_batch=4, micro_batch=4, learning_rate=1e-4, loss_chunk_tokens=0,
                       trackers="none", log_every=1)


@dataclass(frozen=True)
class EvalConfig:
    """How every run is scored (the same tokens for every method)."""

    split: str = "test"  # held-out documents (never trained on; the search's objective uses "validation")
    length_multiples: tuple = (0.5, 1, 2, 4, 8)  # perplexity lengths, in units of L
    segments: int = 16  # held-out segments of max(length) tokens, spread over the split's documents
    passkey_multiples: tuple = (1, 2, 4)  # passkey prompt lengths, in units of L
    passkey_depths: tuple = (0.0, 0.5, 1.0)  # key positions (fraction of the filler before the key)
    passkey_trials: int = 4  # keys per (length, depth) cell (0: no generated passkeys)
    passkey_seed: int = 271828  # evaluation keys
    retrieval_multiples: tuple = (1, 2, 4, 8)  # lengths of the teacher-forced copy/recall/passkey rows, in units of L
    retrieval_rows: int = 32  # held-out rows per (task, length)
    retrieval_seed: int = 314159  # draws the held-out rows (any seed: their text is the held-out split's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "length_multiples", tuple(float(m) for m in self.length_multiples))
        object.__setattr__(self, "passkey_multiples", tuple(float(m) for m in self.passkey_multiples))
        object.__setattr__(self, "passkey_depths", tuple(float(d) for d in self.passkey_depths))
        object.__setattr__(self, "retrieval_multiples", tuple(float(m) for m in self.retrieval_multiples))


@dataclass(frozen=True)
class SearchConfig:
    """The ``dprope_search`` variant: :func:`ropelab.rope.search.coordinate_search` from DPRoPE's factors against the
    pre-trained model's answer NLL on "validation" mix rows at the target length (zero-shot, before fine-tuning)."""

    budget: int = 24  # objective evaluations per scale
    rows: int = 16  # validation rows per objective evaluation (copy + recall)
    seed: int = 161803  # draws the objective's rows

    def __post_init__(self) -> None:
        for name in ("budget", "rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"search.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class StudyConfig:
    """One study profile (configs/study/<profile>.yaml)."""

    name: str = "quick"  # label of the study's run folders
    base_model: str = "tiny"  # "tiny": pre-train ``tiny`` here; else a HF model folder (its window is L)
    corpus: str = "shakespeare"  # ropelab.data corpus: train split for training, eval.split for scoring
    max_docs: int | None = None  # first N documents of the corpus's training split (None: all)
    tiny: TinyConfig = field(default_factory=TinyConfig)  # the tiny LLaMA (its corpus is set to the mixture)
    finetune: TrainConfig = field(default_factory=_finetune_recipe)  # one recipe for every method
    steps_per_scale: dict = field(default_factory=dict)  # e.g. {2: 1000, 4: 500} (the paper); else finetune.steps
    scales: tuple = (2, 4)  # target lengths, in units of L
    methods: tuple = MAIN_METHODS  # none | pi | ntk | yarn | dprope (argmin) | dprope_paper (n_hat ratio)
    seeds: tuple = (0, 1)  # fine-tuning seeds (data order and everything random)
    paper_nhat_ratio: dict = field(default_factory=lambda: dict(PAPER_NHAT_RATIO))  # scale -> share of dims
    sweep_scale: int = 2  # the scale of the n_hat, bins and metric sweeps
    sweep_seeds: tuple = (0,)  # seeds of the sweeps
    nhat_sweep: tuple = ()  # n_hat values (interpolated dims) for dprope, e.g. (24, 32, 40, 48)
    bins_sweep: tuple = ()  # b values for dprope, e.g. (90, 180, 360, 720)
    metric_sweep: tuple = ()  # divergences besides kl: js, tv, wasserstein
    bins: int = 360  # b of every main plan (the paper's)
    mix: MixConfig = field(default_factory=MixConfig)  # the long-range rows of pre-training and fine-tuning
    search: SearchConfig = field(default_factory=SearchConfig)
    workers: int = 2  # fine-tuning runs at once, one thread each (results do not depend on it)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reference_notebook: str = "06"  # notebook (number or stem) whose metrics.json holds the zero-shot SmolLM2 result

    def __post_init__(self) -> None:
        for name in ("scales", "methods", "seeds", "sweep_seeds", "nhat_sweep", "bins_sweep", "metric_sweep"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        object.__setattr__(self, "steps_per_scale", {int(k): int(v) for k, v in (self.steps_per_scale or {}).items()})
        object.__setattr__(self, "paper_nhat_ratio", {int(k): float(v) for k, v in self.paper_nhat_ratio.items()})
        unknown = [m for m in self.methods if m not in MAIN_METHODS]
        if unknown:
            raise ValueError(f"unknown study method {unknown[0]!r}; allowed: {', '.join(MAIN_METHODS)}")
        if not self.seeds or any(not isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        if any(not isinstance(s, int) or s < 2 for s in self.scales) or not self.scales:
            raise ValueError(f"scales must be integers >= 2, got {self.scales!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")
        if self.base_model == "tiny":
            check_window(self)

    def retrieval_tasks(self) -> tuple[str, ...]:
        """The mix's retrieval tasks (copy, recall, passkey with a share above 0): what every run is scored on."""
        return tuple(t for t in RETRIEVAL_TASKS if self.mix.shares.get(t, 0) > 0)


MAX_TINY_WINDOW = 4096  # the longest L whose 8L evaluation a 2-core CPU runs in minutes


def check_window(cfg: StudyConfig) -> None:
    """Fail before training on a window the tiny model cannot hold: one past :data:`MAX_TINY_WINDOW`, or one
    too short for a task of the mix (:func:`ropelab.train.mixture.minimum_length`, known before the tokenizer exists)."""
    window = cfg.tiny.window
    if window > MAX_TINY_WINDOW:
        raise ValueError(f"tiny.window {window} is too long for the CPU study: at most {MAX_TINY_WINDOW} "
                         f"(evaluation goes to 8L = {8 * window} tokens)")
    import dataclasses

    dataclasses.replace(cfg.tiny, mix=cfg.mix)  # TinyConfig checks the window against the mix's tasks


def load_study_config(source: str | Path | Mapping = "quick", overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """A StudyConfig from a profile name (configs/study/<name>.yaml), a YAML path or a dict."""
    if isinstance(source, str) and "/" not in source and not source.endswith((".yaml", ".yml")):
        source = f"study/{source}"
    return load_config(StudyConfig, source, overrides)


@dataclass(frozen=True)
class Variant:
    """One extension to fine-tune: a label (table row), a ropelab method, a scale and plan options."""

    label: str
    method: str
    scale: int
    options: tuple = ()  # sorted (name, value) pairs given to make_plan
    group: str = "main"  # main | nhat | bins | metric

    def plan(self, spec):
        from ropelab.rope.registry import make_plan

        return make_plan(self.method, spec, spec.original_length * self.scale, **dict(self.options))


def variants(cfg: StudyConfig, spec) -> list[Variant]:
    """The main grid (methods x scales) and the sweeps at ``sweep_scale``, without duplicates."""
    out: list[Variant] = []
    for scale in cfg.scales:
        for label in cfg.methods:
            if label == "dprope_paper":
                ratio = cfg.paper_nhat_ratio.get(scale)
                if ratio is None:
                    continue
                opts = (("bins", cfg.bins), ("n_hat", even_dims(ratio, spec.rotary_dim)))
                out.append(Variant(label, "dprope", scale, opts))
            elif label == "dprope_search":  # its factors come from the search (ropelab.experiments.study.search)
                out.append(Variant(label, "longrope", scale, (), "main"))
            else:
                out.append(Variant(label, label, scale, (("bins", cfg.bins),)))
    s = cfg.sweep_scale
    out += [Variant(f"dprope_nhat{n}", "dprope", s, (("bins", cfg.bins), ("n_hat", int(n))), "nhat")
            for n in cfg.nhat_sweep]
    out += [Variant(f"dprope_b{b}", "dprope", s, (("bins", int(b)),), "bins") for b in cfg.bins_sweep]
    out += [Variant(f"dprope_{m}", "dprope", s, (("bins", cfg.bins), ("metric", m)), "metric")
            for m in cfg.metric_sweep]
    return out


def eval_lengths(cfg: StudyConfig, window: int) -> list[int]:
    return [round(m * window) for m in cfg.eval.length_multiples]
