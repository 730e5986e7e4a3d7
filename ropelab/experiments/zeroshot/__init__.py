"""Notebook 06's real-model experiment: every extension method zero-shot on a pretrained model past its window."""

from ropelab.experiments.zeroshot.config import (
    RetrievalConfig,
    SearchVariantConfig,
    ZeroShotConfig,
    load_zeroshot_config,
    with_ruler_tasks,
)
from ropelab.experiments.zeroshot.run import pinned_threads, run_zero_shot, with_retention

__all__ = ["RetrievalConfig", "SearchVariantConfig", "ZeroShotConfig", "load_zeroshot_config", "pinned_threads",
           "run_zero_shot", "with_retention", "with_ruler_tasks"]
