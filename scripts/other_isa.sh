#!/usr/bin/env bash
# The tests that pin numbers, again under a second instruction set: MKL, ATen (torch) and NumPy limited to their
# AVX2 kernels. On an AVX-512 machine this is what an AMD EPYC or an older Intel CPU computes; on an AVX2 machine
# it is a no-op rerun. Float32 results that move here move on a user's machine: pin them with a measured tolerance
# or make them ISA-independent (docs/numerics.md). ~1 min on 2 cores.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
# NumPy refuses to disable a feature the CPU lacks: name only the AVX-512 ones present here
npy_off=$("$PY" -c "import numpy as n; from numpy._core._multiarray_umath import __cpu_features__ as f; print(','.join(k for k, v in f.items() if v and k.startswith('AVX512')))")
echo "other ISA: MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 NPY_DISABLE_CPU_FEATURES=${npy_off:-<none>}"
MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 NPY_DISABLE_CPU_FEATURES="$npy_off" \
  "$PY" -m pytest -q -n 2 -m "not slow" -p no:cacheprovider "$@" \
  tests/test_table3.py tests/test_methods.py tests/test_selection.py tests/test_angles.py tests/test_divergence.py \
  tests/test_spec.py tests/test_hf.py tests/test_stats.py tests/test_perplexity.py
