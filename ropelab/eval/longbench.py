"""LongBench-E (Bai et al., "LongBench", ACL 2024, arXiv 2308.14508): the 13 English tasks the DPRoPE paper
reports (Wu et al., 2024, Table 4), read from the official ``<task>_e.jsonl`` files on disk.

The protocol follows THUDM/LongBench ``pred.py`` and ``eval.py``: the prompt is the task's template from
``config/dataset2prompt.json`` filled with the sample's ``context`` and ``input``; a prompt longer than
``max_length`` tokens keeps its first and last ``max_length // 2`` tokens (the middle is cut, the instructions at
both ends survive); greedy decoding of at most ``dataset2maxlen`` new tokens (samsum also stops at a newline);
no chat template (ropelab evaluates base models). Scores are in :mod:`ropelab.eval.longbench_metrics`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropelab.eval.longbench_metrics import METRICS, average_over_tasks, bucket_scores, score_sample

TASKS = tuple(METRICS)

# config/dataset2prompt.json of THUDM/LongBench (LongBench v1), the 13 LongBench-E English tasks.
PROMPTS = {
    "qasper": (
        "You are given a scientific article and a question. Answer the question as concisely as you can, using a "
        "single phrase or sentence if possible. If the question cannot be answered based on the information in the "
        "article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or "
        "\"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on "
        "the above article as concisely as you can, using a single phrase or sentence if possible. If the question "
        "cannot be answered based on the information in the article, write \"unanswerable\". If the question is a "
        "yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\n"
        "Question: {input}\n\nAnswer:"
    ),
    "multifieldqa_en": (
        "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on "
        "the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"
    ),
    "hotpotqa": (
        "Answer the question based on the given passages. Only give me the answer and do not output any other "
        "words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. "
        "Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"
    ),
    "gov_report": (
        "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n"
        "{context}\n\nNow, write a one-page summary of the report.\n\nSummary:"
    ),
    "multi_news": (
        "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\n"
        "Now, write a one-page summary of all the news.\n\nSummary:"
    ),
    "trec": "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
    "triviaqa": (
        "Answer the question based on the given passage. Only give me the answer and do not output any other "
        "words. The following are some examples.\n\n{context}\n\n{input}"
    ),
    "samsum": "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
    "passage_count": (
        "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully "
        "read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In "
        "other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final "
        "count of unique paragraphs after removing duplicates. The output format should only contain the number, "
        "such as 1, 2, 3, and so on.\n\nThe final answer is: "
    ),
    "passage_retrieval_en": (
        "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the "
        "abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of "
        "the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", "
        "etc.\n\nThe answer is: "
    ),
    "lcc": "Please complete the code given below. \n{context}Next line of code:\n",
    "repobench-p": "Please complete the code given below. \n{context}{input}Next line of code:\n",
}
PROMPTS["2wikimqa"] = PROMPTS["hotpotqa"]

# config/dataset2maxlen.json: new tokens generated per task.
MAX_NEW_TOKENS = {
    "qasper": 128, "multifieldqa_en": 64, "hotpotqa": 32, "2wikimqa": 32, "gov_report": 512, "multi_news": 512,
    "trec": 64, "triviaqa": 32, "samsum": 128, "passage_count": 32, "passage_retrieval_en": 32, "lcc": 64,
    "repobench-p": 64,
}
FIELDS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")


@dataclass
class Sample:
    """One LongBench-E record (the published field names)."""

    input: str
    context: str
    answers: list[str]
    length: int
    dataset: str
    language: str = "en"
    all_classes: list[str] | None = None
    _id: str = ""
    source: str = field(default="", repr=False)  # file:line it came from


def check_tasks(names: Iterable[str]) -> list[str]:
    """Validate a list of task names."""
    names = list(names)
    bad = [n for n in names if n not in PROMPTS]
    if bad:
        raise ValueError(f"unknown LongBench-E task(s) {', '.join(bad)}; allowed: {', '.join(TASKS)}")
    return names


def task_file(folder: str | Path, task: str) -> Path:
    return Path(folder) / f"{task}_e.jsonl"


def read_task(folder: str | Path, task: str, limit: int | None = None) -> list[Sample]:
    """Samples of ``<folder>/<task>_e.jsonl``; a malformed line is warned about (file:line) and skipped."""
    if task not in PROMPTS:
        raise ValueError(f"unknown LongBench-E task {task!r}; allowed: {', '.join(TASKS)}")
    path = task_file(folder, task)
    samples: list[Sample] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                missing = [k for k in ("input", "context", "answers", "length") if k not in record]
                if missing:
                    raise KeyError(f"missing field(s) {', '.join(missing)}")
                samples.append(Sample(
                    input=str(record["input"]), context=str(record["context"]),
                    answers=[str(a) for a in record["answers"]], length=int(record["length"]),
                    dataset=str(record.get("dataset", task)), language=str(record.get("language", "en")),
                    all_classes=record.get("all_classes"), _id=str(record.get("_id", "")),
                    source=f"{path}:{number}"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                warnings.warn(f"{path}:{number}: skipped malformed LongBench record ({err})", stacklevel=2)
                continue
            if limit is not None and len(samples) >= limit:
                break
    return samples


def check_folder(folder: str | Path, tasks: Sequence[str]) -> None:
    """Raise FileNotFoundError naming the folder and the expected file names when any task file is absent."""
    source = "the *_e.jsonl files of data.zip of THUDM/LongBench"
    if not Path(folder).is_dir():
        expected = ", ".join(task_file(folder, t).name for t in tasks)
        raise FileNotFoundError(f"LongBench-E folder {str(folder)!r} does not exist; it should hold {expected} ({source})")
    missing = [task_file(folder, t).name for t in tasks if not task_file(folder, t).is_file()]
    if missing:
        raise FileNotFoundError(f"LongBench-E folder {str(folder)!r} lacks {', '.join(missing)} ({source})")


def build_prompt(sample: Sample, task: str, tokenizer: Any, max_length: int) -> list[int]:
    """Token ids of the task prompt, middle-truncated to ``max_length`` tokens as the official pred.py does."""
    prompt = PROMPTS[task].format(context=sample.context, input=sample.input)
    ids = tokenizer(prompt, truncation=False).input_ids
    if len(ids) > max_length:
        half = max_length // 2
        prompt = (tokenizer.decode(ids[:half], skip_special_tokens=True)
                  + tokenizer.decode(ids[-half:], skip_special_tokens=True))
        ids = tokenizer(prompt, truncation=False).input_ids
    return ids


def generate(model: Any, tokenizer: Any, ids: list[int], task: str, max_new_tokens: int | None = None) -> str:
    """Greedy continuation of ``ids`` with the task's token budget (or ``max_new_tokens``), decoded without
    special tokens."""
    import torch

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    kwargs: dict[str, Any] = {}
    if task == "samsum":  # official: stop at a newline too (the model otherwise repeats "\nDialogue")
        newline = tokenizer.encode("\n", add_special_tokens=False)
        kwargs.update(eos_token_id=eos + newline[-1:], min_new_tokens=1)
    inputs = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens or MAX_NEW_TOKENS[task],
                             do_sample=False, num_beams=1, pad_token_id=(eos or [0])[0], **kwargs)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def evaluate_longbench(model: Any, tokenizer: Any, folder: str | Path, *, tasks: Sequence[str] = TASKS,
                       max_length: int | None = None, limit: int | None = None,
                       max_new_tokens: int | None = None, progress: bool = True) -> tuple[list[dict], dict]:
    """Predict and score LongBench-E tasks.

    Args:
        model, tokenizer: a causal LM and its tokenizer (transformers).
        folder: holds ``<task>_e.jsonl`` for each task.
        tasks: a subset of :data:`TASKS`.
        max_length: prompt budget in tokens (default: the model's ``max_position_embeddings`` minus the task's
            generation budget).
        limit: at most this many samples per task (None: all).
        max_new_tokens: cap on every task's generation budget (None: the official budgets; a smoke-test knob).

    Returns:
        ``(rows, summary)``: one row per sample (task, _id, length, bucket, score x100, prediction); summary
        ``{"tasks": {task: {"0-4k", "4-8k", "8k+", "all", "n"}}, "average": {...}}``, scores x100.
    """
    from tqdm.auto import tqdm

    from ropelab.eval.longbench_metrics import length_bucket

    tasks = check_tasks(tasks)
    check_folder(folder, tasks)
    for name, value in (("max_length", max_length), ("limit", limit), ("max_new_tokens", max_new_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    from ropelab.eval.prompts import model_window, warn_beyond_window

    window = model_window(model) or 4096
    if max_length is not None:
        new_tokens = max(min(max_new_tokens or 10**9, MAX_NEW_TOKENS[t]) for t in tasks)
        warn_beyond_window(model, [max_length + new_tokens], "LongBench-E prompt + answer")
    rows: list[dict] = []
    per_task: dict[str, dict[str, float]] = {}
    model.eval()
    for task in tasks:
        samples = read_task(folder, task, limit)
        budget = max_length if max_length is not None else window - MAX_NEW_TOKENS[task]
        scores = []
        for sample in tqdm(samples, desc=f"LongBench-E {task}", disable=not progress, leave=False):
            ids = build_prompt(sample, task, tokenizer, budget)
            prediction = generate(model, tokenizer, ids, task, min(max_new_tokens or 10**9, MAX_NEW_TOKENS[task]))
            score = score_sample(task, prediction, sample.answers, sample.all_classes)
            scores.append(score)
            rows.append({"task": task, "_id": sample._id, "length": sample.length,
                         "bucket": length_bucket(sample.length), "score": 100 * score, "prediction": prediction})
        per_task[task] = {**bucket_scores(scores, [s.length for s in samples]), "n": len(samples)}
    return rows, {"tasks": per_task, "average": average_over_tasks(per_task)}


def summary_rows(summary: dict) -> list[dict]:
    """The summary as a table: one row per task and one "average" row, a column per bucket."""
    labels = {k: summary[k] for k in ("model", "method", "target_length") if k in summary}
    return [{**labels, "task": task, **scores}
            for task, scores in {**summary["tasks"], "average": summary["average"]}.items()]
