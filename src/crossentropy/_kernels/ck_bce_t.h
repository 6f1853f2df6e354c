/* Binary cross-entropy with logits, elementwise, for one element type T and one ISA
 * (included by ck_kern.h like ck_ce_t.h).
 *
 * Per element, with e = exp(−|x|) ∈ [0, 1] computed once:
 *     softplus(±x) = max(±x, 0) + log1p(e)          (= −log σ(∓x); never overflows)
 *     loss = w₊·y·softplus(−x) + (1 − y)·softplus(x)  (a zero coefficient contributes 0)
 *     σ(x) = 1/(1 + e) if x ≥ 0 else e/(1 + e), σ(−x) likewise (never 1 − σ)
 *     grad = (1 − y)·σ(x) − w₊·y·σ(−x)
 * For a confident prediction (loss = log1p(e) ≈ e, down to 1e-30 and into the
 * subnormals) every step keeps full relative precision.
 *
 * A reduced loss is summed per fixed chunk of CK_BCE_CHUNK elements (lanes, then a
 * fixed-order combination; TwoSum-compensated for float64); the caller adds the
 * chunk sums in chunk order.  The value of a chunk depends only on its elements.
 */

#define CKC_(a, b) a##b
#define CKC(a, b) CKC_(a, b)
#define F_(name) CKC(CKC(name##_, TS), KSUF)

KINL vd F_(bce_ld)(const T *p, i64 r)
{
    if (r >= VW)
        return F_(ld8)(p);
    T buf[VW] = {0};
    memcpy(buf, p, (size_t)r * sizeof(T));
    return F_(ld8)(buf);
}

KINL vd F_(bce_gs)(const double *p, i64 r)
{
    if (r >= VW)
        return vloadd(p);
    double buf[VW] = {0};
    memcpy(buf, p, (size_t)r * sizeof(double));
    return vloadd(buf);
}

/* VW elements (r of them real): loss (padding lanes 0), gradient stored if gr */
KINL vd F_(bce8)(const T *x, const T *t, const T *pw, int has_pw, double gsc, const double *gsv, T *gr,
                      i64 r, vl *bad, int check)
{
    vd xv = F_(bce_ld)(x, r), tv = F_(bce_ld)(t, r);
    vd zero = vsplat(0.0);
    vd a = vabs(xv);
#if EXACT
    vd e = vexp_hi(-a, zero);
#else
    vd e = vexp_lo(-a);
#endif
    vd l1 = vlog1p01(e, EXACT);
    vd sp_pos = vsel((vl)(xv > zero), xv, zero) + l1;
    vd sp_neg = vsel((vl)(xv < zero), -xv, zero) + l1;
    vd wt = has_pw ? F_(bce_ld)(pw, r) * tv : tv;
    vd q = 1.0 - tv;
    vd loss = vandn(wt * sp_neg, (vl)(wt == zero)) + vandn(q * sp_pos, (vl)(q == zero));
    vl lanes = lsplat(-1);
    if (r < VW)
        for (int l = (int)r; l < VW; l++)
            lanes[l] = 0;
    if (check) { /* NaN passes, as in _validation */
        vl lo = (vl)(tv < zero), hi = (vl)(tv > vsplat(1.0));
        *bad -= (lo | hi) & lanes;
    }
    if (gr) {
        vd d = 1.0 + e;
        vd inv = 1.0 / d;
        vd ei = e * inv;
        vl pos = (vl)(xv >= zero);
        vd s = vsel(pos, inv, ei), sn = vsel(pos, ei, inv);
        vd gv = q * s - wt * sn;
        gv = gv * (gsv ? F_(bce_gs)(gsv, r) : vsplat(gsc));
        if (r >= VW)
            F_(st8)(gr, gv);
        else {
            T buf[VW];
            F_(st8)(buf, gv);
            memcpy(gr, buf, (size_t)r * sizeof(T));
        }
    }
    return vand(loss, lanes);
}

KATTR static void F_(bce_chunk)(const bce_job *J, i64 c)
{
    const i64 n = J->n, j0 = c * CK_BCE_CHUNK, j1 = j0 + CK_BCE_CHUNK < n ? j0 + CK_BCE_CHUNK : n;
    const T *x = (const T *)J->x, *t = (const T *)J->t, *pw = (const T *)J->pw;
    T *gr = (T *)J->grad, *lo = (T *)J->loss;
    const i64 P = J->pw ? J->P : 0;
    vd s = vsplat(0.0), sc = vsplat(0.0);
    vl bad = lsplat(0);
    i64 j = j0;
    while (j < j1) {
        /* segments aligned to pos_weight's period: no modulo in the inner loop */
        i64 col = P ? j % P : 0;
        i64 end = P ? (j - col + P < j1 ? j - col + P : j1) : j1;
        for (i64 jj = j; jj < end; jj += VW) {
            i64 r = end - jj < VW ? end - jj : VW;
            const double *gsv = J->gstride ? J->gs + jj : NULL;
            vd l = F_(bce8)(x + jj, t + jj, P ? pw + col + (jj - j) : NULL, P != 0, J->gs[0], gsv,
                            gr ? gr + jj : NULL, r, &bad, J->check);
            if (lo) {
                if (r == VW)
                    F_(st8)(lo + jj, l);
                else {
                    T buf[VW];
                    F_(st8)(buf, l);
                    memcpy(lo + jj, buf, (size_t)r * sizeof(T));
                }
            } else {
#if EXACT
                vtwosum_acc(&s, &sc, l);
#else
                /* the sum of the float32 values that reduction='none' would return */
                s += vround_f32(l);
#endif
            }
        }
        j = end;
    }
    if (!lo) {
        double hi = 0.0, lc = 0.0;
        for (int k = 0; k < VW; k++) {
            twosum_acc(&hi, &lc, s[k]);
            lc += sc[k];
        }
        J->part[2 * c] = hi;
        J->part[2 * c + 1] = lc;
    }
    if (J->check) {
        i64 nb = 0;
        for (int k = 0; k < VW; k++)
            nb += bad[k];
        J->nbad[c] = nb;
    }
}

#undef F_
