"""RULER's synthetic tasks (Hsieh et al. 2024, sec. 3 and table 2): one generator per family, fitted to a length
in tokens of the model's tokenizer.

Templates, answer prefixes, generation lengths and metrics are those of NVIDIA/RULER ``scripts/synthetic.yaml``,
``scripts/data/synthetic/constants.py`` and ``scripts/eval/synthetic/constants.py`` (the same strings as
lm-eval's ``lm_eval/tasks/ruler``); the generators follow ``scripts/data/synthetic/{niah, variable_tracking,
common_words_extraction, freq_words_extraction, qa}.py``. A prompt is the task template with the answer prefix
appended (RULER's ``base`` model template: no chat wrapper), and it fits when its tokens plus the task's
``max_new_tokens`` are at most the requested length; the haystack size is the largest that fits, found by binary
search as RULER does.

Where this differs from RULER, for reproducibility (and said where it happens): every sample is a pure function
of (task, length, index, seed), drawn from its own ``random.Random``, so that samples do not depend on how many
were asked for or in what order, and the haystack size is searched per sample; sentences are split by
:func:`ropelab.eval.ruler.haystacks.split_sentences` instead of NLTK; a haystack too short for the length (the
essays, CWE's word list) is an error instead of being repeated.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ropelab.eval.prompts import FILLER as NOISE  # RULER's noise sentence is the passkey filler
from ropelab.eval.ruler.haystacks import common_words, essay_words, key_word, split_sentences

NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
NIAH_TEMPLATE = ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
                 "I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
                 "{type_needle_v} for {query} mentioned in the provided text?")
NIAH_ANSWER_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
VT_TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
               "Question: Find all variables that are assigned the value {query} in the text above.")
VT_ANSWER_PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables "
                    "are assigned the value {query}, they are: ")
CWE_TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
                "ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above "
                "list?")
CWE_ANSWER_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = ("Read the following coded text and track the frequency of each coded word. Find the three most "
                "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore "
                "the dots '....'. What are the three most frequently appeared words in the above coded text?")
FWE_ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
QA_TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any other "
               "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
               "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}")
QA_ANSWER_PREFIX = " Answer:"
QA_DOCUMENT = "Document {i}:\n{document}"
DEPTHS = tuple(round(100 * i / 39) for i in range(40))  # RULER: np.round(np.linspace(0, 100, 40)), in percent
VT_ICL_LENGTH = 500  # RULER's one in-context example of variable tracking is fitted to 500 tokens


@dataclass(frozen=True)
class RulerTask:
    """One RULER task: its family's generator options, tokens to generate and metric ("all" or "part")."""

    name: str
    family: str  # niah | vt | cwe | fwe | qa
    max_new_tokens: int
    metric: str
    options: dict[str, Any] = field(default_factory=dict)


def _niah(name: str, haystack: str, key: str, value: str, k: int = 1, v: int = 1, q: int = 1) -> RulerTask:
    return RulerTask(name, "niah", 128, "all", {"haystack": haystack, "type_needle_k": key, "type_needle_v": value,
                                                "num_needle_k": k, "num_needle_v": v, "num_needle_q": q})


# RULER scripts/synthetic.yaml; tokens to generate and metrics from its two constants.py
TASKS: dict[str, RulerTask] = {t.name: t for t in (
    _niah("niah_single_1", "noise", "words", "numbers"),
    _niah("niah_single_2", "essay", "words", "numbers"),
    _niah("niah_single_3", "essay", "words", "uuids"),
    _niah("niah_multikey_1", "essay", "words", "numbers", k=4),
    _niah("niah_multikey_2", "needle", "words", "numbers"),
    _niah("niah_multikey_3", "needle", "uuids", "uuids"),
    _niah("niah_multivalue", "essay", "words", "numbers", v=4),
    _niah("niah_multiquery", "essay", "words", "numbers", q=4),
    RulerTask("vt", "vt", 30, "all", {"num_chains": 1, "num_hops": 4}),
    RulerTask("cwe", "cwe", 120, "all", {"freq_cw": 30, "freq_ucw": 3, "num_cw": 10, "num_fewshot": 1}),
    RulerTask("fwe", "fwe", 50, "all", {"alpha": 2.0, "coded_wordlen": 6}),
    RulerTask("qa_1", "qa", 32, "part", {"dataset": "squad"}),
    RulerTask("qa_2", "qa", 32, "part", {"dataset": "hotpotqa"}),
)}
SYNTHETIC_TASKS = tuple(name for name, task in TASKS.items() if task.family != "qa")


@dataclass(frozen=True)
class RulerSample:
    """One prompt: ``prompt`` (input + answer prefix) and its token ids, the reference answers (``outputs``), the
    token ids of :func:`answer_text` (what needle perplexity scores) and, for NIAH and VT, where each needle
    (chain line) sits, as a fraction of the context, in context order."""

    task: str
    length: int
    index: int
    seed: int
    prompt: str
    answer_prefix: str
    outputs: tuple[str, ...]
    ids: tuple[int, ...]
    max_new_tokens: int
    metric: str
    answer_ids: tuple[int, ...] = ()
    depths: tuple[float, ...] = ()

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Built:
    """What a generator builds for a haystack size: the texts and answers of one sample."""

    input: str
    answer_prefix: str
    outputs: tuple[str, ...]
    depths: tuple[float, ...] = ()


def sample_rng(task: str, length: int, index: int, seed: int) -> random.Random:
    """The random stream of one sample: ``random.Random`` seeded by a string, the same on every run and platform."""
    return random.Random(f"ruler|{task}|{length}|{index}|{seed}")


# --------------------------------------------------------------------------------------------- needle values
def random_value(rng: random.Random, kind: str) -> str:
    """A key or value as in RULER's niah.py: a 7-digit number, an adjective-noun word pair or a UUID4."""
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "words":
        return key_word(rng)
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle type {kind!r}; allowed: numbers, words, uuids")


# --------------------------------------------------------------------------------------------- NIAH
class NiahBuilder:
    """RULER ``niah.py``: needles "One of the special magic {numbers} for {key} is: {value}." in a noise, essay or
    needle (distractor needles) haystack of ``n`` units (sentences, words, distractors). ``words`` replaces the
    essays of an essay haystack (e.g. held-out text that nothing reported uses); None: the Paul Graham essays."""

    def __init__(self, task: RulerTask, rng: random.Random, words: Sequence[str] | None = None,
                 depth: float | None = None):
        self.words = None if words is None else tuple(words)
        o = task.options
        self.haystack, self.type_v = o["haystack"], o["type_needle_v"]
        num_k = max(o["num_needle_k"], o["num_needle_q"])  # RULER: at least as many keys as queries
        keys, values, needles = [], [], []
        for _ in range(num_k):
            keys.append(random_value(rng, o["type_needle_k"]))
            values.append([random_value(rng, self.type_v) for _ in range(o["num_needle_v"])])
            needles += [NEEDLE.format(type_needle_v=self.type_v, key=keys[-1], value=v) for v in values[-1]]
        rng.shuffle(needles)
        self.keys, self.needles = keys, needles
        queried = rng.sample(range(num_k), o["num_needle_q"])
        queries = [keys[i] for i in queried]
        self.outputs = tuple(a for i in queried for a in values[i])
        self.query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
        self.depths = sorted(rng.sample(DEPTHS, len(needles)))  # essay: depths in percent of the sentences
        self.layout_seed = rng.getrandbits(64)  # positions (noise) and distractors (needle) depend on n
        if depth is not None and len(needles) != 1:
            raise ValueError(f"{task.name} has {len(needles)} needles: a fixed depth needs a single-needle task")
        self.depth = depth  # a single needle's depth as a fraction of the haystack (None: RULER's random depth)
        if depth is not None:
            self.depths = [100 * depth]
        self.type_k = o["type_needle_k"]
        template, type_v = NIAH_TEMPLATE + NIAH_ANSWER_PREFIX, self.type_v
        if o["num_needle_q"] * o["num_needle_v"] == 1:  # RULER's singular wording for a single answer
            for plural, singular in (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer")):
                template = template.replace(plural, singular)
            type_v = type_v[:-1]
        self.template, self.type_v_text = template, type_v

    def min_units(self) -> int:
        return len(self.needles)  # noise and needle haystacks place each needle before a distinct unit

    def max_units(self) -> int | None:
        return len(self.essay()) if self.haystack == "essay" else None

    def essay(self) -> tuple[str, ...]:
        return essay_words() if self.words is None else self.words

    def __call__(self, n: int) -> Built:
        rng = random.Random(self.layout_seed)
        if self.haystack == "essay":
            sentences = split_sentences(" ".join(self.essay()[:n]))
            at = [int(len(sentences) * d / 100) for d in self.depths]
            pieces, depths, done = [], [], 0
            for position, needle in zip(at, self.needles):
                pieces.append(" ".join(sentences[done:position]))
                pieces.append(needle)
                depths.append(position / max(len(sentences), 1))
                done = position
            pieces.append(" ".join(sentences[done:]))
            context = " ".join(pieces)
        else:
            if self.haystack == "noise":
                lines = [NOISE] * n
            else:  # "needle": the haystack is distractor needles with other keys
                lines = []
                while len(lines) < n:
                    key = random_value(rng, self.type_k)
                    if key not in self.keys:
                        lines.append(NEEDLE.format(type_needle_v=self.type_v, key=key,
                                                   value=random_value(rng, self.type_v)))
            at = sorted(rng.sample(range(n), len(self.needles)), reverse=True)
            if self.depth is not None:
                at = [round(self.depth * n)]
            for position, needle in zip(at, self.needles):
                lines.insert(position, needle)
            context = "\n".join(lines)
            depths = sorted(p / n for p in at)
        text = self.template.format(type_needle_v=self.type_v_text, context=context, query=self.query)
        cut = text.rindex(NIAH_ANSWER_PREFIX[:10])
        return Built(text[:cut], text[cut:], self.outputs, tuple(depths))


# --------------------------------------------------------------------------------------------- variable tracking
def _variables(rng: random.Random, count: int, letters: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if name not in names:
            names.append(name)
    return names


def _chain_context(rng: random.Random, chain: Sequence[str], n: int) -> tuple[str, tuple[float, ...]]:
    """RULER's noise haystack of ``n`` sentences with the chain's lines inserted in order at random places."""
    lines = [NOISE] * n
    at = sorted(rng.sample(range(n), len(chain)))
    for j, (position, link) in enumerate(zip(at, chain)):
        lines.insert(position + j, link)
    total = len(lines)
    depths = tuple((position + j) / total for j, position in enumerate(at))
    return "\n".join(lines).replace(". \n", ".\n"), depths


class VariableTrackingBuilder:
    """RULER ``variable_tracking.py``: a chain "VAR A = 12345", "VAR B = VAR A ", ... in the noise haystack; the
    answer is every variable in the chain. One in-context example (3-letter names, fitted to 500 tokens), its
    answer and a newline go before the prompt, as RULER's default ``add_fewshot`` does."""

    def __init__(self, task: RulerTask, rng: random.Random, count: Callable[[str], int]):
        hops = task.options["num_hops"]
        self.vars = _variables(rng, hops + 1, 5)
        self.value = str(rng.randint(10000, 99998))  # np.random.randint(10000, 99999): the high end is excluded
        self.chain = [f"VAR {self.vars[0]} = {self.value}"] + [f"VAR {self.vars[j + 1]} = VAR {self.vars[j]} "
                                                               for j in range(hops)]
        icl_vars = _variables(rng, hops + 1, 3)
        icl_value = str(rng.randint(10000, 99998))
        icl_chain = [f"VAR {icl_vars[0]} = {icl_value}"] + [f"VAR {icl_vars[j + 1]} = VAR {icl_vars[j]} "
                                                            for j in range(hops)]
        icl_seed, self.layout_seed = rng.getrandbits(64), rng.getrandbits(64)

        def icl(n: int) -> str:
            context, _ = _chain_context(random.Random(icl_seed), icl_chain, n)
            return (VT_TEMPLATE.format(context=context, query=icl_value)
                    + VT_ANSWER_PREFIX.format(num_v=hops + 1, query=icl_value) + " " + " ".join(icl_vars) + "\n")

        try:
            size = fit_units(lambda n: count(icl(n)), VT_ICL_LENGTH, len(icl_chain), None, "vt's example")
        except ValueError:  # a tokenizer that needs more than 500 tokens: the smallest example, as RULER falls back
            size = len(icl_chain)
        self.example = icl(size)
        self.answer_prefix = VT_ANSWER_PREFIX.format(num_v=hops + 1, query=self.value)

    def min_units(self) -> int:
        return len(self.chain)  # one noise sentence per chain line at least, as RULER samples positions

    def max_units(self) -> int | None:
        return None

    def __call__(self, n: int) -> Built:
        context, depths = _chain_context(random.Random(self.layout_seed), self.chain, n)
        text = self.example + "\n" + VT_TEMPLATE.format(context=context, query=self.value)
        return Built(text, self.answer_prefix, tuple(self.vars), depths)


# --------------------------------------------------------------------------------------------- common words
class CommonWordsBuilder:
    """RULER ``common_words_extraction.py``: a numbered list where ``num_cw`` words appear ``freq_cw`` times and
    ``n - num_cw`` others ``freq_ucw`` times (6 and 1 below 4096 tokens, as RULER), after one solved example."""

    def __init__(self, task: RulerTask, rng: random.Random, length: int):
        o = task.options
        self.num_cw = o["num_cw"]
        short = length < 4096
        shot_words, shot_cw, shot_ucw = (20, 3, 1) if short else (40, 10, 3)
        self.freq_cw, self.freq_ucw = (6, 1) if short else (o["freq_cw"], o["freq_ucw"])
        self.vocabulary = common_words()
        shots = []
        for _ in range(o["num_fewshot"]):
            context, common = self._example(rng, shot_words, shot_cw, shot_ucw)
            shots.append(CWE_TEMPLATE.format(context=context) + CWE_ANSWER_PREFIX + " " + _numbered(common))
        self.shots = "\n".join(shots)
        self.layout_seed = rng.getrandbits(64)

    def _example(self, rng: random.Random, num_words: int, freq_cw: int, freq_ucw: int) -> tuple[str, list[str]]:
        chosen = rng.sample(self.vocabulary, num_words)
        common, uncommon = chosen[: self.num_cw], chosen[self.num_cw:]
        words = common * freq_cw + uncommon * freq_ucw
        rng.shuffle(words)
        return _numbered(words), common

    def min_units(self) -> int:
        return self.num_cw + 1

    def max_units(self) -> int | None:
        return len(self.vocabulary)

    def __call__(self, n: int) -> Built:
        context, common = self._example(random.Random(self.layout_seed), n, self.freq_cw, self.freq_ucw)
        return Built(self.shots + "\n" + CWE_TEMPLATE.format(context=context), CWE_ANSWER_PREFIX, tuple(common))


def _numbered(words: Sequence[str]) -> str:
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(words))


# --------------------------------------------------------------------------------------------- frequent words
def zeta(alpha: float) -> float:
    """Riemann zeta at ``alpha`` > 1 (the normaliser of RULER's Zipf counts; RULER calls scipy.special.zeta)."""
    from scipy.special import zeta as scipy_zeta

    return float(scipy_zeta(alpha))


class FrequentWordsBuilder:
    """RULER ``freq_words_extraction.py``: ``length // 50`` random 6-letter words, the k-th repeated
    ``int(n k^-alpha / zeta(alpha))`` times and shuffled; the first is "..." (noise), the answer is words 2-4."""

    def __init__(self, task: RulerTask, rng: random.Random, length: int):
        o = task.options
        size = max((length - task.max_new_tokens) // 50, 5)  # RULER's vocab_size default
        vocabulary: set[str] = set()
        while len(vocabulary) < size:
            vocabulary.add("".join(rng.choices(string.ascii_lowercase, k=o["coded_wordlen"])))
        words = sorted(vocabulary)
        rng.shuffle(words)
        words[0] = "..."
        self.words, self.alpha = words, o["alpha"]
        self.norm = zeta(self.alpha)
        self.layout_seed = rng.getrandbits(64)

    def min_units(self) -> int:
        return 200  # below this the counts of words 2-5 tie or vanish

    def max_units(self) -> int | None:
        return None

    def __call__(self, n: int) -> Built:
        text = [w for k, w in enumerate(self.words, 1) for _ in range(int(n * k ** -self.alpha / self.norm))]
        random.Random(self.layout_seed).shuffle(text)
        return Built(FWE_TEMPLATE.format(context=" ".join(text)), FWE_ANSWER_PREFIX, tuple(self.words[1:4]))


# --------------------------------------------------------------------------------------------- QA
class QABuilder:
    """RULER ``qa.py``: the question's own documents (squad: with the other paragraphs of its article first),
    then random others, shuffled, as "Document i:\\n..." blocks; ``n`` documents."""

    def __init__(self, task: RulerTask, rng: random.Random, index: int, qa: Any):
        if index >= len(qa.questions):
            raise ValueError(f"{task.name}: sample {index} needs question {index + 1} but the QA file has "
                             f"{len(qa.questions)}")
        self.qa, self.question = qa, qa.questions[index]
        self.layout_seed = rng.getrandbits(64)

    def min_units(self) -> int:
        return len(self.question.documents)

    def max_units(self) -> int | None:
        return len(self.qa.documents)

    def __call__(self, n: int) -> Built:
        rng = random.Random(self.layout_seed)
        own, more = list(self.question.documents), list(self.question.more_documents)
        if n - len(own) > len(more):
            taken = set(own + more)
            others = [i for i in range(len(self.qa.documents)) if i not in taken]
            chosen = own + more + rng.sample(others, n - len(own) - len(more))
        else:
            chosen = own + rng.sample(more, n - len(own))
        docs = [self.qa.documents[i] for i in chosen]
        rng.shuffle(docs)
        context = "\n\n".join(QA_DOCUMENT.format(i=i + 1, document=d) for i, d in enumerate(docs))
        return Built(QA_TEMPLATE.format(context=context, query=self.question.query), QA_ANSWER_PREFIX,
                     tuple(self.question.answers))


# --------------------------------------------------------------------------------------------- fitting
def fit_units(count: Callable[[int], int], budget: int, lo: int, hi: int | None, what: str, reserve: int = 0) -> int:
    """The largest haystack size in [lo, hi] whose prompt has at most ``budget`` tokens (binary search, as RULER).

    Raises ValueError when even ``lo`` units are too long (naming the least length: that plus ``reserve``), or when ``hi`` units (the whole haystack) still leave
    room: the haystack is shorter than asked.
    """
    smallest = count(lo)
    if smallest > budget:
        raise ValueError(f"{what} is too short: its shortest prompt has {smallest} tokens (+{reserve} generated); "
                         f"give a length >= {smallest + reserve}")
    probe = lo + 8 if hi is None else min(lo + 8, hi)
    rate = max((count(probe) - smallest) / (probe - lo), 1e-3) if probe > lo else 1.0  # tokens per unit
    good, tokens, bad = lo, smallest, None
    while bad is None:  # secant steps from below until a size overshoots
        guess = good + max(1, int((budget - tokens) / rate))
        if hi is not None:
            if good >= hi:
                raise ValueError(f"{what}: the haystack is too short: all of it ({hi} units) fits in {budget} "
                                 "tokens")
            guess = min(guess, hi)
        size = count(guess)
        if size > budget:
            bad = guess
        else:
            good, tokens, rate = guess, size, max((size - smallest) / (guess - lo), 1e-3)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if count(mid) <= budget else (good, mid)
    return good


def build_sample(task: RulerTask | str, length: int, index: int, seed: int, tokenizer: Any,
                 qa: Any = None, *, haystack_words: Sequence[str] | None = None,
                 depth: float | None = None) -> RulerSample:
    """The sample ``index`` of ``task`` at ``length`` tokens: a pure function of (task, length, index, seed, depth)
    and the tokenizer. ``qa`` is the parsed QA file of the QA tasks (:func:`ropelab.eval.ruler.qa.read_qa_file`);
    ``haystack_words`` replaces the Paul Graham essays of the essay-haystack NIAH tasks (None: the essays);
    ``depth`` puts the needle of a single-needle NIAH task at that fraction of the haystack (None: RULER's random
    depth)."""
    task = TASKS[task] if isinstance(task, str) else task
    rng = sample_rng(task.name, length, index, seed)

    def count(text: str) -> int:
        return len(tokenizer(text).input_ids)

    if task.family == "niah":
        builder: Any = NiahBuilder(task, rng, haystack_words, depth)
    elif depth is not None:
        raise ValueError(f"depth is for single-needle NIAH tasks, not {task.name}")
    elif task.family == "vt":
        builder = VariableTrackingBuilder(task, rng, count)
    elif task.family == "cwe":
        builder = CommonWordsBuilder(task, rng, length)
    elif task.family == "fwe":
        builder = FrequentWordsBuilder(task, rng, length)
    else:
        if qa is None:
            raise ValueError(f"{task.name} needs a QA file (RULER's {task.options['dataset']} JSON)")
        builder = QABuilder(task, rng, index, qa)
    what = f"{task.name} at length {length}"
    n = fit_units(lambda units: count(_prompt(builder(units))), length - task.max_new_tokens,
                  builder.min_units(), builder.max_units(), what, reserve=task.max_new_tokens)
    built = builder(n)
    prompt = _prompt(built)
    answer = tokenizer(answer_text(built.outputs), add_special_tokens=False).input_ids
    return RulerSample(task.name, length, index, seed, prompt, built.answer_prefix, built.outputs,
                       tuple(tokenizer(prompt).input_ids), task.max_new_tokens, task.metric, tuple(answer),
                       built.depths)


def answer_text(outputs: Sequence[str]) -> str:
    """The reference answer as a continuation of the answer prefix: a space, then the values joined by ", "."""
    return " " + ", ".join(outputs)


def _prompt(built: Built) -> str:
    return built.input + built.answer_prefix


def check_tasks(names: Sequence[str]) -> list[str]:
    """``names`` as a list of known tasks; ValueError naming the unknown ones and the allowed names."""
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise ValueError(f"unknown RULER task(s) {', '.join(map(repr, unknown)) or '(none given)'}; allowed: "
                         f"{', '.join(TASKS)}")
    return list(names)

