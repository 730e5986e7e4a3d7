"""The zero-shot experiment: one-pass prefix perplexity equals the truncated protocol, configs refuse bad input,
results are cached on everything that decides them."""

import dataclasses

import numpy as np
import pytest
import torch
import yaml

import ropelab
from ropelab.config import CONFIG_DIR
from ropelab.eval.perplexity import perplexity
from ropelab.eval.prefix import prefix_nll, prefix_perplexities
from ropelab.experiments.zeroshot import load_zeroshot_config, pinned_threads, run_zero_shot, with_retention
from ropelab.runtime import cpu_dtype, models
from ropelab.runtime.hf import model_spec, plan_applied
from ropelab.runtime.models import random_model, word_tokenizer


def _docs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"d{i}", rng.integers(3, 128, size=n)) for i, n in enumerate(lengths)]


@pytest.mark.parametrize("method", ["none", "yarn", "dprope"])
def test_one_pass_prefix_perplexity_equals_the_truncated_protocol_at_every_length(method):
    model = random_model("llama", original_length=64)
    docs = _docs([300, 257, 411])  # unequal lengths: pooling per token, not per document, is what is tested
    plan = None if method == "none" else ropelab.make_plan(method, ropelab.RopeSpec.from_hf_config(model.config), 256)
    lengths = [16, 64, 100, 256]
    with plan_applied(model, plan):
        nll = [prefix_nll(model, ids[:256]) for _, ids in docs]
        rows = prefix_perplexities(nll, lengths)
        expected = [perplexity(model, docs, n, protocol="truncated", progress=False) for n in lengths]
    assert len(nll[0]) == 255
    for row, ref in zip(rows, expected):
        assert row["length"] == ref.length and row["n_tokens"] == ref.n_tokens == 3 * (ref.length - 1)
        assert row["ppl"] == pytest.approx(ref.ppl, rel=1e-5)


@pytest.mark.parametrize("family, method, chunk", [("llama", "yarn", 24), ("gemma3", "dprope", 24), ("gemma3", "none", 7)])
def test_chunked_prefill_gives_the_one_pass_nll(family, method, chunk):
    """Through the KV cache, ``chunk`` tokens at a time (one not dividing the length; Gemma 3's sliding window is
    16, so chunks are longer and shorter than it), every token keeps all of its context: the one-pass NLL."""
    model = random_model(family, original_length=64)
    plan = None if method == "none" else ropelab.make_plan(method, model_spec(model), 256)  # gemma3: its full layers
    (_, ids), = _docs([257], seed=3)
    sizes = []  # tokens per decoder call
    hook = model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    with plan_applied(model, plan):
        whole, chunked = prefix_nll(model, ids), prefix_nll(model, ids, chunk_tokens=chunk)
    hook.remove()
    assert sizes == [257] + [chunk] * (257 // chunk) + [257 % chunk]  # one pass, then the chunks
    assert chunked.shape == whole.shape == (256,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert np.ptp(whole) > 0.1  # not a constant: the positions differ


def test_prefix_perplexity_pools_tokens_over_documents():
    nll = [np.array([1.0, 1.0, 1.0]), np.array([3.0, 3.0, 3.0, 9.0])]
    row, = prefix_perplexities(nll, [4])
    assert row["nll"] == pytest.approx(2.0) and row["n_tokens"] == 6
    assert "ppl_beyond" not in row
    tail, = prefix_perplexities(nll, [4], window=3)  # targets at positions 3: nll index 2 of both documents
    assert tail["ppl_beyond"] == pytest.approx(np.exp(2.0)) and tail["ppl"] == row["ppl"]
    with pytest.raises(ValueError, match="length 5 is longer"):
        prefix_perplexities(nll, [5])


def test_retention_is_the_ratio_to_the_unextended_model_inside_the_window():
    rows = [{"method": "none", "length": 8, "ppl": 10.0}, {"method": "pi", "length": 8, "ppl": 15.0},
            {"method": "pi", "length": 32, "ppl": 30.0}, {"method": "none", "length": 32, "ppl": 60.0},
            {"method": "pi", "length": 16, "ppl": 24.0}, {"method": "none", "length": 16, "ppl": 12.0}]
    out = with_retention(rows, window=16)  # the window itself is inside it
    assert [(r["method"], r["length"], r["ratio"]) for r in out] == [
        ("none", 8, 1.0), ("pi", 8, 1.5), ("pi", 16, 2.0), ("none", 16, 1.0)]


def test_pinned_threads_runs_with_n_threads_and_restores():
    before = torch.get_num_threads()
    with pinned_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("overrides, message", [
    ({"variants": {"d": {"method": "dynamic_ntk"}}}, "'dynamic_ntk' is not a static registry method"),
    ({"variants": {"d": {"factor": 2}}}, "needs a 'method' key"),
    ({"variants": {}}, "non-empty mapping"),
    ({"ppl_lengths": [1]}, "integers >= 2"),
    ({"retrieval": {"variants": ["ntk"]}}, "retrieval variant .ntk. is not in variants"),
    ({"retrieval": {"depths": [0.1, 1.5]}}, r"fractions in \[0, 1\]"),
    ({"retrieval": {"depths": [0.9, 0.1]}}, r"retrieval.depths must be \[lo, hi\] with lo <= hi"),
    ({"retrieval": {"depths": [0.5]}}, r"retrieval.depths must be \[lo, hi\]"),
    ({"retrieval": {"passkey_samples": True}}, "passkey_samples must be an integer"),
    ({"retrieval": {"passkey_samples": -1}}, "passkey_samples must be an integer >= 0, got -1"),
    ({"retrieval": {"ruler_tasks": ["vt"], "ruler_task_samples": {"fwe": 2}}}, "names 'fwe', which is not in"),
    ({"retrieval": {"ruler_tasks": ["vt"], "ruler_task_samples": {"vt": 0}}}, "ruler_task_samples.vt must be"),
    ({"retrieval": {"pass_threshold": 1.5}}, r"pass_threshold must be in \(0, 1\]"),
    ({"retrieval": {"ruler_tasks": ["nope"]}}, "nope"),
    ({"retrieval": {"ruler_samples": 0}}, "ruler_samples must be an integer"),
    ({"threads": True}, "threads must be an integer"),
    ({"documents": [{"corpus": "shakespeare", "split": "test", "docs": 0}]}, r"documents\[shakespeare\].docs must be"),
    ({"documents": [{"corpus": "nope"}]}, "unknown corpus 'nope'"),
    ({"documents": [{"corpus": "shakespeare", "split": "dev"}]}, "documents split 'dev' is not allowed"),
    ({"documents": [{"corpus": "shakespeare", "docs": 1, "extra": 2}]}, "documents entries must be"),
    ({"documents": []}, "documents must list at least one"),
    ({"dtype": "float8"}, "dtype 'float8' is not allowed"),
    ({"prefill_chunk": 8}, "prefill_chunk must be an integer >= 16, got 8"),
])
def test_bad_profiles_are_refused_in_one_line(overrides, message):
    base = yaml.safe_load((CONFIG_DIR / "zeroshot" / "quick.yaml").read_text())
    with pytest.raises(ValueError, match=message):
        load_zeroshot_config({**base, **overrides})


def test_the_committed_profiles_reach_past_the_window_and_compare_what_they_claim_to():
    for name in ("quick", "full", "gpu"):
        cfg = load_zeroshot_config(name)
        assert max(cfg.ppl_lengths) > 8192 and max(cfg.retrieval.lengths) <= cfg.target_length  # past SmolLM2's L
        assert "none" in cfg.variants and "none" in cfg.retrieval_variants  # every comparison has its baseline
    full = load_zeroshot_config("full")
    assert {"yarn", "dprope", "dprope_robust", "dprope_search"} <= set(full.retrieval_variants)
    assert len(full.documents) >= 2 and sum(d["docs"] for d in full.documents) >= 6  # several genres, 6+ documents
    synthetic = {t for t, v in __import__("ropelab.eval.ruler", fromlist=["TASKS"]).TASKS.items() if v.family != "qa"}
    assert set(full.retrieval.ruler_tasks) == synthetic  # RULER's 11 synthetic tasks


def test_the_gemma3_profile_reads_past_its_window_through_the_kv_cache():
    cfg = load_zeroshot_config("gemma3")
    assert cfg.model == "gemma3-270m" and cfg.target_length == 2 * 32768  # Gemma-3-270M's window is 32k
    assert max(cfg.ppl_lengths) > 32768 and 32768 in cfg.ppl_lengths  # past L, and at L itself for retention
    assert cfg.prefill_chunk and cfg.prefill_chunk < min(n for n in cfg.ppl_lengths if n > 32768)
    assert {"none", "yarn", "dprope", "dprope_robust"} <= set(cfg.variants) and not cfg.retrieval.lengths


class Counting:
    """Counts the documents and prompts a run computes (wrapping the real functions; nothing is replaced)."""

    def __init__(self, monkeypatch):
        from ropelab.eval import generation, prefix

        self.docs, self.prompts, self.chunks = 0, 0, []
        real_nll, real_answers = prefix.prefix_nll, generation.answer_prompts

        def nll(model, ids, *args):
            self.docs += 1
            self.chunks += args
            return real_nll(model, ids, *args)

        def answers(model, prompts, *args, **kwargs):
            self.prompts += len(prompts)
            return real_answers(model, prompts, *args, **kwargs)

        monkeypatch.setattr(prefix, "prefix_nll", nll)
        monkeypatch.setattr(generation, "answer_prompts", answers)

    def reset(self):
        self.docs, self.prompts = 0, 0


def _run_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    random_model("llama", original_length=64).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    text = tmp_path / "text"
    text.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.txt", "b.txt"):
        (text / name).write_text(" ".join(f"w{i}" for i in rng.integers(3, 128, size=400)))
    return {"model": str(folder), "dtype": "float32", "threads": 1, "target_length": 256,
            "documents": [{"corpus": f"text:{text}", "split": "all", "docs": 1}], "ppl_lengths": [32, 64, 200],
            "variants": {"none": {"method": "none"}, "yarn": {"method": "yarn"}},
            "retrieval": {"variants": ["yarn"], "lengths": [256], "passkey_samples": 1,
                          "ruler_tasks": ["niah_single_1"]}}


def test_no_passkey_samples_skips_passkey_and_keeps_the_rest(tmp_path, monkeypatch):
    settings = _run_setup(tmp_path, monkeypatch)
    settings["retrieval"]["passkey_samples"] = 0
    count = Counting(monkeypatch)
    out = run_zero_shot(load_zeroshot_config(settings), progress=False)
    assert out["passkey"] == [] and count.prompts == 1 and len(out["ruler"]) == 1


def test_the_ruler12k_profile_is_the_full_profiles_12k_column_with_ten_samples_per_task():
    full, power = load_zeroshot_config("full"), load_zeroshot_config("ruler12k")
    for name in ("model", "dtype", "threads", "target_length"):
        assert getattr(power, name) == getattr(full, name), name
    r, f = power.retrieval, full.retrieval
    assert r.lengths == (12288,) and set(r.lengths) <= set(f.lengths) and r.lengths[0] > 8192  # past SmolLM2's L
    assert (r.ruler_tasks, r.seed, r.depths) == (f.ruler_tasks, f.seed, f.depths) and len(r.ruler_tasks) == 11
    assert min(r.samples_of(t) for t in r.ruler_tasks) >= 10 and r.passkey_samples == 0
    assert power.retrieval_variants == full.retrieval_variants  # none, yarn, dprope, dprope_robust, the search
    assert all(power.variants[v] == full.variants[v] for v in power.variants)  # the same plans
    assert power.search == full.search  # the same searched plan (the search is cached on its settings)


def test_the_ruler10_profile_is_ruler12k_at_the_full_profiles_four_lengths():
    full, power, every = (load_zeroshot_config(n) for n in ("full", "ruler12k", "ruler10"))
    for name in ("model", "dtype", "threads", "target_length", "variants", "search", "retrieval_variants"):
        assert getattr(every, name) == getattr(power, name), name
    assert every.retrieval.lengths == full.retrieval.lengths and set(power.retrieval.lengths) < set(every.retrieval.lengths)
    assert dataclasses.replace(every.retrieval, lengths=power.retrieval.lengths) == power.retrieval  # nothing else


@pytest.mark.parametrize("name, length", [("ruler4k", 4096), ("ruler8k", 8192), ("ruler16k", 16384)])
def test_each_one_length_profile_is_ruler10_at_that_length(name, length):
    every, one = load_zeroshot_config("ruler10"), load_zeroshot_config(name)
    assert one.retrieval.lengths == (length,) and length in every.retrieval.lengths and one.name == name
    assert dataclasses.replace(one, name="ruler10", retrieval=every.retrieval) == every  # its grid, nothing else
    assert dataclasses.replace(every.retrieval, lengths=(length,)) == one.retrieval


def test_a_run_is_cached_per_document_and_prompt_and_keyed_on_the_plan(tmp_path, monkeypatch):
    settings = _run_setup(tmp_path, monkeypatch)
    count = Counting(monkeypatch)
    cfg = load_zeroshot_config(settings)
    first = run_zero_shot(cfg, progress=False)
    assert {r["method"] for r in first["ppl"]} == {"none", "yarn"} and count.docs == 2  # one pass per variant
    assert len(first["docs"]) == 1 and {r["n_docs"] for r in first["ppl"]} == {1}  # docs=1 of the two
    assert [r["method"] for r in first["passkey"]] == ["yarn"] and count.prompts == 2  # passkey + RULER
    assert [(r["method"], r["task"], r["length"]) for r in first["ruler"]] == [("yarn", "niah_single_1", 256)]
    assert 0.1 <= first["ruler"][0]["depth"] <= 0.9  # sample 0 asks for the middle of (0.1, 0.9); 3 noise lines here
    count.reset()
    again = run_zero_shot(cfg, progress=False)
    assert (count.docs, count.prompts) == (0, 0)  # everything from the cache
    assert [r["ppl"] for r in again["ppl"]] == [r["ppl"] for r in first["ppl"]]
    assert again["passkey"] == first["passkey"] and again["ruler"] == first["ruler"]
    # a larger grid computes only its new prompts, a second document only itself
    more = {**settings, "retrieval": {**settings["retrieval"], "lengths": [256, 240]}}
    more["documents"] = [{**settings["documents"][0], "docs": 2}]
    grown = run_zero_shot(load_zeroshot_config(more), progress=False)
    assert (count.docs, count.prompts) == (2, 2)
    assert grown["passkey"][0] == first["passkey"][0] and len(grown["passkey"]) == 2
    count.reset()
    other = run_zero_shot(load_zeroshot_config({**settings, "variants": {"pi": {"method": "pi"}},
                                                "retrieval": {"lengths": []}}), progress=False)
    assert count.docs == 1 and other["passkey"] == []  # a new plan is a new key; no lengths, no retrieval
    count.reset()
    chunked = run_zero_shot(load_zeroshot_config({**settings, "prefill_chunk": 48}), progress=False)
    assert count.docs == 2 and count.chunks[-2:] == [48, 48]  # chunks round differently: their own key
    for a, b in zip(chunked["ppl"], first["ppl"]):
        assert (a["method"], a["length"]) == (b["method"], b["length"]) and a["ppl"] == pytest.approx(b["ppl"], rel=1e-5)
    with pytest.raises(ValueError, match="has 2 documents of >= 200 tokens, fewer than docs=3"):
        run_zero_shot(load_zeroshot_config({**settings, "documents": [{**settings["documents"][0], "docs": 3}]}),
                      progress=False)


def test_spread_samples_are_nested_and_spread_over_the_depth_range():
    from ropelab.eval.passkey import spread_passkey_prompts
    from ropelab.eval.prompts import spread_depth

    tok = word_tokenizer()
    few, many = (spread_passkey_prompts(tok, [200, 256], n, (0.1, 0.9), seed=3) for n in (2, 7))
    assert [p for p in many if p["trial"] < 2] == few  # a larger grid only adds prompts
    depths = sorted(p["depth"] for p in many if p["length"] == 256)
    assert 0.1 <= depths[0] < 0.2 and 0.8 < depths[-1] <= 0.9 and len(set(depths)) == 7
    assert spread_depth((0.1, 0.9), 0) == pytest.approx(0.5) and spread_depth((), 3) is None
    assert max(abs(a - b) for a, b in zip(depths, np.linspace(0.1, 0.9, 7))) < 0.1  # close to an even grid
    assert len({p["key"] for p in many}) == len(many)


def test_pooled_perplexity_weighs_every_document_and_reports_each_corpus():
    from ropelab.experiments.zeroshot.run import pooled_perplexities

    docs = [{"method": "none", "corpus": "a", "doc": "1", "nll": np.full(9, 1.0)},
            {"method": "none", "corpus": "b", "doc": "2", "nll": np.full(9, 3.0)},
            {"method": "none", "corpus": "b", "doc": "3", "nll": np.full(9, 5.0)}]
    pooled, by_corpus = pooled_perplexities(docs, [4, 10], window=8)
    assert [r["nll"] for r in pooled] == pytest.approx([3.0, 3.0]) and pooled[0]["n_docs"] == 3
    assert [(r["corpus"], r["length"], r["nll"]) for r in by_corpus] == [("a", 4, 1.0), ("a", 10, 1.0),
                                                                        ("b", 4, 4.0), ("b", 10, 4.0)]
    assert pooled[1]["ppl_beyond"] == pytest.approx(np.exp(3.0)) and "ppl_beyond" not in pooled[0]


def _search_setup(tmp_path, monkeypatch):
    """A saved random model, reported text (words w3..w63) and a disjoint haystack folder (words w64..w127)."""
    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    random_model("llama", original_length=64).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    rng = np.random.default_rng(0)
    for name, low, high in (("text", 3, 64), ("hay", 64, 128)):
        (tmp_path / name).mkdir()
        for doc in (("a.txt", "b.txt") if name == "text" else ("h1.txt", "h2.txt")):
            words = [f"w{i}" + ("." if k % 9 == 8 else "") for k, i in enumerate(rng.integers(low, high, size=400))]
            (tmp_path / name / doc).write_text(" ".join(words))
    return {"model": str(folder), "dtype": "float32", "threads": 1, "target_length": 256,
            "documents": [{"corpus": f"text:{tmp_path / 'text'}", "split": "all", "docs": 1}], "ppl_lengths": [32, 200],
            "variants": {"none": {"method": "none"}, "yarn": {"method": "yarn"}},
            "retrieval": {"variants": ["dprope_search"], "lengths": [256], "passkey_samples": 1,
                          "ruler_tasks": ["niah_single_2"], "seed": 0},
            "search": {"budget": 3, "samples": 1, "seed": 5, "corpus": f"text:{tmp_path / 'hay'}", "split": "all"}}


def test_a_searched_variant_is_cached_scored_like_the_others_and_never_sees_the_reported_documents(
        tmp_path, monkeypatch):
    from ropelab.eval.ruler import needle_ppl
    from ropelab.experiments.zeroshot.search import objective_samples
    from ropelab.runtime.models import load_model

    settings = _search_setup(tmp_path, monkeypatch)
    calls = []
    real = needle_ppl.needle_perplexity
    monkeypatch.setattr(needle_ppl, "needle_perplexity", lambda model, samples: calls.append(samples) or real(model, samples))
    cfg = load_zeroshot_config(settings)
    first = run_zero_shot(cfg, progress=False)
    found = first["search"]
    assert len(calls) == found["evaluations"] == 3 and not found["cached"] and found["seconds"] > 0
    assert len(found["curve"]) == 3 and found["curve"][0] == found["start_objective"]
    assert all(a >= b for a, b in zip(found["curve"], found["curve"][1:])) and found["objective"] == found["curve"][-1]
    plan = first["plans"]["dprope_search"]
    assert plan.method == "longrope" and plan.details["search"]["start"] == "dprope"
    start = ropelab.make_plan("dprope", plan.spec, 256)
    assert plan.attention_factor == start.attention_factor
    assert sum(f != g for f, g in zip(plan.factors, start.factors)) == len(found["moves"])  # one pair per move
    assert [r["method"] for r in first["ppl"]] == ["none"] * 2 + ["yarn"] * 2 + ["dprope_search"] * 2
    assert {c["method"] for c in first["passkey"] + first["niah"] + first["ruler"]} == {"dprope_search"}
    # kept apart: other seeds than the reported RULER samples, a haystack of other documents, and no reported word
    assert found["sample_seeds"] == [5] and 0 not in found["sample_seeds"]
    assert found["haystack_docs"] and not set(found["haystack_docs"]) & set(first["docs"])
    _, tokenizer = load_model(settings["model"])
    samples, docs = objective_samples(cfg, tokenizer)
    assert docs == found["haystack_docs"] and [s.seed for s in samples] == [5]
    used = {w.strip(".") for s in samples for w in s.prompt.split() if w.strip(".")[:1] == "w" and w[1:2].isdigit()}
    assert used and all(int(w[1:]) >= 64 for w in used)  # only haystack words, none of the reported text's
    assert calls[0] == samples
    calls.clear()
    again = run_zero_shot(cfg, progress=False)
    assert calls == [] and again["search"]["cached"]  # the plan came from the cache: no objective evaluation
    assert again["plans"]["dprope_search"].factors == plan.factors
    assert again["search"]["seconds"] == found["seconds"]  # the original search's cost, kept with the plan
    assert again["ppl"] == first["ppl"]  # the searched plan keys its perplexity as before
    other = run_zero_shot(load_zeroshot_config({**settings, "search": {**settings["search"], "budget": 2}}),
                          progress=False)
    assert len(calls) == other["search"]["evaluations"] == 2  # a changed search setting is a new key


@pytest.mark.parametrize("search, message", [
    ({"budget": 0}, "search.budget must be an integer >= 1"),
    ({"budget": True}, "search.budget must be an integer"),
    ({"samples": 0}, "search.samples must be an integer >= 1"),
    ({"length": 1}, "search.length must be an integer >= 2"),
    ({"start": "nope"}, "search.start 'nope' is not a static registry method; allowed: .*dprope"),
    ({"start": "dynamic_ntk"}, "search.start 'dynamic_ntk' is not a static"),
    ({"task": "vt"}, "search.task 'vt' is not a NIAH task; allowed: niah_single_1"),
    ({"task": "nope"}, "unknown RULER task"),
    ({"seed": 0}, "search.seed 0 is retrieval.seed"),
    ({"split": "test"}, "search.split 'test' of shakespeare overlaps the perplexity documents"),
    ({"split": "all"}, "search.split 'all' of shakespeare overlaps"),
    ({"split": "dev"}, "search.split 'dev' is not allowed"),
    ({"corpus": "paul_graham"}, "'paul_graham' is the reported NIAH/RULER haystack"),
    ({"corpus": "nope"}, "unknown corpus 'nope'"),
    ({"label": "yarn"}, "search.label 'yarn' is already a variant"),
    ({"options": [1]}, "search.options must be a mapping"),
    ({"budgets": 3}, "unknown key search.'budgets'"),
])
def test_bad_search_settings_are_refused_in_one_line(search, message):
    base = yaml.safe_load((CONFIG_DIR / "zeroshot" / "quick.yaml").read_text())
    with pytest.raises(ValueError, match=message) as err:
        load_zeroshot_config({**base, "search": {**base.get("search", {}), **search}})
    assert "\n" not in str(err.value)


def test_the_search_block_defaults_keep_the_objective_apart_and_may_be_retrieved():
    base = yaml.safe_load((CONFIG_DIR / "zeroshot" / "quick.yaml").read_text())
    cfg = load_zeroshot_config({**base, "search": {}, "retrieval": {**base["retrieval"], "variants": ["dprope_search"]}})
    s = cfg.search
    assert (s.label, s.start, s.corpus, s.split, s.task) == ("dprope_search", "dprope", "shakespeare", "train",
                                                            "niah_single_2")
    assert s.seed != cfg.retrieval.seed and all(s.split != d["split"] for d in cfg.documents)
    assert cfg.labels[-1] == "dprope_search" and cfg.retrieval_variants == ("dprope_search",)


def test_the_search_curve_figure_draws_the_best_objective_per_evaluation_and_marks_the_moves():
    from ropelab.plots.eval import search_curve, search_curve_rows

    record = {"label": "dprope_search", "curve": [9.0, 9.0, 7.0, 7.0, 5.0],
              "moves": [{"pair": 3, "factor": 2.0, "objective": 7.0, "evaluation": 2},
                        {"pair": 1, "factor": 1.0, "objective": 5.0, "evaluation": 4}]}
    rows = search_curve_rows(record)
    assert [(r["evaluation"], r["objective"], r["move"]) for r in rows] == [
        (1, 9.0, False), (2, 9.0, False), (3, 7.0, True), (4, 7.0, False), (5, 5.0, True)]
    fig = search_curve(rows)
    step, marks = fig.axes[0].lines
    assert list(step.get_ydata()) == record["curve"] and list(marks.get_xdata()) == [3, 5]


def test_summary_tables_on_hand_made_rows():
    from ropelab.experiments.zeroshot.summary import effective_lengths, interval_cells, paired_tests, ruler_averages
    from ropelab.stats import wilson_interval

    rows = [{"method": m, "length": n, "sample": i, "correct": ok}
            for m, hits in (("yarn", (3, 1)), ("dprope", (4, 4))) for n, h in zip((4096, 16384), hits)
            for i, ok in enumerate([True] * h + [False] * (4 - h))]
    cells = {(c["method"], c["length"]): c for c in interval_cells(rows, "correct")}
    assert cells[("yarn", 16384)]["n"] == 4 and cells[("yarn", 16384)]["accuracy"] == 0.25
    assert (cells[("yarn", 16384)]["low"], cells[("yarn", 16384)]["high"]) == wilson_interval(1, 4)
    test = paired_tests(rows, "dprope", "yarn", "correct", ("length", "sample"), {"16k": [16384], "all": [4096, 16384]})
    assert [(t["lengths"], t["n"], t["a_only"], t["b_only"], t["test"]) for t in test] == [
        ("16k", 4, 3, 0, "mcnemar"), ("all", 8, 4, 0, "mcnemar")]
    assert test[1]["p"] == pytest.approx(2 * 0.5 ** 4)
    scored = [{"method": "yarn", "length": n, "task": t, "sample": i, "score": s}
              for n, task_scores in ((4096, {"vt": [1.0, 1.0], "cwe": [0.5]}), (8192, {"vt": [0.0, 1.0], "cwe": [0.2]}))
              for t, ss in task_scores.items() for i, s in enumerate(ss)]
    averages = ruler_averages(scored)
    assert [(a["length"], a["score"], a["tasks"], a["n"]) for a in averages] == [(4096, 0.75, 2, 3), (8192, 0.35, 2, 3)]
    lengths = effective_lengths(averages, {"RULER 0.856": 0.856, "0.7": 0.7, "0.3": 0.3})
    assert [r["effective_length"] for r in lengths] == [0, 4096, 8192]
    bootstrap = paired_tests([{**r, "method": "a"} for r in scored] + [{**r, "method": "b", "score": 0.0} for r in scored],
                             "a", "b", "score", ("length", "task", "sample"), {"all": [4096, 8192]})
    assert bootstrap[0]["test"] == "paired bootstrap" and bootstrap[0]["difference"] == pytest.approx(0.55)
    assert (bootstrap[0]["mean_a"], bootstrap[0]["mean_b"]) == (pytest.approx(0.55), 0.0)  # task averages, not 0.617
    binary = [{**r, "score": float(r["score"] >= 0.5)} for r in scored]  # 0/1 RULER scores still average over tasks
    binary = paired_tests([{**r, "method": "a"} for r in binary] + [{**r, "method": "b", "score": 0.0} for r in binary],
                          "a", "b", "score", ("length", "task", "sample"), {"all": [4096, 8192]})
    assert binary[0]["test"] == "paired bootstrap" and binary[0]["mean_a"] == pytest.approx((0.75 + 0.5) / 2)
    from ropelab.experiments.zeroshot.summary import comparison_table, ruler_thresholds

    ruler_bar = {"RULER's absolute 0.856": 0.856}
    none_averages = [{**a, "method": "none"} for a in averages]  # the unextended model at 4096 and 8192
    relative = {"relative: 0.85 x none at 4096": pytest.approx(0.85 * 0.75), **ruler_bar}
    assert ruler_thresholds(averages + none_averages, 0.856, window=8192) == relative
    assert ruler_thresholds(none_averages, 0.856, window=4096) == relative  # L itself is within the window
    assert ruler_thresholds(none_averages[1:], 0.856, window=4096) == ruler_bar  # none only past its window: no bar
    assert ruler_thresholds(averages, 0.856, window=8192) == ruler_bar  # no unextended run: no relative bar
    assert ruler_thresholds(averages, 0.5, window=8192) == {"RULER's absolute 0.5": 0.5}  # the bar given
    none = [{**r, "method": "none", "correct": False} for r in rows if r["method"] == "yarn"]
    robust = [{**r, "method": "dprope_robust", "trial": r["sample"]} for r in rows if r["method"] == "dprope"]
    result = {"passkey": [{**r, "trial": r["sample"]} for r in rows + none] + robust}
    table = comparison_table(result, ["none", "yarn", "dprope_robust"], [4096, 16384], window=8192)
    assert [(t["a"], t["b"], t["lengths"]) for t in table if t["lengths"] == "past L"] == [
        ("dprope_robust", "yarn", "past L"), ("dprope_robust", "dprope", "past L"), ("yarn", "none", "past L"),
        ("dprope_robust", "none", "past L")]
    assert next(t for t in table if t["a"] == "yarn" and t["lengths"] == "past L")["a_only"] == 1  # 1 of 4 at 16k
    at_window = comparison_table(result, ["none", "yarn"], [4096, 16384], window=4096)  # L itself is not past L
    assert next(t for t in at_window if t["a"] == "yarn" and t["lengths"] == "past L")["n"] == 4


def test_the_weights_fingerprint_follows_the_weights_not_the_folder_they_were_loaded_from(tmp_path):
    """Moving a model's cache folder must keep every cached result (it did not, once: the key held the path)."""
    from transformers import AutoModelForCausalLM

    from ropelab.experiments.zeroshot.cache import weights_fingerprint

    model = random_model("llama", original_length=64)
    prints = []
    for folder in ("a", "b/c"):
        model.save_pretrained(tmp_path / folder)
        prints.append(weights_fingerprint(AutoModelForCausalLM.from_pretrained(tmp_path / folder)))
    assert prints[0] == prints[1] == weights_fingerprint(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    assert weights_fingerprint(model) != prints[0]
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] -= 1.0
    assert weights_fingerprint(model) == prints[0]
    model.config.rope_parameters = {**model.config.rope_parameters, "rope_theta": 12345.0}
    assert weights_fingerprint(model) != prints[0]


def test_the_runner_computes_and_caches_in_the_dtype_really_used(tmp_path, monkeypatch):
    settings = {**_run_setup(tmp_path, monkeypatch), "dtype": "bfloat16"}
    settings["retrieval"] = {"lengths": []}
    seen = []
    monkeypatch.setattr(models, "load_model", lambda m, dtype, load=models.load_model: seen.append(dtype) or load(m, dtype=dtype))
    monkeypatch.setattr(cpu_dtype, "cpu_flags", lambda: frozenset({"avx2"}))
    count = Counting(monkeypatch)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        emulated = run_zero_shot(load_zeroshot_config(settings), progress=False)
    assert emulated["dtype"] == "float32" and seen == [torch.float32] and count.docs == 2
    count.reset()
    as_float32 = run_zero_shot(load_zeroshot_config({**settings, "dtype": "float32"}), progress=False)
    assert count.docs == 0  # the same computation: every number from the float32 entries
    assert [r["ppl"] for r in as_float32["ppl"]] == [r["ppl"] for r in emulated["ppl"]]
    monkeypatch.setattr(cpu_dtype, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    native = run_zero_shot(load_zeroshot_config(settings), progress=False)
    assert native["dtype"] == "bfloat16" and seen[-1] == torch.bfloat16 and count.docs == 2  # its own key
