"""Haystacks and word lists of the RULER tasks (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?", sec. 3; NVIDIA/RULER ``scripts/data/synthetic/niah.py``).

* noise: RULER's repeated sentence, the passkey filler (:data:`ropelab.eval.passkey.FILLER`);
* essay: the Paul Graham essays of :func:`ropelab.eval.niah.haystack_text`, as a list of words (whitespace runs
  collapsed to one space, then split on spaces, as RULER does); cut to ``n`` words and split into sentences;
* words: the noun, adjective and verb lists of the ``wonderwords`` package (the lists RULER draws from), read from
  its data files. NIAH keys are "adjective-noun" pairs (:func:`key_word`); CWE draws single words.

RULER splits sentences with NLTK's Punkt; here a sentence ends at ``.``, ``!`` or ``?`` followed by white space
(no NLTK data, which would need a download). Needles then go between sentences, as in RULER.
"""

from __future__ import annotations

import functools
import re

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@functools.cache
def essay_words() -> tuple[str, ...]:
    """The Paul Graham essays as words, in file-name order."""
    from ropelab.eval.niah import haystack_text

    return tuple(re.sub(r"\s+", " ", haystack_text()).split(" "))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``, ``!`` or ``?`` followed by white space."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def _word_file(name: str) -> list[str]:
    import importlib.resources

    try:
        text = importlib.resources.files("wonderwords.assets").joinpath(name).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        raise FileNotFoundError("the RULER word lists are missing: pip install wonderwords") from None
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@functools.cache
def word_lists() -> dict[str, tuple[str, ...]]:
    """``{"nouns", "adjectives", "verbs"}`` of ``wonderwords``, each in file order."""
    return {kind: tuple(_word_file(f"{stem}list.txt"))
            for kind, stem in (("nouns", "noun"), ("adjectives", "adjective"), ("verbs", "verb"))}


def key_word(rng) -> str:
    """A NIAH word key: an "adjective-noun" pair. RULER draws from the sorted set of all pairs (~6 million
    strings); drawing the two words independently gives the same distribution without building it."""
    lists = word_lists()
    return f"{rng.choice(lists['adjectives'])}-{rng.choice(lists['nouns'])}"


@functools.cache
def common_words() -> tuple[str, ...]:
    """CWE's vocabulary: nouns, adjectives and verbs, sorted and unique."""
    lists = word_lists()
    return tuple(sorted({*lists["nouns"], *lists["adjectives"], *lists["verbs"]}))
