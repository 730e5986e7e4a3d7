"""``ropelab eval``: discovery of every evaluation, ``ppl`` and ``retention`` end to end on a saved tiny model and
plain-text files, and bad input (one line, exit status 2)."""

from __future__ import annotations

import csv
import json

import pytest
from test_perplexity import tiny_lm

from ropelab.cli import main
from ropelab.data import encode, load_documents
from ropelab.eval.perplexity import perplexity


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tokenizer = tiny_lm()
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def essays(tmp_path_factory):
    """Two real essays as a folder of plain text."""
    folder = tmp_path_factory.mktemp("essays")
    for doc in load_documents("paul_graham", "test", max_docs=2):
        (folder / f"{doc.doc_id}.txt").write_text(doc.text)
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "cache"))


def test_eval_lists_every_evaluation(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    for name in ("ppl", "retention", "passkey", "niah", "longbench"):
        assert f"\n    {name}" in out


def test_ppl_json_and_csv_equal_the_library(model_dir, essays, tmp_path, capsys):
    out_csv = tmp_path / "ppl.csv"
    assert main(["eval", "ppl", "--model", str(model_dir), "--text-dir", str(essays), "--lengths", "128,256",
                 "--stride", "64", "--json", "--csv", str(out_csv)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "none" and report["split"] == "all" and report["corpus"] == f"text:{essays}"
    assert [r["length"] for r in report["results"]] == [128, 256]
    model, tokenizer = tiny_lm()
    texts = sorted((p.name, p.read_text()) for p in essays.iterdir())
    docs = list(zip([n for n, _ in texts], encode(tokenizer, [t for _, t in texts])))
    expected = perplexity(model, docs, 256, stride=64, progress=False)
    got = report["results"][1]
    assert got["ppl"] == pytest.approx(expected.ppl, rel=1e-6) and got["n_tokens"] == expected.n_tokens
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["length"]) for r in rows] == [128, 256] and float(rows[1]["ppl"]) == pytest.approx(got["ppl"], 1e-5)


def test_ppl_with_a_method_past_the_window_warns_and_changes_the_value(model_dir, essays, capsys):
    args = ["eval", "ppl", "--model", str(model_dir), "--text-file", str(next(essays.iterdir())), "--lengths", "384",
            "--protocol", "truncated", "--json"]
    with pytest.warns(UserWarning, match="perplexity length 384 is beyond the model's configured window 256"):
        assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(args + ["--method", "yarn", "--target-length", "512"]) == 0  # inside the extended window
    extended = json.loads(capsys.readouterr().out)
    assert extended["plan"]["method"] == "yarn" and extended["target_length"] == 512
    assert extended["results"][0]["ppl"] != plain["results"][0]["ppl"]


def test_retention_cli_rows(model_dir, essays, tmp_path, capsys):
    out_csv = tmp_path / "retention.csv"
    assert main(["eval", "retention", "--model", str(model_dir), "--text-dir", str(essays), "--method", "pi,dprope",
                 "--target-length", "1024", "--lengths", "128", "--csv", str(out_csv)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["method", "length", "ppl"]
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["method"] for r in rows] == ["none", "pi", "dprope"] and rows[0]["ratio"] == "1"


@pytest.mark.parametrize("extra,message", [
    (["--text-file", "EMPTY"], "no text in split 'all'"),
    (["--text-file", "MISSING"], "--text-file"),
    (["--lengths", "12x"], "--lengths must be comma-separated integers"),
    (["--lengths", "128", "--stride", "512"], "stride must be between 1 and the length 128, got 512"),
    (["--corpus", "pg19"], "unknown corpus 'pg19'"),
    (["--method", "pi"], "--method needs --target-length"),
])
def test_bad_input_is_one_line_and_status_2(model_dir, tmp_path, capsys, extra, message):
    (tmp_path / "EMPTY").write_text("")
    extra = [str(tmp_path / x) if x in ("EMPTY", "MISSING") else x for x in extra]
    args = ["eval", "ppl", "--model", str(model_dir), "--lengths", "128", "--stride", "64"] + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ropelab: error: ") and message in err[-1]
