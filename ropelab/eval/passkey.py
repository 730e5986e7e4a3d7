"""Passkey retrieval (Mohtashami & Jaggi, "Landmark Attention", 2023, sec. 4.2; the prompt the PI, YaRN and DPRoPE
papers use: epfml/landmark-attention ``llama/run_test.py``, jquesnelle/yarn ``eval/passkey.py``).

The prompt is four lines: the task description; filler ("The grass is green. ...") repeated; the key line
"The pass key is K. Remember it. K is the pass key."; more filler; and "What is the pass key? The pass key is".
Here the pieces are tokenised once and put together as token ids, so a prompt has exactly the requested length
in tokens of the model's tokenizer and the key sits at a fixed token offset
for a given (length, depth). Everything before the key (the *prefix*) is then the same for every trial of a
cell: its KV cache is computed once and each trial runs only the rest (prefix reuse). Keys are 5-digit numbers
from ``random.Random(seed)``; decoding is greedy; an answer is right when its first integer is the key.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
DEFAULT_LENGTHS = (1024, 2048, 4096)
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


# --------------------------------------------------------------------------------------------- prompt building
@dataclass(frozen=True)
class PasskeyPrompt:
    """Token ids of one passkey prompt: ``prefix`` (task + filler before the key) then ``suffix`` (the rest)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    key: int

    @property
    def ids(self) -> list[int]:
        return [*self.prefix, *self.suffix]


class PasskeyPrompter:
    """Builds passkey prompts of a given length in tokens for one tokenizer (its pieces are tokenised once)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        encode = self._encode
        self.head = tuple(tokenizer(TASK).input_ids)  # with the tokenizer's BOS, if it adds one
        self.newline = encode("\n")
        self.question = encode("\n" + QUESTION)
        self.filler_unit = len(encode(FILLER + " "))
        self._filler: tuple[int, ...] = ()

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def filler(self, n: int) -> tuple[int, ...]:
        """The first ``n`` tokens of the filler repeated (cut at a token, as the reference cuts at a character)."""
        repeats = n // max(self.filler_unit, 1) + 2
        while len(self._filler) < n:  # repeats join into fewer tokens than ``filler_unit`` each: grow until long
            self._filler = self._encode(" ".join([FILLER] * repeats))
            repeats *= 2
        return self._filler[:n]

    def key_line(self, key: int) -> tuple[int, ...]:
        return self._encode(KEY_LINE.format(key=key) + "\n")

    def filler_budget(self, length: int) -> int:
        # the longest key line of a few keys: the filler after the key then never runs short
        key_tokens = max(len(self.key_line(k)) for k in (10000, 12345, 24680, 54321, 67890, 98765))
        overhead = len(self.head) + 2 * len(self.newline) + key_tokens + len(self.question)
        budget = length - overhead
        if budget < 0:
            raise ValueError(f"passkey length {length} is shorter than the prompt without filler ({overhead} tokens)")
        return budget

    def prefix(self, length: int, depth: float) -> tuple[int, ...]:
        """Task line and the filler before the key, each ending in a newline: shared by all trials at a cell."""
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth must be a fraction in [0, 1], got {depth}")
        return self.head + self.newline + self.filler(round(depth * self.filler_budget(length))) + self.newline

    def __call__(self, length: int, depth: float, key: int) -> PasskeyPrompt:
        prefix, key_line = self.prefix(length, depth), self.key_line(key)
        # the filler after the key absorbs the key's own token count, so every prompt has ``length`` tokens
        after = max(length - len(prefix) - len(key_line) - len(self.question), 0)
        return PasskeyPrompt(prefix, key_line + self.filler(after) + self.question, key)

    def text(self, prompt: PasskeyPrompt) -> str:
        return self.tokenizer.decode(prompt.ids, skip_special_tokens=True)


def draw_keys(seed: int, n: int) -> list[int]:
    """``n`` 5-digit keys from ``random.Random(seed)``: the same keys on every run and for every method."""
    rng = random.Random(seed)
    return [rng.randint(10000, 99999) for _ in range(n)]


# --------------------------------------------------------------------------------------------- decoding
def prefix_cache(model: Any, prefix: Sequence[int]) -> Any:
    """The KV cache (a transformers Cache) of ``prefix``."""
    ids = torch.tensor([list(prefix)], device=model.device)  # (1, T)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=True, logits_to_keep=1).cache  # no (T, V) logits: 3 GB at 16k


# Prefix reuse and SDPA's kernels. SDPA takes its causal kernel (``is_causal``: it skips the masked upper triangle)
# only when queries and keys have the same length. Queries that continue a cache need an explicit mask, and the
# masked kernel computes every (query, key) score at ~1.4x the causal kernel's cost per score (CPU, SmolLM2
# shapes, torch 2.13; one masked call over the whole rest computes the full rest x prompt rectangle: 2.5x the
# causal attention at 8k). So (1) the rest of a prompt after a cache goes in chunks of PREFILL_CHUNK tokens,
# wasting only each chunk's diagonal block, and (2) a prefix is cached only where :func:`prefix_pays`; otherwise
# each prompt runs whole on the causal kernel (issue: passkey trials at 12k were 1.5x slower than ``generate``).
PREFILL_CHUNK = 1024
MASKED_KERNEL_COST = 1.4  # masked / causal SDPA cost per score (measured as above)
ATTENTION_SHARE = 0.67  # attention's share of a causal forward: SmolLM2-135M at 12k; less for larger models


def prefix_pays(prefix_tokens: int, prompt_tokens: int, uses: int) -> bool:
    """Whether caching a prefix shared by ``uses`` prompts of ``prompt_tokens`` beats running each prompt whole.

    Cost model, in units of one whole prompt (attention share ``a`` = :data:`ATTENTION_SHARE`, ``k`` =
    :data:`MASKED_KERNEL_COST`, ``d`` = prefix / prompt): the prefix once, ``(1 - a) d + a d^2``, plus per prompt
    the rest after it, ``(1 - a)(1 - d) + a k (1 - d^2)``, against ``uses`` whole prompts. With 5 uses the
    prefix must be about half the prompt; one use never pays.
    """
    if prefix_tokens <= 0 or prompt_tokens <= 0 or uses < 2:
        return False
    d, a = min(prefix_tokens / prompt_tokens, 1.0), ATTENTION_SHARE
    prefix = (1 - a) * d + a * d * d
    rest = (1 - a) * (1 - d) + a * MASKED_KERNEL_COST * (1 - d * d)
    return prefix + uses * rest < uses


def greedy_generate(model: Any, ids: Sequence[int], max_new_tokens: int, cache: Any = None,
                    return_logits: bool = False, chunk: int | None = PREFILL_CHUNK
                    ) -> list[int] | tuple[list[int], list[torch.Tensor]]:
    """Greedy continuation of ``ids``; with ``cache``, ``ids`` continue the sequence already in it.

    The cache is left holding its original length (it is cropped back), so one prefix cache serves many calls.
    After a non-empty cache, ``ids`` are fed ``chunk`` tokens per forward (None: all at once), which keeps the
    masked attention near the causal area (see :data:`PREFILL_CHUNK`); a prompt without a cache goes in one
    forward, on SDPA's causal kernel.
    Returns the new token ids (and, with ``return_logits``, the next-token logits of each step).
    """
    start = cache.get_seq_length() if cache is not None else 0
    tokens: list[int] = []
    logits: list[torch.Tensor] = []
    ids = list(ids)
    size = max(len(ids), 1) if not start or chunk is None else max(int(chunk), 1)
    try:
        with torch.no_grad():
            for begin in range(0, len(ids) - size, size):  # all chunks but the last: fill the cache
                piece = torch.tensor([ids[begin:begin + size]], device=model.device)  # (1, chunk)
                cache = model(input_ids=piece, cache=cache, use_cache=True, logits_to_keep=1).cache
            step = torch.tensor([ids[(len(ids) - 1) // size * size:]], device=model.device)  # (1, T) the last chunk
            for _ in range(max_new_tokens):
                out = model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1)
                cache = out.cache
                last = out.logits[0, -1].float()  # (V,)
                logits.append(last)
                tokens.append(int(last.argmax()))
                step = torch.tensor([[tokens[-1]]], device=model.device)
    finally:
        if start and cache is not None and cache.get_seq_length() > start:
            cache.crop(start - cache.get_seq_length())  # a negative count removes the newest tokens
    return (tokens, logits) if return_logits else tokens


def parse_answer(text: str) -> int | None:
    """The first integer in the generated text, or None."""
    found = re.search(r"\d+", text)
    return int(found.group()) if found else None


# --------------------------------------------------------------------------------------------- evaluation
def model_window(model: Any) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "max_position_embeddings", None)


def warn_beyond_window(model: Any, lengths: Sequence[int], what: str) -> None:
    """Lengths past the model's configured window are allowed (that is what extension is for), with a warning."""
    window = model_window(model)
    if window is not None and max(lengths) > window:
        warnings.warn(f"{what} length {max(lengths)} is beyond the model's configured window {window}", stacklevel=3)


def evaluate_passkey(model: Any, tokenizer: Any, *, lengths: Sequence[int] = DEFAULT_LENGTHS,
                     depths: Sequence[float] = DEFAULT_DEPTHS, trials: int = 5, seed: int = 0,
                     max_new_tokens: int = 6, reuse_prefix: bool = True,
                     progress: bool = True) -> tuple[list[dict], dict]:
    """Passkey accuracy over a lengths x depths grid.

    Args:
        lengths: prompt lengths in tokens of ``tokenizer``.
        depths: where the key sits, as the fraction of the filler before it (0 = top, 1 = bottom).
        trials: keys per cell.
        seed: seeds the keys (:func:`draw_keys`).
        reuse_prefix: compute the prefix's KV cache once per cell where that pays (:func:`prefix_pays`; same
            answers, less compute).

    Returns:
        ``(rows, summary)``: rows of (length, depth, trial, key, answer, correct, n_tokens); summary with
        ``cells`` (length, depth, accuracy, n) and overall ``accuracy``.
    """
    from tqdm.auto import tqdm

    if trials < 1 or not lengths or not depths:
        raise ValueError(f"need trials >= 1 and non-empty lengths/depths, got {trials}, {lengths}, {depths}")
    warn_beyond_window(model, lengths, "passkey")
    prompter = PasskeyPrompter(tokenizer)
    keys = iter(draw_keys(seed, len(lengths) * len(depths) * trials))
    rows: list[dict] = []
    model.eval()
    bar = tqdm(total=len(lengths) * len(depths) * trials, desc="passkey", disable=not progress, leave=False)
    for length in lengths:
        for depth in depths:
            prefix = prompter.prefix(length, depth)
            cache = prefix_cache(model, prefix) if reuse_prefix and prefix_pays(len(prefix), length, trials) else None
            for trial in range(trials):
                prompt = prompter(length, depth, next(keys))
                if cache is not None:
                    new = greedy_generate(model, prompt.suffix, max_new_tokens, cache)
                else:
                    new = greedy_generate(model, prompt.ids, max_new_tokens)
                answer = parse_answer(tokenizer.decode(new, skip_special_tokens=True))
                rows.append({"length": length, "depth": depth, "trial": trial, "key": prompt.key, "answer": answer,
                             "correct": answer == prompt.key, "n_tokens": len(prompt.ids)})
                bar.update()
            del cache
    bar.close()
    return rows, summarize_cells(rows, seed=seed)


def summarize_cells(rows: Sequence[dict], **extra: Any) -> dict:
    """Accuracy per (length, depth) cell and overall, from rows with a boolean ``correct``."""
    cells: dict[tuple, list[bool]] = {}
    for row in rows:
        cells.setdefault((row["length"], row["depth"]), []).append(bool(row["correct"]))
    table = [{"length": length, "depth": depth, "accuracy": sum(v) / len(v), "n": len(v)}
             for (length, depth), v in cells.items()]
    accuracy = sum(bool(r["correct"]) for r in rows) / len(rows) if rows else float("nan")
    return {"cells": table, "accuracy": accuracy, **extra}
