"""Shared test set-up. Every test process, and every kernel or subprocess it starts, uses one thread that waits
passively: tiny models run ~30x faster that way than two spinning OpenMP threads on a busy 2-core machine
(measured), and ``pytest -n 2`` then shares the two cores instead of oversubscribing them.

This is for speed only: no number depends on it. Pre-training, fine-tuning and the study pin their own numerics
(:mod:`ropelab.determinism`), so a model the tests put in the cache is the one a notebook would have made."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

torch.set_num_threads(1)
