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

# the interpolated dimensions the paper's n_hat rule chose on LLaMA2 (d = 128), per target length (sec. 4.1)
N_HAT = {8192: 80, 16384: 64}


def scaled_n_hat(rotary_dim: int, target_length: int = 8192) -> int:
    """The paper's n_hat for LLaMA2 at ``target_length`` carried to a model of ``rotary_dim`` dimensions at the
    same ratio (80 / 128 at 2x), rounded to the nearest whole pair (a half pair up)."""
    if target_length not in N_HAT:
        raise ValueError(f"the paper gives n_hat at {sorted(N_HAT)}, not at {target_length!r}")
    return 2 * math.floor(rotary_dim * N_HAT[target_length] / 128 / 2 + 0.5)
