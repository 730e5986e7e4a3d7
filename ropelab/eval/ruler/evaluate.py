"""Generate RULER samples once, then evaluate any number of models or methods on them.

Decoding is greedy for the task's ``max_new_tokens`` (RULER: no stop strings), with
:func:`ropelab.eval.passkey.greedy_generate`. The samples of a (task, length) cell share their first tokens (the
template and the haystack up to the first needle); when that shared prefix is long enough to pay
(:func:`ropelab.eval.passkey.prefix_pays`: about half the prompt for 5 samples), its KV cache is computed once per cell
(:func:`ropelab.eval.passkey.prefix_cache`) and each sample runs only the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ropelab.eval.ruler.scoring import DEFAULT_RELATIVE, postprocess, score, summarize
from ropelab.eval.ruler.tasks import SYNTHETIC_TASKS, TASKS, RulerSample, build_sample, check_tasks

DEFAULT_LENGTHS = (1024, 2048, 4096)
MIN_SHARED_PREFIX = 256  # tokens: below this a per-cell cache saves less than it costs to keep


def generate_samples(tokenizer: Any, tasks: Sequence[str] = SYNTHETIC_TASKS,
                     lengths: Sequence[int] = DEFAULT_LENGTHS, samples: int = 5, seed: int = 0,
                     qa_file: str | Path | None = None, progress: bool = True) -> list[RulerSample]:
    """``samples`` prompts per task and length, fitted to ``tokenizer``; the same for every model using it.

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
    return [build_sample(t, n, i, seed, tokenizer, qa=qa_data.get(TASKS[t].options.get("dataset")))
            for t, n, i in tqdm(grid, desc="RULER samples", disable=not progress, leave=False)]


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``sequences``, leaving at least one token in each."""
    if not sequences:
        return 0
    first, shortest = sequences[0], min(len(s) for s in sequences)
    n = 0
    while n < shortest - 1 and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


def evaluate_ruler(model: Any, tokenizer: Any, samples: Sequence[RulerSample], *, reuse_prefix: bool = True,
                   min_shared: int = MIN_SHARED_PREFIX, max_new_tokens: int | None = None,
                   threshold: float | None = None,
                   relative: float = DEFAULT_RELATIVE, progress: bool = True) -> tuple[list[dict], dict]:
    """Greedy answers to ``samples`` and their RULER scores.

    Args:
        samples: from :func:`generate_samples` (made with ``tokenizer``).
        reuse_prefix: cache each cell's shared prefix once, when it has at least ``min_shared`` tokens and
            :func:`ropelab.eval.passkey.prefix_pays` (same answers, less compute).
        max_new_tokens: cap on the tokens generated (default: each task's, as RULER).
        threshold, relative: effective length's threshold (:mod:`ropelab.eval.ruler.scoring`).

    Returns:
        ``(rows, summary)``: rows of (task, length, index, n_tokens, prediction, outputs, score); summary of
        :func:`ropelab.eval.ruler.scoring.summarize` (cells, averages, threshold, effective_length).
    """
    import torch
    from tqdm.auto import tqdm

    from ropelab.eval.passkey import greedy_generate, prefix_cache, prefix_pays, warn_beyond_window

    if not samples:
        raise ValueError("no RULER samples to evaluate")
    warn_beyond_window(model, [s.length for s in samples], "RULER")
    cells: dict[tuple[str, int], list[RulerSample]] = {}
    for sample in samples:
        cells.setdefault((sample.task, sample.length), []).append(sample)
    rows: list[dict] = []
    model.eval()
    bar = tqdm(total=len(samples), desc="RULER", disable=not progress, leave=False)
    for cell in cells.values():
        shared = shared_prefix_length([s.ids for s in cell]) if reuse_prefix and len(cell) > 1 else 0
        pays = shared >= max(min_shared, 1) and prefix_pays(shared, min(s.n_tokens for s in cell), len(cell))
        cache = prefix_cache(model, cell[0].ids[:shared]) if pays else None
        start = shared if cache is not None else 0
        for sample in cell:
            steps = sample.max_new_tokens if max_new_tokens is None else min(max_new_tokens, sample.max_new_tokens)
            new = greedy_generate(model, sample.ids[start:], steps, cache)
            prediction = tokenizer.decode(new, skip_special_tokens=True)
            rows.append({"task": sample.task, "length": sample.length, "index": sample.index,
                         "n_tokens": sample.n_tokens, "prediction": postprocess(prediction),
                         "outputs": list(sample.outputs), "score": score(prediction, sample.outputs,
                                                                                  sample.metric)})
            bar.update()
        del cache
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    bar.close()
    return rows, summarize(rows, threshold=threshold, relative=relative)
