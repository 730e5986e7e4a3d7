"""Generate RULER samples once, then evaluate any number of models or methods on them.

Decoding is greedy for at most the task's ``max_new_tokens``, and stops at the model's end-of-sequence (or
end-of-turn) token as RULER's generation does, or as soon as the score is 1 (string match: later tokens cannot
lower it), with :func:`ropelab.eval.generation.answer_prompts`: samples that share their first tokens (the template
and the haystack up to the first needle) share one KV cache where that pays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ropelab.eval.prompts import spread_depth
from ropelab.eval.ruler.scoring import DEFAULT_RELATIVE, postprocess, score, summarize
from ropelab.eval.ruler.tasks import SYNTHETIC_TASKS, TASKS, RulerSample, build_sample, check_tasks

DEFAULT_LENGTHS = (1024, 2048, 4096)


def generate_samples(tokenizer: Any, tasks: Sequence[str] = SYNTHETIC_TASKS,
                     lengths: Sequence[int] = DEFAULT_LENGTHS, samples: int = 5, seed: int = 0,
                     qa_file: str | Path | None = None, progress: bool = True,
                     depths: Sequence[float] = ()) -> list[RulerSample]:
    """``samples`` prompts per task and length, fitted to ``tokenizer``; the same for every model using it.

    ``depths`` = (lo, hi) spreads the needle of the single-needle NIAH tasks over that fraction of the haystack
    (:func:`spread_depth`; RULER draws a random depth; () keeps that).

    All arguments are checked before any sample is built (unknown tasks, lengths, the QA file); a length too
    short for a task, or a haystack too short for a length, raises ValueError naming the task and length.
    """
    from tqdm.auto import tqdm

    tasks = check_tasks(list(tasks))
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not lengths or any(int(n) != n or n < 1 for n in lengths):
        raise ValueError(f"lengths must be positive token counts, got {list(lengths)}")
    qa_tasks = [t for t in tasks if TASKS[t].family == "qa"]
    qa_data: dict[str, Any] = {}
    if qa_tasks:
        from ropelab.eval.ruler.qa import read_qa_file

        if qa_file is None:
            raise ValueError(f"{', '.join(qa_tasks)} need a QA file (RULER's SQuAD or HotpotQA JSON): give qa_file")
        datasets = {TASKS[t].options["dataset"] for t in qa_tasks}
        if len(datasets) > 1:
            raise ValueError(f"one QA file is one dataset; {', '.join(qa_tasks)} need {', '.join(sorted(datasets))}")
        qa_data = {d: read_qa_file(qa_file, d) for d in datasets}
    grid = [(t, int(n), i) for t in tasks for n in lengths for i in range(samples)]
    return [build_sample(t, n, i, seed, tokenizer, qa=qa_data.get(TASKS[t].options.get("dataset")),
                         depth=spread_depth(depths, i) if single_needle(t) else None)
            for t, n, i in tqdm(grid, desc="RULER samples", disable=not progress, leave=False)]


def single_needle(task: str) -> bool:
    """Whether a RULER task hides exactly one needle (a fixed depth applies to it)."""
    o = TASKS[task].options
    return TASKS[task].family == "niah" and max(o["num_needle_k"], o["num_needle_q"]) * o["num_needle_v"] == 1


def evaluate_ruler(model: Any, tokenizer: Any, samples: Sequence[RulerSample], *, reuse_prefix: bool = True,
                   max_new_tokens: int | None = None, threshold: float | None = None,
                   relative: float = DEFAULT_RELATIVE, progress: bool = True) -> tuple[list[dict], dict]:
    """Greedy answers to ``samples`` and their RULER scores.

    Args:
        samples: from :func:`generate_samples` (made with ``tokenizer``).
        reuse_prefix: carry one KV cache between samples that share a prefix, where that pays (same answers,
            less compute).
        max_new_tokens: cap on the tokens generated (default: each task's, as RULER).
        threshold, relative: effective length's threshold (:mod:`ropelab.eval.ruler.scoring`).

    Returns:
        ``(rows, summary)``: rows of (task, length, index, n_tokens, prediction, outputs, score); summary of
        :func:`ropelab.eval.ruler.scoring.summarize` (cells, averages, threshold, effective_length).
    """
    from ropelab.eval.generation import answer_prompts, stop_token_ids
    from ropelab.eval.prompts import warn_beyond_window

    if not samples:
        raise ValueError("no RULER samples to evaluate")
    warn_beyond_window(model, [s.length for s in samples], "RULER")
    steps = [s.max_new_tokens if max_new_tokens is None else min(max_new_tokens, s.max_new_tokens) for s in samples]
    answers = answer_prompts(model, [s.ids for s in samples], steps, stop_ids=stop_token_ids(tokenizer, model),
                             done=[sample_decided(s, tokenizer) for s in samples], reuse=reuse_prefix,
                             progress=progress, desc="RULER")
    rows = [ruler_row(s, tokenizer.decode(a, skip_special_tokens=True)) for s, a in zip(samples, answers)]
    return rows, summarize(rows, threshold=threshold, relative=relative)


def sample_decided(sample: RulerSample, tokenizer: Any) -> Any:
    """``done(tokens)`` for :func:`ropelab.eval.generation.answer_prompts`: the score is already 1."""
    def done(tokens: list[int]) -> bool:
        return score(tokenizer.decode(tokens, skip_special_tokens=True), sample.outputs, sample.metric) >= 1.0

    return done


def ruler_row(sample: RulerSample, prediction: str) -> dict:
    """The scored row of one sample and its generated text."""
    return {"task": sample.task, "length": sample.length, "index": sample.index, "n_tokens": sample.n_tokens,
            "prediction": postprocess(prediction), "outputs": list(sample.outputs),
            "score": score(prediction, sample.outputs, sample.metric)}
