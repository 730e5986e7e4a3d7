#!/usr/bin/env bash
# The tests that pin numbers, again under a second instruction set.
#   scripts/other_isa.sh                MKL, ATen (torch), oneDNN and NumPy limited to their AVX2 kernels. On an
#                                       AVX-512 machine this is what an older Intel CPU computes; on an AVX2
#                                       machine it is a no-op rerun. ~1 min on 2 cores (part of make test).
#   scripts/other_isa.sh --emulate-amd  the same tests in qemu-user emulating an AMD EPYC-Rome CPU: CPUID says
#                                       AuthenticAMD with AVX2 and no AVX-512, so every library picks its kernels
#                                       as it would on that CPU (vendor checks included). Needs qemu-x86_64
#                                       (Debian/Ubuntu: apt-get install qemu-user); ~26 min on one core (make
#                                       test-emulated-amd, not part of make test).
# Float32 results that move here move on a user's machine: pin them with a measured tolerance or make them
# ISA-independent (docs/numerics.md).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
TESTS=(tests/test_table3.py tests/test_methods.py tests/test_selection.py tests/test_angles.py tests/test_divergence.py
  tests/test_spec.py tests/test_hf.py tests/test_stats.py tests/test_perplexity.py tests/test_elementary.py)

if [[ "${1:-}" == "--emulate-amd" ]]; then
  shift
  command -v qemu-x86_64 >/dev/null || { echo "emulated AMD: qemu-x86_64 not found; install qemu-user (Debian/Ubuntu: apt-get install qemu-user)" >&2; exit 2; }
  # TCG lacks a few EPYC-Rome features it warns about once per process; they are not SIMD ones
  run() { qemu-x86_64 -cpu EPYC-Rome "$PY" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2); }
  run scripts/cpu_report.py
  # one process: a pytest-xdist worker would be exec'd natively, outside the emulator
  run -m pytest -q -m "not slow" -p no:cacheprovider -p no:xdist "$@" "${TESTS[@]}"
  exit
fi

# NumPy refuses to disable a feature the CPU lacks: name only the AVX-512 ones present here, and NumPy 2.4's
# X86_V4 group (its AVX-512 kernels dispatch on the group: naming the AVX512* features alone leaves them on)
npy_off=$("$PY" -c "from numpy._core._multiarray_umath import __cpu_features__ as f; print(','.join(k for k, v in f.items() if v and (k.startswith('AVX512') or k == 'X86_V4')))")
run() { MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 NPY_DISABLE_CPU_FEATURES="$npy_off" "$PY" "$@"; }
echo "other ISA: MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 NPY_DISABLE_CPU_FEATURES=${npy_off:-<none>}"
run scripts/cpu_report.py
run -m pytest -q -n 2 -m "not slow" -p no:cacheprovider "$@" "${TESTS[@]}"
