"""Shared test set-up: under ``pytest -n 2`` each worker (and every kernel or subprocess it starts) uses one thread,
so two workers share the two cores instead of oversubscribing them."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    torch.set_num_threads(1)
