"""Pinned numerics: the torch settings under which every saved number is computed, and the key of those settings.

CPU kernels split their reductions (matmul, sums, softmax) across threads, so float32 results change in the last
bits with the thread count, and training amplifies last bits into visible differences (the quick tiny model's held-out ppl at 32 tokens came
out 49.94 or 52.22 depending on whether the tests, under one thread, or the notebooks, under two, pre-trained it). So the work itself --
pre-training (:func:`ropelab.experiments.tiny.pretrain`), fine-tuning (:func:`ropelab.train.finetune`), the study's runs
and evaluations (:mod:`ropelab.experiments.study.run`, :func:`ropelab.experiments.tiny.window_report`) -- runs inside :func:`pinned_numerics`,
whoever calls it: a test, a notebook or the CLI. Every cache of such results is keyed on :func:`numerics_key`, so
an entry computed under other settings is never reused. The evaluation primitives of :mod:`ropelab.eval` are not
pinned (they cache nothing, and their speed on many threads is benchmarked); the notebook runner starts every
kernel with one OpenMP thread, so what notebooks compute with them directly is pinned in ``make reproduce`` too.

What is pinned: one intra-op thread, deterministic algorithms (``warn_only``: ops without a deterministic kernel
warn rather than fail), cuDNN without autotuning. Seeds stay with the work (:func:`seed_everything`
in each entry point, from its config). Inter-op threads are not pinned: torch uses them only for ``torch.jit.fork``
tasks, never in these computations, and they can be set once per process only.

What is not pinned: the machine. torch and numpy pick SIMD kernels by CPU (AVX2 or AVX-512), and library
versions change kernels, so another kind of machine gives other last bits. :func:`machine_fingerprint` names
those inputs; ``figures/machine.json`` records them beside the committed figures (``tests/test_reproduce.py``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

THREADS = 1  # intra-op threads of every saved computation: the only count that every machine can run
VERSION = 1  # bump when the pinned settings change: every keyed cache entry is then recomputed


def numerics_key() -> dict[str, Any]:
    """The pinned settings as a dict, for cache keys (part of the payload of :func:`ropelab.io.content_key`)."""
    return {"threads": THREADS, "deterministic": True, "version": VERSION}


@contextlib.contextmanager
def pinned_numerics() -> Iterator[None]:
    """Run the block (or, as ``@pinned_numerics()``, the function) under the pinned settings; restore them after."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode (read at CUDA init)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]


# Environment variables that choose other SIMD kernels on the same CPU (scripts/other_isa.sh sets them)
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "NPY_DISABLE_CPU_FEATURES", "MKL_CBWR")


def machine_fingerprint() -> dict[str, Any]:
    """What besides the pinned settings decides the last bits: CPU, SIMD levels in use, library versions."""
    import importlib.metadata

    versions = {}
    for name in ("torch", "numpy", "transformers", "tokenizers", "matplotlib", "scipy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_simd": numpy_simd(),
        "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if os.environ.get(k)},
        "python": platform.python_version_tuple()[0] + "." + platform.python_version_tuple()[1],
        "versions": versions,
    }


def _cpu_model() -> str:
    return cpuinfo_field(("model name",)) or platform.processor() or "unknown"


def cpuinfo_field(names: tuple[str, ...], cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The value of the first line of ``cpuinfo`` (the first CPU's) whose field is one of ``names``; None where the
    file is unreadable (not Linux) or has no such field."""
    with contextlib.suppress(OSError), open(cpuinfo, encoding="utf-8") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name.strip() in names:
                return value.strip()
    return None


def numpy_simd() -> list[str]:
    """numpy's dispatched SIMD extensions that this CPU has (what ``numpy.show_runtime()`` lists as found)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        return []
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run: the one seed function."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
