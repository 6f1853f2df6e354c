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

/* atanh(s)/s = 1 + z·q(z), z = s², |s| ≤ 3 − 2√2: q's coefficients (degree 7, for
 * double precision; error 1.2e-18), shared by ck_log1p and ck_vmath.h's vlog1p01 */
#define CK_ATANH_Q(z, q)                                                                                        \
    do {                                                                                                       \
        q = q * (z) + 0.07657011629448783;                                                                     \
        q = q * (z) + 0.09091782665426212;                                                                     \
        q = q * (z) + 0.11111099277550673;                                                                     \
        q = q * (z) + 0.14285714371275515;                                                                     \
        q = q * (z) + 0.19999999999707002;                                                                     \
        q = q * (z) + 0.3333333333333367;                                                                      \
    } while (0)
#define CK_ATANH_Q7 0.07398119019136869

/* log1p(S) for S ≥ 0 (the off-argmax mass of a row).  For S ≤ √2 − 1, which is
 * every confident row, 2·atanh(s) with s = S/(2 + S) computed to about half an
 * ulp (the rounding errors of 2 + S and of the division are corrected), then the
 * polynomial of ck_vmath.h's vlog1p01: within 0.75 ulp (measured against mpmath
 * on 1e-300..4) and faster than libm's log1p.  Larger S: libm. */
static inline double ck_log1p(double S)
{
    if (!(S <= 0.41421356237309503)) {
        if (S > 1.0)
            return log(1.0 + S); /* ≥ ln 2: the rounding of 1 + S costs under half an ulp */
        return log1p(S);         /* (and NaN stays NaN) */
    }
    double d = 2.0 + S;
    double dlo = (2.0 - d) + S;            /* 2 + S = d + dlo exactly (Fast2Sum, 2 ≥ S) */
    double s0 = S / d;
    double s1 = (fma(-s0, d, S) - s0 * dlo) / d; /* s = s0 + s1: S − s0·(d + dlo) is nearly exact */
    double z = s0 * s0;
    double q = CK_ATANH_Q7;
    CK_ATANH_Q(z, q);
    double s2 = s0 + s0; /* 2·atanh(s) = 2s0 + (2s1 + 2s·s²·q(s²)): one final rounding */
    return s2 + (2.0 * s1 + (s2 * z) * q);
}

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
