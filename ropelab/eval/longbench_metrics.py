"""The LongBench metrics (Bai et al., "LongBench", ACL 2024, arXiv 2308.14508), re-implemented without the
``rouge``, ``fuzzywuzzy`` and ``jieba`` packages, to give the numbers of the official ``LongBench/metrics.py`` and
``LongBench/eval.py`` (THUDM/LongBench) on English tasks.

Each metric takes ``(prediction, ground_truth, **kwargs)`` and returns a float in [0, 1]; :func:`score_sample`
applies the official post-processing and takes the best over a sample's answers; :func:`bucket_scores` averages
per length bucket (0-4k / 4-8k / 8k+ by the ``length`` field) and scales by 100, as ``scorer_e`` does.

Equivalences with the official packages:
    * ROUGE-L is ``rouge==1.0.1`` ``Rouge().get_scores(...)["rouge-l"]["f"]``: summary-level union-LCS over
      sentences split on ``"."``, words split on ``" "``, with that package's default ``exclusive=True`` (word
      *sets*: the union LCS and both lengths count distinct words), F = 2PR / (P + R + 1e-8). Inputs with no
      sentence score 0, as the official ``try/except`` gives. (The package's recursive LCS back-trace raises
      RecursionError, hence 0, on sentences of ~1000 words; here such sentences are scored.)
    * ``fuzz.ratio(a, b)`` of ``fuzzywuzzy`` without python-Levenshtein is
      ``int(round(100 * difflib.SequenceMatcher(None, a, b).ratio()))``, 100 when ``a == b``, 0 when either is
      empty; :func:`fuzz_ratio` is exactly that.
"""

from __future__ import annotations

import difflib
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

# Tasks whose prediction is cut to its first line before scoring (official eval.py).
FIRST_LINE_TASKS = ("trec", "triviaqa", "samsum", "lsht")
BUCKETS = ("0-4k", "4-8k", "8k+")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop articles (a, an, the), collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: Sequence[str], ground_truth: Sequence[str]) -> float:
    """Bag-of-tokens F1 (multiset overlap)."""
    same = sum((Counter(prediction) & Counter(ground_truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, ground_truth: str, **_) -> float:
    """Token F1 between the normalised prediction and answer (QA tasks)."""
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def _lcs_words(ref: list[str], hyp: list[str]) -> list[str]:
    """One longest common subsequence of ``ref`` and ``hyp``, back-traced with the ``rouge`` package's tie rule
    (on a tie between dropping a reference word and dropping a hypothesis word, drop the hypothesis word)."""
    n, m = len(ref), len(hyp)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, prev = table[i], table[i - 1]
        for j in range(1, m + 1):
            row[j] = prev[j - 1] + 1 if ref[i - 1] == hyp[j - 1] else max(prev[j], row[j - 1])
    out: list[str] = []
    i, j = n, m
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            out.append(ref[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def _sentences(text: str) -> list[list[str]]:
    """Split as ``rouge`` does: on ".", keep non-empty pieces, collapse whitespace, then words on " "."""
    return [" ".join(piece.split()).split(" ") for piece in text.split(".") if len(piece) > 0]


def rouge_l(prediction: str, ground_truth: str) -> tuple[float, float, float]:
    """Summary-level ROUGE-L (Lin, 2004, sec. 3.2: union LCS) as ``rouge==1.0.1`` computes it: (P, R, F)."""
    hyp, ref = _sentences(prediction), _sentences(ground_truth)
    if not hyp or not ref:
        return 0.0, 0.0, 0.0
    n_hyp = len({w for s in hyp for w in s})  # distinct words: the package's default exclusive=True
    n_ref = len({w for s in ref for w in s})
    union: set[str] = set()
    for r in ref:
        for h in hyp:
            union.update(_lcs_words(r, h))
    precision, recall = len(union) / n_hyp, len(union) / n_ref
    return precision, recall, 2.0 * precision * recall / (precision + recall + 1e-8)


def rouge_score(prediction: str, ground_truth: str, **_) -> float:
    """ROUGE-L F (summarisation tasks)."""
    return rouge_l(prediction, ground_truth)[2]


def classification_score(prediction: str, ground_truth: str, *, all_classes: Sequence[str], **_) -> float:
    """1/k when the answer is among the k class names found in the prediction (trec, lsht).

    Class names that are strict substrings of the answer are dropped first, in the official order: that loop
    removes from the list it iterates over, so the name right after a removed one is not examined; kept here.
    """
    matches = [name for name in all_classes if name in prediction]
    i = 0
    while i < len(matches):
        if matches[i] in ground_truth and matches[i] != ground_truth:
            del matches[i]
            i += 1  # the official loop skips the element that slid into the removed slot
        else:
            i += 1
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def _share_of_numbers(prediction: str, wanted: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return 0.0 if not numbers else sum(n == wanted for n in numbers) / len(numbers)


def retrieval_score(prediction: str, ground_truth: str, **_) -> float:
    """Share of the numbers in the prediction that equal the paragraph id of ``"Paragraph N"``."""
    found = re.findall(r"Paragraph (\d+)", ground_truth)
    if not found:
        raise ValueError(f"passage_retrieval answer must look like 'Paragraph N', got {ground_truth!r}")
    return _share_of_numbers(prediction, found[0])


def count_score(prediction: str, ground_truth: str, **_) -> float:
    """Share of the numbers in the prediction that equal the count (passage_count)."""
    return _share_of_numbers(prediction, str(ground_truth))


def fuzz_ratio(a: str, b: str) -> int:
    """``fuzzywuzzy.fuzz.ratio`` (pure-Python path): rounded 100 x difflib similarity, in 0..100."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    return round(100 * difflib.SequenceMatcher(None, a, b).ratio())


def first_code_line(prediction: str) -> str:
    """The first line with no backtick, ``#`` or ``//`` (official code post-processing), or ""."""
    for line in prediction.lstrip("\n").split("\n"):
        if "`" not in line and "#" not in line and "//" not in line:
            return line
    return ""


def code_sim_score(prediction: str, ground_truth: str, **_) -> float:
    """Edit similarity of the first code line to the answer line (lcc, repobench-p)."""
    return fuzz_ratio(first_code_line(prediction), ground_truth) / 100


METRICS: dict[str, Callable[..., float]] = {
    "qasper": qa_f1_score,
    "multifieldqa_en": qa_f1_score,
    "hotpotqa": qa_f1_score,
    "2wikimqa": qa_f1_score,
    "gov_report": rouge_score,
    "multi_news": rouge_score,
    "trec": classification_score,
    "triviaqa": qa_f1_score,
    "samsum": rouge_score,
    "passage_count": count_score,
    "passage_retrieval_en": retrieval_score,
    "lcc": code_sim_score,
    "repobench-p": code_sim_score,
}


def score_sample(task: str, prediction: str, answers: Iterable[str], all_classes: Sequence[str] | None = None) -> float:
    """Official per-sample score in [0, 1]: post-process, then the best over the answers."""
    if task not in METRICS:
        raise ValueError(f"unknown LongBench-E task {task!r}; allowed: {', '.join(METRICS)}")
    if task in FIRST_LINE_TASKS:
        prediction = prediction.lstrip("\n").split("\n")[0]
    metric = METRICS[task]
    return max((metric(prediction, answer, all_classes=all_classes or []) for answer in answers), default=0.0)


def length_bucket(length: int) -> str:
    """LongBench-E bucket of a sample by its ``length`` field (words): 0-4k, 4-8k or 8k+."""
    return "0-4k" if length < 4000 else ("4-8k" if length < 8000 else "8k+")


def bucket_scores(scores: Sequence[float], lengths: Sequence[int]) -> dict[str, float]:
    """Mean x100, rounded to 2 decimals, per bucket (NaN for an empty bucket, as np.mean gives) plus "all"."""
    groups: dict[str, list[float]] = {b: [] for b in BUCKETS}
    for score, length in zip(scores, lengths, strict=True):
        groups[length_bucket(length)].append(score)
    groups["all"] = list(scores)
    return {k: (round(100 * sum(v) / len(v), 2) if v else math.nan) for k, v in groups.items()}


def average_over_tasks(per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per bucket, the mean over tasks of the task scores (tasks with an empty bucket left out), 2 decimals."""
    out = {}
    for key in (*BUCKETS, "all"):
        values = [s[key] for s in per_task.values() if not math.isnan(s[key])]
        out[key] = round(sum(values) / len(values), 2) if values else math.nan
    return out
