"""Synthetic passkey documents mixed into training text, so that a tiny model can learn retrieval at all.

A tiny model pre-trained on Shakespeare cannot find a passkey zero-shot (LLaMA2 can: it has seen enough text to
copy). To make passkey accuracy measurable in miniature, a small share of the training text is made of passkey
documents in the standard prompt (Mohtashami & Jaggi 2023; docs/method.md sec. 5; the pieces of
:mod:`ropelab.eval.passkey`): task line, filler, "The pass key is K. Remember it. K is the pass key.", filler,
"What is the pass key? The pass key is K." -- random 5-digit keys, random depths, lengths up to the training
length. Evaluation keys (:func:`ropelab.eval.passkey.draw_keys` with the evaluation seed) are never used here.

The mixed corpus is a folder of plain text (``ropelab.data``'s ``text:<folder>`` corpus): the base corpus's
training documents under their own ids (so their split stays ``train``) plus ``zz_passkey/NNNNN`` documents
(only ids that fall in the ``train`` split are written). Folders are cached by a hash of everything that goes in.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ropelab.data import load_documents, split_of
from ropelab.eval.passkey import FILLER, KEY_LINE, QUESTION, TASK
from ropelab.io import atomic_folder, content_key

PASSKEY_PREFIX = "zz_passkey/"
MANIFEST = ".manifest.json"  # hidden: text corpora skip hidden files


@dataclass(frozen=True)
class PasskeyMix:
    """How much synthetic passkey text goes into the training corpus."""

    fraction: float = 0.1  # passkey characters / base-corpus characters (0: no passkey documents)
    min_length: float = 0.25  # shortest passkey document, as a share of the training length
    max_length: float = 0.95  # longest, as a share of the training length (margin for tokenizer differences)
    tokens_per_filler: float = 0.0  # tokens of one filler block; 0: estimate from characters (3 chars/token)
    seed: int = 1234  # draws keys, lengths and depths

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"passkey.fraction must be in [0, 1], got {self.fraction!r}")
        if not 0.0 < self.min_length <= self.max_length <= 1.0:
            raise ValueError(f"passkey lengths must satisfy 0 < min_length <= max_length <= 1, got "
                             f"{self.min_length!r}, {self.max_length!r}")


def passkey_text(filler_blocks: int, depth: float, key: int) -> str:
    """One passkey document: the standard prompt with ``filler_blocks`` filler blocks, key at ``depth``, answered."""
    before = round(depth * filler_blocks)
    filler = lambda n: " ".join([FILLER] * n)
    return (f"{TASK}\n{filler(before)}\n{KEY_LINE.format(key=key)}\n{filler(filler_blocks - before)}\n"
            f"{QUESTION} {key}.")


def filler_blocks_for(tokens: int, tokens_per_filler: float) -> int:
    """Filler blocks that give a document of about ``tokens`` tokens (the rest of the prompt is ~70 tokens)."""
    return max(1, int((tokens - 70) / max(tokens_per_filler, 1e-9)))


def measure_tokens_per_filler(tokenizer) -> float:
    """Tokens of one filler block (with its separating space) under ``tokenizer``."""
    ids = tokenizer((" ".join([FILLER] * 20)), add_special_tokens=False).input_ids
    return len(ids) / 20


def mixed_corpus(base_corpus: str, length: int, mix: PasskeyMix, root: str | os.PathLike,
                 exclude_keys: Sequence[int] = (), max_docs: int | None = None) -> str:
    """A ``text:<folder>`` corpus: ``base_corpus``'s training documents plus passkey documents for ``length``.

    Returns the corpus name. The folder is built once per (base corpus, length, mix, excluded keys) and reused.
    """
    tokens_per_filler = mix.tokens_per_filler or len(FILLER + " ") / 3.0
    payload = {"base": base_corpus, "length": length, "mix": vars(mix), "tpf": tokens_per_filler,
               "exclude": sorted(int(k) for k in exclude_keys), "max_docs": max_docs, "version": 1}
    key = content_key(payload)
    folder = Path(root) / f"mix-L{length}-{key}"
    if (folder / MANIFEST).is_file():
        return f"text:{folder}"
    docs = load_documents(base_corpus, "train", max_docs)
    with atomic_folder(folder) as tmp:
        for doc in docs:
            path = tmp / doc.doc_id
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(doc.text, encoding="utf-8")
        budget = mix.fraction * sum(len(d.text) for d in docs)
        rng, excluded = random.Random(mix.seed), {int(k) for k in exclude_keys}
        written, chars, index, lengths = 0, 0, 0, []
        while chars < budget:
            tokens = rng.randint(int(mix.min_length * length), int(mix.max_length * length))
            depth, key = rng.random(), rng.randint(10000, 99999)
            doc_id = f"{PASSKEY_PREFIX}{index:05d}"
            index += 1
            if key in excluded or split_of(doc_id) != "train":
                continue
            text = passkey_text(filler_blocks_for(tokens, tokens_per_filler), depth, key)
            (tmp / doc_id).parent.mkdir(parents=True, exist_ok=True)
            (tmp / doc_id).write_text(text, encoding="utf-8")
            written, chars = written + 1, chars + len(text)
            lengths.append(tokens)
        (tmp / MANIFEST).write_text(json.dumps({**payload, "passkey_documents": written, "passkey_chars": chars,
                                                "base_documents": len(docs)}, indent=1, sort_keys=True) + "\n")
    return f"text:{folder}"


def passkey_token_lengths(corpus: str, tokenizer) -> list[int]:
    """Token counts of the passkey documents of a mixed corpus (what the model really trained on)."""
    folder = Path(corpus[len("text:"):])
    texts = [p.read_text(encoding="utf-8") for p in sorted((folder / PASSKEY_PREFIX).glob("*"))]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids] if texts else []
