/* Softmax cross-entropy rows, for one element type T and one ISA.
 *
 * Included by ck_kern.h with T (float/double), TS (f32/f64), EXACT (0/1), KSUF
 * (ISA suffix) and KATTR (the ISA's target attribute) defined.  float32 data is
 * computed in double (EXACT 0: exp with 2e-9 relative error, plain double sums,
 * which are exact to far below a float32 ulp); float64 data (EXACT 1) uses the
 * accurate exp, the rounding error of every x − max folded into the exponent,
 * and compensated (TwoSum) sums.
 *
 * One row, in tiles of CK_TILE classes (a tile is read from memory by the max
 * sweep and re-read from L1 by the exp sweep):
 *   tile t: m_t = max, k_t = first argmax, s_t = Σ_{j≠k_t} exp(x_j − m_t)
 *           (the k_t term is never added: 1 + tiny loses the tiny terms),
 *           and for smoothing / probability targets with a'_j the spread
 *           coefficients: Σ_{j≠k_t} a'_j, a'_{k_t}, Σ_j a'_j·(m_t − x_j).
 *   fold the tiles in order (ck_fold: the online log-sum-exp merge rule).
 *   finish: −log p_c = (M − x_c) + log1p(S_off): sums of non-negative terms only.
 * The per-row arithmetic is a fixed sequence whichever thread runs it, so results
 * are bitwise identical for any thread count and row partition.
 */

#define CKC_(a, b) a##b
#define CKC(a, b) CKC_(a, b)
#define F_(name) CKC(CKC(name##_, TS), KSUF)

#if EXACT
#define VT vd
#define VI vl
#define NL VW
#else
#define VT vff
#define VI vif
#define NL (2 * VW)
#endif
#define BW (2 * VW) /* the exp sweep's block: two vectors (two independent sums) */
/* the scratch holds the tile's exps × 2^64 for float32 data (the float sweep's scale) */
#define CK_ESC (EXACT ? 1.0 : 0x1p-64)

/* VW elements of T → VW doubles */
KINL vd F_(ld8)(const T *p)
{
#if EXACT
    return vloadd(p);
#else
    return vloadf(p);
#endif
}
KINL void F_(st8)(T *p, vd v)
{
#if EXACT
    vstored(p, v);
#else
    vstoref(p, v);
#endif
}

/* ---------------------------------------------------------------------------------- */
/* soft cap: z = s·tanh(x/s) (rounded to T, as the reference's capped array is), and  */
/* its derivative sech²(x/s) = 4e/(1 + e)², e = e^{−2|x/s|} (relative precision kept  */
/* where 1 − tanh² would round to 0)                                                   */
/* ---------------------------------------------------------------------------------- */
KINL void F_(cap8)(vd xv, double s, vd *z, vd *f)
{
    vd u = xv / s;
    vd a = vabs(u);
    vd t = vtanh(u);
    *z = s * t;
    if (f) {
        vd e = vexp_hi(-2.0 * a, vsplat(0.0));
        *f = (4.0 * e) / ((1.0 + e) * (1.0 + e));
    }
}

KATTR static void F_(capfill)(const T *x, i64 n, double s, T *z, double *f)
{
    i64 j = 0;
    vd zv, fv;
    for (; j + VW <= n; j += VW) {
        F_(cap8)(F_(ld8)(x + j), s, &zv, f ? &fv : NULL);
        F_(st8)(z + j, zv);
        if (f)
            vstored(f + j, fv);
    }
    if (j < n) {
        T buf[VW] = {0};
        double fb[VW];
        memcpy(buf, x + j, (size_t)(n - j) * sizeof(T));
        F_(cap8)(F_(ld8)(buf), s, &zv, f ? &fv : NULL);
        F_(st8)(buf, zv);
        memcpy(z + j, buf, (size_t)(n - j) * sizeof(T));
        if (f) {
            vstored(fb, fv);
            memcpy(f + j, fb, (size_t)(n - j) * sizeof(double));
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* max and first argmax of a tile (NaN is skipped here; it is caught by the sums)      */
/* ---------------------------------------------------------------------------------- */
KATTR static void F_(tile_max)(const T *x, i64 n, double *m_out, i64 *k_out)
{
    if (n < 2 * NL) { /* short rows: a scalar loop beats the lane reduction (branch-free) */
        T m = -INFINITY;
        i64 k = 0;
        for (i64 j = 0; j < n; j++) {
            T v = x[j];
            int gt = v > m;
            k = gt ? j : k;
            m = gt ? v : m;
        }
        *m_out = (double)m;
        *k_out = k;
        return;
    }
    /* four independent (max, index) chains: one chain would wait on its compare and
     * blend every step */
    VT best[4], v;
    VI bidx[4], idx;
    best[0] = (VT){0} + (T)-INFINITY;
    for (int l = 0; l < NL; l++)
        idx[l] = l;
    best[3] = best[2] = best[1] = best[0];
    bidx[3] = bidx[2] = bidx[1] = bidx[0] = idx;
    const i64 nb = n / NL;
    i64 b = 0;
    for (; b + 4 <= nb; b += 4) {
        for (int q = 0; q < 4; q++) {
            memcpy(&v, x + (b + q) * NL, sizeof v);
            VI gt = (VI)(v > best[q]); /* strict: each lane keeps its first maximum */
            best[q] = (VT)(((VI)v & gt) | ((VI)best[q] & ~gt));
            bidx[q] = (idx & gt) | (bidx[q] & ~gt);
            idx += NL;
        }
    }
    for (; b < nb; b++) {
        memcpy(&v, x + b * NL, sizeof v);
        VI gt = (VI)(v > best[0]);
        best[0] = (VT)(((VI)v & gt) | ((VI)best[0] & ~gt));
        bidx[0] = (idx & gt) | (bidx[0] & ~gt);
        idx += NL;
    }
    if (n > nb * NL) {
        /* the last NL elements again (overlapping): a lane may see an element a
         * second time, which changes neither the max nor the first argmax */
        memcpy(&v, x + n - NL, sizeof v);
        idx -= (VI){0} + (__typeof__(idx[0]))(nb * NL - (n - NL));
        VI gt = (VI)(v > best[1]);
        best[1] = (VT)(((VI)v & gt) | ((VI)best[1] & ~gt));
        bidx[1] = (idx & gt) | (bidx[1] & ~gt);
    }
    /* merge the chains: the larger value, the smaller index on ties */
    for (int q = 1; q < 4; q++) {
        VI gt = (VI)(best[q] > best[0]);
        VI eq = (VI)(best[q] == best[0]) & (VI)(bidx[q] < bidx[0]);
        VI take = gt | eq;
        best[0] = (VT)(((VI)best[q] & take) | ((VI)best[0] & ~take));
        bidx[0] = (bidx[q] & take) | (bidx[0] & ~take);
    }
    T m = best[0][0];
    for (int l = 1; l < NL; l++)
        m = best[0][l] > m ? best[0][l] : m;
    i64 k = -1;
    for (int l = 0; l < NL; l++)
        if (best[0][l] == m && (k < 0 || bidx[0][l] < k))
            k = bidx[0][l];
    if (!(m > -INFINITY))
        k = 0; /* no finite element (all −inf, or NaN): the first one */
    *m_out = (double)m;
    *k_out = k;
}

/* ---------------------------------------------------------------------------------- */
/* spread coefficients a'_j for VW classes                                             */
/* ---------------------------------------------------------------------------------- */
typedef struct {
    int cm;
    const T *w, *t; /* already offset to the tile */
    double keep, spread, aconst;
} F_(coef_src);

KINL vd F_(coefv)(const F_(coef_src) *cs, i64 j, const int cm)
{
    switch (cm) {
    case CM_CONST:
        return vsplat(cs->aconst);
    case CM_W:
        return cs->aconst * F_(ld8)(cs->w + j);
    case CM_P:
        return cs->keep * F_(ld8)(cs->t + j) + cs->spread;
    default: /* CM_WP: (keep·t + spread)·w, the reference's order */
        return (cs->keep * F_(ld8)(cs->t + j) + cs->spread) * F_(ld8)(cs->w + j);
    }
}
KINL double F_(coef1)(const F_(coef_src) *cs, i64 j)
{
    switch (cs->cm) {
    case CM_NONE:
        return 0.0;
    case CM_CONST:
        return cs->aconst;
    case CM_W:
        return cs->aconst * (double)cs->w[j];
    case CM_P:
        return cs->keep * (double)cs->t[j] + cs->spread;
    default:
        return (cs->keep * (double)cs->t[j] + cs->spread) * (double)cs->w[j];
    }
}
/* the same source from column j0 on (a tile) */
KINL F_(coef_src) F_(coef_at)(const F_(coef_src) *cs, i64 j0)
{
    F_(coef_src) c = *cs;
    if (c.w)
        c.w += j0;
    if (c.t)
        c.t += j0;
    return c;
}

/* the first r lanes of j.. (a row shorter than one vector); the others are 0 */
KINL vd F_(coefv_short)(const F_(coef_src) *cs, i64 j, i64 r)
{
    double a[VW] = {0};
    for (i64 l = 0; l < r; l++)
        a[l] = F_(coef1)(cs, j + l);
    return vloadd(a);
}

/* ---------------------------------------------------------------------------------- */
/* the exp sweep of one tile                                                           */
/* ---------------------------------------------------------------------------------- */
typedef struct {
    vd s, sc, a, ac, g, gc;
} F_(acc);

/* x − sh as d + dl exactly (EXACT).  dl is NaN where d is −inf: vexp_hi ignores it
 * there, and the coefficient sums mask it with the same comparison (a second,
 * different comparison of d would be fused with it by GCC into a predicate that
 * it evaluates one lane at a time) */
KINL vd F_(diff)(vd x, double sh, vd *dl)
{
    vd d = x - sh;
#if EXACT
    vd bp = d - x;
    *dl = (x - (d - bp)) + (-sh - bp);
#else
    *dl = vsplat(0.0);
#endif
    return d;
}

KINL vd F_(vexp)(vd d, vd dl)
{
#if EXACT
    return vexp_hi(d, dl);
#else
    (void)dl;
    return vexp_lo(d);
#endif
}

KINL void F_(add)(vd *s, vd *c, vd e)
{
#if EXACT
    vtwosum_acc(s, c, e);
#else
    (void)c;
    *s += e;
#endif
}

/* one vector: x (doubles), a (coefficients, 0 on lanes that do not count), km
 * (lanes that count for s and Σa': 0 at the argmax and on lanes already seen) */
KINL void F_(sweep8)(F_(acc) *A, vd x, double sh, vd a, const int cm, vl km, const int masked, double *scr)
{
    vd dl;
    vd d = F_(diff)(x, sh, &dl);
    vd e = F_(vexp)(d, dl);
    if (scr)
        vstored(scr, EXACT ? e : e * 0x1p64); /* float32: the scale of the float sweep */
    if (masked)
        e = vand(e, km);
    F_(add)(&A->s, &A->sc, e);
    if (cm) {
        /* a'·(sh − x) with 0·anything = 0 (xlogy: a masked −inf class with zero
         * target mass costs nothing); the rounding error of x − sh is folded in */
#if EXACT
        dl = vandn(dl, (vl)(d < vsplat(-746.0))); /* the test of vexp_hi: d = −inf */
#endif
        vd term = (-a) * d - a * dl;
        term = vandn(term, (vl)(a == vsplat(0.0))); /* (== keeps NaN; GCC scalarises !=) */
        F_(add)(&A->g, &A->gc, term);
        F_(add)(&A->a, &A->ac, masked ? vand(a, km) : a);
    }
}

#if !EXACT
/* float32 data, one block of BW = 2·VW classes: the exp in float arithmetic
 * (vexpf_sc, scaled by 2^64), the sums in double */
KINL void F_(blockf)(F_(acc) *A0, F_(acc) *A1, const T *x, float shf, double sh, vd a0, vd a1, const int cm,
                     vl km0, vl km1, const int masked, double *scr)
{
    vff xv;
    memcpy(&xv, x, sizeof xv);
    vff d = xv - shf;
    vff bp = d - xv;
    vff dl = (xv - (d - bp)) + (-shf - bp); /* x − m = d + dl exactly (TwoSum) */
    vd e0, e1;
    fsplit(vexpf_sc(d, dl), &e0, &e1);
    if (scr) {
        vstored(scr, e0);
        vstored(scr + VW, e1);
    }
    if (masked) {
        e0 = vand(e0, km0);
        e1 = vand(e1, km1);
    }
    A0->s += e0;
    A1->s += e1;
    if (cm) {
        vd x0, x1;
        fsplit(xv, &x0, &x1);
        vd t0 = a0 * (sh - x0), t1 = a1 * (sh - x1); /* exact differences in double */
        A0->g += vandn(t0, (vl)(a0 == vsplat(0.0)));
        A1->g += vandn(t1, (vl)(a1 == vsplat(0.0)));
        A0->a += masked ? vand(a0, km0) : a0;
        A1->a += masked ? vand(a1, km1) : a1;
    }
}
#endif

typedef struct {
    double s, aoff, ak, g;
} F_(tsum);

/* Σ over one tile, the tile's argmax kx excluded from s and aoff.  Vector v goes to
 * accumulator v mod 2; a ragged end is the last VW elements again (overlapping,
 * the lanes already counted masked out), or a padded copy if the tile is shorter
 * than one vector. */
KINL void F_(tile_sums_)(const T *x, i64 n, double sh, i64 kx, const F_(coef_src) *cs, double *scr,
                              F_(tsum) *out, const int cm)
{
    F_(acc) A0, A1;
    memset(&A0, 0, sizeof A0);
    memset(&A1, 0, sizeof A1);
    const vd zero = vsplat(0.0);
    const vl ones = lsplat(-1);
    const i64 nv = n / VW, kv = kx / VW;
    const vl kmask = vnot(kx - kv * VW);
    i64 v = 0;
#if !EXACT
    /* float32: whole blocks in the float sweep (sums scaled by 2^64), the rest below */
    F_(acc) B0, B1;
    memset(&B0, 0, sizeof B0);
    memset(&B1, 0, sizeof B1);
    {
        const i64 nbw = n / BW, kb = kx / BW, kl = kx - kb * BW;
        const vl km0 = kl < VW ? vnot(kl) : ones, km1 = kl >= VW ? vnot(kl - VW) : ones;
        const float shf = (float)sh;
        for (i64 b = 0; b < nbw; b++) {
            i64 j = b * BW;
            vd a0 = cm ? F_(coefv)(cs, j, cm) : zero, a1 = cm ? F_(coefv)(cs, j + VW, cm) : zero;
            if (b == kb)
                F_(blockf)(&B0, &B1, x + j, shf, sh, a0, a1, cm, km0, km1, 1, scr ? scr + j : NULL);
            else
                F_(blockf)(&B0, &B1, x + j, shf, sh, a0, a1, cm, ones, ones, 0, scr ? scr + j : NULL);
        }
        v = 2 * nbw;
    }
#endif
    for (; v + 2 <= nv; v += 2) {
        i64 j = v * VW;
        vd a0 = cm ? F_(coefv)(cs, j, cm) : zero, a1 = cm ? F_(coefv)(cs, j + VW, cm) : zero;
        double *s0 = scr ? scr + j : NULL, *s1 = scr ? scr + j + VW : NULL;
        if (v == kv || v + 1 == kv) {
            F_(sweep8)(&A0, F_(ld8)(x + j), sh, a0, cm, v == kv ? kmask : ones, 1, s0);
            F_(sweep8)(&A1, F_(ld8)(x + j + VW), sh, a1, cm, v + 1 == kv ? kmask : ones, 1, s1);
        } else {
            F_(sweep8)(&A0, F_(ld8)(x + j), sh, a0, cm, ones, 0, s0);
            F_(sweep8)(&A1, F_(ld8)(x + j + VW), sh, a1, cm, ones, 0, s1);
        }
    }
    if (v < nv) {
        i64 j = v * VW;
        vd a0 = cm ? F_(coefv)(cs, j, cm) : zero;
        F_(sweep8)(&A0, F_(ld8)(x + j), sh, a0, cm, v == kv ? kmask : ones, 1, scr ? scr + j : NULL);
    }
    i64 r = n - nv * VW;
    if (r && n >= VW) {
        i64 j = n - VW;
        vl fresh = vlast(r);
        vl km = kv == nv ? fresh & vnot(kx - j) : fresh;
        vd a = cm ? vand(F_(coefv)(cs, j, cm), fresh) : zero;
        F_(sweep8)(&A1, F_(ld8)(x + j), sh, a, cm, km, 1, scr ? scr + j : NULL);
    } else if (r) {
        T buf[VW];
        double sbuf[VW];
        for (int l = 0; l < VW; l++)
            buf[l] = -INFINITY; /* exp(−inf) = 0; its coefficient is 0 */
        memcpy(buf, x, (size_t)r * sizeof(T));
        vd a = cm ? F_(coefv_short)(cs, 0, r) : zero;
        F_(sweep8)(&A1, F_(ld8)(buf), sh, a, cm, vnot(kx), 1, scr ? sbuf : NULL);
        if (scr)
            memcpy(scr, sbuf, (size_t)r * sizeof(double));
    }
#if EXACT
    /* the two lane sets are added exactly (TwoSum), then the lanes in a fixed order */
    vtwosum_acc(&A0.s, &A0.sc, A1.s);
    out->s = vsum_comp(A0.s, A0.sc + A1.sc);
    if (cm) {
        vtwosum_acc(&A0.g, &A0.gc, A1.g);
        out->g = vsum_comp(A0.g, A0.gc + A1.gc);
        vtwosum_acc(&A0.a, &A0.ac, A1.a);
        out->aoff = vsum_comp(A0.a, A0.ac + A1.ac);
    } else {
        out->g = out->aoff = 0.0;
    }
#else
    out->s = vsum_lanes(B0.s + B1.s) * 0x1p-64 + vsum_lanes(A0.s + A1.s);
    out->g = cm ? vsum_lanes((B0.g + B1.g) + (A0.g + A1.g)) : 0.0;
    out->aoff = cm ? vsum_lanes((B0.a + B1.a) + (A0.a + A1.a)) : 0.0;
#endif
    out->ak = cm ? F_(coef1)(cs, kx) : 0.0;
}

/* one copy of the sweep per coefficient mode: no mode test inside the loop */
KATTR static void F_(tile_sums)(const T *x, i64 n, double sh, i64 kx, const F_(coef_src) *cs, double *scr,
                                 F_(tsum) *out)
{
    switch (cs->cm) {
    case CM_NONE: F_(tile_sums_)(x, n, sh, kx, cs, scr, out, CM_NONE); break;
    case CM_CONST: F_(tile_sums_)(x, n, sh, kx, cs, scr, out, CM_CONST); break;
    case CM_W: F_(tile_sums_)(x, n, sh, kx, cs, scr, out, CM_W); break;
    case CM_P: F_(tile_sums_)(x, n, sh, kx, cs, scr, out, CM_P); break;
    default: F_(tile_sums_)(x, n, sh, kx, cs, scr, out, CM_WP); break;
    }
}

/* ---------------------------------------------------------------------------------- */
/* gradient sweep of one tile: g_j = (F·e_j − ga·a'_j)·fac_j                           */
/* (e_j from the scratch, or recomputed as e^{x_j − sh}; fac: the soft cap's sech²)    */
/* ---------------------------------------------------------------------------------- */
KINL vd F_(grad_e)(vd xv, double sh, const double *scr, i64 j)
{
    if (scr)
        return vloadd(scr + j);
    vd dl;
    vd d = F_(diff)(xv, sh, &dl);
    return F_(vexp)(d, dl);
}

KINL void F_(tile_grad_)(const T *x, T *g, i64 n, double sh, double F, double ga, const F_(coef_src) *cs,
                         const double *scr, const double *fac, const int cm)
{
    const vd zero = vsplat(0.0);
    i64 j = 0;
    for (; j + VW <= n; j += VW) {
        vd e = F_(grad_e)(scr ? zero : F_(ld8)(x + j), sh, scr, j);
        vd a = cm ? F_(coefv)(cs, j, cm) : zero;
        vd out = F * e - ga * a;
        if (fac)
            out *= vloadd(fac + j);
        F_(st8)(g + j, out);
    }
    if (j < n) {
        i64 r = n - j;
        T buf[VW];
        /* the last VW elements again, when what they read is still intact (the
         * scratch, or an input that is not the output), else a padded copy */
        if (n >= VW && (scr || (const T *)g != x)) {
            i64 jj = n - VW;
            vd e = F_(grad_e)(scr ? zero : F_(ld8)(x + jj), sh, scr, jj);
            vd a = cm ? F_(coefv)(cs, jj, cm) : zero;
            vd out = F * e - ga * a;
            if (fac)
                out *= vloadd(fac + jj);
            F_(st8)(buf, out);
            memcpy(g + j, buf + (VW - r), (size_t)r * sizeof(T));
        } else {
            double sb[VW] = {0}, fb[VW] = {0};
            for (int l = 0; l < VW; l++)
                buf[l] = -INFINITY;
            memcpy(buf, x + j, (size_t)r * sizeof(T));
            vd e;
            if (scr) {
                memcpy(sb, scr + j, (size_t)r * sizeof(double));
                e = vloadd(sb);
            } else
                e = F_(grad_e)(F_(ld8)(buf), sh, NULL, 0);
            vd a = cm ? F_(coefv_short)(cs, j, r) : zero;
            vd out = F * e - ga * a;
            if (fac) {
                memcpy(fb, fac + j, (size_t)r * sizeof(double));
                out *= vloadd(fb);
            }
            F_(st8)(buf, out);
            memcpy(g + j, buf, (size_t)r * sizeof(T));
        }
    }
}

KATTR static void F_(tile_grad)(const T *x, T *g, i64 n, double sh, double F, double ga, const F_(coef_src) *cs,
                                 const double *scr, const double *fac)
{
    switch (cs->cm) {
    case CM_NONE: F_(tile_grad_)(x, g, n, sh, F, ga, cs, scr, fac, CM_NONE); break;
    case CM_CONST: F_(tile_grad_)(x, g, n, sh, F, ga, cs, scr, fac, CM_CONST); break;
    case CM_W: F_(tile_grad_)(x, g, n, sh, F, ga, cs, scr, fac, CM_W); break;
    case CM_P: F_(tile_grad_)(x, g, n, sh, F, ga, cs, scr, fac, CM_P); break;
    default: F_(tile_grad_)(x, g, n, sh, F, ga, cs, scr, fac, CM_WP); break;
    }
}

/* ---------------------------------------------------------------------------------- */
/* a non-finite row, literally as the reference computes it (categorical._ce_terms)    */
/* ---------------------------------------------------------------------------------- */
KATTR static void F_(row_literal)(const ce_job *J, const T *x, T *gr, int gather, i64 y, int valid,
                                  const F_(coef_src) *cs, double g, const double *fac, double *loss_out,
                                  double *lse_out)
{
    i64 C = J->C;
    const T *w = (const T *)J->w;
    double m = (double)x[0];
    for (i64 c = 1; c < C; c++) {
        double v = (double)x[c];
        if (v != v || m != m)
            m = v != v ? v : m;
        else if (v > m)
            m = v;
    }
    if (!isfinite(m))
        m = 0.0; /* _safe_max */
    double s = 0.0;
    for (i64 c = 0; c < C; c++)
        s += exp((double)x[c] - m);
    double ls = log(s), lse = ls + m;
    double loss = 0.0, asum = 0.0;
    /* a_c: the reference's coefficients (dense target × class weight, 0 if ignored) */
#define CK_LIT_A(c)                                                                                       \
    (J->mode == CK_PROB ? F_(coef1)(cs, (c))                                                              \
                        : (valid ? ((J->eps != 0.0 ? J->eps / (double)J->C_glob : 0.0) +                  \
                                    ((c) == y ? 1.0 - J->eps : 0.0)) *                                    \
                                       (w ? (double)w[(c)] : 1.0)                                         \
                                 : 0.0))
    if (gather) {
        if (valid) {
            loss = -(((double)x[y] - m) - ls);
            if (w)
                loss *= (double)w[y];
            asum = w ? (double)w[y] : 1.0;
        }
    } else {
        for (i64 c = 0; c < C; c++) {
            double a = CK_LIT_A(c);
            asum += a;
            if (a != 0.0)
                loss -= a * (((double)x[c] - m) - ls);
        }
    }
    if (J->z != 0.0 && valid)
        loss += J->z * lse * lse;
    if (gr) {
        double vf = valid ? 1.0 : 0.0;
        for (i64 c = 0; c < C; c++) {
            double p = exp(((double)x[c] - m) - ls);
            double a = gather ? ((valid && c == y) ? (w ? (double)w[c] : 1.0) : 0.0) : CK_LIT_A(c);
            double gc = asum * p - a;
            if (J->z != 0.0)
                gc += (2.0 * J->z * lse * p) * vf;
            gr[c] = (T)(fac ? gc * g * fac[c] : gc * g);
        }
    }
#undef CK_LIT_A
    *loss_out = loss;
    *lse_out = lse;
}

/* ---------------------------------------------------------------------------------- */
/* scratch of a row (allocated per thread by the caller, ck_module.c: ce_scratch)      */
/* ---------------------------------------------------------------------------------- */
typedef struct {
    double *e;      /* full rows with a gradient: the sweep's exps (C), then tile maxima */
    double *tile_m;
    T *z;           /* soft cap: the capped logits (C) */
    double *f;      /* soft cap: sech² (C) */
} F_(scratch);

static void F_(carve)(const ce_job *J, double *scr, F_(scratch) *S)
{
    const i64 C = J->C, nt = (C + CK_TILE - 1) / CK_TILE;
    memset(S, 0, sizeof *S);
    if (!scr)
        return;
    double *p = scr;
    if (J->what == CK_FULL && J->grad && !J->no_escratch) {
        S->e = p;
        S->tile_m = p + C;
        p += C + nt + 8;
    }
    if (J->softcap != 0.0) {
        S->z = (T *)p;
        p += C + 8;
        S->f = p;
    }
}

/* the tiles of a row: fold their states (ck_fold) in column order */
KATTR static void F_(fold_row)(const T *x, i64 C, i64 off, const F_(coef_src) *cs, double *e, double *tile_m,
                               ce_state *st)
{
    const i64 nt = (C + CK_TILE - 1) / CK_TILE;
    st->m = -INFINITY;
    st->k = off;
    st->s = st->sc = st->aoff = st->ak = st->g = 0.0;
    for (i64 t = 0; t < nt; t++) {
        i64 j0 = t * CK_TILE, n = C - j0 < CK_TILE ? C - j0 : CK_TILE;
        double mt;
        i64 kt;
        F_(tile_max)(x + j0, n, &mt, &kt);
        double sh = mt > -INFINITY ? mt : 0.0;
        F_(coef_src) ct = F_(coef_at)(cs, j0);
        F_(tsum) ts;
        F_(tile_sums)(x + j0, n, sh, kt, &ct, e ? e + j0 : NULL, &ts);
        if (tile_m)
            tile_m[t] = mt;
        ck_fold(st, mt, off + j0 + kt, ts.s, ts.aoff, ts.ak, ts.g, EXACT);
    }
}

/* ---------------------------------------------------------------------------------- */
/* a whole row: loss, lse, gradient                                                    */
/* ---------------------------------------------------------------------------------- */
KATTR static void F_(row_full)(const ce_job *J, i64 i, F_(scratch) *S)
{
    const i64 C = J->C;
    const T *x = (const T *)J->x + i * J->ldx;
    T *gr = J->grad ? (T *)J->grad + i * J->ldg : NULL;
    const T *w = (const T *)J->w;
    const double g = J->gs ? J->gs[i * J->gstride] : 1.0;

    int valid = 1;
    i64 y = -1;
    double h = 0.0;
    if (J->mode == CK_IDX) {
        y = J->y32 ? (i64)((const int32_t *)J->y)[i] : ((const i64 *)J->y)[i];
        valid = !(J->has_ii && y == J->ii);
        if (valid)
            h = (1.0 - J->eps) * (w ? (double)w[y] : 1.0);
        else
            y = -1;
    }
    F_(coef_src) cs;
    cs.cm = CM_NONE;
    cs.w = w;
    cs.t = J->t ? (const T *)J->t + i * J->ldt : NULL;
    cs.keep = 1.0 - J->eps;
    cs.spread = J->eps / (double)J->C_glob;
    cs.aconst = cs.spread;
    if (J->mode == CK_PROB)
        cs.cm = w ? CM_WP : CM_P;
    else if (valid && J->eps != 0.0)
        cs.cm = w ? CM_W : CM_CONST;

    const double *fac = NULL;
    if (J->softcap != 0.0) { /* every sweep below reads the capped row */
        F_(capfill)(x, C, J->softcap, S->z, gr ? S->f : NULL);
        x = S->z;
        fac = gr ? S->f : NULL;
    }
    ce_state st;
    F_(fold_row)(x, C, 0, &cs, gr ? S->e : NULL, gr ? S->tile_m : NULL, &st);
    const double xy = y >= 0 ? (double)x[y] : NAN;
    double *scr = gr ? S->e : NULL;

    ck_fin f;
    ck_finish(&st, valid, h, xy, y, g, J->z, EXACT, J->mode == CK_IDX && J->eps == 0.0, &f);
    double loss = f.loss, lse = f.lse;
    if (!f.regular) {
        if (J->exact_rows) {
            int gather = J->mode == CK_IDX && J->eps == 0.0;
            F_(row_literal)(J, x, gr, gather, y, valid, &cs, g, fac, &loss, &lse);
        } else {
            loss = valid ? NAN : 0.0;
            if (gr)
                for (i64 c = 0; c < C; c++)
                    gr[c] = (T)NAN;
        }
    } else if (gr) {
        /* everything read from the row (x[y]) was read before the sweep writes it */
        double gy = 0.0;
        if (y >= 0 && st.k != y) {
            double ey;
            if (scr) { /* the exp of the sweep, relative to its tile's max */
                double mt = S->tile_m[y / CK_TILE];
                ey = scr[y] * CK_ESC * (mt == st.m ? 1.0 : ck_exp_diff(mt, st.m, EXACT));
            } else
                ey = ck_exp_diff(xy, st.m, EXACT);
            gy = f.coef * ey - g * (F_(coef1)(&cs, y) + h);
            if (fac)
                gy *= fac[y];
        }
        const i64 nt = (C + CK_TILE - 1) / CK_TILE;
        for (i64 t = 0; t < nt; t++) {
            i64 j0 = t * CK_TILE, n = C - j0 < CK_TILE ? C - j0 : CK_TILE;
            F_(coef_src) ct = F_(coef_at)(&cs, j0);
            double Ft = scr ? f.coef * CK_ESC : f.coef;
            if (scr && S->tile_m[t] != st.m)
                Ft = S->tile_m[t] > -INFINITY ? Ft * ck_exp_diff(S->tile_m[t], st.m, EXACT) : 0.0;
            F_(tile_grad)(x + j0, gr + j0, n, st.m, Ft, g, &ct, scr ? scr + j0 : NULL, fac ? fac + j0 : NULL);
        }
        if (y >= 0 && st.k != y)
            gr[y] = (T)gy;
        gr[st.k] = (T)(fac ? f.gk * fac[st.k] : f.gk);
    }
    if (J->loss) {
        if (J->loss_f64)
            ((double *)J->loss)[i] = loss;
        else
            ((T *)J->loss)[i] = (T)loss;
    }
    if (J->lse)
        J->lse[i] = lse;
}

/* ---------------------------------------------------------------------------------- */
/* pass 1 of the vocabulary split: the row's partial state over the block's columns    */
/* ---------------------------------------------------------------------------------- */
KATTR static void F_(row_partials)(const ce_job *J, i64 i, F_(scratch) *S)
{
    const i64 C = J->C, off = J->off;
    const T *x = (const T *)J->x + i * J->ldx;
    const T *w = (const T *)J->w;
    double *st15 = J->state + i * CK_NSTAT;
    i64 *ix = J->index + 2 * i;
    const int smooth = J->smooth;
    const i64 y = J->y32 ? (i64)((const int32_t *)J->y)[i] : ((const i64 *)J->y)[i];
    const i64 yl = (y >= off && y < off + C) ? y - off : -1;

    if (J->softcap != 0.0) {
        F_(capfill)(x, C, J->softcap, S->z, NULL);
        x = S->z;
    }
    for (int c = 0; c < CK_NSTAT; c++)
        st15[c] = 0.0;
    if (yl >= 0) {
        st15[S_XY] = (double)x[yl];
        st15[S_HIT] = 1.0;
        st15[S_WY] = w ? (double)w[yl] : 1.0;
    }
    /* smoothing's sums with a'_c = w_c (the ε/V factor is the finish's) */
    F_(coef_src) cs;
    cs.cm = smooth ? (w ? CM_W : CM_CONST) : CM_NONE;
    cs.w = w;
    cs.t = NULL;
    cs.keep = cs.spread = 0.0;
    cs.aconst = 1.0;
    ce_state st;
    F_(fold_row)(x, C, off, &cs, NULL, NULL, &st);
    double s_off = st.s + st.sc;
    if (st.m > -INFINITY && st.m < INFINITY && s_off == s_off) {
        /* no NaN, no +inf, a finite maximum: the sums are those of F */
        st15[S_M] = st.m;
        st15[S_SOFF] = s_off;
        ix[0] = st.k;
        ix[1] = CK_BIG;
        if (smooth) {
            st15[S_D] = st.g;
            st15[S_WOFF] = st.aoff;
            st15[S_WK] = st.ak;
            st15[S_W] = J->wsum;
            st15[S_WPOS] = J->wpos;
            st15[S_WNEG] = J->wneg;
        }
        return;
    }
    /* NaN, +inf or no finite entry: count them and keep them out of (M, K, S_off) */
    double m = -INFINITY, nnan = 0.0, npinf = 0.0, npinfw = 0.0, wkp = 0.0;
    i64 k = off, kpinf = CK_BIG;
    for (i64 c = 0; c < C; c++) {
        double v = (double)x[c], wc = w ? (double)w[c] : 1.0;
        if (v != v)
            nnan += 1.0;
        else if (v == INFINITY) {
            npinf += 1.0;
            if (kpinf == CK_BIG) {
                kpinf = off + c;
                wkp = smooth ? wc : 0.0;
            }
            if (smooth && wc != 0.0)
                npinfw += 1.0;
        } else if (v > m) {
            m = v;
            k = off + c;
        }
    }
    double sh = m > -INFINITY ? m : 0.0, so = 0.0, d = 0.0, woff = 0.0;
    for (i64 c = 0; c < C; c++) {
        double v = (double)x[c], wc = w ? (double)w[c] : 1.0;
        int inF = v == v && v < INFINITY;
        if (inF && off + c != k)
            so += exp(v - sh);
        if (smooth) {
            if (inF && wc != 0.0)
                d += wc * (sh - v);
            if (off + c != k)
                woff += wc;
        }
    }
    st15[S_M] = m;
    st15[S_SOFF] = so;
    st15[S_NNAN] = nnan;
    st15[S_NPINF] = npinf;
    st15[S_NPINFW] = npinfw;
    if (smooth) {
        st15[S_D] = d;
        st15[S_WOFF] = woff;
        st15[S_WK] = w ? (double)w[k - off] : 1.0;
        st15[S_W] = J->wsum;
        st15[S_WPOS] = J->wpos;
        st15[S_WNEG] = J->wneg;
        st15[S_WKP] = wkp;
    }
    ix[0] = k;
    ix[1] = kpinf;
}

/* ---------------------------------------------------------------------------------- */
/* pass 2 of the vocabulary split: loss, lse and the block's gradient from the merged  */
/* state (the formulas of the Triton kernels' _finalize and _pass2)                    */
/* ---------------------------------------------------------------------------------- */
KATTR static void F_(row_grad_slice)(const ce_job *J, i64 i, F_(scratch) *S)
{
    const i64 C = J->C, off = J->off;
    const T *x = (const T *)J->x + i * J->ldx;
    T *gr = J->grad ? (T *)J->grad + i * J->ldg : NULL;
    const T *w = (const T *)J->w;
    const double scale = J->gs ? J->gs[i * J->gstride] : 1.0;
    const double *st15 = J->state + i * CK_NSTAT;
    const i64 *ix = J->index + 2 * i;
    const i64 y = J->y32 ? (i64)((const int32_t *)J->y)[i] : ((const i64 *)J->y)[i];
    const int valid = !(J->has_ii && y == J->ii);
    ck_fin2 f;
    ck_finalize(st15, ix[0], ix[1], y, valid, J->smooth, w != NULL, 1.0 - J->eps, J->eps / (double)J->C_glob,
                J->z, &f);
    if (J->loss)
        ((double *)J->loss)[i] = f.loss;
    if (J->lse)
        J->lse[i] = f.lse;
    if (!gr || C == 0)
        return;
    const double *fac = NULL;
    if (J->softcap != 0.0) {
        F_(capfill)(x, C, J->softcap, S->z, S->f);
        x = S->z;
        fac = S->f;
    }
    const i64 yl = (y >= off && y < off + C) ? y - off : -1, kl = f.K - off;
    if (f.finite) {
        /* g_c = scale·[(total + zc)·p_c − sm·w_c], p_c = e^{x_c − M}/S */
        F_(coef_src) cs;
        cs.cm = f.sm != 0.0 ? (w ? CM_W : CM_CONST) : CM_NONE;
        cs.w = w;
        cs.t = NULL;
        cs.keep = cs.spread = 0.0;
        cs.aconst = f.sm;
        double gy = 0.0;
        if (yl >= 0 && y != f.K) { /* read before the sweep may overwrite x[yl] (in place) */
            double py = ck_exp_diff((double)x[yl], f.shift, EXACT) * f.inv_s;
            gy = scale * ((f.total + f.zc) * py - (f.sm + f.hv) * (w ? (double)w[yl] : 1.0));
            if (fac)
                gy *= fac[yl];
        }
        double gk = 0.0;
        if (kl >= 0 && kl < C) {
            double pk = ck_exp_diff((double)x[kl], f.shift, EXACT) * f.inv_s;
            gk = scale * ((f.off - f.total * f.qk) + f.zc * pk);
            if (fac)
                gk *= fac[kl];
        }
        const double F = scale * (f.total + f.zc) * f.inv_s;
        const i64 nt = (C + CK_TILE - 1) / CK_TILE;
        for (i64 t = 0; t < nt; t++) {
            i64 j0 = t * CK_TILE, n = C - j0 < CK_TILE ? C - j0 : CK_TILE;
            F_(coef_src) ct = F_(coef_at)(&cs, j0);
            F_(tile_grad)(x + j0, gr + j0, n, f.shift, F, scale, &ct, NULL, fac ? fac + j0 : NULL);
        }
        if (yl >= 0 && y != f.K)
            gr[yl] = (T)gy;
        if (kl >= 0 && kl < C)
            gr[kl] = (T)gk;
        return;
    }
    /* a non-finite row: the same formulas, elementwise (NaN/inf as IEEE gives them) */
    for (i64 c = 0; c < C; c++) {
        double v = (double)x[c];
        double p = exp(v - f.shift) * f.inv_s;
        double a = (f.sm + ((off + c) == y ? f.hv : 0.0)) * (w ? (double)w[c] : 1.0);
        double gc = (off + c) == f.K ? f.off - f.total * f.qk : f.total * p - a;
        gc = (gc + f.zc * p) * scale;
        gr[c] = (T)(fac ? gc * fac[c] : gc);
    }
}

KATTR static void F_(ce_rows)(const ce_job *J, i64 i0, i64 i1, double *scr)
{
    F_(scratch) S;
    F_(carve)(J, scr, &S);
    if (J->what == CK_PARTIALS)
        for (i64 i = i0; i < i1; i++)
            F_(row_partials)(J, i, &S);
    else if (J->what == CK_GRAD_SLICE)
        for (i64 i = i0; i < i1; i++)
            F_(row_grad_slice)(J, i, &S);
    else
        for (i64 i = i0; i < i1; i++)
            F_(row_full)(J, i, &S);
}

#undef VT
#undef VI
#undef NL
#undef BW
#undef CK_ESC
#undef F_
