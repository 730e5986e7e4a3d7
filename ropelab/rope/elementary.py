"""float64 log, exp and power whose last bits do not depend on the CPU.

NumPy dispatches ``np.log``, ``np.exp`` and ``np.power`` on float64 to AVX-512 kernels where the CPU has them and
to the C library elsewhere; the two differ in the last bit (log: 0.4% of uniform values in [2^-14, 1], exp: 4.6% in
[-3, 3], measured on AVX-512), which moved the disturbances D^i (DPRoPE eq. 8) of 9 of the 12 pinned plans between
an AVX-512 and an AVX2 CPU (docs/numerics.md). Here:

* :func:`log` and :func:`exp` of arrays are built from IEEE-754 basic operations only (+, -, *, / and exact
  scalings), which round the same on every CPU and SIMD width: argument reduction by powers of two (log) or
  multiples of ln 2 split in two parts (exp), then a short series. Within 1 ulp of the C library (tests/test_elementary.py).
* :func:`power` of a scalar base is CPython's float ``**`` per element: the C library's scalar ``pow``, never a
  SIMD kernel (the inverse frequencies theta^(-2i/d) keep the C library's < 1 ulp accuracy).
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np

# ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with its low 12 significand bits zero: k * _LN2_HI is exact for |k| < 2^12
_LN2_HI = float.fromhex("0x1.62e42fefa3000p-1")
_LN2_LO = float(Decimal("0.693147180559945309417232121458176568075500134360255254120680") - Decimal(_LN2_HI))
_SQRT_HALF = math.sqrt(0.5)
# log(1+f) = 2 atanh(s), s = f / (2 + f), |s| <= 0.172: 2 * sum s^(2k+1)/(2k+1); the k <= 11 terms reach 2^-60
_ATANH = [1.0 / (2 * k + 1) for k in range(1, 12)]
# exp(r), |r| <= ln2/2: the Taylor terms up to r^13/13! reach 2^-60
_TAYLOR = [1.0 / math.factorial(k) for k in range(14)]


def log(x: np.ndarray) -> np.ndarray:
    """Natural log of positive float64 values, any shape; 0 -> -inf, inf -> inf, x < 0 or nan -> nan."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):  # 0, inf and nan take their values below
        return _log(x)


def _log(x: np.ndarray) -> np.ndarray:
    m, e = np.frexp(x)  # x = m 2^e, m in [1/2, 1) (subnormals included)
    low = m < _SQRT_HALF
    m = np.where(low, 2.0 * m, m)  # m in [sqrt(1/2), sqrt(2))
    e = (e - low).astype(np.float64)
    f = m - 1.0  # exact (Sterbenz)
    s = f / (2.0 + f)
    z = s * s
    series = np.zeros_like(z)
    for c in reversed(_ATANH):
        series = (series + c) * z  # sum_k z^k / (2k+1), k >= 1
    # 2s = f - s f, so log(1+f) = 2s (1 + series) = f - s (f - 2 series): f exact, the correction small
    log_m = f - s * (f - 2.0 * series)
    out = e * _LN2_HI + (e * _LN2_LO + log_m)
    return np.where(x > 0, np.where(np.isinf(x), np.inf, out), np.where(x == 0, -np.inf, np.nan))


def exp(x: np.ndarray) -> np.ndarray:
    """e^x of float64 values, any shape; overflows to inf, underflows to 0."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xc = np.clip(np.where(finite, x, 0.0), -746.0, 710.0)
    k = np.rint(xc / (_LN2_HI + _LN2_LO))  # |k| <= 1077: k * _LN2_HI exact
    r = (xc - k * _LN2_HI) - k * _LN2_LO  # |r| <~ ln2/2
    p = np.zeros_like(r)
    for c in reversed(_TAYLOR):
        p = p * r + c
    with np.errstate(over="ignore"):
        out = np.ldexp(p, k.astype(np.int64))  # exact scaling, rounded once where it ends subnormal
    return np.where(finite, out, np.where(np.isnan(x), np.nan, np.where(x > 0, np.inf, 0.0)))


def power(base: float, exponents: np.ndarray) -> np.ndarray:
    """base ** exponents for a scalar base, shape of ``exponents``, float64, by the C library's scalar pow."""
    flat = np.asarray(exponents, dtype=np.float64)
    return np.array([float(base) ** e for e in flat.ravel().tolist()], dtype=np.float64).reshape(flat.shape)


def geomspace(low: float, high: float, points: int) -> np.ndarray:
    """``points`` factors from low to high (both exact), evenly spaced in log, as np.geomspace, shape (points,)."""
    out = exp(np.linspace(math.log(low), math.log(high), points))
    out[0], out[-1] = low, high
    return out
