"""Angle histograms: exact reduction, smoothing, the float32 mode of the authors' release."""

import hashlib
import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from ropelab.rope.angles import _BY_POSITION, SMOOTHING, angle_counts, angle_distribution, bin_edges, turns_fixed_point
from ropelab.rope.spec import RopeSpec

LLAMA2 = RopeSpec.preset("llama2-7b")
PINNED = json.loads((Path(__file__).parent / "fixtures" / "pinned_selection.json").read_text())["counts"]
TWO_PI = Fraction(Decimal("6.28318530717958647692528676655900576839433879875021164194988918"))


def reference_bins(theta: float, positions, bins: int) -> list[int]:
    """Bins by exact rational arithmetic: floor(frac(m * theta / 2pi) * bins)."""
    step = Fraction(theta) / TWO_PI
    return [int((m * step - int(m * step)) * bins) for m in positions]


def test_counts_match_exact_rational_reference_at_large_positions():
    theta = LLAMA2.inv_freq()
    positions = [0, 1, 4095, 65_537, 999_983, (1 << 20) - 1]
    for i in (0, 5, 22, 40, 63):
        counts_at = np.stack([angle_counts(theta[i : i + 1], m + 1)[0] - angle_counts(theta[i : i + 1], m)[0]
                              for m in positions if m > 0])
        expected = reference_bins(theta[i], [m for m in positions if m > 0], 360)
        assert counts_at.argmax(axis=1).tolist() == expected


def test_counts_sum_to_length_and_distribution_rows_sum_to_one_plus_smoothing():
    for n in (1, 17, 4096, 300_001):
        counts = angle_counts(LLAMA2.inv_freq(), n)
        assert counts.shape == (64, 360) and (counts.sum(axis=1) == n).all()
    dist = angle_distribution(LLAMA2.inv_freq(), 4096, 90)
    np.testing.assert_allclose(dist.sum(axis=1), 1 + 90 * SMOOTHING / 4096, rtol=1e-12)


def binned_one_by_one(delta: np.ndarray, n: int, bins: int) -> np.ndarray:
    """The slow reference: every position's turn m*delta mod 2^64, its top 53 bits times bins / 2^53, floored."""
    m = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        turns = delta[:, None] * m[None, :]  # (P, n)
    idx = ((turns >> np.uint64(11)).astype(np.float64) * (bins / 2.0**53)).astype(np.int64)
    return np.stack([np.bincount(row, minlength=bins) for row in idx])


@pytest.mark.parametrize("n,bins", [(40_000, 360), (123_457, 360), (65_536, 7), (50_001, 1000)])
def test_block_counts_equal_binning_every_position(n, bins):
    # past _BY_POSITION the counts come from sorted blocks; they must equal the per-position reference exactly,
    # for fast pairs, pairs near one bin per position (0.0174 rad) and pairs with few turns
    rng = np.random.default_rng(n)
    theta = np.concatenate([LLAMA2.inv_freq()[::7], [1e-3, 5e-3, 0.0174, 2 * np.pi / bins, 3.1], rng.uniform(0, 7, 4)])
    delta = turns_fixed_point(theta)
    assert n > _BY_POSITION and n % math.isqrt(n * bins)  # input sanity: block path, with a remainder
    np.testing.assert_array_equal(angle_counts(theta, n, bins), binned_one_by_one(delta, n, bins))


@pytest.mark.parametrize("bins", [2, 7, 90, 360, 1000, 4099])
def test_bin_edges_are_where_each_bin_starts(bins):
    edges = bin_edges(bins)
    assert edges.shape == (bins - 1,)
    def bin_at(turns):
        return ((turns >> np.uint64(11)).astype(np.float64) * (bins / 2.0**53)).astype(np.int64)
    np.testing.assert_array_equal(bin_at(edges), np.arange(1, bins))
    np.testing.assert_array_equal(bin_at(edges - np.uint64(1)), np.arange(0, bins - 1))


@pytest.mark.parametrize("case", PINNED, ids=lambda c: f"{c['preset']}-{c['n']}-{c['bins']}-{c['scale']}")
def test_counts_equal_those_pinned_before_the_block_counts(case):
    # sha256 of the counts the per-position / per-boundary code (commit 8cd94a6) gave, tests/fixtures
    counts = angle_counts(RopeSpec.preset(case["preset"]).inv_freq() / case["scale"], case["n"], case["bins"])
    assert hashlib.sha256(counts.astype("<i8").tobytes()).hexdigest() == case["sha256"]


def test_float32_mode_reproduces_release_loop():
    """The released selector's per-element loop, re-run here on a short length, against the vectorised float32 mode."""
    spec = RopeSpec(10000.0, 16, 256)
    inv = torch.from_numpy(spec.inv_freq("float32")).float()
    n, bins = 512, 90
    counts = torch.full((8, bins), torch.finfo(torch.float16).tiny)
    angles = (inv[:, None] * torch.arange(0, n).repeat(8, 1)) % (torch.pi * 2)
    for i in range(8):
        for j in range(n):
            counts[i][int(torch.floor((bins / (torch.pi * 2)) * angles[i][j]))] += 1
    expected = (counts / n).double().numpy()
    np.testing.assert_array_equal(angle_distribution(spec.inv_freq("float32"), n, bins, "float32"), expected)


def test_float32_drifts_from_exact_at_long_lengths():
    # docs/method.md sec. 2: float32 angles are visibly wrong past ~1e5 positions; exact mode is not.
    theta = LLAMA2.inv_freq("float32")[:8]
    n = 200_000
    exact = angle_distribution(theta, n, 360) - SMOOTHING / n
    f32 = angle_distribution(theta, n, 360, "float32") - SMOOTHING / n
    assert np.abs(exact - f32).sum(axis=1).max() > 0.01


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_length_and_bins(bad):
    with pytest.raises(ValueError, match="length must be a positive integer"):
        angle_counts(LLAMA2.inv_freq(), bad)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        angle_counts(LLAMA2.inv_freq(), 10, bins=bad if bad != 2.5 else 1)
