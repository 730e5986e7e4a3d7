"""The zero-shot profile (``configs/zeroshot/<name>.yaml``): model, documents, variants, retrieval grid, search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ropelab.config import load_config
from ropelab.eval.ruler.scoring import RULER_THRESHOLD as PASS_THRESHOLD  # RULER's absolute bar (Llama-2-7B at 4k)

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class RetrievalConfig:
    """The retrieval grid: passkey, NIAH and RULER prompts at ``lengths``, the same prompts for every variant.

    Passkey: ``passkey_samples`` prompts per length. RULER: ``ruler_samples`` samples per length of each task of
    ``ruler_tasks`` (``ruler_task_samples`` overrides the count per task). The key of a passkey prompt and the
    needle of a single-needle RULER task sit at depths spread over ``depths`` = (lo, hi) by a golden-ratio
    sequence (:func:`ropelab.eval.ruler.evaluate.spread_depth`), so the first n samples are spread for every n and
    a larger grid only adds prompts. NIAH (the Paul Graham needle): one prompt per depth of ``niah_depths``
    (() skips it).
    """

    variants: tuple = ()  # labels of the variants scored on retrieval (a subset of ``variants``; () = all)
    lengths: tuple = (4096, 8192, 12288, 16384)  # prompt lengths in tokens
    passkey_samples: int = 2  # passkey prompts per length (0 skips passkey)
    depths: tuple = (0.1, 0.9)  # (lo, hi): where keys and single needles sit, as a fraction of the filler
    niah_depths: tuple = ()  # needle depths in the Paul Graham essays; () skips NIAH
    ruler_tasks: tuple = ()  # RULER tasks (ropelab.eval.ruler.TASKS) at the same lengths; () skips RULER
    ruler_samples: int = 1  # samples per RULER task and length
    ruler_task_samples: dict = field(default_factory=dict)  # task -> samples, overriding ruler_samples
    pass_threshold: float = PASS_THRESHOLD  # RULER's absolute effective-length bar, reported beside the relative one
    seed: int = 0  # passkey keys and RULER samples

    def __post_init__(self) -> None:
        for name in ("variants", "lengths", "depths", "niah_depths", "ruler_tasks"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        check_lengths("retrieval.lengths", self.lengths, allow_empty=True)
        for name in ("depths", "niah_depths"):
            bad = [d for d in getattr(self, name) if not 0.0 <= float(d) <= 1.0]
            if bad:
                raise ValueError(f"retrieval.{name} must be fractions in [0, 1], got {bad[0]!r}")
        if len(self.depths) != 2 or self.depths[0] > self.depths[1]:
            raise ValueError(f"retrieval.depths must be [lo, hi] with lo <= hi, got {list(self.depths)}")
        check_count("retrieval.passkey_samples", self.passkey_samples, low=0)
        check_count("retrieval.ruler_samples", self.ruler_samples)
        if not isinstance(self.ruler_task_samples, Mapping):
            raise ValueError(f"retrieval.ruler_task_samples must map task -> samples, got {self.ruler_task_samples!r}")  # noqa: TRY004 (config errors are ValueError)
        for task, n in self.ruler_task_samples.items():
            check_count(f"retrieval.ruler_task_samples.{task}", n)
            if task not in self.ruler_tasks:
                raise ValueError(f"retrieval.ruler_task_samples names {task!r}, which is not in ruler_tasks "
                                 f"({', '.join(self.ruler_tasks) or 'none'})")
        if not 0.0 < float(self.pass_threshold) <= 1.0:
            raise ValueError(f"retrieval.pass_threshold must be in (0, 1], got {self.pass_threshold!r}")
        if self.ruler_tasks:
            from ropelab.eval.ruler.tasks import check_tasks

            check_tasks(list(self.ruler_tasks))

    def samples_of(self, task: str) -> int:
        """RULER samples per length of ``task``."""
        return int(self.ruler_task_samples.get(task, self.ruler_samples))


@dataclass(frozen=True)
class SearchVariantConfig:
    """A searched variant: :func:`ropelab.rope.search.coordinate_search` (LongRoPE2's idea, Shang et al. 2025, sec. 3.3)
    from ``start``'s factors against the needle-driven perplexity (:func:`ropelab.eval.ruler.needle_perplexity`)
    of the loaded model, zero-shot; the plan it finds is then scored as one more variant.

    Documents kept apart: the objective's NIAH samples put their needles in a haystack of ``corpus``/``split``
    (default the Shakespeare *train* plays) instead of the Paul Graham essays, and draw keys, values and depths
    from ``seed``. What is reported uses other text: the perplexity the profile's documents, the passkey its
    filler, NIAH and RULER the Paul Graham essays with ``retrieval.seed`` (which must differ).
    """

    label: str = "dprope_search"  # the variant's label in every table and figure
    start: str = "dprope"  # registry method the search starts from: the paper's argmin rule (dprope_robust's fix is
    #                        reported beside it, so the search is compared with the hand-made fix, not built on it)
    options: dict = field(default_factory=dict)  # the start method's options (e.g. {bins: 360})
    budget: int = 12  # objective evaluations, the start's included (each: `samples` forwards of `length` tokens)
    task: str = "niah_single_2"  # the objective's NIAH task (ropelab.eval.ruler.TASKS, family niah)
    samples: int = 2  # NIAH samples per evaluation
    length: int | None = None  # their length in tokens (None: target_length)
    seed: int = 1  # draws the objective's needles; must differ from retrieval.seed
    corpus: str = "shakespeare"  # ropelab.data corpus of the haystack (essay-haystack tasks)
    split: str = "train"  # its split: must not be a perplexity split of the same corpus
    values: tuple = ()  # factors a pair may take, within [1, s] (() = 1, sqrt(s), s)

    def __post_init__(self) -> None:
        from ropelab.data import SPLITS, check_corpus
        from ropelab.eval.ruler.tasks import TASKS, check_tasks

        object.__setattr__(self, "values", tuple(float(v) for v in self.values or ()))
        check_count("search.budget", self.budget)
        check_count("search.samples", self.samples)
        check_count("search.seed", self.seed, low=0)
        if self.length is not None:
            check_count("search.length", self.length, low=2)
        allowed = static_methods(exclude=("none",))
        if self.start not in allowed:
            raise ValueError(f"search.start {self.start!r} is not a static registry method; allowed: "
                             f"{', '.join(allowed)}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"search.options must be a mapping of {self.start} options, got {self.options!r}")  # noqa: TRY004 (a bad config)
        check_tasks([self.task])
        if TASKS[self.task].family != "niah":
            niah = ", ".join(t for t, v in TASKS.items() if v.family == "niah")
            raise ValueError(f"search.task {self.task!r} is not a NIAH task; allowed: {niah}")
        check_corpus(self.corpus)
        if self.corpus == "paul_graham":
            raise ValueError("search.corpus 'paul_graham' is the reported NIAH/RULER haystack; use another corpus")
        if self.split not in (*SPLITS, "all"):
            raise ValueError(f"search.split {self.split!r} is not allowed; allowed: {', '.join(SPLITS)}, all")
        if not self.label or ":" in self.label:
            raise ValueError(f"search.label must be a non-empty name without ':', got {self.label!r}")


@dataclass(frozen=True)
class ZeroShotConfig:
    """One zero-shot profile (``configs/zeroshot/<name>.yaml``).

    ``documents`` lists the perplexity documents as ``{corpus, split, docs}`` sets: the first ``docs`` documents
    (in id order) of ``corpus``/``split`` that are at least ``max(ppl_lengths)`` tokens long.
    """

    name: str = "quick"  # label of the profile
    model: str = "smollm2-135m"  # the pretrained model: smollm2-135m (offline), a local folder or a hub id
    dtype: str = "bfloat16"  # weights and activations; AVX-512 BF16 runs a 4k forward ~1.8x faster; a CPU without
    #                          native bfloat16 computes in float32 instead (ropelab.runtime.cpu_dtype)
    threads: int = 2  # torch threads, pinned while the work runs (the numbers depend on it)
    device: str = "cpu"  # torch device; "auto": cuda when torch sees a GPU
    target_length: int = 16384  # L' of every plan
    documents: tuple = ({"corpus": "shakespeare", "split": "test", "docs": 3},)  # perplexity document sets
    ppl_lengths: tuple = (2048, 4096, 8192, 12288, 16384)  # truncated-perplexity lengths in tokens
    prefill_chunk: int | None = None  # perplexity pass this many tokens at a time through the KV cache (None: one
    #                                   pass): for sliding-window models at long lengths (ropelab.eval.prefix)
    variants: dict = field(default_factory=lambda: {"none": {"method": "none"}})  # label -> {method, options...}
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    search: SearchVariantConfig | None = None  # a searched variant (scored like the others); None: no search

    def __post_init__(self) -> None:
        object.__setattr__(self, "ppl_lengths", tuple(int(n) for n in self.ppl_lengths))
        object.__setattr__(self, "documents", tuple(_document_set(d) for d in self.documents or ()))
        check_lengths("ppl_lengths", self.ppl_lengths)
        if not self.documents:
            raise ValueError("documents must list at least one {corpus, split, docs} set")
        if not isinstance(self.variants, Mapping) or not self.variants:
            raise ValueError(f"variants must be a non-empty mapping label -> {{method: ..}}, got {self.variants!r}")
        static = static_methods()
        for label, spec in self.variants.items():
            if not isinstance(spec, Mapping) or "method" not in spec:
                raise ValueError(f"variant {label!r} needs a 'method' key, got {spec!r}")
            if spec["method"] not in static:
                raise ValueError(f"variant {label!r}: method {spec['method']!r} is not a static registry method "
                                 f"(the one-pass perplexity needs frequencies that do not follow the sequence "
                                 f"length); allowed: {', '.join(static)}")
        if self.search is not None:
            _check_search(self)
        unknown = [v for v in self.retrieval.variants if v not in self.labels]
        if unknown:
            raise ValueError(f"retrieval variant {unknown[0]!r} is not in variants ({', '.join(self.labels)})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not allowed; allowed: {', '.join(DTYPES)}")
        for name in ("threads", "target_length"):
            check_count(name, getattr(self, name))
        if self.prefill_chunk is not None:
            check_count("prefill_chunk", self.prefill_chunk, low=16)

    @property
    def labels(self) -> tuple:
        """Every variant's label: ``variants``, then the searched one."""
        return (*self.variants, *((self.search.label,) if self.search is not None else ()))

    @property
    def retrieval_variants(self) -> tuple:
        return self.retrieval.variants or self.labels


def static_methods(exclude: Sequence[str] = ()) -> list[str]:
    """Registry methods whose frequencies do not follow the sequence length (``register(dynamic=True)``)."""
    from ropelab.rope.plan import DYNAMIC_METHODS
    from ropelab.rope.registry import METHODS

    return [m for m in METHODS if m not in DYNAMIC_METHODS and m not in exclude]


def _document_set(entry: Any) -> dict[str, Any]:
    from ropelab.data import SPLITS, check_corpus

    if not isinstance(entry, Mapping) or set(entry) - {"corpus", "split", "docs"} or "corpus" not in entry:
        raise ValueError(f"documents entries must be {{corpus, split, docs}} mappings, got {entry!r}")
    split, docs = entry.get("split", "test"), entry.get("docs", 1)
    check_corpus(entry["corpus"])
    if split not in (*SPLITS, "all"):
        raise ValueError(f"documents split {split!r} is not allowed; allowed: {', '.join(SPLITS)}, all")
    check_count(f"documents[{entry['corpus']}].docs", docs)
    return {"corpus": str(entry["corpus"]), "split": split, "docs": docs}


def _check_search(cfg: ZeroShotConfig) -> None:
    """The search block against the rest of the profile: its label is new, its documents are not reported."""
    search = cfg.search
    if search.label in cfg.variants:
        raise ValueError(f"search.label {search.label!r} is already a variant; give the searched one another label")
    if search.seed == cfg.retrieval.seed:
        raise ValueError(f"search.seed {search.seed} is retrieval.seed: the objective's needles would be the "
                         f"reported ones; pick another seed")
    for d in cfg.documents:
        if search.corpus == d["corpus"] and (search.split == d["split"] or "all" in (search.split, d["split"])):
            raise ValueError(f"search.split {search.split!r} of {search.corpus} overlaps the perplexity documents "
                             f"({d['corpus']}/{d['split']}); pick another split or corpus")


def load_zeroshot_config(source: str | Path | Mapping = "quick",
                         overrides: Mapping[str, Any] | None = None) -> ZeroShotConfig:
    """A ZeroShotConfig from a profile name (configs/zeroshot/<name>.yaml), a YAML path or a dict."""
    if isinstance(source, str) and "/" not in source and not source.endswith((".yaml", ".yml")):
        source = f"zeroshot/{source}"
    return load_config(ZeroShotConfig, source, overrides)


def with_ruler_tasks(cfg: ZeroShotConfig, tasks: str) -> ZeroShotConfig:
    """``cfg`` with its RULER grid cut to ``tasks`` (comma-separated names of its ``ruler_tasks``; "" keeps them all):
    one part of a grid too large for one session, run alone and pooled with the other parts afterwards
    (``ropelab pool``). A task's prompts do not depend on which other tasks are drawn, so a part's prompts are the
    whole grid's (:func:`ropelab.experiments.zeroshot.run.retrieval_prompts` draws each task on its own)."""
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        return cfg
    allowed = cfg.retrieval.ruler_tasks
    unknown = [t for t in names if t not in allowed]
    if unknown:
        raise ValueError(f"ruler_tasks {tasks!r}: {unknown[0]!r} is not a RULER task of profile {cfg.name}; allowed: "
                         f"{', '.join(allowed) or 'none'}")
    kept = tuple(t for t in allowed if t in names)  # the profile's order, so a part's figures list tasks alike
    samples = {t: n for t, n in cfg.retrieval.ruler_task_samples.items() if t in kept}
    return replace(cfg, retrieval=replace(cfg.retrieval, ruler_tasks=kept, ruler_task_samples=samples))


def check_lengths(name: str, lengths: Sequence, allow_empty: bool = False) -> None:
    if not lengths and not allow_empty:
        raise ValueError(f"{name} must list at least one length")
    bad = [n for n in lengths if isinstance(n, bool) or not isinstance(n, int) or n < 2]
    if bad:
        raise ValueError(f"{name} must be integers >= 2 (tokens), got {bad[0]!r}")


def check_count(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
