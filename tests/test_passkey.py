"""Passkey retrieval: prompt wording and length, fixed keys, prefix reuse == full run, the grid, CSV, heat-map, CLI.

``tiny_llama`` (a random 2-layer Llama and a byte-level BPE tokenizer trained here in milliseconds) is shared
by test_niah.py and test_longbench.py (one thread per test process: tests/conftest.py).
"""

from __future__ import annotations

import functools
import itertools
import json

import pytest
import torch

from ropelab.eval.generation import greedy_generate, prefix_cache
from ropelab.eval.passkey import (
    FILLER,
    KEY_LINE,
    QUESTION,
    TASK,
    PasskeyPrompter,
    draw_keys,
    evaluate_passkey,
    parse_answer,
)

TRAIN_TEXT = [TASK, FILLER, KEY_LINE.format(key=12345), QUESTION,
              "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
              "def add(a, b):\n    return a + b  # code\n", "0123456789 Paragraph 12. Answer: Summary: Question:"]


@functools.cache
def tiny_llama(window: int = 512):
    """A random Llama (2 layers, width 64) and a byte-level BPE tokenizer with BOS/EOS: (model, tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT * 20, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=window,
                         bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def test_prompt_has_the_reference_wording_and_the_requested_length():
    _, tok = tiny_llama()
    prompter = PasskeyPrompter(tok)
    for length in (200, 333, 512):
        for depth in (0.0, 0.5, 1.0):
            prompt = prompter(length, depth, 54321)
            assert len(prompt.ids) == length, (length, depth, len(prompt.ids))
            assert len(prompter(length, depth, 31337).ids) == length
            # the reference layout: task, filler, key line, filler, question, one per line; fillers cut anywhere
            task, before, key_line, after, question = prompter.text(prompt).split("\n")
            assert (task, key_line, question) == (TASK, KEY_LINE.format(key=54321), QUESTION)
            filler = " ".join([FILLER] * 100)
            assert filler.startswith(before) and filler.startswith(after)
            assert (before == "") == (depth == 0.0) and (after == "") == (depth == 1.0)
    # depth moves the key: more filler before it at larger depth, and the prefix is shared across keys
    shallow, deep = prompter(400, 0.1, 11111), prompter(400, 0.9, 11111)
    assert len(deep.prefix) > len(shallow.prefix)
    assert prompter(400, 0.9, 22222).prefix == deep.prefix
    assert prompter.text(deep).index("11111") > prompter.text(shallow).index("11111")


def test_bad_inputs():
    _, tok = tiny_llama()
    prompter = PasskeyPrompter(tok)
    with pytest.raises(ValueError, match="depth"):
        prompter(300, 1.5, 12345)
    with pytest.raises(ValueError, match="shorter than the prompt"):
        prompter(10, 0.5, 12345)


def test_keys_are_fixed_five_digit_numbers():
    keys = draw_keys(0, 50)
    assert keys == draw_keys(0, 50) and keys != draw_keys(1, 50)
    assert all(10000 <= k <= 99999 for k in keys)


def test_parse_answer():
    assert parse_answer(" 12345. Remember") == 12345
    assert parse_answer(" is the key 007") == 7
    assert parse_answer(" no digits") is None


def bigram_llama(tokenizer, chain: list[int]):
    """A real ``LlamaForCausalLM`` that follows token ``chain[i]`` with ``chain[i + 1]``, whatever came before (and
    anything else with token 0): one-hot embeddings, decoder layers that add nothing (zero output projections), and an
    LM head that maps each chain token to its successor. A model whose answer is known before it runs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    width = -(-vocab // 8) * 8
    config = LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :vocab].copy_(torch.eye(vocab))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for here, after in itertools.pairwise(chain):
            model.lm_head.weight[after, here] = 1.0
    return model


def test_scoring_counts_a_right_answer_right_and_a_wrong_one_wrong():
    """Every other passkey test uses a random model, which is never right: here the model answers the first key."""
    _, tok = tiny_llama()
    keys = draw_keys(8, 2)  # 39714: five different digits
    prompt = PasskeyPrompter(tok)(128, 0.5, keys[0])
    answer = list(tok(f" {keys[0]}", add_special_tokens=False).input_ids)
    chain = [prompt.ids[-1], *answer]
    assert keys[0] != keys[1] and len(set(chain)) == len(chain)  # input sanity: a chain a bigram can follow
    model = bigram_llama(tok, chain)
    assert tok.decode(greedy_generate(model, prompt.ids, 6), skip_special_tokens=True) == f" {keys[0]}"
    for reuse in (True, False):
        rows, summary = evaluate_passkey(model, tok, lengths=[128], depths=[0.5], trials=2, seed=8,
                                         reuse_prefix=reuse, progress=False)
        assert [r["key"] for r in rows] == keys
        assert [(r["answer"], r["correct"]) for r in rows] == [(keys[0], True), (keys[0], False)]
        assert summary["accuracy"] == 0.5 and summary["cells"][0]["accuracy"] == 0.5


@pytest.mark.slow
def test_smollm2_finds_the_passkey_inside_its_window():
    """The real model at 1k tokens (its window is 8k): the answer is the key, not just any number."""
    from ropelab.runtime.models import load_model

    model, tokenizer = load_model("smollm2-135m")
    rows, summary = evaluate_passkey(model, tokenizer, lengths=[1024], depths=[0.0, 0.5, 1.0], trials=2, seed=0,
                                     progress=False)
    assert summary["accuracy"] >= 5 / 6, rows
    assert all(r["answer"] == r["key"] for r in rows if r["correct"])


def test_prefix_reuse_gives_the_answer_of_the_full_run():
    model, tok = tiny_llama()
    prompter = PasskeyPrompter(tok)
    cache = prefix_cache(model, prompter.prefix(300, 0.6))
    for key in (12345, 67890):
        prompt = prompter(300, 0.6, key)
        full, full_logits = greedy_generate(model, prompt.ids, 6, return_logits=True)
        reused, reused_logits = greedy_generate(model, prompt.suffix, 6, cache, return_logits=True)
        assert cache.get_seq_length() == len(prompt.prefix)  # cropped back for the next trial
        assert reused == full
        for a, b in zip(full_logits, reused_logits):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # and the greedy loop is the same as transformers' own greedy generate
    ids = torch.tensor([prompt.ids])
    reference = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                               pad_token_id=1, eos_token_id=None)[0, ids.shape[1]:].tolist()
    assert full == reference


def test_grid_rows_summary_and_reuse_equivalence(tmp_path):
    model, tok = tiny_llama()
    kwargs = {"lengths": [128, 256], "depths": [0.0, 1.0], "trials": 2, "seed": 3, "progress": False}
    rows, summary = evaluate_passkey(model, tok, **kwargs)
    rows_full, _ = evaluate_passkey(model, tok, reuse_prefix=False, **kwargs)
    assert [r["answer"] for r in rows] == [r["answer"] for r in rows_full]
    assert len(rows) == 8 and {"length", "depth", "trial", "key", "answer", "correct"} <= set(rows[0])
    assert [r["key"] for r in rows] == draw_keys(3, 8)
    assert len(summary["cells"]) == 4 and all(c["n"] == 2 for c in summary["cells"])
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 8

    from ropelab.figures import save_figure, write_csv
    from ropelab.plots.retrieval import accuracy_grid, retrieval_heatmap

    lengths, depths, grid = accuracy_grid(summary["cells"])
    assert lengths == [128, 256] and depths == [0.0, 1.0] and grid.shape == (2, 2)
    write_csv(rows, tmp_path / "passkey.csv")
    assert (tmp_path / "passkey.csv").read_text().splitlines()[0].startswith("length,depth,trial,key,answer")
    pdf = save_figure(retrieval_heatmap(summary["cells"], "tiny", window=128), "passkey", summary["cells"], tmp_path)
    assert pdf.exists() and (tmp_path / "passkey.png").exists()


def test_a_length_beyond_the_window_warns_with_both_numbers():
    model, tok = tiny_llama()
    with pytest.warns(UserWarning, match="length 600 is beyond the model's configured window 512"):
        evaluate_passkey(model, tok, lengths=[600], depths=[0.5], trials=1, progress=False)


def test_cli_on_a_saved_model_with_a_plan(tmp_path, capsys):
    from ropelab.cli import main

    model, tok = tiny_llama()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    argv = ["eval", "passkey", "--model", str(tmp_path / "m"), "--lengths", "128", "--depths", "0,1", "--trials", "1"]
    assert main([*argv, "--method", "pi", "--target-length", "1024", "--json", "--csv", str(tmp_path / "p.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "pi" and summary["target_length"] == 1024 and len(summary["cells"]) == 2
    assert (tmp_path / "p.csv").read_text().startswith("model,method,target_length,length,depth,trial,key")
    assert main([*argv, "--method", "pi,yarn", "--target-length", "1024"]) == 2
    assert "one --method per run" in capsys.readouterr().err


def test_a_long_first_prompt_has_the_requested_length():
    # the filler is tokenised once and cut: joined repeats can take fewer tokens than one repeat alone, so the
    # first request must grow it until it is long enough (SmolLM2's depth-0 prompts were 3,980 tokens at 4,096)
    _, tok = tiny_llama()
    for depth in (0.0, 0.5):
        prompter = PasskeyPrompter(tok)  # fresh: its filler is built by this first, long request
        for length in (4096, 1000, 6000):
            assert len(prompter(length, depth, 54321).ids) == length, (depth, length)
