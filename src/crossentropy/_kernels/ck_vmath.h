/* Vector math of one ISA: VW doubles per vector, VW = one native register
 * (8 with AVX-512, 4 with AVX2, 2 with SSE2/NEON).  Included by ck_kern.h once
 * per ISA, with VW, KSUF and KATTR defined; every name below is suffixed with
 * the ISA through the macros of ck_vnames.h.
 *
 * Why native width: GCC lowers a vector comparison wider than the hardware's
 * registers one lane at a time (scalar compares and branches), so a 64-byte
 * vector type is only fast with AVX-512.  For the same reason no comparison is
 * OR-ed with another one (GCC fuses `x >= c | x != x` into an unordered
 * predicate that it also scalarises): NaN is let through by the comparisons
 * themselves (every comparison with NaN is false).
 *
 * No libm call sits in a loop (libm calls cannot be vectorised), no -ffast-math:
 * every operation is IEEE, NaN and ±inf propagate, subnormals are produced and
 * kept.  Only a·b + c may be fused into one FMA (-ffp-contract=fast).
 *
 * Two precisions of exp:
 *   vexp_lo  float32 data computed in double: relative error ≤ 2e-9 (0.03 ulp
 *            of float32), degree-6 polynomial;
 *   vexp_hi  float64 data: ≤ 1.2e-17 from the polynomial (0.1 ulp; ≤ ~0.6 ulp in
 *            all), an argument correction `dl` (the rounding error of x − max)
 *            and subnormal results.
 * Both give exp(0) = 1 exactly (constant term 1) and exp(−inf) = 0.  The
 * coefficients are near-minimax fits of the relative error, computed with
 * mpmath by scripts/kernel_coefficients.py (a rerun gives fits of the same
 * accuracy; the last digits depend on the iteration count).
 */

typedef double vd __attribute__((vector_size(VW * 8)));
typedef int64_t vl __attribute__((vector_size(VW * 8)));
typedef uint64_t vul __attribute__((vector_size(VW * 8)));
typedef float vfh __attribute__((vector_size(VW * 4))); /* VW floats */
typedef float vff __attribute__((vector_size(VW * 8))); /* 2·VW floats */
typedef int32_t vif __attribute__((vector_size(VW * 8)));

KINL vd vsplat(double a) { return (vd){0} + a; }
KINL vl lsplat(i64 a) { return (vl){0} + a; }
/* m ? a : b, lane-wise, m being a comparison result (all ones / all zeros) */
KINL vd vsel(vl m, vd a, vd b) { return (vd)(((vl)a & m) | ((vl)b & ~m)); }
KINL vd vand(vd a, vl m) { return (vd)((vl)a & m); }
KINL vd vandn(vd a, vl m) { return (vd)((vl)a & ~m); }
KINL vd vabs(vd a) { return (vd)((vl)a & lsplat(0x7fffffffffffffffLL)); }
KINL vd vloadd(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
KINL void vstored(double *p, vd v) { memcpy(p, &v, sizeof v); }
#if VW == 8 && defined(CK_X86)
/* GCC 12 lowers the 8-wide float↔double conversions to two 4-wide ones and a
 * shuffle; the AVX-512 instructions do it in one */
KINL vd vloadf(const float *p) { return (vd)_mm512_cvtps_pd(_mm256_loadu_ps(p)); }
KINL void vstoref(float *p, vd v) { _mm256_storeu_ps(p, _mm512_cvtpd_ps((__m512d)v)); }
#else
KINL vd vloadf(const float *p) { vfh v; memcpy(&v, p, sizeof v); return __builtin_convertvector(v, vd); }
KINL void vstoref(float *p, vd v) { vfh f = __builtin_convertvector(v, vfh); memcpy(p, &f, sizeof f); }
#endif
#if VW == 8 && defined(CK_X86)
KINL vd vround_f32(vd v) { return (vd)_mm512_cvtps_pd(_mm512_cvtpd_ps((__m512d)v)); }
#else
KINL vd vround_f32(vd v) { return __builtin_convertvector(__builtin_convertvector(v, vfh), vd); }
#endif
KINL double vsum_lanes(vd v)
{   /* a fixed pairwise order: lane l + lane l + W/2, halving */
    double a[VW];
    memcpy(a, &v, sizeof a);
    for (int w = VW / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            a[l] += a[l + w];
    return a[0];
}

/* lane masks from constant tables (a load never waits on a recent store):
 * vlast(r): the last r lanes set; vnot(l): every lane but l set */
#if VW == 8
static const int64_t CKV(ck_tab_last, KSUF)[16] = {0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1};
static const int64_t CKV(ck_tab_not, KSUF)[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1, -1, -1};
#elif VW == 4
static const int64_t CKV(ck_tab_last, KSUF)[8] = {0, 0, 0, 0, -1, -1, -1, -1};
static const int64_t CKV(ck_tab_not, KSUF)[8] = {-1, -1, -1, -1, 0, -1, -1, -1};
#elif VW == 2
static const int64_t CKV(ck_tab_last, KSUF)[4] = {0, 0, -1, -1};
static const int64_t CKV(ck_tab_not, KSUF)[4] = {-1, -1, 0, -1};
#else
#error "VW must be 2, 4 or 8"
#endif
KINL vl vlast(i64 r) { vl m; memcpy(&m, CKV(ck_tab_last, KSUF) + r, sizeof m); return m; }
KINL vl vnot(i64 l) { vl m; memcpy(&m, CKV(ck_tab_not, KSUF) + VW - l, sizeof m); return m; }

/* compensated accumulation (TwoSum): s + c carries the exact sum */
KINL void vtwosum_acc(vd *s, vd *c, vd e)
{
    vd t = *s + e;
    vd bp = t - *s;
    *c += (*s - (t - bp)) + (e - bp);
    *s = t;
}
/* lanes (s, c) → one double: a fixed-order compensated combination */
KINL double vsum_comp(vd s, vd c)
{
    double hi = 0.0, lo = 0.0;
    for (int k = 0; k < VW; k++) {
        twosum_acc(&hi, &lo, s[k]);
        lo += c[k];
    }
    /* an infinite or NaN total has no meaningful compensation (inf − inf = NaN) */
    return isfinite(hi) ? hi + lo : hi;
}

/* ---- float vectors of 2·VW lanes (the float32 sweep) ---- */

KINL vff fsplat(float a) { return (vff){0} + a; }
/* max(c, d) that returns d when d is NaN (x86 max returns its second operand
 * when either is NaN) */
KINL vff fmax_keepnan(vff c, vff d)
{
#if defined(CK_X86) && VW == 8
    return (vff)_mm512_max_ps((__m512)c, (__m512)d);
#elif defined(CK_X86) && VW == 4
    return (vff)_mm256_max_ps((__m256)c, (__m256)d);
#elif defined(CK_X86) && VW == 2
    return (vff)_mm_max_ps((__m128)c, (__m128)d);
#else
    vif lt = (vif)(d < c);
    return (vff)(((vif)c & lt) | ((vif)d & ~lt));
#endif
}
/* the two halves of a float vector, as doubles */
KINL void fsplit(vff v, vd *lo, vd *hi)
{
#if defined(CK_X86) && VW == 8
    *lo = (vd)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
    *hi = (vd)_mm512_cvtps_pd(_mm512_extractf32x8_ps((__m512)v, 1));
#elif defined(CK_X86) && VW == 4
    *lo = (vd)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
    *hi = (vd)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
#elif defined(CK_X86) && VW == 2
    *lo = (vd)_mm_cvtps_pd((__m128)v);
    *hi = (vd)_mm_cvtps_pd(_mm_movehl_ps((__m128)v, (__m128)v));
#else
    vfh a, b;
    memcpy(&a, &v, sizeof a);
    memcpy(&b, (const char *)&v + sizeof a, sizeof b);
    *lo = __builtin_convertvector(a, vd);
    *hi = __builtin_convertvector(b, vd);
#endif
}

/* exp(d + dl)·2^64 in float arithmetic, for d ≤ 0 the difference of two float32
 * values and dl its rounding error (exact: x − m = d + dl).  Relative error
 * ≈ 1 ulp of float32 (degree-6 polynomial, 2e-9, plus float rounding).  The
 * factor 2^64 keeps every result down to e^-104 (below the smallest float32
 * subnormal) a normal float, so nothing is lost to gradual underflow; the
 * caller accumulates in double and multiplies by 2^-64 (exactly).  Below −104
 * (and for −inf) the result is exactly 0. */
KINL vff vexpf_sc(vff d, vff dl)
{
    vff c = fsplat(-104.0f);
    vif under = (vif)(d < c);
    vff t = fmax_keepnan(c, d);
    vff r0 = (vff)((vif)dl & ~under); /* dl is NaN when d = −inf */
    vff y = t * 1.44269504f + 12582912.0f; /* 1.5·2^23: round to an integer */
    vff nf = y - 12582912.0f;
    /* ln 2 = 0x1.62e4p-1 (16 bits: n·hi exact) + 1.428606765330187e-06 */
    vff r = ((t - nf * 0.693145751953125f) + r0) - nf * 1.428606765330187e-06f;
    vff p = fsplat(0.0013843643f);
    p = p * r + 0.0083741637f;
    p = p * r + 0.041668003f;
    p = p * r + 0.16666431f;
    p = p * r + 0.49999994f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vif sc = (((vif)y - 0x4B400000) + (127 + 64)) << 23;
    return (vff)((vif)(p * (vff)sc) & ~under);
}

/* ---- exp for arguments ≤ 0 (or −inf / NaN) ---- */

/* Cody–Waite: t = n·ln2 + r, |r| ≤ ln2/2 (+ r0, a small correction of t); *y holds
 * n in its low mantissa bits (the magic-number rounding) */
KINL vd vreduce(vd t, vd r0, vd *y)
{
    *y = t * CK_LOG2E + CK_MAGIC;
    vd nf = *y - CK_MAGIC;
    return ((t - nf * CK_LN2HI) + r0) - nf * CK_LN2LO;
}

KINL vd vexp_lo(vd d)
{
    /* float32 data: an exp below e^-700 rounds every float32 result it enters to
     * what 0 gives; such arguments (−inf included) give exactly 0.  NaN compares
     * false and flows through. */
    vl under = (vl)(d < vsplat(-700.0));
    vd t = vsel(under, vsplat(-700.0), d);
    vd y;
    vd r = vreduce(t, vsplat(0.0), &y);
    vd p = vsplat(0.0013843642989838844);
    p = p * r + 0.008374163655072856;
    p = p * r + 0.041668002611434204;
    p = p * r + 0.1666643116590505;
    p = p * r + 0.49999994205299303;
    p = p * r + 1.0000000321850615;
    p = p * r + 1.0;
    vd s = (vd)(((vl)y - lsplat(CK_MAGIC_BITS) + lsplat(1023)) << 52);
    return vandn(p * s, under);
}

KINL vd vexp_hi(vd d, vd dl)
{
    /* exp(d + dl) with |dl| ≤ ulp(d)/2: the rounding error of the subtraction that
     * produced d.  Results down to the smallest subnormal (d ≈ −745.1) are kept:
     * 2^n is applied as two normal factors 2^(n/2)·2^(n−n/2), so the only rounding
     * into the subnormal range is the last product. */
    vl under = (vl)(d < vsplat(-746.0));
    vd t = vsel(under, vsplat(-746.0), d);
    vd y;
    vd r = vreduce(t, vandn(dl, under), &y); /* dl is NaN when d = −inf */
    vd p = vsplat(2.4991418009817558e-08);
    p = p * r + 2.763104888015495e-07;
    p = p * r + 2.7557626828610262e-06;
    p = p * r + 2.480149059752617e-05;
    p = p * r + 0.00019841269436544394;
    p = p * r + 0.0013888888946387533;
    p = p * r + 0.00833333333354987;
    p = p * r + 0.04166666666651771;
    p = p * r + 0.16666666666666216;
    p = p * r + 0.5000000000000012;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* n ≤ 0: halve −n with a logical shift (AVX2 has no 64-bit arithmetic shift) */
    vl n = (vl)y - lsplat(CK_MAGIC_BITS);
    vl n1 = -(vl)((vul)(-n) >> 1);
    vl n2 = n - n1;
    vd s1 = (vd)((n1 + 1023) << 52);
    vd s2 = (vd)((n2 + 1023) << 52);
    return vandn((p * s1) * s2, under);
}

/* expm1 for d ≤ 0 (softcap's tanh): 2^n·expm1(r) + (2^n − 1), both exact parts */
KINL vd vexpm1_le0(vd d)
{
    vl low = (vl)(d < vsplat(-60.0)); /* expm1(−60) = −1 in double */
    vd t = vsel(low, vsplat(-60.0), d);
    vd y;
    vd r = vreduce(t, vsplat(0.0), &y);
    vd q = vsplat(2.0875328999232453e-09);
    q = q * r + 2.5108979097197494e-08;
    q = q * r + 2.755740264620543e-07;
    q = q * r + 2.7557244373543628e-06;
    q = q * r + 2.4801587172534043e-05;
    q = q * r + 0.00019841269885966602;
    q = q * r + 0.0013888888888962374;
    q = q * r + 0.008333333333321691;
    q = q * r + 0.04166666666666651;
    q = q * r + 0.16666666666666677;
    q = q * r + 0.5;
    vd em = r + (r * r) * q; /* expm1(r), |r| ≤ ln2/2 */
    vd s = (vd)(((vl)y - lsplat(CK_MAGIC_BITS) + lsplat(1023)) << 52);
    return vsel(low, vsplat(-1.0), s * em + (s - 1.0));
}

/* tanh(u) = sign(u)·(−e)/(2 + e), e = expm1(−2|u|): no cancellation near 0 */
KINL vd vtanh(vd u)
{
    vd a = vabs(u);
    vd e = vexpm1_le0(-2.0 * a);
    vd t = -e / (e + 2.0);
    return (vd)((vl)t | ((vl)u & lsplat((i64)0x8000000000000000ULL)));
}

/* log1p(u) for u ∈ [0, 1] (BCE's log1p(e^-|x|)): 2·atanh(s), s = u/(2+u), or
 * ln2 + 2·atanh((u−1)/(u+3)) above √2−1, so that |s| ≤ 3 − 2√2 ≈ 0.1716. */
KINL vd vlog1p01(vd u, int hi)
{
    vl big = (vl)(u > vsplat(0.41421356237309503));
    vd num = vsel(big, u - 1.0, u);
    vd den = vsel(big, u + 3.0, u + 2.0);
    vd s = num / den;
    vd z = s * s;
    vd q;
    if (hi) {
        q = vsplat(CK_ATANH_Q7);
        CK_ATANH_Q(z, q);
    } else {
        q = vsplat(0.11791208636261055);
        q = q * z + 0.14268647649353844;
        q = q * z + 0.20000167693242554;
        q = q * z + 0.3333333282232601;
    }
    vd s2 = s + s;
    vd v = s2 + (s2 * z) * q;
    return vsel(big, CK_LN2HI + (CK_LN2LO + v), v);
}
