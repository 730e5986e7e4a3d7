"""Passkey retrieval (Mohtashami & Jaggi, "Landmark Attention", 2023, sec. 4.2; the prompt the PI, YaRN and DPRoPE
papers use: epfml/landmark-attention ``llama/run_test.py``, jquesnelle/yarn ``eval/passkey.py``).

The prompt is four lines: the task description; filler ("The grass is green. ...") repeated; the key line
"The pass key is K. Remember it. K is the pass key."; more filler; and "What is the pass key? The pass key is".
Here the pieces are tokenised once and put together as token ids, so a prompt has exactly the requested length
in tokens of the model's tokenizer and the key sits at a fixed token offset
for a given (length, depth). Everything before the key is then the same for every trial of a cell, and prompts
share their KV cache where that pays (:func:`ropelab.eval.generation.answer_prompts`). Keys are 5-digit numbers
from ``random.Random(seed)``; decoding is greedy; an answer is right when its first integer is the key.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ropelab.eval.prompts import FILLER, KEY_LINE, QUESTION, TASK, warn_beyond_window

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


# --------------------------------------------------------------------------------------------- scoring
def parse_answer(text: str) -> int | None:
    """The first integer in the generated text, or None."""
    found = re.search(r"\d+", text)
    return int(found.group()) if found else None


# --------------------------------------------------------------------------------------------- evaluation
def passkey_decided(text: str) -> bool:
    """Whether ``text`` already decides :func:`parse_answer`: its first integer is followed by something else."""
    found = re.search(r"\d+", text)
    return found is not None and found.end() < len(text)


def passkey_prompts(tokenizer: Any, lengths: Sequence[int], depths: Sequence[float], trials: int,
                    seed: int = 0) -> list[dict]:
    """Every prompt of a lengths x depths x trials grid as ``{length, depth, trial, key, ids}``, keys drawn in
    grid order from :func:`draw_keys` (the same prompts on every run and for every model with this tokenizer)."""
    if trials < 1 or not lengths or not depths:
        raise ValueError(f"need trials >= 1 and non-empty lengths/depths, got {trials}, {lengths}, {depths}")
    keys = iter(draw_keys(seed, len(lengths) * len(depths) * trials))
    cells = [(n, d, t, next(keys)) for n in lengths for d in depths for t in range(trials)]
    return build_prompts(PasskeyPrompter(tokenizer), cells)


def spread_passkey_prompts(tokenizer: Any, lengths: Sequence[int], samples: int, depths: Sequence[float],
                           seed: int = 0) -> list[dict]:
    """``samples`` prompts per length, sample i with its key from ``random.Random(f"passkey|{seed}|{length}|{i}")``
    and its depth spread over ``depths`` = (lo, hi) (:func:`ropelab.eval.ruler.evaluate.spread_depth`): a pure
    function of (length, i, seed), so a larger grid only adds prompts."""
    from ropelab.eval.prompts import spread_depth

    if samples < 1 or not lengths or len(depths) != 2:
        raise ValueError(f"need samples >= 1, lengths and depths (lo, hi), got {samples}, {lengths}, {depths}")
    cells = [(n, spread_depth(depths, i), i, random.Random(f"passkey|{seed}|{n}|{i}").randint(10000, 99999))
             for n in lengths for i in range(samples)]
    return build_prompts(PasskeyPrompter(tokenizer), cells)


def build_prompts(prompter: PasskeyPrompter, cells: Sequence[tuple[int, float, int, int]]) -> list[dict]:
    """``{length, depth, trial, key, ids}`` of each (length, depth, trial, key) cell."""
    return [{"length": n, "depth": d, "trial": t, "key": key, "ids": tuple(prompter(n, d, key).ids)}
            for n, d, t, key in cells]


def passkey_row(prompt: dict, text: str) -> dict:
    """The scored row of one passkey prompt and its generated text."""
    answer = parse_answer(text)
    return {"length": prompt["length"], "depth": prompt["depth"], "trial": prompt["trial"], "key": prompt["key"],
            "answer": answer, "correct": answer == prompt["key"], "n_tokens": len(prompt["ids"])}


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
        reuse_prefix: carry one KV cache between prompts that share a prefix where that pays
            (:func:`ropelab.eval.generation.answer_prompts`; same answers, less compute).

    Decoding is greedy and stops at end-of-sequence or as soon as the first integer is complete
    (:func:`passkey_decided`): the same answer as decoding all ``max_new_tokens``.

    Returns:
        ``(rows, summary)``: rows of (length, depth, trial, key, answer, correct, n_tokens); summary with
        ``cells`` (length, depth, accuracy, n) and overall ``accuracy``.
    """
    from ropelab.eval.generation import answer_prompts, stop_token_ids

    warn_beyond_window(model, lengths, "passkey")
    prompts = passkey_prompts(tokenizer, lengths, depths, trials, seed)

    def decided(tokens: list[int]) -> bool:
        return passkey_decided(tokenizer.decode(tokens, skip_special_tokens=True))

    answers = answer_prompts(model, [p["ids"] for p in prompts], [max_new_tokens] * len(prompts),
                             stop_ids=stop_token_ids(tokenizer, model), done=[decided] * len(prompts),
                             reuse=reuse_prefix, progress=progress, desc="passkey")
    rows = [passkey_row(p, tokenizer.decode(a, skip_special_tokens=True)) for p, a in zip(prompts, answers)]
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
