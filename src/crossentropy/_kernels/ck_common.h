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
    const void *w;           /* class weights (T), indexed by global class, or NULL */
    int has_ii;
    i64 ii;
    double eps, z, softcap;  /* label smoothing, z-loss, soft cap (0: none) */
    i64 C_glob, off;
    const double *gs;        /* gradient scale per row (gstride 1) or one value (gstride 0) */
    i64 gstride;
    void *loss;              /* per-row loss: T, or double if loss_f64; NULL: none */
    int loss_f64;
    double *lse;             /* per-row log-sum-exp, or NULL */
    double *state;           /* partials mode: (N, CK_NSTATE) out; grad-slice mode: in */
    int exact_rows;          /* 1: non-finite rows as the reference; 0: NaN */
    int what;                /* CK_FULL, CK_PARTIALS, CK_GRAD_SLICE */
} ce_job;

enum { CK_FULL = 0, CK_PARTIALS = 1, CK_GRAD_SLICE = 2 };

/* Per-row partial state of a column slice (documented in _kernels/_chunk.py):
 * m, k, s, xy, has_y, aoff, ak, g. */
#define CK_NSTATE 8
enum { ST_M = 0, ST_K, ST_S, ST_XY, ST_HASY, ST_AOFF, ST_AK, ST_G };

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
                             ck_fin *f)
{
    double S = st->s + st->sc, M = st->m;
    f->regular = (M > -INFINITY) && (M < INFINITY) && (S == S);
    /* log Σ_c e^{x_c − M} = log(1 + S_off): S_off never had the 1 added */
    double L = log1p(S);
    double lse = M + L;
    double Ap = st->aoff + st->ak, Atot = h + Ap;
    /* −Σ_c a_c log p_c = h·(M − x_y) + Σ a'_c (M − x_c) + (Σ_c a_c)·log1p(S_off):
     * each term ≥ 0, no cancellation */
    double loss = st->g + Atot * L;
    if (h != 0.0) {
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
