"""Angle histograms: exact reduction, smoothing, the float32 mode of the authors' release."""

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch

from ropelab.angles import SMOOTHING, angle_counts, angle_distribution, turns_fixed_point
from ropelab.spec import RopeSpec

LLAMA2 = RopeSpec.preset("llama2-7b")
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


def test_slow_and_fast_pair_paths_agree():
    # the same pair counted by position (fast path) and by bin boundaries (slow path) must agree exactly
    from ropelab.angles import _counts_by_boundary, _counts_by_position

    for theta in (1e-3, 5e-3, 0.0174):
        delta = turns_fixed_point(np.array([theta]))
        for n in (1000, 123_457):
            np.testing.assert_array_equal(_counts_by_boundary(delta, n, 360), _counts_by_position(delta, n, 360))


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
