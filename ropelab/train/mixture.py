"""A long-range training mix: token rows that a model can only predict well by using context far back.

A tiny LLaMA pre-trained on plain Shakespeare barely uses its context, so it hardly breaks past its window and
gives the extension methods nothing to separate (Wu et al. measure LLaMA2, which does use 4k tokens of context).
This mix makes context necessary. Every row has exactly the requested length and is one of:

* ``text``    -- a window of the corpus (natural text: what perplexity measures);
* ``repeat``  -- one random span of a random period (4 .. half the row) repeated to the end: every token after
  the first period is predictable only by copying (the dense signal that makes an induction circuit form in a
  CPU budget: 400-900 steps at L = 64, measured; the sparse ``copy`` rows alone form none in 12M tokens);
* ``copy``    -- random tokens, a span, more random tokens, then the same span again (induction / copying,
  Olsson et al. 2022): the repeat is predictable only from the first occurrence, about a row away;
* ``recall``  -- multi-key associative recall (Zoology's MQAR; RULER's niah_multikey): ``key <k1 k2>dddd.``
  pairs hidden in text, then queries of some of the keys, answered with their 4 digits;
* ``passkey`` -- the standard passkey prompt (:mod:`ropelab.eval.passkey`) with its answer, key at a random depth.

Rows come with an *answer mask* of the same shape: 0 for ordinary tokens, g > 0 for the tokens of answer g (a
copied token, a query's digits, the passkey). :func:`ropelab.eval.retrieval.answer_accuracy` scores a model on
them teacher-forced: one forward pass per row, at any length, no generation. With ``loss_on: answers`` training
reads the same masks (:func:`loss_mask`): text rows are trained on every token, the other rows on their answers only
(a random filler token is noise to the loss).

Everything random is drawn from ``numpy.random.default_rng((seed, length, stream))``, so a row set is a pure
function of (mix, tokenizer, corpus, split, length, rows, seed) and is cached as ``.npz`` keyed on all of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ropelab.eval.prompts import FILLER, KEY_LINE, QUESTION, TASK

TASKS = ("text", "repeat", "copy", "recall", "needle", "passkey")
LOSS_ON = ("all", "answers")
DIGITS = "0123456789"


def _default_shares() -> dict:
    return {"text": 0.4, "copy": 0.25, "recall": 0.25, "passkey": 0.1}


@dataclass(frozen=True)
class MixConfig:
    """Shares of row types and their sizes (every length is a share of the row, so one mix serves L and 4L)."""

    shares: dict = field(default_factory=_default_shares)  # task -> share of rows; must sum to 1
    copy_span: tuple = (0.1, 0.4)  # tokens of all copied spans together, as a share of the row (uniform)
    copy_spans: tuple = (1, 4)  # spans per copy row (uniform); one span: the far layout of the evaluation
    recall_pairs: tuple = (4, 16)  # key-value pairs per recall row (drawn uniformly), scaled up with length / 128
    recall_queries: int = 4  # keys asked at the end of a recall row (at most the pairs)
    repeat_period: tuple = (4, 0.5)  # a repeat row's period: tokens, then share of the row (uniform in between)
    alphabet: int = 0  # random tokens (repeat, copy, recall keys) come from the first N non-special ids; 0: all
    loss_on: str = "all"  # training loss on "all" tokens, or on text rows and the other rows' "answers"
    seed: int = 0  # rows of one (seed, length) are always the same

    def __post_init__(self) -> None:
        if not isinstance(self.shares, Mapping) or not self.shares:
            raise ValueError(f"mix.shares must map tasks ({', '.join(TASKS)}) to shares, got {self.shares!r}")
        for task, share in self.shares.items():
            if task not in TASKS:
                raise ValueError(f"unknown mix task {task!r}; allowed: {', '.join(TASKS)}")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
                raise ValueError(f"mix.shares[{task!r}] must be a number in [0, 1], got {share!r}")
        total = sum(float(s) for s in self.shares.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"mix.shares must sum to 1, got {total:g} ({dict(self.shares)})")
        object.__setattr__(self, "shares", {t: float(self.shares[t]) for t in TASKS if t in self.shares})
        lo, hi = (float(x) for x in self.copy_span)
        if not 0 < lo <= hi <= 0.45:
            raise ValueError(f"mix.copy_span must satisfy 0 < low <= high <= 0.45, got {tuple(self.copy_span)!r}")
        object.__setattr__(self, "copy_span", (lo, hi))
        spans = tuple(self.copy_spans)
        if len(spans) != 2 or not all(isinstance(x, int) and x >= 1 for x in spans) or spans[0] > spans[1]:
            raise ValueError(f"mix.copy_spans must be two integers 1 <= low <= high, got {self.copy_spans!r}")
        object.__setattr__(self, "copy_spans", spans)
        pairs = tuple(self.recall_pairs)
        if len(pairs) != 2 or not all(isinstance(p, int) and p >= 1 for p in pairs) or pairs[0] > pairs[1]:
            raise ValueError(f"mix.recall_pairs must be two integers 1 <= low <= high, got {self.recall_pairs!r}")
        object.__setattr__(self, "recall_pairs", pairs)
        if not isinstance(self.recall_queries, int) or not 1 <= self.recall_queries <= pairs[0]:
            raise ValueError(f"mix.recall_queries must be an integer in [1, {pairs[0]}] (recall_pairs' low), "
                             f"got {self.recall_queries!r}")
        period = tuple(self.repeat_period)
        if (len(period) != 2 or not isinstance(period[0], int) or isinstance(period[0], bool) or period[0] < 2
                or not isinstance(period[1], (int, float)) or not 0 < period[1] <= 0.5):
            raise ValueError("mix.repeat_period must be [tokens >= 2, share of the row in (0, 0.5]], "
                             f"got {self.repeat_period!r}")
        object.__setattr__(self, "repeat_period", (period[0], float(period[1])))
        if isinstance(self.alphabet, bool) or not isinstance(self.alphabet, int) or not (
                self.alphabet == 0 or self.alphabet >= 16):
            raise ValueError(f"mix.alphabet must be 0 (every token) or an integer >= 16, got {self.alphabet!r}")
        if self.loss_on not in LOSS_ON:
            raise ValueError(f"mix.loss_on must be one of {', '.join(LOSS_ON)}, got {self.loss_on!r}")


class RowMaker:
    """Builds rows of one tokenizer from a token stream of natural text (the corpus split, documents joined)."""

    def __init__(self, tokenizer: Any, stream: np.ndarray, mix: MixConfig):
        self.enc = enc = lambda s: np.asarray(tokenizer(s, add_special_tokens=False).input_ids, dtype=np.int64)
        self.mix, self.stream = mix, np.asarray(stream, dtype=np.int64)
        self.digits = np.concatenate([enc(d) for d in DIGITS])
        if len(self.digits) != 10:
            raise ValueError("the tokenizer must encode each digit as one token (a byte-level BPE does)")
        specials = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.symbols = np.array([i for i in range(len(tokenizer)) if i not in specials], dtype=np.int64)
        if mix.alphabet:
            if mix.alphabet > len(self.symbols):
                raise ValueError(f"mix.alphabet {mix.alphabet} exceeds the tokenizer's {len(self.symbols)} tokens")
            self.symbols = self.symbols[: mix.alphabet]
        self.key_open, self.key_mid, self.key_end = (enc(t) for t in PAIR_TEXT)
        self.passkey_head, self.question = enc(TASK + "\n"), enc("\n" + QUESTION)
        self.filler, self.newline, self.period = enc(FILLER + " "), enc("\n"), enc(".")
        self.needle_head = enc(NEEDLE)
        self.key_line = [enc(part) for part in KEY_LINE.split("{key}")]  # text around the key's two mentions

    def minimum_length(self, task: str) -> int:
        """The shortest row ``task`` can make with this tokenizer (:func:`minimum_length`)."""
        return minimum_length(task, self.mix, lambda text: len(self.enc(text)))

    def text(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` consecutive tokens of natural text from a random place in the stream. # (n,)"""
        if n <= 0:
            return np.zeros(0, np.int64)
        start = int(rng.integers(0, len(self.stream) - n))
        return self.stream[start:start + n]

    def row(self, task: str, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, answers)`` of one row of ``length`` tokens; ``answers`` numbers the scored tokens. # (T,), (T,)"""
        ids, answers = getattr(self, f"_{task}")(length, rng)
        assert len(ids) == length == len(answers), (task, len(ids), length)
        return ids, answers

    def _text(self, length: int, rng: np.random.Generator):
        return self.text(rng, length), np.zeros(length, np.int64)

    def _repeat(self, length: int, rng: np.random.Generator):
        """One random span of period ``p`` tiled to the row's end; tokens from the second period's second on are
        scored (one answer each: the first token of a period can be guessed only once the period is known)."""
        low, share = self.mix.repeat_period
        p = int(rng.integers(low, max(low, int(share * length)) + 1))
        ids = np.resize(rng.choice(self.symbols, size=p), length)
        marks = np.zeros(length, np.int64)
        marks[p + 1:] = np.arange(1, length - p)
        return ids, marks

    def _copy(self, length: int, rng: np.random.Generator):
        """Random tokens in which ``c`` spans are each seen twice (random filler, not text: in text a tiny model
        learns n-grams first and forms no induction head in a CPU budget -- measured). With one span the first copy is early and the
        repeat ends the row (the distance is most of a row: the evaluation layout); with more, the 2c pieces come
        in random order between text, at every distance (what makes induction heads form early in training)."""
        lo, hi = self.mix.copy_span
        c = int(rng.integers(self.mix.copy_spans[0], self.mix.copy_spans[1] + 1))
        size = lambda: int(rng.integers(max(4, round(lo * length / c)), max(5, round(hi * length / c)) + 1))
        spans = [rng.choice(self.symbols, size=size()) for _ in range(c)]
        free = length - 2 * sum(len(x) for x in spans)
        if c == 1:
            before = int(rng.integers(0, free // 4 + 1))
            cuts, order = [before, free], [0, 0]
        else:
            order = list(rng.permutation([i for i in range(c) for _ in range(2)]))
            cuts = sorted(int(x) for x in rng.integers(0, free + 1, size=2 * c - 1)) + [free]
        pieces, answers, prev, seen, at = [], [], 0, set(), 0
        for cut, span_id in zip(cuts, order):
            span = spans[span_id]
            gap = rng.choice(self.symbols, size=cut - prev)
            prev = cut
            pieces += [gap, span]
            at += len(gap)
            if span_id in seen:  # the repeat: scored from its third token (two tokens tell a copy has begun)
                answers.append((at + 2, at + len(span)))
            seen.add(span_id)
            at += len(span)
        pieces.append(rng.choice(self.symbols, size=free - prev))
        ids = np.concatenate(pieces)
        marks = np.zeros(length, np.int64)
        for a, b in answers:
            marks[a:b] = np.arange(1, b - a + 1) + marks.max()
        return ids, marks

    def _pair(self, key: np.ndarray, value: np.ndarray) -> np.ndarray:
        return np.concatenate([self.key_open, key, self.key_mid, self.digits[value], self.key_end])

    def _recall(self, length: int, rng: np.random.Generator):
        """Key-value pairs hidden in text, then ``recall_queries`` of the keys asked again; the digits are scored.
        Pairs scale with length (drawn in ``recall_pairs`` x length/128), as many as leave a quarter of the row
        to text."""
        lo, hi = self.mix.recall_pairs
        q = self.mix.recall_queries
        pair_len = len(self.key_open) + 2 + len(self.key_mid) + 4 + len(self.key_end)
        scale = max(1.0, length / 128)
        fit = int((0.75 * length - q * pair_len) // pair_len)
        n_pairs = max(q, min(fit, int(rng.integers(round(lo * scale), round(hi * scale) + 1))))
        keys = [rng.choice(self.symbols, size=2) for _ in range(n_pairs)]
        values = [rng.integers(0, 10, size=4) for _ in range(n_pairs)]
        asked = rng.choice(n_pairs, size=q, replace=False)
        haystack = length - (n_pairs + q) * pair_len
        cuts = np.sort(rng.integers(0, haystack + 1, size=n_pairs))
        pieces, prev = [], 0
        for cut, key, value in zip(cuts, keys, values):
            pieces += [self.text(rng, int(cut - prev)), self._pair(key, value)]
            prev = int(cut)
        pieces.append(self.text(rng, haystack - prev))
        pieces += [self._pair(keys[i], values[i]) for i in asked]
        answers = np.zeros(length, np.int64)
        digits_at = length - q * pair_len + len(self.key_open) + 2 + len(self.key_mid)
        for g in range(q):
            answers[digits_at + g * pair_len: digits_at + g * pair_len + 4] = g + 1
        return np.concatenate(pieces), answers

    def _needle(self, length: int, rng: np.random.Generator):
        """Text with one "The pass key is ddddd." line at a random depth, the same line again at the end; its
        digits are scored (the passkey task of Mohtashami & Jaggi without the long standard prompt, so it fits a
        short window; RULER's niah_single with a fixed key)."""
        key = rng.integers(0, 10, size=5)
        line = np.concatenate([self.needle_head, self.digits[key], self.key_end])
        haystack = length - 2 * len(line)
        before = int(rng.integers(0, haystack + 1))
        ids = np.concatenate([self.text(rng, before), line, self.text(rng, haystack - before), line])
        answers = np.zeros(length, np.int64)
        answers[length - len(self.key_end) - 5: length - len(self.key_end)] = 1
        return ids, answers

    def _passkey(self, length: int, rng: np.random.Generator):
        key = rng.integers(0, 10, size=5)
        key[0] = rng.integers(1, 10)
        key_line = np.concatenate([self.newline, self._key_line(key), self.newline])
        answer = np.concatenate([self.digits[key], self.period])
        fixed = len(self.passkey_head) + len(key_line) + len(self.question) + len(answer)
        blocks = max(1, (length - fixed) // len(self.filler))
        before = round(rng.random() * blocks)
        fill = lambda n: np.tile(self.filler, n)
        body = np.concatenate([self.passkey_head, fill(before), key_line, fill(blocks - before), self.question])
        pad = length - len(body) - len(answer)
        ids = np.concatenate([self.text(rng, pad), body, answer])
        answers = np.zeros(length, np.int64)
        answers[length - len(answer): length - 1] = 1  # the five digits, scored as one answer
        return ids, answers

    def _key_line(self, key: np.ndarray) -> np.ndarray:
        head, mid, tail = self.key_line
        return np.concatenate([head, self.digits[key], mid, self.digits[key], tail])


NEEDLE = "\nThe pass key is "  # the needle line: NEEDLE + 5 digits + PAIR_TEXT[2]
PAIR_TEXT = ("\nkey ", "", ".\n")  # a recall pair: "key <k1 k2>dddd." on its own line (no shared " = ":
# with one before every value, a one-token match cannot tell the pairs apart; first digit 0.50 right, measured)


def minimum_length(task: str, mix: MixConfig, tokens: Any = None) -> int:
    """The shortest row ``task`` can make: a copy needs two spans, a recall row its pairs and queries, a passkey
    the standard prompt. ``tokens(text)`` counts a text's tokens; without it, a lower bound for any byte-level BPE
    of a few thousand tokens (4 characters per token at most), usable before a tokenizer exists."""
    count = tokens or (lambda text: math.ceil(len(text) / 4))
    pair = sum(count(t) for t in PAIR_TEXT) + 2 + 4
    passkey = (count(TASK + "\n") + count("\n" + QUESTION) + 2 * count(FILLER + " ")
               + sum(count(t) for t in KEY_LINE.split("{key}")) + 2 * count("\n") + 10 + 6 + 24)
    needle = 2 * (count(NEEDLE) + 5 + count(PAIR_TEXT[2])) + 8
    return {"text": 2, "repeat": mix.repeat_period[0] + 2, "copy": 16, "recall": 2 * mix.recall_queries * pair + 8,
            "needle": needle, "passkey": passkey}[task]


def task_counts(mix: MixConfig, rows: int) -> dict[str, int]:
    """Rows per task: the shares of ``rows``, rounded so that they sum to ``rows`` (largest remainders)."""
    raw = {t: s * rows for t, s in mix.shares.items()}
    counts = {t: int(v) for t, v in raw.items()}
    for t in sorted(raw, key=lambda t: raw[t] - counts[t], reverse=True)[: rows - sum(counts.values())]:
        counts[t] += 1
    return counts


def mix_rows(mix: MixConfig, tokenizer: Any, corpus: str, split: str, length: int, rows: int,
             max_docs: int | None = None) -> tuple[Any, Any]:
    """``(ids, answers)``, LongTensors ``(rows, length)``: the mix's rows over ``corpus``/``split`` (cached).

    Row ``i`` is drawn with ``default_rng((seed, length, i, split))`` from the split's text, so training and
    held-out rows share nothing, and a row does not change when more rows are asked for with the same task counts.
    """
    import zlib

    import torch

    from ropelab.config import to_dict
    from ropelab.data import _slug, token_stream, tokenizer_fingerprint
    from ropelab.rope.spec import check_positive_int
    from ropelab.storage import atomic_save, cache_path, content_key

    check_positive_int("rows", rows)
    check_positive_int("length", length)
    key = content_key([VERSION, to_dict(mix), corpus, split, max_docs, length, rows, tokenizer_fingerprint(tokenizer)])
    path = cache_path("mix", f"{_slug(corpus)}-{split}-L{length}-{key}.npz")
    if not path.exists():
        stream = token_stream(corpus, split, tokenizer, max_docs)
        maker = RowMaker(tokenizer, stream, mix)
        check_length(maker, mix, length, len(stream))
        counts = task_counts(mix, rows)
        order = np.random.default_rng([mix.seed, length, 0]).permutation(
            np.concatenate([np.full(n, TASKS.index(t)) for t, n in counts.items()]))
        salt = zlib.crc32(split.encode())
        ids, answers = np.zeros((rows, length), np.int32), np.zeros((rows, length), np.int32)
        for i, task in enumerate(order):
            ids[i], answers[i] = maker.row(TASKS[task], length, np.random.default_rng([mix.seed, length, i, salt]))
        atomic_save(path, lambda fh: np.savez(fh, ids=ids, answers=answers, tasks=order.astype(np.int8)))
    with np.load(path) as data:
        return torch.from_numpy(data["ids"]).long(), torch.from_numpy(data["answers"]).long()  # (N, T) each


def rows_key(mix: MixConfig | None) -> dict:
    """What a cache key over rows of ``mix`` must hold besides the config: the builders' :data:`VERSION` (a model
    trained on rows of other builders is another model). ``{}`` without a mix, so text-only keys do not change."""
    return {} if mix is None else {"mix_rows": VERSION}


def loss_mask(mix: MixConfig, answers: Any) -> Any:
    """Which tokens training scores, from a row set's answer masks: ``None`` (all) for ``loss_on: all``; else
    every token of the rows without answers (text) and the answer tokens of the others. # (N, T) bool"""
    if mix.loss_on == "all":
        return None
    scored = answers > 0  # (N, T)
    return scored | ~scored.any(dim=1, keepdim=True)


def check_length(maker: RowMaker, mix: MixConfig, length: int, stream_tokens: int) -> None:
    """ValueError when a row of ``length`` cannot hold one of the mix's tasks, or the text is shorter than a row."""
    for task, share in mix.shares.items():
        need = maker.minimum_length(task)
        if share > 0 and length < need:
            raise ValueError(f"row length {length} is too short for mix task {task!r}: it needs at least {need} tokens")
    if stream_tokens <= length:
        raise ValueError(f"row length {length} does not fit in the corpus split's {stream_tokens} tokens")


VERSION = 5  # bump when the row builders change: every cached row set is rebuilt
