"""Vectorisable scalar math for the numba kernels: exp of a non-positive argument,
log1p on [0, 1], and dtype-generic constants.

Why not ``math.exp``?  With ``fastmath=False`` numba lowers it to a call into
libm, which LLVM cannot vectorise: the loop then runs one element at a time
(~4x slower than the memory floor on the benchmark shapes).  The functions
below use only +, ×, comparisons/selects, float→int conversion and a bit cast,
all of which LLVM turns into SIMD code.  They are written for the arguments
the kernels produce (``t ≤ 0`` after the max shift), so no overflow path is
needed.

Accuracy: Cody–Waite range reduction ``t = n·ln2 + r`` with ``|r| ≤ ln2/2``,
then a polynomial: a fitted degree-5 minimax one for float32 (1.6e-7
relative), Taylor to degree 13 for float64 (``0.347¹⁴/14! ≈ 4e-18``).
Results are within a few ulp of ``np.exp``;
results that would be subnormal are flushed to 0 below ``2^-126`` (float32) /
``2^-1022`` (float64), which cannot change a softmax sum (its largest term is
exactly 1) and changes a probability by less than the dtype's tiniest normal.
"""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# ln 2 to 40 digits (a mathematical constant), split as hi + lo where hi has
# few enough significant bits that n·hi is exact for every n the kernels see:
# that is what makes the reduction t − n·ln2 accurate (Cody & Waite).
getcontext().prec = 50
_LN2 = Decimal("0.6931471805599453094172321214581765680755")


def _split_ln2(bits: int, dtype):
    hi = Decimal(int(_LN2 * (1 << bits))) / Decimal(1 << bits)
    return dtype(float(hi)), dtype(float(_LN2 - hi))


LN2HI_32, LN2LO_32 = _split_ln2(15, np.float32)  # |n| ≤ 127 (7 bits) + 15 bits < 24
LN2HI_64, LN2LO_64 = _split_ln2(40, np.float64)  # |n| ≤ 1023 (10 bits) + 40 bits < 53
LOG2E_32 = np.float32(1.4426950408889634)
LOG2E_64 = np.float64(1.4426950408889634)
# Adding 1.5·2^23 (2^52) forces rounding to an integer in the current rounding
# mode (round-to-nearest) without a libm call: the classic "magic number" round.
MAGIC_32 = np.float32(12582912.0)
MAGIC_64 = np.float64(6755399441055744.0)


@intrinsic
def _f32_from_bits(typingctx, i):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _f64_from_bits(typingctx, i):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _bits_of_f32(typingctx, f):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_of_f64(typingctx, f):
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


# exp(r) ≈ 1 + r·(E1 + r·(E2 + …)) on |r| ≤ ln2/2, float32: degree 5, coefficients
# fitted for minimax *relative* error (Lawson's iteratively reweighted least
# squares, constant term pinned to 1 so that exp(0) = 1 exactly: the row max
# contributes exactly 1 to a softmax sum).  Max relative error of the float32
# Horner evaluation: 1.6e-7 (≈1.4 ulp), vs 64 ulp of test tolerance; degree 5
# instead of Taylor's 7 saves four of the ~25 vector operations per element,
# and exp throughput is what bounds the kernels (see docs/performance.md).
E1_32 = np.float32(0.9999997019767761)
E2_32 = np.float32(0.4999915063381195)
E3_32 = np.float32(0.1666763573884964)
E4_32 = np.float32(0.041897911578416824)
E5_32 = np.float32(0.008290297351777554)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def exp_le0_f32(t):
    # −inf and very negative t clamp to −88 (result 0 after the scale below);
    # the comparison is false for NaN, so NaN stays NaN and propagates.
    t = np.float32(-88.0) if t < np.float32(-88.0) else t
    y = t * LOG2E_32 + MAGIC_32
    nf = y - MAGIC_32
    r = (t - nf * LN2HI_32) - nf * LN2LO_32
    p = E5_32
    p = p * r + E4_32
    p = p * r + E3_32
    p = p * r + E2_32
    p = p * r + E1_32
    p = p * r + np.float32(1.0)
    # 2^n straight into the exponent field: after the magic add, the low
    # mantissa bits of y hold n in two's complement, so (bits(y) + 127) << 23 is
    # the float 2^n (the magic's own bits shift out).  n ≥ −127 by the clamp;
    # n = −127 gives the bit pattern 0, i.e. the flush to zero described above.
    # A NaN t gives garbage scale bits, but p is NaN and NaN·anything = NaN.
    return p * _f32_from_bits((_bits_of_f32(y) + np.int32(127)) << np.int32(23))


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def exp_le0_f64(t):
    t = -709.0 if t < -709.0 else t
    y = t * LOG2E_64 + MAGIC_64
    nf = y - MAGIC_64
    r = (t - nf * LN2HI_64) - nf * LN2LO_64
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _f64_from_bits((_bits_of_f64(y) + np.int64(1023)) << np.int64(52))


def exp_le0(t):
    """``exp(t)`` for ``t ≤ 0`` (or NaN), in ``t``'s precision (numba only)."""
    raise NotImplementedError


@overload(exp_le0)
def _ol_exp_le0(t):
    if t == types.float32:
        return lambda t: exp_le0_f32(t)
    return lambda t: exp_le0_f64(t)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def log1p_01_f32(u):
    # log1p(u) for u in [0, 1] via 2·atanh(s): log(1+u) = 2·atanh(u/(2+u)) has
    # no cancellation for tiny u.  Above √2−1 we use log(1+u) = ln2 + log((1+u)/2)
    # = ln2 + 2·atanh((u−1)/(u+3)), so |s| ≤ 0.172 on both branches and four
    # series terms give float32 accuracy (s⁸/9 < 6e-8·s).
    big = u > np.float32(0.41421356)
    num = (u - np.float32(1.0)) if big else u
    den = (u + np.float32(3.0)) if big else (u + np.float32(2.0))
    s = num / den
    s2 = s * s
    q = np.float32(1.0 / 9.0)
    q = q * s2 + np.float32(1.0 / 7.0)
    q = q * s2 + np.float32(1.0 / 5.0)
    q = q * s2 + np.float32(1.0 / 3.0)
    q = q * s2 + np.float32(1.0)
    v = np.float32(2.0) * s * q
    return (LN2HI_32 + (LN2LO_32 + v)) if big else v


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def log1p_01_f64(u):
    big = u > 0.41421356237309503
    num = (u - 1.0) if big else u
    den = (u + 3.0) if big else (u + 2.0)
    s = num / den
    s2 = s * s
    # |s| ≤ 0.172, s² ≤ 0.0295: terms through s²⁴/25 leave < 1e-17 relative.
    q = 1.0 / 25.0
    q = q * s2 + 1.0 / 23.0
    q = q * s2 + 1.0 / 21.0
    q = q * s2 + 1.0 / 19.0
    q = q * s2 + 1.0 / 17.0
    q = q * s2 + 1.0 / 15.0
    q = q * s2 + 1.0 / 13.0
    q = q * s2 + 1.0 / 11.0
    q = q * s2 + 1.0 / 9.0
    q = q * s2 + 1.0 / 7.0
    q = q * s2 + 1.0 / 5.0
    q = q * s2 + 1.0 / 3.0
    q = q * s2 + 1.0
    v = 2.0 * s * q
    return (LN2HI_64 + (LN2LO_64 + v)) if big else v


def log1p_01(u):
    """``log1p(u)`` for ``u ∈ [0, 1]`` (or NaN), in ``u``'s precision (numba only)."""
    raise NotImplementedError


@overload(log1p_01)
def _ol_log1p_01(u):
    if u == types.float32:
        return lambda u: log1p_01_f32(u)
    return lambda u: log1p_01_f64(u)


def cst(value, like):
    """``value`` as a constant of ``like``'s float type (numba only).

    Mixing a Python float literal into float32 arithmetic would promote it to
    float64 in numba, silently changing both speed and rounding.
    """
    raise NotImplementedError


@overload(cst)
def _ol_cst(value, like):
    if like == types.float32:
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)
