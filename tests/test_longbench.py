"""LongBench-E: every metric on hand-checked cases, post-processing, buckets, prompts and middle truncation, bad
input (missing folder, malformed jsonl line), and an end-to-end run of a tiny random Llama over the fixtures.

Expected values were computed by hand; the working is in the comments. (The ROUGE-L and fuzz-ratio
re-implementations were also compared with ``rouge==1.0.1`` and ``fuzzywuzzy==0.18.0`` on 3,000 random pairs
each, with no difference; those packages are not dependencies, so that comparison is not repeated here.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_passkey import tiny_llama

from ropelab import cli
from ropelab.commands._eval import longbench as longbench_cli
from ropelab.eval import longbench
from ropelab.eval.longbench import PROMPTS, TASKS, Sample, build_prompt, check_folder, evaluate_longbench, read_task
from ropelab.eval.longbench_metrics import (
    average_over_tasks,
    bucket_scores,
    classification_score,
    code_sim_score,
    count_score,
    first_code_line,
    fuzz_ratio,
    length_bucket,
    normalize_answer,
    qa_f1_score,
    retrieval_score,
    rouge_l,
    rouge_score,
    score_sample,
)

FIXTURES = Path(__file__).parent / "fixtures" / "longbench"


def test_thirteen_tasks_each_with_prompt_budget_and_metric():
    assert len(TASKS) == 13 and set(PROMPTS) == set(TASKS) == set(longbench.MAX_NEW_TOKENS)
    assert all("{context}" in PROMPTS[t] for t in TASKS)
    assert longbench.MAX_NEW_TOKENS["gov_report"] == 512 and longbench.MAX_NEW_TOKENS["hotpotqa"] == 32


def test_normalize_and_qa_f1():
    assert normalize_answer("The  Cat, sat on a mat!") == "cat sat on mat"
    # pred -> [cat, sat, on, mat], gold "a cat on a mat" -> [cat, on, mat]: 3 shared; P = 3/4, R = 1,
    # F1 = 2 * 0.75 * 1 / 1.75 = 6/7
    assert qa_f1_score("The cat sat on the mat.", "a cat on a mat") == pytest.approx(6 / 7)
    # "paris paris" vs "paris": multiset overlap 1; P = 1/2, R = 1, F1 = 2/3
    assert qa_f1_score("Paris Paris", "Paris") == pytest.approx(2 / 3)
    assert qa_f1_score("London", "Paris") == 0.0
    assert qa_f1_score("", "Paris") == 0.0


def test_rouge_l_is_the_rouge_package_summary_level_with_word_sets():
    # one sentence each; LCS of [the cat sat on the mat] and [the cat is on the mat] is "the cat on the mat",
    # as a word set {the, cat, on, mat} = 4; distinct words: 5 in each. P = R = 4/5, F = 0.8 (minus the 1e-8)
    p, r, f = rouge_l("the cat sat on the mat", "the cat is on the mat")
    assert (p, r) == (0.8, 0.8) and f == pytest.approx(0.8, abs=1e-7)
    # sentences split on ".": hyp [a b c], [d e]; ref [a b], [c d e]. LCS(ab, abc) = {a, b}, LCS(cde, abc) = {c},
    # LCS(cde, de) = {d, e}: union {a..e} = 5 of 5 distinct words each side: P = R = 1, F = 1
    assert rouge_score("a b c. d e", "a b. c d e") == pytest.approx(1.0, abs=1e-7)
    # hyp [x y], ref [y z]: union {y}; P = R = 1/2, F = 1/2
    assert rouge_score("x y", "y z") == pytest.approx(0.5, abs=1e-7)
    # no sentence at all: the official try/except gives 0
    assert rouge_score("", "a b") == 0.0 and rouge_score("...", "a b") == 0.0


def test_classification_score_with_the_official_removal_order():
    classes = ["City", "Distance", "Individual", "Date"]
    assert classification_score("Individual", "Individual", all_classes=classes) == 1.0
    # both "Distance" and "City" appear: the answer is one of 2 matches -> 1/2
    assert classification_score("City or Distance", "City", all_classes=classes) == 0.5
    assert classification_score("Date", "City", all_classes=classes) == 0.0
    # "date" is a strict substring of the answer "other date": dropped, so only the answer is left -> 1
    assert classification_score("other date", "other date", all_classes=["date", "other date"]) == 1.0
    # official quirk: matches [a, b, ab]; "a" is removed, so "b" slides into its slot and is never examined:
    # [b, ab] remain and the score is 1/2 (without the quirk "b" would be dropped too and the score 1)
    assert classification_score("ab", "ab", all_classes=["a", "b", "ab"]) == 0.5


def test_retrieval_and_count():
    assert retrieval_score("Paragraph 12", "Paragraph 12") == 1.0
    assert retrieval_score("Paragraph 3 or Paragraph 12", "Paragraph 12") == 0.5  # 1 of 2 numbers
    assert retrieval_score("I do not know", "Paragraph 12") == 0.0
    with pytest.raises(ValueError, match="Paragraph N"):
        retrieval_score("1", "twelve")
    assert count_score("There are 7 unique paragraphs, not 8", "7") == 0.5
    assert count_score("7", 7) == 1.0 and count_score("seven", "7") == 0.0


def test_fuzz_ratio_equals_fuzzywuzzy_on_hand_checked_cases():
    # "abcd"/"abce": one block "abc" of 3; ratio = 2 * 3 / 8 = 0.75 -> 75
    assert fuzz_ratio("abcd", "abce") == 75
    # "kitten"/"sitting": blocks "itt" (3) and "n" (1); 2 * 4 / 13 = 0.615 -> 62
    assert fuzz_ratio("kitten", "sitting") == 62
    # "abcde123"/"abcdeXYZ": block "abcde"; 2 * 5 / 16 = 0.625 -> 62.5, which Python's round (half to even,
    # fuzzywuzzy's intr) makes 62
    assert fuzz_ratio("abcde123", "abcdeXYZ") == 62
    assert fuzz_ratio("same", "same") == 100 and fuzz_ratio("", "") == 100  # equality is checked first
    assert fuzz_ratio("", "x") == 0 and fuzz_ratio("abc", "xyz") == 0


def test_code_post_processing_and_similarity():
    prediction = "\n# a comment\n```python\nreturn width * height\nprint(1)"
    assert first_code_line(prediction) == "return width * height"
    assert first_code_line("# only\n// comments") == ""
    assert code_sim_score(prediction, "return width * height") == 1.0
    # "x = 1"/"x = 2": block "x = " of 4; 2 * 4 / 10 = 0.8
    assert code_sim_score("// set x\nx = 1", "x = 2") == 0.8


def test_score_sample_post_processes_and_takes_the_best_answer():
    # triviaqa keeps only the first line: "Paris" -> 1
    assert score_sample("triviaqa", "\nParis\nLondon is big", ["Paris"]) == 1.0
    # best over answers: F1("paris", "london") = 0, F1("paris", "paris france") = 2 * 1 * 0.5 / 1.5 = 2/3
    assert score_sample("hotpotqa", "Paris", ["London", "Paris France"]) == pytest.approx(2 / 3)
    # samsum keeps the first line only: the second line's words do not count
    assert score_sample("samsum", "a b\nc d", ["c d"]) == 0.0
    assert score_sample("trec", "Date", ["Date"], ["Date", "City"]) == 1.0
    with pytest.raises(ValueError, match="unknown LongBench-E task"):
        score_sample("narrativeqa", "x", ["x"])


def test_buckets_follow_the_length_field():
    assert [length_bucket(n) for n in (0, 3999, 4000, 7999, 8000, 20000)] == \
        ["0-4k", "0-4k", "4-8k", "4-8k", "8k+", "8k+"]
    # 0-4k: mean(1, 0) = 0.5 -> 50; 4-8k: 0.5 -> 50; 8k+: 1 -> 100; all: 2.5 / 4 -> 62.5
    assert bucket_scores([1.0, 0.0, 0.5, 1.0], [100, 3999, 4000, 9000]) == \
        {"0-4k": 50.0, "4-8k": 50.0, "8k+": 100.0, "all": 62.5}
    # 1/3 -> 33.33 (rounded to 2 decimals as the official eval.py); empty buckets are NaN
    scores = bucket_scores([1.0, 0.0, 0.0], [10, 20, 30])
    assert scores["0-4k"] == 33.33 and math.isnan(scores["4-8k"]) and math.isnan(scores["8k+"])
    # the average over tasks leaves out the tasks with an empty bucket: (50 + 20) / 2 = 35, 40, 100, 45
    per_task = {"a": {"0-4k": 50.0, "4-8k": math.nan, "8k+": 100.0, "all": 60.0},
                "b": {"0-4k": 20.0, "4-8k": 40.0, "8k+": math.nan, "all": 30.0}}
    assert average_over_tasks(per_task) == {"0-4k": 35.0, "4-8k": 40.0, "8k+": 100.0, "all": 45.0}


def test_prompt_is_the_template_and_long_prompts_lose_their_middle():
    _, tok = tiny_llama()
    sample = Sample(input="Who built the bridge?", context="The bridge was built by Ewan Dall.", answers=["Ewan Dall"],
                    length=7, dataset="hotpotqa")
    ids = build_prompt(sample, "hotpotqa", tok, 10_000)
    assert tok.decode(ids, skip_special_tokens=True) == PROMPTS["hotpotqa"].format(context=sample.context,
                                                                                  input=sample.input)
    long = Sample(input="Who built the bridge?", context=" ".join(f"word{i}." for i in range(2000)),
                  answers=["x"], length=2000, dataset="hotpotqa")
    ids = build_prompt(long, "hotpotqa", tok, 120)
    text = tok.decode(ids, skip_special_tokens=True)
    assert abs(len(ids) - 120) <= 3  # re-tokenising at the cut may merge a token or two
    assert text.startswith("Answer the question based on the given passages.")  # the head survives
    assert text.endswith("Question: Who built the bridge?\nAnswer:")  # and so does the tail
    assert "word1000." not in text  # the middle is gone


def test_missing_folder_names_the_folder_and_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.*qasper_e\.jsonl.*repobench-p_e\.jsonl"):
        check_folder(tmp_path / "nope", TASKS)
    (tmp_path / "lb").mkdir()
    (tmp_path / "lb" / "trec_e.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match=r"lacks lcc_e\.jsonl"):
        check_folder(tmp_path / "lb", ["trec", "lcc"])
    from ropelab.cli import main  # on the command line: one line, exit status 2, before any model is loaded

    assert main(["eval", "longbench", "--model", "unused", "--data-dir", str(tmp_path / "nope")]) == 2


def test_malformed_lines_warn_with_file_and_line_and_the_rest_is_read(tmp_path):
    good = json.dumps({"input": "q", "context": "c", "answers": ["a"], "length": 5, "dataset": "trec_e",
                       "language": "en", "all_classes": ["a"], "_id": "1"})
    path = tmp_path / "trec_e.jsonl"
    path.write_text("\n".join([good, "{not json", json.dumps({"input": "q", "context": "c"}), good]) + "\n")
    with pytest.warns(UserWarning) as record:
        samples = read_task(tmp_path, "trec")
    assert len(samples) == 2 and samples[1].source == f"{path}:4"
    messages = [str(w.message) for w in record]
    assert any(f"{path}:2:" in m for m in messages) and any(f"{path}:3:" in m and "answers" in m for m in messages)


def test_fixtures_have_the_published_fields():
    for task in TASKS:
        lines = (FIXTURES / f"{task}_e.jsonl").read_text(encoding="utf-8").splitlines()
        assert lines and all(set(json.loads(line)) == set(longbench.FIELDS) for line in lines)


def test_end_to_end_tiny_llama_over_the_fixtures(tmp_path, capsys):
    model, tok = tiny_llama()
    rows, summary = evaluate_longbench(model, tok, FIXTURES, max_length=200, max_new_tokens=4, progress=False)
    assert len(rows) == 26 and {r["task"] for r in rows} == set(TASKS)
    assert all(0.0 <= r["score"] <= 100.0 and isinstance(r["prediction"], str) for r in rows)
    assert set(summary["tasks"]) == set(TASKS) and all(s["n"] == 2 for s in summary["tasks"].values())
    assert math.isnan(summary["average"]["8k+"])  # every fixture is short: 0-4k only
    assert 0.0 <= summary["average"]["0-4k"] == summary["average"]["all"] <= 100.0

    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    args = cli.build_parser().parse_args(["eval", "longbench", "--model", str(tmp_path / "m"), "--data-dir", str(FIXTURES),
                              "--tasks", "trec,lcc", "--limit", "1", "--max-new-tokens", "3", "--json",
                              "--csv", str(tmp_path / "lb.csv")])
    assert args._run(args) == 0 and args._evaluation is longbench_cli.run
    out = json.loads(capsys.readouterr().out)
    assert set(out["tasks"]) == {"trec", "lcc"} and out["average"]["8k+"] is None
    assert (tmp_path / "lb.csv").exists() and (tmp_path / "lb.summary.csv").exists()
    with pytest.warns(UserWarning, match="length 1012 is beyond the model's configured window 512"):
        evaluate_longbench(model, tok, FIXTURES, tasks=["lcc"], max_length=1000, max_new_tokens=12, limit=1,
                           progress=False)
