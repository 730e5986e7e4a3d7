"""RULER suite: deterministic samples fitted to the token length, answers really in the haystack where stated,
RULER's templates and metrics, effective length, bad input, needle perplexity against transformers' own loss,
prefix reuse and chunked prefill == the full run, the CLI on a tiny random model, plots; SmolLM2 gets NIAH right.

The fast tests use the byte-level BPE tokenizer of ``tiny_llama`` (test_passkey.py): a real HF fast tokenizer,
trained in milliseconds, which spends more tokens per character than a production one.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from test_passkey import tiny_llama

from ropelab.eval.ruler import (
    SYNTHETIC_TASKS,
    TASKS,
    build_sample,
    effective_length,
    evaluate_ruler,
    generate_samples,
    haystacks,
    relative_threshold,
    scoring,
    summarize,
)
from ropelab.eval.ruler import tasks as ruler_tasks
from ropelab.eval.ruler.needle_ppl import needle_labels, needle_perplexity
from ropelab.eval.ruler.qa import read_qa_file

# RULER's templates and answer prefixes, as printed in NVIDIA/RULER scripts/data/synthetic/constants.py (the
# reference the generators are checked against; lm-eval's lm_eval/tasks/ruler uses the same strings)
RULER_NIAH = ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I "
              "will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
              "{type_needle_v} for {query} mentioned in the provided text?")
RULER_NIAH_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
RULER_TOKENS = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}


def tok():
    return tiny_llama()[1]


def context_of(prompt: str) -> str:
    """The haystack between a NIAH prompt's first line and its question."""
    return prompt.split("\n", 1)[1].rsplit("\nWhat ", 1)[0]


# --------------------------------------------------------------------------------------------- generation
def test_samples_are_a_function_of_task_length_index_and_seed():
    tokenizer = tok()
    batch = generate_samples(tokenizer, ["niah_single_1", "vt"], [2048], samples=3, seed=7, progress=False)
    again = generate_samples(tokenizer, ["niah_single_1", "vt"], [2048], samples=3, seed=7, progress=False)
    assert batch == again
    # any one sample alone is the same as inside a batch: no hidden state carried between samples
    assert build_sample("vt", 2048, 2, 7, tokenizer) == batch[5]
    other_seed = generate_samples(tokenizer, ["niah_single_1"], [2048], samples=3, seed=8, progress=False)
    assert [s.outputs for s in other_seed] != [s.outputs for s in batch[:3]]
    assert len({s.outputs for s in batch[:3]}) == 3  # three different needles


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_each_task_fits_its_length_in_tokens(task):
    tokenizer = tok()
    length = 8192 if task == "cwe" else 2048  # the tiny tokenizer spends ~4x the tokens of a real one on CWE's list
    for sample in generate_samples(tokenizer, [task], [length], samples=2, progress=False):
        assert sample.ids == tuple(tokenizer(sample.prompt).input_ids)
        assert sample.prompt.endswith(sample.answer_prefix) and sample.max_new_tokens == RULER_TOKENS[
            TASKS[task].family]
        room = length - sample.max_new_tokens
        assert room - max(96, 0.04 * length) <= sample.n_tokens <= room, (task, sample.n_tokens, room)


def test_niah_needles_are_in_the_haystack_at_their_stated_depth():
    tokenizer = tok()
    for task in ("niah_single_1", "niah_single_2", "niah_multikey_1", "niah_multivalue", "niah_multiquery"):
        for sample in generate_samples(tokenizer, [task], [4096], samples=2, progress=False):
            context = context_of(sample.prompt)
            needles = re.findall(r"One of the special magic numbers for (\S+) is: (\d+)\.", context)
            o = TASKS[task].options
            assert len(needles) == max(o["num_needle_k"], o["num_needle_q"]) * o["num_needle_v"]
            queried = re.search(r"for (.+) mentioned in the provided text\?", sample.prompt).group(1)
            keys = queried.replace(", and ", ", ").split(", ")
            # the references are exactly the values of the queried keys (in query order; one key's values in the
            # order they were drawn, the needles being shuffled)
            found = [v for k in keys for key, v in needles if key == k]
            assert sorted(sample.outputs) == sorted(found) and len(found) == len(keys) * o["num_needle_v"]
            if o["num_needle_v"] == 1:
                assert list(sample.outputs) == found
            assert all(len(v) == 7 for v in sample.outputs)
            # each needle sits where the sample says (fraction of the haystack), in order
            where = [context.index(f"for {key} is: {value}.") / len(context) for key, value in needles]
            assert where == sorted(where) and len(sample.depths) == len(where)
            tolerance = 0.02 if o["haystack"] == "noise" else 0.08  # essays: sentence count vs characters
            for found, stated in zip(where, sample.depths):
                assert abs(found - stated) < tolerance, (task, found, stated)


def test_uuid_needles_and_the_needle_haystack():
    sample = generate_samples(tok(), ["niah_multikey_3"], [2048], samples=1, progress=False)[0]
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    needles = re.findall(rf"One of the special magic uuids for ({uuid}) is: ({uuid})\.", sample.prompt)
    assert len(needles) > 10  # the haystack is distractor needles
    key = re.search(r"uuid for (\S+) mentioned in the provided text\?", sample.prompt).group(1)
    assert [v for k, v in needles if k == key] == list(sample.outputs)  # one needle has the queried key


def test_vt_cwe_and_fwe_answers_are_what_the_text_says():
    tokenizer = tok()
    vt = generate_samples(tokenizer, ["vt"], [2048], samples=1, progress=False)[0]
    question = vt.prompt.rsplit("Memorize and track", 1)[1]  # after the in-context example
    value = re.search(r"assigned the value (\d+) in the text above", question).group(1)
    # follow the chain in the text: which variables end up holding the value
    assigned = dict(re.findall(r"VAR ([A-Z]{5}) = (\d+|VAR [A-Z]{5})", question))
    holders = [v for v in assigned if _resolve(assigned, v) == value]
    assert sorted(holders) == sorted(vt.outputs) and len(vt.outputs) == 5

    cwe = generate_samples(tokenizer, ["cwe"], [8192], samples=1, progress=False)[0]
    listed = re.findall(r"\d+\. (\S[^.\d]*?)(?= \d+\.|\nQuestion)", cwe.prompt.rsplit("Below is a numbered", 1)[1])
    counts = collections.Counter(listed)
    assert sorted(w for w, _ in counts.most_common(10)) == sorted(cwe.outputs)
    assert all(counts[w] == 30 for w in cwe.outputs) and max(c for w, c in counts.items() if w not in cwe.outputs) == 3

    fwe = generate_samples(tokenizer, ["fwe"], [2048], samples=1, progress=False)[0]
    coded = fwe.prompt.split("coded words. ", 1)[1].split("\nQuestion")[0].split()
    ranked = [w for w, _ in collections.Counter(coded).most_common(4)]
    assert ranked[0] == "..." and ranked[1:] == list(fwe.outputs)


def _resolve(assigned: dict, name: str) -> str:
    value = assigned[name]
    return _resolve(assigned, value[4:]) if value.startswith("VAR ") else value


def test_templates_are_ruler_s():
    tokenizer = tok()
    single = generate_samples(tokenizer, ["niah_single_1"], [1024], samples=1, progress=False)[0]
    key = re.search(r"number for (\S+) mentioned", single.prompt).group(1)
    # RULER's singular wording for one answer: "Some" -> "A", "are all" -> "is", "are" -> "is", numbers -> number
    singular = (RULER_NIAH + RULER_NIAH_PREFIX).replace("Some", "A").replace("are all", "is").replace("are", "is")
    head, tail = singular.format(type_needle_v="number", query=key, context="\0").split("\0")
    assert single.prompt.startswith(head) and single.prompt.endswith(tail)
    assert single.answer_prefix == RULER_NIAH_PREFIX.replace("are", "is").format(type_needle_v="number", query=key)
    multi = generate_samples(tokenizer, ["niah_multivalue"], [1024], samples=1, progress=False)[0]
    key = re.search(r"numbers for (\S+) mentioned", multi.prompt).group(1)
    head, tail = (RULER_NIAH + RULER_NIAH_PREFIX).format(type_needle_v="numbers", query=key, context="\0").split("\0")
    assert multi.prompt.startswith(head) and multi.prompt.endswith(tail)
    assert {t.name: t.max_new_tokens for t in TASKS.values()} == {n: RULER_TOKENS[t.family] for n, t in TASKS.items()}
    assert {t.metric for t in TASKS.values() if t.family == "qa"} == {"part"}
    assert {t.metric for t in TASKS.values() if t.family != "qa"} == {"all"}


def test_templates_and_metrics_match_lm_eval():
    """lm-eval's RULER task files: templates and generation lengths read as source (importing its generators
    downloads NLTK data), and its string_match_all on the same predictions."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        pytest.skip("lm-eval is not installed; RULER's own strings are checked by test_templates_are_ruler_s")
    root = Path(spec.origin).parent / "tasks" / "ruler"
    tree = ast.parse((root / "niah_utils.py").read_text())
    template = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", "") == "TEMPLATE")
    assert template == ruler_tasks.NIAH_TEMPLATE
    generate = {"niah_single_1": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa_squad": 32}
    for name, tokens in generate.items():
        assert f"max_gen_toks: {tokens}" in (root / f"{name}.yaml").read_text()
    # its scorer, loaded from its file alone (the package's __init__ needs datasets)
    loader = importlib.util.spec_from_file_location("lm_eval_ruler_common", root / "common_utils.py")
    common = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(common)
    preds, refs = ["the numbers are 1234567 and 7654321", "nothing here"], [["1234567", "7654321"], ["42"]]
    ours = sum(scoring.string_match_all(p, r) for p, r in zip(preds, refs)) / len(preds)
    assert common.string_match_all(preds, refs) == pytest.approx(ours)


# --------------------------------------------------------------------------------------------- scoring
def test_string_match_scores_known_right_and_wrong_answers():
    refs = ["1234567", "7654321", "abaft-mixer"]
    assert scoring.string_match_all(" 1234567, 7654321 and Abaft-Mixer.", refs) == 1.0
    assert scoring.string_match_all(" 1234567 only", refs) == pytest.approx(1 / 3)
    assert scoring.string_match_all(" 7777777, 1111111", refs) == 0.0  # a wrong answer scores nothing
    assert scoring.string_match_part(" it is 7654321", refs) == 1.0
    assert scoring.string_match_part(" it is 7654320", refs) == 0.0
    # RULER's post-processing: strip, control characters become newlines
    assert scoring.postprocess("\x00 1234567\x1f\n") == "1234567"
    assert scoring.score("\t1234567", ["1234567"], "all") == 1.0
    with pytest.raises(ValueError, match="unknown RULER metric 'exact'"):
        scoring.score("x", ["x"], "exact")


def test_effective_length_on_a_hand_made_table():
    averages = {1024: 0.90, 2048: 0.80, 4096: 0.50, 8192: 0.85}
    assert effective_length(averages, 0.7) == 2048  # 8192 passes again, but 4096 broke the run
    assert effective_length(averages, 0.95) is None
    assert effective_length(averages, 0.4) == 8192
    assert relative_threshold(averages) == pytest.approx(0.85 * 0.90)
    assert effective_length(averages, scoring.RULER_THRESHOLD) == 1024
    rows = [{"task": t, "length": n, "score": s} for t, scores in (("a", (1, 1, 0)), ("b", (1, 0.5, 0)))
            for n, s in zip((1024, 2048, 4096), scores)]
    summary = summarize(rows)
    assert summary["averages"] == [{"length": 1024, "score": 1.0}, {"length": 2048, "score": 0.75},
                                   {"length": 4096, "score": 0.0}]
    assert summary["threshold"] == pytest.approx(0.85) and summary["effective_length"] == 1024
    assert summarize(rows, threshold=0.7)["effective_length"] == 2048
    with pytest.raises(ValueError, match="relative threshold must be in"):
        relative_threshold(averages, 1.5)


# --------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_before_any_model_work(monkeypatch, tmp_path):
    tokenizer = tok()
    with pytest.raises(ValueError, match=r"unknown RULER task\(s\) 'niah', 'vt2'; allowed: niah_single_1"):
        generate_samples(tokenizer, ["niah", "vt", "vt2"], [1024])
    with pytest.raises(ValueError, match=r"niah_single_1 at length 100 is too short: .* give a length >= \d+"):
        generate_samples(tokenizer, ["niah_single_1"], [100])
    with pytest.raises(ValueError, match="qa_1 need a QA file"):
        generate_samples(tokenizer, ["qa_1"], [1024])
    with pytest.raises(FileNotFoundError, match="QA file .*nowhere.json' not found"):
        generate_samples(tokenizer, ["qa_1"], [1024], qa_file=tmp_path / "nowhere.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n  {"paragraphs": []},\n  oops\n]}')
    with pytest.raises(ValueError, match=r"broken.json:3: not JSON"):
        read_qa_file(broken, "squad")
    with pytest.raises(ValueError, match=r"broken.json:1: not RULER's hotpotqa JSON"):
        (tmp_path / "broken.json").write_text('[{"question": "q"}]')
        read_qa_file(broken, "hotpotqa")
    # a haystack shorter than asked: 600 words of the essays cannot fill 4096 tokens
    words = haystacks.essay_words()[:600]
    monkeypatch.setattr(ruler_tasks, "essay_words", lambda: words)  # the name the builders use
    with pytest.raises(ValueError, match=r"niah_single_2 at length 4096: the haystack is too short"):
        generate_samples(tokenizer, ["niah_single_2"], [4096])


def squad_file(path: Path) -> Path:
    """A SQuAD-format file of two articles (made-up text)."""
    def article(title, facts):
        return {"title": title, "paragraphs": [
            {"context": text, "qas": [{"question": q, "answers": [{"text": a}], "is_impossible": False},
                                      {"question": "Unanswerable?", "answers": [], "is_impossible": True}]}
            for text, q, a in facts]}

    data = {"data": [article("Rivers", [("The Ord river is 320 km long.", "How long is the Ord river?", "320 km"),
                                        ("The Ord flows into the Timor Sea.", "Where does the Ord flow?", "Timor Sea")]),
                     article("Birds", [(f"The {b} is a bird of the {c} family." * 3, f"Which family is the {b} in?", c)
                                       for b, c in (("wren", "Troglodytidae"), ("robin", "Muscicapidae"),
                                                    ("crow", "Corvidae"), ("finch", "Fringillidae"))])]}
    path.write_text(json.dumps(data, indent=1))
    return path


def test_qa_from_a_local_squad_file(tmp_path):
    qa_file = squad_file(tmp_path / "squad.json")
    qa = read_qa_file(qa_file, "squad")
    assert len(qa.questions) == 6 and len(qa.documents) == 6  # unanswerable questions dropped
    samples = generate_samples(tok(), ["qa_1"], [400], samples=2, qa_file=qa_file, progress=False)
    first = samples[0]
    assert first.outputs == ("320 km",) and "The Ord river is 320 km long." in first.prompt
    assert first.prompt.endswith("Question: How long is the Ord river? Answer:") and first.metric == "part"
    assert "Document 1:\n" in first.prompt and first.n_tokens <= 400 - 32
    assert scoring.score(" 320 km", first.outputs, first.metric) == 1.0
    with pytest.raises(ValueError, match="sample 6 needs question 7 but the QA file has 6"):
        generate_samples(tok(), ["qa_1"], [400], samples=7, qa_file=qa_file, progress=False)


# --------------------------------------------------------------------------------------------- evaluation
def test_prefix_reuse_and_chunked_prefill_give_the_full_run_s_answers(monkeypatch):
    from ropelab.eval import generation
    from ropelab.eval.generation import common_prefix, greedy_generate, prefix_cache, prefix_pays

    assert prefix_pays(500, 1000, 5) and not prefix_pays(400, 1000, 5) and prefix_pays(800, 1000, 2)
    assert not prefix_pays(999, 1000, 1) and not prefix_pays(0, 1000, 5) and not prefix_pays(500, 1000, 2)
    monkeypatch.setattr(generation, "MASKED_KERNEL_COST", 0.0)  # reuse any shared prefix, to compare the two paths

    model, tokenizer = tiny_llama()
    samples = generate_samples(tokenizer, ["niah_single_1", "niah_single_2"], [1024], samples=3, progress=False)
    assert common_prefix(samples[0].ids, samples[1].ids) > 20  # template + noise before the first needle
    rows, summary = evaluate_ruler(model, tokenizer, samples, max_new_tokens=5, progress=False)
    whole, _ = evaluate_ruler(model, tokenizer, samples, max_new_tokens=5, reuse_prefix=False, progress=False)
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in whole]
    assert [(r["task"], r["length"], r["index"]) for r in rows] == [(s.task, s.length, s.index) for s in samples]
    assert {(c["task"], c["length"], c["n"]) for c in summary["cells"]} == {("niah_single_1", 1024, 3),
                                                                              ("niah_single_2", 1024, 3)}
    assert all(0.0 <= r["score"] <= 1.0 for r in rows) and len(summary["averages"]) == 1
    # the suffix after a cache, in chunks of 7 tokens: the same tokens and logits as one causal forward
    ids = samples[0].ids
    cache = prefix_cache(model, ids[:300])
    full, full_logits = greedy_generate(model, ids, 4, return_logits=True)
    chunked, chunked_logits = greedy_generate(model, ids[300:], 4, cache, return_logits=True, chunk=7)
    assert chunked == full and cache.get_seq_length() == 300
    for a, b in zip(full_logits, chunked_logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_needle_perplexity_is_transformers_loss_on_the_answer_tokens():
    model, tokenizer = tiny_llama()
    samples = generate_samples(tokenizer, ["niah_single_1", "niah_multivalue"], [768], samples=1, progress=False)
    nll, count = 0.0, 0
    for sample in samples:
        assert tokenizer.decode(sample.answer_ids) == " " + ", ".join(sample.outputs)
        ids = torch.tensor([[*sample.ids, *sample.answer_ids]])
        labels = torch.tensor([needle_labels(sample.ids, sample.answer_ids)])
        assert (labels != -100).sum() == len(sample.answer_ids)
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss  # transformers' own shifted, -100-masked loss
        nll, count = nll + float(loss) * len(sample.answer_ids), count + len(sample.answer_ids)
    assert needle_perplexity(model, samples) == pytest.approx(float(torch.exp(torch.tensor(nll / count))), rel=1e-4)
    vt = [dataclasses.replace(samples[0], task="vt")]
    with pytest.raises(ValueError, match="needle perplexity needs NIAH samples, got vt"):
        needle_perplexity(model, vt)


def test_cli_on_a_tiny_random_model(tmp_path, capsys):
    from ropelab.cli import main
    from ropelab.runtime.models import random_model

    _, tokenizer = tiny_llama()
    model = random_model("llama", original_length=1024, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    csv = tmp_path / "ruler.csv"
    argv = ["eval", "ruler", "--model", str(tmp_path / "m"), "--tasks", "niah_single_1,vt", "--lengths", "2048,4096",
            "--samples", "1", "--max-new-tokens", "3"]
    assert main([*argv, "--method", "pi", "--target-length", "4096", "--json", "--csv", str(csv)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "pi" and summary["target_length"] == 4096 and len(summary["cells"]) == 4
    assert [a["length"] for a in summary["averages"]] == [2048, 4096] and "effective_length" in summary
    assert csv.read_text().startswith("model,method,target_length,task,length,index,n_tokens,prediction,outputs")
    assert main(argv) == 0 and "effective length" in capsys.readouterr().out
    # bad input: one line, exit 2, no CSV written
    bad_csv = tmp_path / "bad.csv"
    assert main([*argv[:5], "niah_single_1,nope", "--csv", str(bad_csv)]) == 2
    assert "unknown RULER task(s) 'nope'" in capsys.readouterr().err and not bad_csv.exists()
    assert main([*argv, "--csv", str(csv / "under_a_file.csv")]) == 2  # checked before the model loads
    assert "--csv" in capsys.readouterr().err
    assert main([*argv[:4], "--tasks", "qa_1"]) == 2
    assert "need --qa-file" in capsys.readouterr().err


def test_plots(tmp_path):
    from ropelab.figures import save_figure
    from ropelab.plots.ruler import ruler_average_plot, ruler_heatmap, score_grid

    cells = [{"task": t, "length": n, "score": s, "n": 2} for t, row in (("niah_single_1", (1.0, 0.5)),
                                                                         ("vt", (0.5, 0.0))) for n, s in
             zip((1024, 2048), row)]
    tasks, lengths, grid = score_grid(cells)
    assert tasks == ["niah_single_1", "vt"] and lengths == [1024, 2048] and grid.tolist() == [[1.0, 0.5], [0.5, 0.0]]
    fig = ruler_heatmap({"none": cells, "yarn": cells[:2]}, window=1024)
    assert len(fig.axes) == 3  # two panels and the colour bar
    assert save_figure(fig, "ruler_heatmap", cells, tmp_path).exists()
    averages = {"none": [{"length": 1024, "score": 0.75}, {"length": 2048, "score": 0.25}],
                "yarn": [{"length": 1024, "score": 0.8}, {"length": 2048, "score": 0.6}]}
    fig = ruler_average_plot(averages, window=1024, thresholds={"relative": 0.6, "absolute": 0.856})
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[:2] == ["none", "yarn"] and {"relative", "absolute"} <= set(labels)
    with_intervals = {m: [{**r, "low": r["score"] - 0.1, "high": r["score"] + 0.1} for r in rows]
                      for m, rows in averages.items()}
    fig = ruler_average_plot(with_intervals, window=1024)
    assert len(fig.axes[0].containers) == 2  # one error-bar container per method
    assert save_figure(fig, "ruler_average", None, tmp_path).exists()


# --------------------------------------------------------------------------------------------- SmolLM2
@pytest.mark.slow
def test_smollm2_finds_the_needle_inside_its_window():
    """A known right answer: SmolLM2-135M retrieves niah_single_1's number at 1k and 2k tokens (its window is
    8k); a scorer that swapped right and wrong would give 0. The needle perplexity of the true numbers is well
    below that of another number."""
    from ropelab.runtime.models import load_model

    model, tokenizer = load_model("smollm2-135m")
    samples = generate_samples(tokenizer, ["niah_single_1"], [1024, 2048], samples=2, progress=False)
    rows, summary = evaluate_ruler(model, tokenizer, samples, max_new_tokens=12, progress=False)
    assert [r["score"] for r in rows] == [1.0] * 4, [r["prediction"] for r in rows]
    assert summary["effective_length"] == 2048
    wrong = [dataclasses.replace(s, answer_ids=tuple(tokenizer(" 1000000", add_special_tokens=False).input_ids))
             for s in samples]
    right = needle_perplexity(model, samples)
    assert right < 1.5 and 3 * right < needle_perplexity(model, wrong)  # measured: 1.16 against 4.23


def test_interval_plot_and_variant_colours():
    from matplotlib.colors import to_hex

    from ropelab.figures import METHOD_COLORS, variant_colors
    from ropelab.plots.retrieval import interval_plot

    labels = ["none", "yarn", "dprope", "dprope_robust", "dprope_search", "yarn:no_temp", "dprope:n_hat=40",
              "dprope_robust:temp", "pi", "ntk", "llama3"]
    colors = variant_colors(labels)
    assert len(set(colors.values())) == len(labels)  # distinct: no two lines of a figure share a colour
    assert all(colors[m] == METHOD_COLORS[m] for m in labels if m in METHOD_COLORS)  # a method keeps its colour
    # a variant's colour depends on the labels before it: a run draws every figure from one palette (notebook 06)
    assert variant_colors(["yarn:no_temp"])["yarn:no_temp"] == colors["dprope_search"] != colors["yarn:no_temp"]
    cells = [{"method": m, "length": n, "accuracy": a, "low": a - 0.2, "high": min(a + 0.1, 1.0), "n": 10}
             for m, row in (("none", (1.0, 0.1)), ("yarn", (0.9, 0.6))) for n, a in zip((8192, 16384), row)]
    fig = interval_plot(cells, window=8192, colors=colors)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["none (n=10)", "yarn (n=10)"]
    assert len(ax.containers) == 2
    bars = ax.containers[1].lines[2][0].get_segments()  # yarn's error bars: (low, high) at each length
    assert [(round(s[0][1], 6), round(s[1][1], 6)) for s in bars] == [(0.7, 1.0), (0.4, 0.7)]
    assert to_hex(ax.containers[1].lines[0].get_color()) == to_hex(colors["yarn"])
