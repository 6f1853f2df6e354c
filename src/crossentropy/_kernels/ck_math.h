/* Scalar math shared by the kernels; the vector math is ck_vmath.h.
 *
 * Vector math (ck_vmath.h): GCC/Clang vector extensions, one native register wide.
 *
 * Every function here is `static inline` with no target attribute, so that it is
 * inlined into each ISA variant of the kernels (ck_kern.h) and compiled for that
 * ISA: a 64-byte vector is one zmm register with AVX-512, two ymm with AVX2, four
 * xmm on the x86-64 baseline or NEON.  No libm call sits in a loop (libm calls
 * cannot be vectorised), no -ffast-math: every operation is IEEE, NaN and ±inf
 * propagate, subnormals are produced and kept.  Only a·b + c may be fused into
 * one FMA (-ffp-contract=fast), which is at least as exact.
 *
 * Two precisions of exp are used:
 *   vexp_lo  for float32 data computed in double: relative error ≤ 2e-9
 *            (0.03 ulp of float32), degree-6 polynomial;
 *   vexp_hi  for float64 data: ≤ 1.2e-17 from the polynomial (0.1 ulp), so the
 *            result is within ~0.6 ulp, with an argument correction `dl` (the
 *            rounding error of x − max, see ck_ce_t.h) and subnormal results.
 * Both give exp(0) = 1 exactly (constant term 1) and exp(−inf) = 0.
 * The polynomial coefficients come from scripts/kernel_coefficients.py
 * (near-minimax fits of relative error, computed with mpmath).
 */
#ifndef CK_MATH_H
#define CK_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef int64_t i64;

#define CK_INLINE static inline __attribute__((always_inline))

/* ln 2 = LN2HI + LN2LO with LN2HI holding 40 significant bits: n·LN2HI is exact
 * for |n| < 2^13, which makes the Cody–Waite reduction t − n·ln2 accurate. */
#define CK_LN2HI 0.6931471805592082
#define CK_LN2LO 7.371002565167799e-13
#define CK_LOG2E 1.4426950408889634
/* 1.5·2^52: adding it rounds to an integer (round-to-nearest), and the low bits
 * of the sum hold that integer in two's complement (no float→int conversion,
 * which AVX2 lacks for 64-bit lanes). */
#define CK_MAGIC 6755399441055744.0
#define CK_MAGIC_BITS 0x4338000000000000LL

/* ---- compensated accumulation (TwoSum, Knuth): s + c carries the exact sum ---- */
CK_INLINE void twosum_acc(double *s, double *c, double e)
{
    double t = *s + e;
    double bp = t - *s;
    *c += (*s - (t - bp)) + (e - bp);
    *s = t;
}

/* ---- scalars (per row): libm, which is correctly rounded or nearly so ---- */

/* exp(a − b) for a ≤ b, with the rounding error of a − b folded in */
static inline double ck_exp_diff(double a, double b, int exact)
{
    double d = a - b;
    if (!exact || !isfinite(d))
        return exp(d);
    double bp = d - a;
    double lo = (a - (d - bp)) + (-b - bp);
    double e = exp(d);
    return e + e * lo;
}

#endif
