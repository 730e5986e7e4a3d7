"""ropelab.experiments.tiny: the BPE tokenizer, the tiny LLaMA's config, pre-training at L (cached) and the window report."""

from __future__ import annotations

import math

import pytest

from ropelab.experiments.tiny import (
    TinyConfig,
    config_key,
    llama_config,
    load_tiny_config,
    pretrain,
    train_tokenizer,
    window_report,
)
from ropelab.rope.spec import RopeSpec
from ropelab.train import TrainConfig


def test_tokenizer_round_trips_and_has_the_requested_vocabulary(tmp_path):
    from transformers import AutoTokenizer

    from ropelab.data import load_documents

    texts = [d.text for d in load_documents("stdlib", "train", 20)]
    tok = train_tokenizer(texts, 400)
    assert len(tok) == 400 and tok.eos_token == "<|endoftext|>"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    sample = "def f(x):\n    return x ** 2  # héllo"
    assert again.decode(again(sample)["input_ids"]) == sample
    assert again(sample)["input_ids"] == tok(sample)["input_ids"]


def test_llama_config_is_the_rope_of_the_profile():
    cfg = load_tiny_config("pretrain-full")
    spec = RopeSpec.from_hf_config(llama_config(cfg, cfg.vocab_size))
    assert spec == RopeSpec(10000.0, 64, 256)
    assert config_key(cfg) == config_key(load_tiny_config("pretrain-full"))
    assert config_key(cfg) != config_key(load_tiny_config("pretrain-full", {"train.seed": 1}))
    assert config_key(cfg) == config_key(load_tiny_config("pretrain-full", {"train.checkpoint_every": 7}))
    with pytest.raises(ValueError, match="window"):
        TinyConfig(window=0)


@pytest.mark.slow
def test_pretrain_learns_is_cached_and_reports_per_position_loss(tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = TinyConfig(name="micro", corpus="stdlib", max_docs=30, vocab_size=300, layers=1, hidden=64, heads=1,
                     head_dim=64, intermediate=128, window=32,
                     train=TrainConfig(steps=12, global_batch=4, micro_batch=4, learning_rate=3e-3, warmup_steps=2,
                                       schedule="cosine", loss_chunk_tokens=0, trackers="none"))
    model_dir = pretrain(cfg, tmp_path, progress=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.max_position_embeddings == 32 and model.config.head_dim == 64
    from ropelab.train import read_metrics

    losses = [r["loss"] for r in read_metrics(tmp_path)]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.5  # it learns (starts near ln 300 = 5.7)
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert pretrain(cfg, tmp_path, progress=False) == model_dir  # cached: not trained again
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp

    report = window_report(model_dir, 32, corpus="stdlib", multiples=4, max_blocks=4)
    assert report["position_loss"].shape == (127,)
    assert set(report["ppl"]) == {16, 32, 64, 128} and all(math.isfinite(v) for v in report["ppl"].values())
    losses = report["position_loss"]
    assert math.isclose(report["ppl"][64], math.exp(losses[:63].mean()), rel_tol=1e-9)
    assert math.isclose(report["band_ppl"][128], math.exp(losses[63:127].mean()), rel_tol=1e-9)
    assert report["rows"] == 4 and report["window"] == 32


def test_pretraining_on_a_mix_scores_text_rows_whole_and_other_rows_on_their_answers(tmp_path):
    """Step 1's logged loss is the freshly initialised model's loss over exactly the tokens ``loss_mask`` keeps:
    ``pretrain`` hands the mix's mask to the loop (a dropped mask trains on random filler and forms no copying)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from ropelab.determinism import seed_everything
    from ropelab.train import DataConfig, read_metrics, sample_indices, training_blocks
    from ropelab.train.mixture import MixConfig

    mix = MixConfig(shares={"text": 0.5, "repeat": 0.5}, loss_on="answers")
    cfg = TinyConfig(name="micro-mix", corpus="stdlib", max_docs=30, vocab_size=300, layers=1, hidden=64, heads=1,
                     head_dim=64, intermediate=128, window=32, mix=mix,
                     train=TrainConfig(steps=1, global_batch=4, micro_batch=4, learning_rate=3e-3, warmup_steps=0,
                                       schedule="constant", loss_chunk_tokens=0, trackers="none"))
    model_dir = pretrain(cfg, tmp_path, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    blocks, mask = training_blocks(tokenizer, DataConfig(corpus="stdlib", split="train", max_docs=30, mix=mix), 32,
                                   rows=4)
    idx = sample_indices(0, 0, 0, len(blocks), cfg.train, 1)
    assert not mask[idx].all() and mask[idx].all(dim=1).any()  # input sanity: text and repeat rows in the batch
    seed_everything(cfg.train.seed)
    fresh = LlamaForCausalLM(llama_config(cfg, len(tokenizer)))
    with torch.no_grad():
        expected = fresh(input_ids=blocks[idx], labels=blocks[idx].masked_fill(~mask[idx], -100)).loss
    (row,) = read_metrics(tmp_path)
    assert row["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_a_change_of_the_row_builders_is_a_new_model_only_for_mix_configs(monkeypatch):
    """``mixture.VERSION`` is in the keys of models trained on mix rows (pre-training, fine-tuning, evaluation), and
    not in those of text-only models, whose cached runs stay valid."""
    from ropelab.rope.registry import make_plan
    from ropelab.rope.spec import RopeSpec
    from ropelab.train import DataConfig, config_hash, mixture
    from ropelab.train.mixture import MixConfig

    mix = TinyConfig(mix=MixConfig(shares={"text": 0.5, "repeat": 0.5}))
    text = TinyConfig()
    run = TrainConfig(data=DataConfig(mix=mix.mix))
    plan = make_plan("pi", RopeSpec(10000.0, 64, 256), 512)
    before = config_key(mix), config_key(text), config_hash(run, plan), config_hash(TrainConfig(), plan)
    monkeypatch.setattr(mixture, "VERSION", mixture.VERSION + 1)
    after = config_key(mix), config_key(text), config_hash(run, plan), config_hash(TrainConfig(), plan)
    assert [b != a for b, a in zip(before, after)] == [True, False, True, False]
