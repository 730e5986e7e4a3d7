"""What the DPRoPE paper reports and ropelab reproduces (Wu et al., EMNLP 2024, arXiv 2410.01490): one source for
the notebooks and the tests."""

import math

# Table 3: disturbance x 1e-3 of each method on LLaMA2-7B (base 10000, d = 128, L = 4096), b = 360 bins
TABLE3 = {
    ("pi", 8192): 24.08, ("pi", 16384): 33.67,
    ("yarn", 8192): 25.55, ("yarn", 16384): 35.44,
    ("dprope", 8192): 6.71, ("dprope", 16384): 22.92,
}
# how close a reproduction must come, relative: the table's two decimals, and YaRN's ramp constants, allow no less
TABLE3_TOLERANCE = {"pi": 0.005, "yarn": 0.01, "dprope": 0.005}

# the paper's n_hat rule at 2x and 4x (sec. 4.1): 80 and 64 of LLaMA2's 128 dims, as a share of the dims
PAPER_NHAT_RATIO = {2: 80 / 128, 4: 64 / 128}


def even_dims(ratio: float, rotary_dim: int) -> int:
    """n_hat = ratio * rotary_dim rounded to the nearest whole pair (a half pair up, not Python's round-half-even),
    at least 2: the paper's ratio carried to a model of another head dimension."""
    return max(2, 2 * math.floor(ratio * rotary_dim / 2 + 0.5))
