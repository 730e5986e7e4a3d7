"""The dtype a profile really computes in: bfloat16 only on a CPU that multiplies it natively."""

from __future__ import annotations

import warnings

import pytest

from ropelab.runtime import cpu_dtype
from ropelab.runtime.cpu_dtype import compute_dtype, cpu_flags, native_bfloat16

AMD_AVX2 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2\nbogomips\t: 4890\n\n"
            "processor\t: 1\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu\nbogomips\t: 4890\n")  # the first CPU's flags count
INTEL_SPR = "vendor_id\t: GenuineIntel\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("text, flags", [(AMD_AVX2, {"fpu", "sse2", "avx", "avx2", "fma", "bmi2"}),
                                         (ARM, {"fp", "asimd", "sve", "bf16", "i8mm"}),
                                         ("processor\t: 0\nmodel name\t: x\n", None)])
def test_cpu_flags_reads_the_first_cpus_flags_or_features_line(tmp_path, text, flags):
    (tmp_path / "cpuinfo").write_text(text)
    assert cpu_flags(tmp_path / "cpuinfo") == (None if flags is None else frozenset(flags))
    assert cpu_flags(tmp_path / "absent") is None


@pytest.mark.parametrize("text, native", [(AMD_AVX2, False), (INTEL_SPR, True), (ARM, True),
                                          ("flags : avx512f avx512_vnni\n", False), ("flags : amx_bf16\n", True)])
def test_native_bfloat16_needs_a_bfloat16_dot_product_flag(tmp_path, text, native):
    (tmp_path / "cpuinfo").write_text(text)
    assert native_bfloat16(cpu_flags(tmp_path / "cpuinfo")) is native
    assert native_bfloat16(None) is None


def test_bfloat16_becomes_float32_with_a_warning_only_on_a_cpu_known_to_lack_it():
    with pytest.warns(UserWarning, match="no native bfloat16"):
        assert compute_dtype("bfloat16", "cpu", flags={"avx2"}) == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_dtype("bfloat16", "cpu", flags={"avx2", "avx512_bf16"}) == "bfloat16"
        assert compute_dtype("bfloat16", "cuda", flags={"avx2"}) == "bfloat16"  # GPUs: the profile's dtype
        assert compute_dtype("float16", "cpu", flags={"avx2"}) == "float16"  # only bfloat16 is replaced
        assert compute_dtype("float32", "cpu", flags={"avx2"}) == "float32"


def test_unknown_flags_keep_the_profiles_dtype(monkeypatch):
    monkeypatch.setattr(cpu_dtype, "cpu_flags", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_dtype("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(cpu_dtype, "cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.warns(UserWarning):
        assert compute_dtype("bfloat16", "cpu") == "float32"  # the machine's flags by default
