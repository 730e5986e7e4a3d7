"""RULER's QA data from a local file (NVIDIA/RULER ``scripts/data/synthetic/qa.py``; its
``json/download_qa_dataset.sh`` fetches the two files): SQuAD v2 dev JSON (``{"data": [{"paragraphs": [{"context",
"qas": [{"question", "answers": [{"text"}], "is_impossible"}]}]}]}``) or HotpotQA dev JSON (``[{"question",
"answer", "context": [[title, [sentence, ...]], ...]}]``). Documents are de-duplicated and sorted, questions keep
the file's order; unanswerable SQuAD questions are dropped; HotpotQA documents are "title\\nsentences".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Question:
    query: str
    answers: tuple[str, ...]
    documents: tuple[int, ...]  # indexes of its own (golden) documents
    more_documents: tuple[int, ...] = ()  # SQuAD: the other paragraphs of the same article


@dataclass(frozen=True)
class QAData:
    dataset: str
    questions: tuple[Question, ...]
    documents: tuple[str, ...]


def read_qa_file(path: str | Path, dataset: str) -> QAData:
    """Parse ``path`` as RULER's ``dataset`` ("squad" or "hotpotqa") JSON.

    Raises ValueError in one line naming ``file:line`` (of a JSON syntax error, else of the file's start) and what
    is wrong; FileNotFoundError when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"QA file {str(path)!r} not found (RULER's {dataset} JSON)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not JSON ({error.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}:1: not UTF-8 text") from None
    try:
        return _squad(data) if dataset == "squad" else _hotpotqa(data)
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(f"{path}:1: not RULER's {dataset} JSON ({type(error).__name__}: {error})") from None


def _squad(data: Any) -> QAData:
    if not isinstance(data, dict) or "data" not in data:
        raise KeyError("'data' (a SQuAD file is an object with a 'data' list)")
    documents = sorted({p["context"] for article in data["data"] for p in article["paragraphs"]})
    index = {d: i for i, d in enumerate(documents)}
    questions = []
    for article in data["data"]:
        article_docs = [index[p["context"]] for p in article["paragraphs"]]
        for paragraph in article["paragraphs"]:
            own = index[paragraph["context"]]
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible", False):
                    questions.append(Question(qa["question"], tuple(a["text"] for a in qa["answers"]), (own,),
                                              tuple(i for i in article_docs if i != own)))
    return _checked(QAData("squad", tuple(questions), tuple(documents)))


def _hotpotqa(data: Any) -> QAData:
    if not isinstance(data, list):
        raise TypeError("a HotpotQA file is a list of questions")

    def doc(title: str, sentences: list[str]) -> str:
        return f"{title}\n{''.join(sentences)}"

    documents = sorted({doc(t, s) for item in data for t, s in item["context"]})
    index = {d: i for i, d in enumerate(documents)}
    questions = [Question(item["question"], (item["answer"],), tuple(index[doc(t, s)] for t, s in item["context"]))
                 for item in data]
    return _checked(QAData("hotpotqa", tuple(questions), tuple(documents)))


def _checked(qa: QAData) -> QAData:
    if not qa.questions:
        raise IndexError("no answerable question")
    bad = next((q for q in qa.questions if not q.answers or not all(isinstance(a, str) for a in q.answers)), None)
    if bad is not None:
        raise TypeError(f"question {bad.query!r} has no answer text")
    return qa
