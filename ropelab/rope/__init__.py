"""The RoPE mathematics and the methods: a model's rotary spec, exact angle histograms, divergences, the one
registry of extension methods (baselines and DPRoPE) and the plans they make. Imports nothing of ropelab above it.

Importing this package registers every method: the baselines, then DPRoPE's rules (the registry's order).
"""

import ropelab.rope.baselines
import ropelab.rope.dprope  # noqa: F401
