/* Shared declarations of the kernels: job descriptions and the per-row state. */
#ifndef CK_COMMON_H
#define CK_COMMON_H

#include "ck_math.h"

#define CK_TILE 2048 /* classes per tile: one tile is read from memory once and re-read from L1 */
#define CK_BCE_CHUNK 65536 /* elements per BCE reduction chunk (fixed: results never depend on threads) */

enum { CK_IDX = 0, CK_PROB = 1 };

/* Coefficients a'_c of the "spread" part of the target (everything but the hard
 * index term h at class y): a'_c = (weight_c or 1) · (keep·t_c + spread, or aconst). */
enum { CM_NONE = 0, CM_CONST = 1, CM_W = 2, CM_P = 3, CM_WP = 4 };

/* A cross-entropy job over a (N, C) block whose columns are the global classes
 * [off, off + C) of C_glob classes. */
typedef struct {
    i64 N, C, ldx, ldg, ldt; /* rows, columns, row strides in elements */
    const void *x;           /* logits (T) */
    void *grad;              /* gradient (T), may be x itself; NULL: no gradient */
    int f64;                 /* T = double (else float) */
    int mode;                /* CK_IDX / CK_PROB */
    const void *y;           /* index targets, int64 (or int32 if y32), length N */
    int y32;
    const void *t;           /* probability targets (T), (N, ldt) */
    const void *w;           /* class weights (T) of the block's C columns, or NULL */
    int has_ii;
    i64 ii;
    double eps, z, softcap;  /* label smoothing, z-loss, soft cap (0: none) */
    i64 C_glob, off;
    const double *gs;        /* gradient scale per row (gstride 1) or one value (gstride 0) */
    i64 gstride;
    void *loss;              /* per-row loss: T, or double if loss_f64; NULL: none */
    int loss_f64;
    double *lse;             /* per-row log-sum-exp, or NULL */
    double *state;           /* partials: (N, CK_NSTAT) out; grad-slice: the merged state in */
    i64 *index;              /* partials: (N, 2) out (K, KPINF); grad-slice: in */
    int smooth;              /* split modes: label smoothing's sums are kept */
    double wsum, wpos, wneg; /* partials: Σ w, #w > 0, #w < 0 over the block (row-independent) */
    int exact_rows;          /* full rows: 1 = non-finite rows exactly as the reference */
    int no_escratch;         /* full rows: recompute the exps in the gradient sweep (no scratch) */
    int what;                /* CK_FULL, CK_PARTIALS, CK_GRAD_SLICE */
} ce_job;

enum { CK_FULL = 0, CK_PARTIALS = 1, CK_GRAD_SLICE = 2 };

/* The partial state of a row over a column slice: the layout of
 * crossentropy._kernels.triton._layout (float64 here, float32 there), so that
 * CPU and CUDA states merge by one rule.  F = the slice's entries that are
 * neither NaN nor +inf; sh = M when M is finite, else 0.  Columns: */
#define CK_NSTAT 15
enum {
    S_M = 0,  /* max over F (−inf when F is empty) */
    S_SOFF,   /* Σ_{c∈F, c≠K} e^{x_c − sh} */
    S_XY,     /* x_y if the target is in the slice, else 0 */
    S_HIT,    /* 1 if the target is in the slice */
    S_WY,     /* w_y if the target is in the slice, else 0 */
    S_NNAN,   /* NaN entries */
    S_NPINF,  /* +inf entries */
    S_NPINFW, /* +inf entries with w ≠ 0 (smoothing) */
    S_D,      /* Σ_{c∈F, w_c≠0} w_c (sh − x_c) (smoothing) */
    S_WOFF,   /* Σ_{c≠K} w_c (smoothing) */
    S_WK,     /* w_K (smoothing) */
    S_W,      /* Σ_c w_c (smoothing) */
    S_WPOS,   /* classes with w > 0 (smoothing, weights) */
    S_WNEG,   /* classes with w < 0 (smoothing, weights) */
    S_WKP     /* w at KPINF (smoothing) */
};
/* index columns: K (global column of the first max over F; the slice's first
 * column when F holds only −inf) and KPINF (first +inf, CK_BIG if none) */
#define CK_BIG 2147483647LL

typedef struct {
    double m;     /* max of the slice (−inf if none finite) */
    i64 k;        /* global class index of the first max */
    double s, sc; /* Σ_{c≠k} exp(x_c − m), and its compensation */
    double aoff;  /* Σ_{c≠k} a'_c */
    double ak;    /* a'_k */
    double g;     /* Σ_c a'_c·(sh − x_c), sh = m, or 0 if m = −inf */
} ce_state;

/* Fold the partial state of the next column part (tile or slice, in column order)
 * into st: the online log-sum-exp merge, written so that every sum adds
 * non-negative terms (with non-negative weights).  The part holding the larger
 * maximum keeps its argmax (the earlier part on ties, i.e. the first argmax),
 * its s excludes exactly that element; the other part contributes
 * e^{m_other − m}·(1 + s_other), its maximum element included. */
static inline void ck_fold(ce_state *st, double m, i64 k, double s, double aoff, double ak, double g, int exact)
{
    double A = aoff + ak; /* Σ a' of the incoming part */
    double sh = m > -INFINITY ? m : 0.0;
    double shold = st->m > -INFINITY ? st->m : 0.0;
    if (m > st->m) {
        double Aold = st->aoff + st->ak;
        double f = st->m > -INFINITY ? ck_exp_diff(st->m, m, exact) : 0.0;
        double old = f * (1.0 + (st->s + st->sc)); /* 0·NaN = NaN: a NaN part stays NaN */
        st->s = s;
        st->sc = 0.0;
        twosum_acc(&st->s, &st->sc, old);
        double gold = st->g;
        if (Aold != 0.0)
            gold += (sh - shold) * Aold;
        st->g = g + gold;
        st->aoff = aoff + Aold;
        st->ak = ak;
        st->m = m;
        st->k = k;
    } else {
        double f = m > -INFINITY ? ck_exp_diff(m, st->m, exact) : 0.0;
        twosum_acc(&st->s, &st->sc, f * (1.0 + s));
        double gadd = g;
        if (A != 0.0)
            gadd += (shold - sh) * A;
        st->g += gadd;
        st->aoff += A;
    }
}

/* What a row needs once its state is complete: the loss, the log-sum-exp and the
 * gradient's coefficients (ck_ce_t.h writes g_j = coef·e^{x_j − M} − g·a_j, and
 * gk at the argmax k). */
typedef struct {
    double loss, lse, coef, gk;
    int regular; /* finite max, no NaN: the exact formulas apply */
} ck_fin;

static inline void ck_finish(const ce_state *st, int valid, double h, double xy, i64 y, double g, double z, int exact,
                             int gather, ck_fin *f)
{
    double S = st->s + st->sc, M = st->m;
    f->regular = (M > -INFINITY) && (M < INFINITY) && (S == S);
    /* log Σ_c e^{x_c − M} = log(1 + S_off): S_off never had the 1 added */
    double L = ck_log1p(S);
    double lse = M + L;
    double Ap = st->aoff + st->ak, Atot = h + Ap;
    /* −Σ_c a_c log p_c = h·(M − x_y) + Σ a'_c (M − x_c) + (Σ_c a_c)·log1p(S_off):
     * each term ≥ 0, no cancellation */
    double loss = st->g + Atot * L;
    /* a zero coefficient contributes 0 (xlogy) with smoothing; the plain index
     * loss is −log p_y·w_y, so w_y = 0 at an impossible class is 0·inf = NaN as
     * in the reference (and PyTorch) */
    if (h != 0.0 || (gather && valid)) {
        double d = M - xy, lo = 0.0;
        if (exact && isfinite(d)) {
            double bp = d - M;
            lo = (M - (d - bp)) + (-xy - bp);
        }
        loss = h * d + (loss + h * lo);
    }
    if (z != 0.0 && valid)
        loss += z * lse * lse;
    double inv = 1.0 / (1.0 + S), q = S * inv; /* p_k = inv, 1 − p_k = q */
    double zz = (z != 0.0 && valid) ? 2.0 * z * lse : 0.0;
    f->coef = g * (Atot + zz) * inv;
    /* at the argmax: Σ_c a_c·p_k − a_k = Σ_{c≠k} a_c − (Σ_c a_c)·(1 − p_k), never p_k − 1 */
    double aoff_all = st->aoff + ((y >= 0 && y != st->k) ? h : 0.0);
    f->gk = g * ((aoff_all - Atot * q) + zz * inv);
    f->loss = loss;
    f->lse = lse;
}

/* The loss, the lse and the gradient's coefficients of a row from its (merged)
 * slice state, as crossentropy._kernels.triton._ce_triton._finalize computes
 * them (float64 here): finite maximum: log S = log1p(S_off), −log p_y =
 * (m − x_y) + log1p(S_off); otherwise the reference's plain formula, decided
 * from the counts (NaN anywhere: NaN; +inf: S = inf; all −inf: S = 0). */
typedef struct {
    double loss, lse, shift, inv_s, qk, total, off, zc, sm, hv;
    i64 K;
    int finite;
} ck_fin2;

static inline void ck_finalize(const double *s, i64 k, i64 kpinf, i64 y, int valid, int smooth, int has_w,
                               double keep, double eps_v, double z, ck_fin2 *f)
{
    const double m = s[S_M], s_off = s[S_SOFF], xy = s[S_XY], hit = s[S_HIT], wy = s[S_WY];
    const double nnan = s[S_NNAN], npinf = s[S_NPINF], npinfw = s[S_NPINFW], d = s[S_D], woff = s[S_WOFF];
    const double wsum = s[S_W], wpos = s[S_WPOS], wneg = s[S_WNEG], wkp = s[S_WKP];
    const int isnan_ = nnan > 0.0, pinf = !isnan_ && npinf > 0.0;
    const int finite = !isnan_ && npinf == 0.0 && m > -INFINITY;
    const double shift = finite ? m : 0.0;
    /* Σ_{j∈F} e^{x_j} for a +inf row (where the plain sum overflows too) */
    const double e_f = m > -INFINITY ? exp(m) * (1.0 + s_off) : 0.0;
    const double S = finite ? 1.0 + s_off : pinf ? INFINITY : isnan_ ? NAN : 0.0;
    const double SOFF = finite ? s_off : pinf ? (npinf > 1.5 ? INFINITY : e_f) : isnan_ ? NAN : 0.0;
    const double logs = finite ? ck_log1p(s_off) : log(S);
    const double lse = shift + logs;
    const i64 K = pinf ? kpinf : k;
    /* −log p_y = (m − x_y) + log1p(S_off): two non-negative terms */
    const double nll = (shift - xy) + logs;
    const double vf = valid ? 1.0 : 0.0;
    double loss, hv, sm, total, off, zc = 0.0;
    if (smooth) {
        /* −Σ_c a_c log p_c, a_c = w_c((1−ε)[c=y] + ε/V) = (1−ε)w_y·nll + (ε/V)·(D + Σw·log S) */
        const double ay = keep * wy;
        const double ls = (ay == 0.0 ? 0.0 : ay * nll) + eps_v * (d + wsum * logs);
        const int anynz = has_w ? (wpos + wneg) > 0.0 : wsum == wsum;
        const int pinf_nan = has_w ? npinfw > 0.0 : npinf > 0.0;
        const int pos = wpos > 0.0, neg = wneg > 0.0;
        /* +inf row: log p = −inf on F (±inf by the signs of a_c), NaN on the +inf entries */
        const double ls_pinf = (pinf_nan || (pos && neg)) ? NAN : pos ? INFINITY : neg ? -INFINITY : 0.0;
        /* NaN or all −inf row: log p = NaN everywhere, 0·log p = 0 only where a_c = 0 */
        const double ls_bad = anynz ? NAN : 0.0;
        loss = finite ? ls : pinf ? ls_pinf : ls_bad;
        hv = vf * keep;
        sm = vf * eps_v;
        total = hv * wy + sm * wsum;
        const double woff_k = pinf ? wsum - wkp : woff;
        off = (y == K ? 0.0 : hv * wy) + sm * woff_k;
    } else {
        loss = nll * wy;
        hv = vf;
        sm = 0.0;
        total = vf * wy;
        off = y == K ? 0.0 : total;
    }
    if (z != 0.0) {
        loss += z * lse * lse; /* z-loss (PaLM) */
        zc = 2.0 * z * lse * vf;
    }
    if (valid && hit == 0.0) { /* a counted row whose target no slice held: NaN, never a number */
        loss = NAN;
        total = NAN;
    }
    f->loss = valid ? loss : 0.0;
    f->lse = lse;
    f->shift = shift;
    f->inv_s = 1.0 / S;
    f->qk = SOFF / S; /* 1 − p_K = S_off/S, not p_K − 1 */
    f->total = total;
    f->off = off;
    f->zc = zc;
    f->sm = sm;
    f->hv = hv;
    f->K = K;
    f->finite = finite;
}

typedef struct {
    i64 n;
    const void *x, *t;
    void *grad;       /* NULL: no gradient */
    int f64;
    const void *pw;   /* pos_weight (T), period P along the flat array; NULL: none */
    i64 P;
    const double *gs; /* gradient scale, stride gstride */
    i64 gstride;
    void *loss;       /* per-element loss (T) or NULL: per-chunk sums instead */
    double *part;     /* 2 doubles per chunk: compensated sum (hi, lo) */
    int check;        /* count targets outside [0, 1] */
    i64 *nbad;        /* one counter per chunk */
} bce_job;

#endif
