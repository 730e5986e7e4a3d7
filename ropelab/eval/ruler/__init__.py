"""RULER-style synthetic long-context suite (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?", COLM 2024; NVIDIA/RULER), generated offline.

    samples = generate_samples(tokenizer, tasks, lengths, samples=5, seed=0)   # once, fitted to the tokenizer
    rows, summary = evaluate_ruler(model, tokenizer, samples)                    # per model / method
    ppl = needle_perplexity(model, [s for s in samples if s.task.startswith("niah")])   # no generation

Modules: :mod:`~ropelab.eval.ruler.haystacks` (noise, essays, word lists), :mod:`~ropelab.eval.ruler.tasks`
(templates and generators), :mod:`~ropelab.eval.ruler.qa` (the local QA file), :mod:`~ropelab.eval.ruler.scoring`
(string match, effective length), :mod:`~ropelab.eval.ruler.evaluate` (generation and decoding),
:mod:`~ropelab.eval.ruler.needle_ppl` (LongRoPE2's needle-driven perplexity).
"""

from ropelab.eval.ruler.evaluate import DEFAULT_LENGTHS, evaluate_ruler, generate_samples
from ropelab.eval.ruler.needle_ppl import needle_perplexity
from ropelab.eval.ruler.scoring import effective_length, relative_threshold, summarize
from ropelab.eval.ruler.tasks import SYNTHETIC_TASKS, TASKS, RulerSample, build_sample

__all__ = ["DEFAULT_LENGTHS", "SYNTHETIC_TASKS", "TASKS", "RulerSample", "build_sample", "effective_length",
           "evaluate_ruler", "generate_samples", "needle_perplexity", "relative_threshold", "summarize"]
