"""The dtype a profile's forwards really run in on this CPU: bfloat16 only where the CPU multiplies it natively.

A zero-shot profile names ``bfloat16`` because the machine the committed figures were made on (an Intel Xeon with
AVX-512 BF16 and AMX) runs a 4k forward of SmolLM2-135M ~1.8x faster in it than in float32. A CPU without
bfloat16 dot products (AVX2-only x86, such as AMD EPYC before Zen 4, or Arm without FEAT_BF16) converts every
operand instead: measured on an AMD EPYC with AVX2 (torch 2.13.0, 1 thread), a 1024 x 1024 matmul ~56x slower
than float32, and a 1k-token SmolLM2 forward (2 threads) 19.0 s against 4.9 s. There the profile computes in
float32, which rounds less, and says so once; the result caches are keyed on the dtype really used.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from ropelab.determinism import cpuinfo_field

CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512 BF16, AMX; Arm FEAT_BF16


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The feature flags of the first CPU in ``cpuinfo`` (x86 ``flags``, Arm ``Features``); None where unreadable."""
    value = cpuinfo_field(("flags", "Features"), str(cpuinfo))
    return None if value is None else frozenset(value.split())


def native_bfloat16(flags: Iterable[str] | None) -> bool | None:
    """Whether a CPU with these feature flags multiplies bfloat16 natively; None when the flags are unknown."""
    return None if flags is None else bool(NATIVE_BF16_FLAGS & set(flags))


def compute_dtype(dtype: str, device: str, flags: Iterable[str] | None = None) -> str:
    """``dtype``, or ``"float32"`` for ``"bfloat16"`` on a CPU known to lack native bfloat16 (with a warning).

    ``flags`` defaults to this machine's (:func:`cpu_flags`); unknown flags (not Linux) keep ``dtype``.
    """
    if dtype != "bfloat16" or device != "cpu":
        return dtype
    if native_bfloat16(cpu_flags() if flags is None else flags) is False:
        warnings.warn("this CPU has no native bfloat16 (no avx512_bf16, amx_bf16 or bf16 flag): computing in "
                      "float32 (emulated bfloat16 multiplies several times slower)", stacklevel=2)
        return "float32"
    return dtype
