"""Vectorisable float64 exp, sigmoid, tanh and log for the numba kernels.

``np.exp`` / ``np.tanh`` / ``np.log`` are scalar libm calls that LLVM cannot
vectorise (no SVML), which made sigmoid/tanh training steps 2-4x slower than
relu. The functions here use only +, *, /, compares and integer bit
operations, so a loop over a tile row compiles to packed AVX code. They are
``inline="always"`` so that they compile with the caller's flags; the
activation registry in ``mlp.py`` and the shared-bias kernel in
``shared_bias.py`` call them.
"""
import numpy as np
from numba import njit

# Accuracy (float64): <= ~2.2 ulp relative against mpmath over |z| up to 800,
# incl. z -> 0 for tanh; sigmoid saturates to 0/1, tanh to +-1, without
# overflow; NaN stays NaN. Callers compile them with error_model="numpy" (no
# ZeroDivisionError branch, which blocks vectorisation) and may add
# fastmath={"contract"} (FMA); never "reassoc", which would fold the
# round-to-integer trick (y + _SHIFTER) - _SHIFTER away.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01   # ln 2 rounded to 32 bits: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10   # ln 2 - _LN2_HI
_SHIFTER = 6755399441055744.0          # 1.5 * 2**52: t + _SHIFTER rounds t to an integer
_SHIFTER_BITS = int(np.float64(_SHIFTER).view(np.int64))   # ... held in the low bits
_EXPONENT_ONE = 1023 << 52             # bit pattern of 1.0 (2**k is (k + 1023) << 52)


@njit(cache=True, inline="always")
def reduce_ln2(y):
    """(k, r) with y = k ln2 + r, k = round(y / ln 2) an integer, |r| <= ln2/2 (Cody-Waite)."""
    t = y * _LOG2E + _SHIFTER
    kf = t - _SHIFTER                          # k as a float
    k = np.float64(t).view(np.int64) - _SHIFTER_BITS   # ... and as an integer
    return k, (y - kf * _LN2_HI) - kf * _LN2_LO


@njit(cache=True, inline="always")
def sigmoid_from_exp(z, e):
    """sigmoid(z) from e = exp(-|z|) in (0, 1]: no overflow for any z."""
    u = 1.0 / (1.0 + e)
    return u if z >= 0 else e * u


@njit(cache=True, inline="always")
def exp_split(y):
    """(s, q) with exp(y) = s * (1 + q) for float64 y <= 0; s = 2**k, q = expm1(r), |r| <= ln2/2."""
    y = -745.5 if y < -745.5 else y            # exp(-745.5) rounds to 0; NaN passes through
    k, r = reduce_ln2(y)
    # expm1(r) = r + r^2 (1/2! + r/3! + ... + r^11/13!), Horner; truncation < 1e-17
    p = 1.6059043836821613e-10
    p = p * r + 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    q = r + (r * r) * p
    # 2**k as two normal powers of two, so k down to -1076 underflows gracefully
    ka = k >> 1
    s = (np.int64((ka << 52) + _EXPONENT_ONE).view(np.float64)
         * np.int64(((k - ka) << 52) + _EXPONENT_ONE).view(np.float64))
    return s, q


@njit(cache=True, inline="always")
def exp_nonpositive(y):
    """exp(y) for float64 y <= 0 (underflows gracefully to 0; NaN stays NaN)."""
    s, q = exp_split(y)
    return s + s * q


@njit(cache=True, inline="always")
def sigmoid_for_float32(z):
    """sigmoid(z) in float64 accurate enough to round correctly to float32: a
    shorter expm1 polynomial (truncation < 1e-15 relative, against float32's
    half ulp of 6e-8) and one power-of-two factor, since exp(-104) already
    rounds to 0 in float32. About a third cheaper than ``fast_sigmoid``."""
    y = -abs(z)
    y = -104.0 if y < -104.0 else y           # NaN passes through
    k, r = reduce_ln2(y)
    # p = sum_{i=0..9} r^i / (i+2)!, as even and odd halves in r^2: two
    # independent Horner chains of 5 (the loop is bound by the chain's latency)
    r2 = r * r
    pe = 2.755731922398589e-07                 # 1/10!, 1/8!, ..., 1/2!
    pe = pe * r2 + 2.48015873015873e-05
    pe = pe * r2 + 0.001388888888888889
    pe = pe * r2 + 0.041666666666666664
    pe = pe * r2 + 0.5
    po = 2.505210838544172e-08                 # 1/11!, 1/9!, ..., 1/3!
    po = po * r2 + 2.7557319223985893e-06
    po = po * r2 + 0.0001984126984126984
    po = po * r2 + 0.008333333333333333
    po = po * r2 + 0.16666666666666666
    q = r + r2 * (pe + r * po)                 # expm1(r)
    s = np.int64((k << 52) + _EXPONENT_ONE).view(np.float64)   # 2**k, k >= -151
    return sigmoid_from_exp(z, s + s * q)


@njit(cache=True, inline="always")
def fast_sigmoid(z):
    """1 / (1 + exp(-z)) in float64 from e = exp(-|z|) in (0, 1]: no overflow."""
    return sigmoid_from_exp(z, exp_nonpositive(-abs(z)))


@njit(cache=True, inline="always")
def fast_tanh(z):
    """tanh(z) = -m / (2 + m) * sign(z), m = expm1(-2|z|): no cancellation near 0."""
    s, q = exp_split(-2.0 * abs(z))
    m = (s - 1.0) + s * q                      # expm1(-2|z|) in [-1, 0]
    t = -m / (2.0 + m)
    return t if z >= 0 else -t


# ------------------------------------------------------------------------ log
_SQRT2 = 1.4142135623730951
_MANTISSA_BITS = (1 << 52) - 1
_TWO52_BITS = int(np.float64(2.0 ** 52).view(np.int64))     # 2**52 + e has bits _TWO52_BITS | e


@njit(cache=True, inline="always")
def log_normal(x):
    """log(x) for normal x > 0 (NaN, +inf pass through): x = 2^e m, log m = 2 atanh((m-1)/(m+1))."""
    bits = np.float64(x).view(np.int64)
    m = np.int64((bits & _MANTISSA_BITS) | _EXPONENT_ONE).view(np.float64)      # [1, 2)
    e = np.int64((bits >> 52) | _TWO52_BITS).view(np.float64) - (2.0 ** 52 + 1023)
    big = m > _SQRT2
    m = 0.5 * m if big else m                  # m in [sqrt(1/2), sqrt(2))
    e = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)                  # |s| < 0.172
    z = s * s
    # atanh(s) / s - 1 = z/3 + z^2/5 + ... + z^11/23, Horner; truncation < 1e-18
    p = 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    v = e * _LN2_HI + (2.0 * s + (2.0 * s * (z * p) + e * _LN2_LO))
    return v if x <= 1.7976931348623157e308 else x
