"""ropelab: extend the context window of RoPE language models, from a distributional perspective.

    >>> import ropelab
    >>> spec = ropelab.RopeSpec.preset("llama2-7b")
    >>> plan = ropelab.make_plan("dprope", spec, 8192)
    >>> round(plan.disturbance * 1e3, 2)  # the paper's Table 3 reports 6.71
    6.72

References: Wu et al., "Extending Context Window of Large Language Models from a Distributional Perspective",
EMNLP 2024 (arXiv 2410.01490).
"""

from ropelab.rope.angles import angle_counts, angle_distribution
from ropelab.rope.divergence import DIVERGENCES, get_divergence
from ropelab.rope.plan import RopePlan
from ropelab.rope.registry import METHODS, make_plan, method_options
from ropelab.rope.scoring import Scoring, disturbance_per_pair
from ropelab.rope.spec import PRESETS, RopeSpec

__all__ = [
    "DIVERGENCES",
    "METHODS",
    "PRESETS",
    "RopePlan",
    "RopeSpec",
    "Scoring",
    "angle_counts",
    "angle_distribution",
    "disturbance_per_pair",
    "get_divergence",
    "make_plan",
    "method_options",
]
__version__ = "0.1.0"
