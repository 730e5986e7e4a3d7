"""RULER's per-prompt scores as committed evidence: written by notebook 06's report, read back exactly, pooled over
runs (``ropelab pool``) into the figures and tests one run of the union would give, and refused when runs disagree."""

import csv

import numpy as np
import pytest
from test_passkey import tiny_llama

from ropelab.cli import main
from ropelab.eval.ruler.tasks import SYNTHETIC_TASKS
from ropelab.experiments.zeroshot import load_zeroshot_config, run_zero_shot
from ropelab.experiments.zeroshot.samples import SAMPLES_FILE, prompt_id, read_samples, sample_rows
from ropelab.experiments.zeroshot.summary import comparison_table, ruler_averages
from ropelab.figures import variant_colors, write_csv
from ropelab.plots.ruler_report import folder_writers, paired_report, pooled_report, ruler_report

WINDOW = 8192


def _rows(lengths, methods=("none", "yarn", "dprope_robust"), seed=0):
    """Scored rows of two tasks x 3 samples: vt 0/1, cwe fractions of 3 answers (thirds: not exact in 6 digits)."""
    rng = np.random.default_rng(seed)
    rows = []
    for method in methods:
        for length in lengths:
            for task, values in (("vt", (0.0, 1.0)), ("cwe", (0.0, 1 / 3, 2 / 3, 1.0))):
                for index in range(3):
                    rows.append({"method": method, "task": task, "length": length, "index": index,
                                 "depth": 0.5 if task == "vt" else None, "n_tokens": length - 7,
                                 "prompt": prompt_id([length, index, len(task)]), "score": float(rng.choice(values))})
    return rows


def _report(rows, folder, window=WINDOW):
    """What notebook 06 writes for ``rows``: its RULER report and paired tests, saved into ``folder``."""
    show, table, text = folder_writers(folder)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics, _ = ruler_report(rows, window, 0.856, variant_colors(methods), show, table, text)
    more, _ = paired_report({"ruler": rows}, methods, sorted({r["length"] for r in rows}), window, table)
    return {**metrics, **more}


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_samples_read_back_exactly_with_their_window(tmp_path):
    rows = _rows([4096, 12288])
    _report(rows, tmp_path)
    back, window = read_samples([tmp_path])
    assert window == WINDOW and len(back) == len(rows)
    key = ("method", "task", "length", "index")
    assert {tuple(r[k] for k in key): (r["score"], r["prompt"], r["depth"]) for r in back} == {
        tuple(r[k] for k in key): (r["score"], r["prompt"], r["depth"]) for r in rows}  # 1/3 exactly, not 0.333333
    assert any(r["score"] == 1 / 3 for r in back)


def test_pooling_two_runs_gives_the_report_of_their_union(tmp_path):
    four, twelve = _rows([4096], seed=1), _rows([12288], seed=2)
    _report(four, tmp_path / "a")
    _report(twelve, tmp_path / "b")
    lines = pooled_report([tmp_path / "a", tmp_path / "b"], tmp_path / "pooled", 0.856)
    assert lines[0].startswith(f"pooled {len(four) + len(twelve)} scored prompts (3 methods, lengths [4096, 12288]")
    union = _report(four + twelve, tmp_path / "union")
    names = sorted(p.name for p in (tmp_path / "union").iterdir())
    assert sorted(p.name for p in (tmp_path / "pooled").iterdir()) == sorted([*names, "sources.txt"])
    for name in (n for n in names if n.endswith((".csv", ".md"))):
        assert (tmp_path / "pooled" / name).read_bytes() == (tmp_path / "union" / name).read_bytes(), name
    averages = {(a["method"], int(a["length"])): float(a["score"]) for a in _csv(tmp_path / "pooled/06_ruler_average.csv")}
    assert averages == {(a["method"], a["length"]): pytest.approx(a["score"], abs=1e-6) for a in ruler_averages(four + twelve)}
    tests = _csv(tmp_path / "pooled/06_paired_tests.csv")
    past = next(t for t in tests if (t["a"], t["b"], t["lengths"]) == ("dprope_robust", "yarn", "past L"))
    assert int(past["n"]) == 6  # the 12k prompts alone: 4k is inside the window
    direct = comparison_table({"ruler": four + twelve}, ["none", "yarn", "dprope_robust"], [4096, 12288], WINDOW)
    assert [float(t["p"]) for t in tests] == pytest.approx([t["p"] for t in direct])
    assert union["ruler.yarn.12288"] == pytest.approx(averages[("yarn", 12288)], abs=1e-6)
    again = pooled_report([tmp_path / "pooled", tmp_path / "a"], tmp_path / "again", 0.856)  # a pooled folder pools
    assert again[0].startswith(f"pooled {len(four) + len(twelve)} scored prompts")
    assert (tmp_path / "pooled/sources.txt").read_text().splitlines() == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_the_report_draws_what_it_has_and_keeps_the_pooled_p_values_and_the_bar_given(tmp_path):
    rows = _rows([4096, 12288, 16384]) + [{"method": m, "task": "fwe", "length": n, "index": 0, "depth": None, "n_tokens": 9,
                                    "prompt": prompt_id([n]), "score": 0.5} for m in ("none", "yarn", "dprope_robust")
                                   for n in (4096, 12288)]
    show, table, text = folder_writers(tmp_path)
    metrics, lines = ruler_report(rows, WINDOW, 0.5, variant_colors(["none", "yarn", "dprope_robust"]), show, table,
                                  text)
    assert (tmp_path / "06_ruler_vt.png").is_file() and not (tmp_path / "06_ruler_fwe.png").exists()  # one prompt
    assert {r["threshold"] for r in _csv(tmp_path / "06_effective_length.csv")} == {
        "relative: 0.85 x none at 4096", "RULER's absolute 0.5"}
    assert metrics["ruler.threshold"] == pytest.approx(0.85 * metrics["ruler.none.4096"])
    assert any(line.startswith("effective length             yarn at RULER's absolute 0.5") for line in lines)
    tested, _ = paired_report({"ruler": rows}, ["none", "yarn", "dprope_robust"], [4096, 12288, 16384], WINDOW, table)
    past = {(t["a"], t["b"]): float(t["p"]) for t in _csv(tmp_path / "06_paired_tests.csv") if t["lengths"] == "past L"}
    assert tested == {f"paired.ruler.{a}_vs_{b}.p": pytest.approx(p, abs=1e-6) for (a, b), p in past.items()}
    assert len(tested) == 3  # robust vs yarn, yarn vs none, robust vs none: pooled past the window only
    assert past[("yarn", "none")] != next(float(t["p"]) for t in _csv(tmp_path / "06_paired_tests.csv")
                                          if (t["a"], t["b"], t["lengths"]) == ("yarn", "none", "16384"))


def test_the_markdown_table_rounds_half_up_and_drops_the_leading_zero():
    from ropelab.plots.ruler_table import ruler_table, two_places

    assert [two_places(x) for x in (0.8, 1.0, 0.0, 0.277533, 0.125, 0.135, 0.005, 0.994, 0.995, -0.04, 1 / 3)] == [
        ".80", "1", "0", ".28", ".13", ".14", ".01", ".99", "1", "-.04", ".33"]
    cells = [{"method": m, "task": t, "length": n, "n": 10, "score": s, "low": s / 2, "high": 1.0}
             for m, s in (("yarn", 0.8), ("dprope_robust", 0.25)) for t in ("vt", "cwe") for n in (4096, 8192)]
    averages = [{"method": m, "length": n, "score": s, "low": 0.0, "high": 0.9}
                for m, s in (("yarn", 0.8), ("dprope_robust", 0.25)) for n in (4096, 8192)]
    lines = ruler_table(cells, averages).splitlines()
    assert lines[:3] == ["| task (n = 10 each) | length | yarn | dprope_robust |", "|---|---|---|---|",
                         "| vt | 4096 | .80 [.40, 1] | .25 [.13, 1] |"]
    assert lines[-1] == "| **average of 2 tasks** | 8192 | .80 [0, .90] | .25 [0, .90] |" and len(lines) == 2 + 4 + 2
    one = ruler_table([c for c in cells if c["length"] == 4096], averages[:1]).splitlines()
    assert one[0] == "| task (n = 10 each) | yarn | dprope_robust |" and one[-1] == "| **average of 2 tasks** | .80 [0, .90] |  |"
    every = cells + [{**cells[0], "task": t, "length": 8192} for t in SYNTHETIC_TASKS if t not in ("vt", "cwe")]
    assert ruler_table(every, averages).splitlines()[-2:] == [
        "| **average of 2 tasks** | 4096 | .80 [0, .90] | .25 [0, .90] |",
        "| **RULER average** | 8192 | .80 [0, .90] | .25 [0, .90] |"]


def _write(folder, rows, window=WINDOW):
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(sample_rows(rows, window), folder / SAMPLES_FILE)
    return folder


@pytest.mark.parametrize("change, message", [
    (lambda r: {**r, "score": 1.0 - r["score"]}, r"yarn on vt sample 0 at 4096 scores .*, another folder"),
    (lambda r: {**r, "prompt": "0" * 16}, (r"vt sample 0 at 4096 is prompt 0000000000000000, in .* prompt .*: these runs "
                                          r"drew other prompts")),
])
def test_runs_that_disagree_are_refused_in_one_line(tmp_path, change, message):
    rows = _rows([4096], methods=("yarn",))
    first = _write(tmp_path / "a", rows)
    second = _write(tmp_path / "b", [change(rows[0])])
    with pytest.raises(ValueError, match=message):
        read_samples([first, second])
    assert len(read_samples([first, _write(tmp_path / "c", rows[:2])])[0]) == len(rows)  # agreeing repeats merge


def test_a_prompt_differs_between_methods_is_refused(tmp_path):
    rows = _rows([4096], methods=("none", "yarn"))
    rows[len(rows) // 2]["prompt"] = "f" * 16  # yarn's vt sample 0
    with pytest.raises(ValueError, match="vt sample 0 at 4096 is prompt ffffffffffffffff"):
        read_samples([_write(tmp_path / "a", rows)])


def test_bad_folders_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="at least one folder"):
        read_samples([])
    with pytest.raises(FileNotFoundError, match=f"{SAMPLES_FILE} does not exist"):
        read_samples([tmp_path])
    (tmp_path / SAMPLES_FILE).write_text("method,task,length\nyarn,vt,4096\n")
    with pytest.raises(ValueError, match=r"lacks the columns \['index', 'depth'"):
        read_samples([tmp_path])
    rows = _rows([4096], methods=("yarn",))
    with pytest.raises(ValueError, match="window 4096, .* of one with window 8192: pool one model"):
        read_samples([_write(tmp_path / "a", rows), _write(tmp_path / "b", rows, window=4096)])
    assert main(["pool", str(tmp_path / "a"), "--figures", str(tmp_path / "out"), "--pass-threshold", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "ropelab: error: --pass-threshold must be in (0, 1], got 1.5"
    assert main(["pool", str(tmp_path / "missing"), "--figures", str(tmp_path / "out")]) == 2
    assert "missing/06_ruler_samples.csv does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written on bad input


def test_the_command_pools_and_prints(tmp_path, capsys):
    _report(_rows([4096, 12288]), tmp_path / "a")
    assert main(["pool", str(tmp_path / "a"), "--figures", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "RULER             yarn  12288:" in out and "dprope_robust - yarn" in out
    assert (tmp_path / "out/06_ruler_heatmap.png").is_file() and (tmp_path / "out" / SAMPLES_FILE).is_file()


def test_a_real_run_names_each_prompt_the_same_under_every_method(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    for part in tiny_llama(window=256):  # a byte-level tokenizer: every needle and depth gives other ids
        part.save_pretrained(folder)
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text(" ".join(f"w{i}" for i in np.random.default_rng(0).integers(3, 128, size=300)))
    cfg = load_zeroshot_config({
        "model": str(folder), "dtype": "float32", "threads": 1, "target_length": 1024,
        "documents": [{"corpus": f"text:{text}", "split": "all", "docs": 1}], "ppl_lengths": [32],
        "variants": {"none": {"method": "none"}, "yarn": {"method": "yarn"}},
        "retrieval": {"variants": ["none", "yarn"], "lengths": [448, 512], "passkey_samples": 0,
                      "ruler_tasks": ["niah_single_1"], "ruler_samples": 3}})
    rows = run_zero_shot(cfg, progress=False)["ruler"]
    assert len(rows) == 2 * 2 * 3  # methods x lengths x samples
    by_cell = {}
    for r in rows:
        by_cell.setdefault((r["task"], r["length"], r["index"]), set()).add(r["prompt"])
    assert len(by_cell) == 6 and all(len(ids) == 1 for ids in by_cell.values())  # one prompt per cell, both methods
    from transformers import AutoTokenizer

    from ropelab.experiments.zeroshot.run import retrieval_prompts

    prompts = retrieval_prompts(cfg, AutoTokenizer.from_pretrained(folder))  # the ids each prompt really had
    assert [by_cell[(p["item"].task, p["item"].length, p["item"].index)] for p in prompts] == [
        {prompt_id(p["ids"])} for p in prompts]
    assert len(set().union(*by_cell.values())) == 6  # six prompts
    _report(rows, tmp_path / "fig", window=256)
    back, window = read_samples([tmp_path / "fig"])
    assert window == 256 and sorted(r["score"] for r in back) == sorted(r["score"] for r in rows)


def test_a_part_of_the_grid_draws_the_whole_grids_prompts_of_its_tasks(tmp_path):
    from ropelab.experiments.zeroshot import with_ruler_tasks
    from ropelab.experiments.zeroshot.run import retrieval_prompts

    _, tokenizer = tiny_llama()
    whole = load_zeroshot_config({"retrieval": {"lengths": [600, 640], "passkey_samples": 0, "ruler_samples": 2,
                                                "ruler_tasks": ["niah_single_1", "niah_multikey_1", "niah_single_3"],
                                                "ruler_task_samples": {"niah_single_3": 3}}})
    part = with_ruler_tasks(whole, " niah_single_3,niah_single_1")
    assert part.retrieval.ruler_tasks == ("niah_single_1", "niah_single_3")  # the profile's order
    assert part.retrieval.ruler_task_samples == {"niah_single_3": 3}
    assert with_ruler_tasks(whole, "") is whole
    assert with_ruler_tasks(whole, "niah_single_1").retrieval.ruler_task_samples == {}  # a dropped task's count goes
    ids = {(p["item"].task, p["item"].length, p["item"].index): p["ids"] for p in retrieval_prompts(whole, tokenizer)}
    mine = retrieval_prompts(part, tokenizer)
    assert len(mine) == 2 * 2 + 3 * 2
    assert all(ids[(p["item"].task, p["item"].length, p["item"].index)] == p["ids"] for p in mine)
    with pytest.raises(ValueError, match="ruler_tasks 'vt': 'vt' is not a RULER task of profile quick; allowed: "
                                         "niah_single_1, niah_multikey_1, niah_single_3"):
        with_ruler_tasks(whole, "vt")
