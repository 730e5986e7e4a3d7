"""What every retrieval prompt shares, with no evaluation behind it: the passkey prompt's text (Mohtashami & Jaggi
2023, sec. 4.2; RULER reuses its filler as noise and the fine-tuning mixture its lines), the golden-ratio spread of
needle depths, and the warning for lengths past the model's window. Imports nothing of ropelab, so the evaluations
(passkey, NIAH, RULER, LongBench) and the training mixture can all use it without importing each other."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
GOLDEN = (5 ** 0.5 - 1) / 2  # 1 / phi


def spread_depth(depths: Sequence[float], index: int) -> float | None:
    """Depth of sample ``index`` within ``depths`` = (lo, hi): ``lo + (hi - lo) frac(1/2 + index / phi)``, a
    golden-ratio sequence, so that the first n samples are spread over the range for every n (a larger grid only
    adds samples); None without depths."""
    if not depths:
        return None
    lo, hi = float(depths[0]), float(depths[-1])
    return lo + (hi - lo) * ((0.5 + index * GOLDEN) % 1.0)


def model_window(model: Any) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "max_position_embeddings", None)


def warn_beyond_window(model: Any, lengths: Sequence[int], what: str) -> None:
    """Lengths past the model's configured window are allowed (that is what extension is for), with a warning."""
    window = model_window(model)
    if window is not None and max(lengths) > window:
        warnings.warn(f"{what} length {max(lengths)} is beyond the model's configured window {window}", stacklevel=3)
