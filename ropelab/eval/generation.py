"""Greedy decoding that stops when the answer is decided, and many prompts answered through one shared KV cache.

Stopping. Decoding ends at the model's end-of-sequence or end-of-turn token (:func:`stop_token_ids`; RULER and
``generate`` stop there too) and, when the caller gives ``done``, as soon as the text so far decides the score
(e.g. a string-match score that is already 1, or a passkey answer whose first integer is complete): the tokens
after that point cannot change the score, so the early stop is exact, not an approximation.

Shared prefixes. Prompts are answered in lexicographic order of their token ids, so neighbours share the longest
prefixes (the task line and the haystack up to the first needle or key), and one KV cache is carried from prompt
to prompt: cropped back to the prefix the next prompt shares with the tokens it holds, then extended by the rest.
The rest is fed in chunks of :data:`PREFILL_CHUNK` tokens; SDPA takes its causal kernel only when queries and keys
have the same length, and the masked kernel costs ~1.4x per score (CPU, SmolLM2 shapes, torch 2.13), so a shared
prefix is reused only where :func:`reuse_pays`; otherwise the prompt runs whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

PREFILL_CHUNK = 1024
MASKED_KERNEL_COST = 1.4  # masked / causal SDPA cost per score
ATTENTION_SHARE = 0.67  # attention's share of a causal forward: SmolLM2-135M at 12k; less for larger models
ANSWER_VERSION = 1  # bump when what decides a greedy answer changes (stopping, chunking, reuse): cached answers key on it
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


def stop_token_ids(tokenizer: Any, model: Any = None) -> tuple[int, ...]:
    """The ids that end an answer: the tokenizer's and the generation config's EOS, and the chat end-of-turn tokens
    (:data:`END_OF_TURN`) the vocabulary has."""
    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (getattr(tokenizer, "eos_token_id", None), eos):
        ids += list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    ids += [vocab[t] for t in END_OF_TURN if t in vocab]
    return tuple(sorted({int(i) for i in ids}))


def rest_cost(shared: int, prompt_tokens: int) -> float:
    """Cost of the rest of a prompt after a cache of ``shared`` tokens, in units of the whole prompt on the causal
    kernel: ``(1 - a)(1 - d) + a k (1 - d^2)`` with ``d`` = shared / prompt, ``a`` = :data:`ATTENTION_SHARE`,
    ``k`` = :data:`MASKED_KERNEL_COST`."""
    d, a = min(max(shared, 0) / max(prompt_tokens, 1), 1.0), ATTENTION_SHARE
    return (1 - a) * (1 - d) + a * MASKED_KERNEL_COST * (1 - d * d)


def reuse_pays(shared: int, prompt_tokens: int) -> bool:
    """Whether continuing a cache that already holds ``shared`` tokens of the prompt beats running it whole."""
    return shared > 0 and rest_cost(shared, prompt_tokens) < 1.0


def prefix_pays(prefix_tokens: int, prompt_tokens: int, uses: int) -> bool:
    """Whether computing a prefix once for ``uses`` prompts beats running each whole: the prefix,
    ``(1 - a) d + a d^2``, plus ``uses`` rests (:func:`rest_cost`), against ``uses`` whole prompts."""
    if prefix_tokens <= 0 or prompt_tokens <= 0 or uses < 2:
        return False
    d, a = min(prefix_tokens / prompt_tokens, 1.0), ATTENTION_SHARE
    return (1 - a) * d + a * d * d + uses * rest_cost(prefix_tokens, prompt_tokens) < uses


def prefix_cache(model: Any, prefix: Sequence[int]) -> Any:
    """The KV cache (a transformers Cache) of ``prefix``."""
    ids = torch.tensor([list(prefix)], device=model.device)  # (1, T)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=True, logits_to_keep=1).cache  # no (T, V) logits: 3 GB at 16k


def decode_greedy(model: Any, ids: Sequence[int], max_new_tokens: int, cache: Any = None, *,
                  stop_ids: Sequence[int] = (), done: Callable[[list[int]], bool] | None = None,
                  chunk: int | None = PREFILL_CHUNK, keep_logits: bool = False
                  ) -> tuple[list[int], list[torch.Tensor], Any]:
    """Greedy continuation of ``ids`` (after what ``cache`` holds, if given); returns (tokens, logits, cache).

    Stops after ``max_new_tokens``, at a token of ``stop_ids`` (not returned), or once ``done(tokens)`` is true.
    After a non-empty cache, ``ids`` go ``chunk`` tokens per forward (None: all at once); without one, in one
    forward on SDPA's causal kernel. The returned cache holds the prompt and every generated token but the last.
    """
    start = cache.get_seq_length() if cache is not None else 0
    tokens: list[int] = []
    logits: list[torch.Tensor] = []
    ids = list(ids)
    stop = {int(i) for i in stop_ids}
    size = max(len(ids), 1) if not start or chunk is None else max(int(chunk), 1)
    with torch.no_grad():
        for begin in range(0, len(ids) - size, size):  # all chunks but the last: fill the cache
            piece = torch.tensor([ids[begin:begin + size]], device=model.device)  # (1, chunk)
            cache = model(input_ids=piece, cache=cache, use_cache=True, logits_to_keep=1).cache
        step = torch.tensor([ids[(len(ids) - 1) // size * size:]], device=model.device)  # (1, T) the last chunk
        for _ in range(max_new_tokens):
            out = model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            last = out.logits[0, -1].float()  # (V,)
            token = int(last.argmax())
            if keep_logits:
                logits.append(last)
            if token in stop:
                break
            tokens.append(token)
            if done is not None and done(tokens):
                break
            step = torch.tensor([[token]], device=model.device)
    return tokens, logits, cache


def greedy_generate(model: Any, ids: Sequence[int], max_new_tokens: int, cache: Any = None,
                    return_logits: bool = False, chunk: int | None = PREFILL_CHUNK, *,
                    stop_ids: Sequence[int] = (), done: Callable[[list[int]], bool] | None = None
                    ) -> list[int] | tuple[list[int], list[torch.Tensor]]:
    """Greedy continuation of ``ids`` (:func:`decode_greedy`); with ``cache``, ``ids`` continue the sequence in it,
    and the cache is cropped back to its original length, so one prefix cache serves many calls.
    Returns the new token ids (and, with ``return_logits``, the next-token logits of each step)."""
    start = cache.get_seq_length() if cache is not None else 0
    try:
        tokens, logits, cache = decode_greedy(model, ids, max_new_tokens, cache, stop_ids=stop_ids, done=done,
                                              chunk=chunk, keep_logits=return_logits)
    finally:
        if start and cache is not None:
            crop_to(cache, start)
    return (tokens, logits) if return_logits else tokens


def crop_to(cache: Any, tokens: int) -> None:
    """Keep the first ``tokens`` positions of a transformers cache (its ``crop`` takes the count to remove)."""
    extra = cache.get_seq_length() - tokens
    if extra > 0:
        cache.crop(-extra)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of ``a`` and ``b``."""
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def answer_prompts(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int], *,
                   stop_ids: Sequence[int] = (), done: Sequence[Callable[[list[int]], bool] | None] | None = None,
                   reuse: bool = True, on_answer: Callable[[int, list[int]], None] | None = None,
                   progress: bool = True, desc: str = "prompts") -> list[list[int]]:
    """Greedy answers to ``prompts`` (token ids), in their order, through one KV cache carried between prompts.

    Prompts run in lexicographic order of their ids; each continues the cache from the prefix it shares with the
    previous prompt where :func:`reuse_pays` (``reuse``), else runs whole. ``on_answer(i, tokens)`` is called as
    each answer is ready (e.g. to store it), so a long grid can be resumed.
    """
    from tqdm.auto import tqdm

    order = sorted(range(len(prompts)), key=lambda i: tuple(prompts[i]))
    answers: list[list[int]] = [[] for _ in prompts]
    cache, held = None, ()
    model.eval()
    for i in tqdm(order, desc=desc, disable=not progress, leave=False):
        ids = tuple(prompts[i])
        if not ids:
            raise ValueError(f"prompt {i} is empty")
        shared = min(common_prefix(held, ids), len(ids) - 1)  # at least one token to run
        if cache is not None and reuse and reuse_pays(shared, len(ids)):
            crop_to(cache, shared)
            rest = ids[shared:]
        else:
            cache, rest = None, ids
        tokens, _, cache = decode_greedy(model, rest, max_new_tokens[i], cache, stop_ids=stop_ids,
                                         done=done[i] if done is not None else None)
        crop_to(cache, len(ids))  # keep the prompt, drop the answer
        held = ids
        answers[i] = tokens
        if on_answer is not None:
            on_answer(i, tokens)
    return answers
