"""Perplexity: window geometry, equality with the transformers guide's loop, batching/chunking invariance, the
truncated protocol against the model's own loss, bad input, plan_applied, retention (tiny and real model).

``tiny_lm`` (a random Llama with peaked logits, so that scoring the wrong token shows, and the byte-level BPE
tokenizer of test_passkey) is shared with test_eval_cli.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from test_passkey import tiny_llama

from ropelab.data import encode, load_documents
from ropelab.eval.perplexity import guide_perplexity, perplexity, windows
from ropelab.eval.retention import retention
from ropelab.rope.registry import make_plan
from ropelab.runtime.hf import model_spec, plan_applied
from ropelab.runtime.models import random_model


@functools.cache
def tiny_lm(window: int = 256):
    """(model, tokenizer): random 2-layer Llama (initializer_range 0.2: far from uniform) and a byte-level BPE."""
    _, tokenizer = tiny_llama()
    model = random_model("llama", original_length=window, vocab_size=len(tokenizer), initializer_range=0.2)
    return model, tokenizer


@functools.cache
def essay_tokens(n_docs: int = 2) -> tuple[tuple[str, np.ndarray], ...]:
    """Token ids of the first Paul Graham essays of the test split (real text)."""
    _, tokenizer = tiny_lm()
    docs = load_documents("paul_graham", "test", max_docs=n_docs)
    return tuple((d.doc_id, ids) for d, ids in zip(docs, encode(tokenizer, [d.text for d in docs])))


@pytest.mark.parametrize("n,length,stride", [(1000, 128, 32), (1000, 100, 100), (257, 64, 7), (64, 64, 1),
                                             (130, 128, 256 // 2)])
def test_sliding_windows_score_every_token_once_with_bounded_context(n, length, stride):
    ws = windows(n, length, "sliding", stride)
    scored = np.zeros(n, dtype=int)
    for w in ws:
        assert w.end - w.begin <= length and w.begin < w.first <= w.end
        scored[w.first:w.end] += 1
    assert ws[-1].end == n and scored[0] == 0
    if stride < length:
        assert (scored[1:] == 1).all()  # each token once, the first has no context
    else:  # stride == length: disjoint windows, as the guide's loop: a window's first token goes unscored
        assert set(np.flatnonzero(scored == 0)) == {w.begin for w in ws}
    assert windows(n - 1, n, "sliding", min(stride, n)) == []  # too short: no window
    assert windows(n, length, "truncated") == [type(ws[0])(0, 0, length, 1)]


def test_bad_protocol_and_stride_are_refused():
    with pytest.raises(ValueError, match="stride must be between 1 and the length 64"):
        windows(100, 64, "sliding", 65)
    with pytest.raises(ValueError, match="unknown perplexity protocol 'rolling'"):
        windows(100, 64, "rolling")


@pytest.mark.parametrize("length,stride", [(256, 64), (128, 128), (200, 37)])
def test_equals_the_transformers_guide_loop(length, stride):
    model, _ = tiny_lm()
    doc_id, ids = essay_tokens()[0]
    ids = ids[:1500]
    ours = perplexity(model, [(doc_id, ids)], length, stride=stride, progress=False)
    guide = guide_perplexity(model, ids, length, stride)
    assert 50 < guide < 1e5  # input sanity: a random model, not a uniform one
    assert ours.ppl == pytest.approx(guide, rel=1e-4)
    shifted = perplexity(model, [(doc_id, ids[1:])], length, stride=stride, progress=False)
    assert abs(shifted.ppl / guide - 1) > 1e-3  # scoring other tokens shows at this tolerance


def test_batching_and_logit_chunks_do_not_change_the_value():
    model, _ = tiny_lm()
    docs = [(i, ids[:900]) for i, ids in essay_tokens()]
    one = perplexity(model, docs, 128, stride=32, batch_tokens=1, progress=False)
    many = perplexity(model, docs, 128, stride=32, batch_tokens=4096, logits_elements=1000, progress=False)
    assert many.n_tokens == one.n_tokens == 2 * 899
    assert many.ppl == pytest.approx(one.ppl, rel=1e-5)
    assert many.doc_ppl == pytest.approx(one.doc_ppl, rel=1e-5)


def test_documents_of_unequal_length_are_weighted_by_their_scored_tokens():
    """Perplexity over documents is exp(total NLL / total tokens), not a mean of per-document values: a 256-token
    document (one window, the model's own loss) and a 900-token one (the guide's loop) by hand."""
    model, _ = tiny_lm()
    (id_a, tokens_a), (id_b, tokens_b) = essay_tokens()
    short, long = tokens_a[:256], tokens_b[:900]
    with torch.no_grad():
        ids = torch.as_tensor(short[None]).long()
        nll_short = float(model(input_ids=ids, labels=ids).loss) * 255  # tokens 1..255 scored
    nll_long = math.log(guide_perplexity(model, long, 256, 128)) * 899  # tokens 1..899, each once
    expected = math.exp((nll_short + nll_long) / (255 + 899))
    per_doc = [math.exp(nll_short / 255), math.exp(nll_long / 899)]
    mean_of_docs = math.exp((math.log(per_doc[0]) + math.log(per_doc[1])) / 2)
    assert abs(mean_of_docs / expected - 1) > 1e-3 and abs(sum(per_doc) / 2 / expected - 1) > 1e-3  # input sanity

    result = perplexity(model, [(id_a, short), (id_b, long)], 256, stride=128, progress=False)
    assert (result.n_tokens, result.n_docs) == (255 + 899, 2)
    assert result.ppl == pytest.approx(expected, rel=1e-5)
    assert result.nll == pytest.approx((nll_short + nll_long) / (255 + 899), rel=1e-5)
    assert [result.doc_ppl[id_a], result.doc_ppl[id_b]] == pytest.approx(per_doc, rel=1e-5)


def test_truncated_protocol_is_the_models_own_loss_and_counts_short_documents():
    model, _ = tiny_lm()
    docs = [(i, ids) for i, ids in essay_tokens()] + [("short", essay_tokens()[0][1][:50])]
    result = perplexity(model, docs, 192, protocol="truncated", progress=False)
    with torch.no_grad():
        losses = [float(model(input_ids=torch.as_tensor(ids[:192][None]).long(),
                              labels=torch.as_tensor(ids[:192][None]).long()).loss) for _, ids in docs[:2]]
    assert (result.n_docs, result.n_skipped, result.n_tokens) == (2, 1, 2 * 191)
    assert result.ppl == pytest.approx(math.exp(sum(losses) / 2), rel=1e-5)
    assert perplexity(model, docs, 192, protocol="truncated", max_docs=1, progress=False).n_docs == 1
    none_long = perplexity(model, docs[2:], 192, protocol="truncated", progress=False)
    assert math.isnan(none_long.ppl) and none_long.n_skipped == 1


def test_empty_text_and_length_past_the_window():
    model, _ = tiny_lm()
    with pytest.raises(ValueError, match="no text to evaluate"):
        perplexity(model, [("empty", [])], 64, stride=16, progress=False)
    with pytest.warns(UserWarning, match="length 300 is beyond the model's configured window 256"):
        result = perplexity(model, essay_tokens()[:1], 300, protocol="truncated", progress=False)
    assert result.n_docs == 1 and math.isfinite(result.ppl)


@pytest.mark.parametrize("method", ["yarn", "dprope", "pi"])
def test_plan_applied_changes_the_model_and_restores_it_exactly(method):
    model, _ = tiny_lm()
    ids = torch.as_tensor(essay_tokens()[0][1][:300][None]).long()
    with torch.no_grad():
        before = model(input_ids=ids).logits
        plan = make_plan(method, model_spec(model), 1024)
        with plan_applied(model, plan):
            assert model.config.max_position_embeddings == 1024
            inside = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.allclose(inside, before)
    assert torch.equal(after, before)
    assert model.config.max_position_embeddings == 256 and model.config.rope_parameters["rope_type"] == "default"


def test_retention_rows_and_window_bound():
    model, _ = tiny_lm()
    spec = model_spec(model)
    plans = [make_plan("pi", spec, 1024), make_plan("dprope", spec, 1024)]
    rows = retention(model, essay_tokens(), plans, lengths=[128, 256], progress=False)
    assert [(r["method"], r["length"]) for r in rows] == [("none", 128), ("none", 256), ("pi", 128), ("pi", 256),
                                                          ("dprope", 128), ("dprope", 256)]
    base = {r["length"]: r["ppl"] for r in rows if r["method"] == "none"}
    for r in rows:
        assert r["ppl_original"] == base[r["length"]] and r["ratio"] == pytest.approx(r["ppl"] / base[r["length"]])
    assert all(r["ratio"] != 1.0 for r in rows if r["method"] == "pi")
    with pytest.raises(ValueError, match="inside the original window of 256 tokens; length 512"):
        retention(model, essay_tokens(), plans, lengths=[512], progress=False)


@pytest.mark.slow
def test_smollm2_retention_pi_hurts_more_than_dprope_inside_the_window():
    """The real model: a sane perplexity on English essays; PI (all pairs / 2) disturbs short contexts more than
    DPRoPE (only the pairs whose angle distribution extrapolation would disturb): the paper's premise."""
    from ropelab.data import document_tokens
    from ropelab.runtime.models import load_model

    model, tokenizer = load_model("smollm2-135m")
    docs = document_tokens("paul_graham", "test", tokenizer, max_docs=2)
    spec = model_spec(model)
    plans = [make_plan("pi", spec, 16384), make_plan("dprope", spec, 16384)]
    rows = retention(model, docs, plans, lengths=[256], progress=False)
    ratio = {r["method"]: r["ratio"] for r in rows}
    assert 3 < rows[0]["ppl"] < 80, rows[0]
    assert ratio["pi"] > ratio["dprope"] > 1.0, ratio


def test_plots_draw_one_series_per_method(tmp_path):
    from ropelab.figures import save_figure
    from ropelab.plots.eval import ppl_vs_length, retention_bars

    rows = [{"method": m, "length": n, "ppl": p, "ratio": p / 10} for m, base in (("none", 10), ("pi", 12), ("dprope", 11))
            for n, p in ((512, base), (1024, base * 0.9), (16384, math.nan if m == "none" else base * 1.5))]
    fig = ppl_vs_length(rows, window=8192)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() in ("none", "pi", "dprope")]
    assert [len(line.get_xdata()) for line in lines] == [2, 3, 3]  # NaN points are left out
    bars = retention_bars([r for r in rows if r["length"] <= 1024])
    assert len(bars.axes[0].patches) == 4  # pi and dprope at two lengths; none is the reference line
    assert save_figure(bars, "06_test", data=rows, directory=tmp_path).exists()
