"""ropelab's own Table 3 numbers (Wu et al. 2024, disturbance of PI, YaRN and DPRoPE on LLaMA2, b = 360), pinned
tightly: test_methods.py checks them against the paper within 0.5-1%, which a change of a few 1e-3 survives.

The values are what ``make_plan(...).disturbance`` gives in this repository, identical over repeated runs and with
1 or 2 torch threads; a change to the method code that moves them by more than 1e-6 (relative) must be deliberate.
"""

import pytest

from ropelab import RopeSpec, make_plan

LLAMA2 = RopeSpec.preset("llama2-7b")

PINNED = {  # (method, target length, precision): disturbance
    ("pi", 8192, "exact"): 0.02406195961953648, ("pi", 8192, "float32"): 0.02407973814277098,
    ("pi", 16384, "exact"): 0.033621941129463845, ("pi", 16384, "float32"): 0.0336759680981924,
    ("yarn", 8192, "exact"): 0.025605782344627598, ("yarn", 8192, "float32"): 0.02562286554399107,
    ("yarn", 16384, "exact"): 0.03543422302889765, ("yarn", 16384, "float32"): 0.03544440251341818,
    ("dprope", 8192, "exact"): 0.006716739740637656, ("dprope", 8192, "float32"): 0.006713912642606901,
    ("dprope", 16384, "exact"): 0.022951229398349583, ("dprope", 16384, "float32"): 0.022929661272668156,
}


@pytest.mark.parametrize("method, target, precision", sorted(PINNED))
def test_table3_values_are_pinned(method, target, precision):
    assert LLAMA2.n_pairs == 64 and LLAMA2.original_length == 4096 and LLAMA2.theta == 10000.0  # input sanity
    value = make_plan(method, LLAMA2, target, precision=precision).disturbance
    assert value == pytest.approx(PINNED[(method, target, precision)], rel=1e-6, abs=0)


def test_precisions_differ_by_more_than_the_pin():
    """The pin tells the two precisions apart (float32 angles move every value by 1e-4 .. 2e-3 relative)."""
    for method, target, _ in [k for k in PINNED if k[2] == "exact"]:
        exact, single = PINNED[(method, target, "exact")], PINNED[(method, target, "float32")]
        assert abs(single / exact - 1) > 1e-4
