"""Greedy answers: stopping at EOS / end-of-turn or once an answer is decided loses nothing, a carried KV cache
gives the answers of prompts run whole, and the real model's passkey score is the same with or without stopping."""

from __future__ import annotations

import pytest
from test_passkey import tiny_llama

from ropelab.eval.generation import END_OF_TURN, answer_prompts, decode_greedy, greedy_generate, stop_token_ids
from ropelab.eval.passkey import PasskeyPrompter, parse_answer, passkey_decided


def test_stop_ids_are_the_eos_of_tokenizer_and_model_and_the_end_of_turn_tokens():
    model, tok = tiny_llama()
    assert stop_token_ids(tok) == (tok.eos_token_id,) == (1,)
    model.generation_config.eos_token_id = [1, 7]
    try:
        assert stop_token_ids(tok, model) == (1, 7)
    finally:
        model.generation_config.eos_token_id = 1
    assert "<|im_end|>" in END_OF_TURN and "<|eot_id|>" in END_OF_TURN  # SmolLM2-Instruct's and Llama 3's


def test_a_stop_token_ends_the_answer_before_it_and_done_ends_it_after():
    model, tok = tiny_llama()
    ids = tok("The pass key is 12345. What is the pass key? The pass key is").input_ids
    full = greedy_generate(model, ids, 8)
    assert len(full) == 8
    for k in (0, 3, 7):
        stopped = greedy_generate(model, ids, 8, stop_ids=[full[k]])
        assert stopped == full[:full.index(full[k])]  # everything before the first stop token, never the token
    assert greedy_generate(model, ids, 8, done=lambda t: len(t) >= 3) == full[:3]
    tokens, logits, _ = decode_greedy(model, ids, 4, keep_logits=True)
    assert tokens == full[:4] and [int(x.argmax()) for x in logits] == full[:4]


def test_a_carried_cache_gives_the_answers_of_prompts_run_whole():
    model, tok = tiny_llama()
    prompter = PasskeyPrompter(tok)
    prompts = [prompter(300, depth, key).ids for depth in (0.2, 0.7) for key in (11111, 54321)]
    reused = answer_prompts(model, prompts, [6] * len(prompts), progress=False)
    whole = answer_prompts(model, prompts, [6] * len(prompts), reuse=False, progress=False)
    assert reused == whole == [greedy_generate(model, p, 6) for p in prompts]
    seen = []
    answer_prompts(model, prompts, [2] * len(prompts), on_answer=lambda i, t: seen.append(i), progress=False)
    assert sorted(seen) == [0, 1, 2, 3]  # every answer reported once, as it is ready


@pytest.mark.slow
def test_smollm2_passkey_scores_the_same_with_and_without_stopping():
    """The known case of the issue: SmolLM2-Instruct answers a 1k passkey prompt and then goes on (or emits
    <|im_end|>); cutting the answer at EOS / end-of-turn, or once its integer is complete, scores exactly as the
    full 12-token continuation does."""
    from ropelab.runtime.models import load_model

    model, tok = load_model("smollm2-135m")
    stops = stop_token_ids(tok, model)
    assert {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")} <= set(stops)
    prompter = PasskeyPrompter(tok)
    for depth, key in ((0.1, 38411), (0.5, 90210), (0.9, 12345)):
        ids = prompter(1024, depth, key).ids
        full = greedy_generate(model, ids, 12)
        stopped = greedy_generate(model, ids, 12, stop_ids=stops,
                                  done=lambda t: passkey_decided(tok.decode(t, skip_special_tokens=True)))
        assert full[:len(stopped)] == stopped  # a prefix of the full continuation
        text_full, text_stopped = (tok.decode(t, skip_special_tokens=True) for t in (full, stopped))
        assert parse_answer(text_stopped) == parse_answer(text_full) == key, (text_full, text_stopped)


def test_end_of_turn_tokens_of_the_vocabulary_stop_an_answer():
    import copy

    _, tok = tiny_llama()
    chat = copy.deepcopy(tok)
    chat.add_tokens(["<|im_end|>"], special_tokens=True)
    assert stop_token_ids(chat) == (1, chat.convert_tokens_to_ids("<|im_end|>"))
