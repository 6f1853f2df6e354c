/* crossentropy._kernels._ckernels: the compiled CPU kernels, their Python entry
 * points and their configuration.
 *
 * Entry points (METH_FASTCALL: no tuple/dict per call; the direct hooks are the
 * per-call overhead of a plain `cross_entropy(x, y)`):
 *
 *   ce_direct(...)   the whole of _fastpath.cross_entropy_direct (checks, kernel,
 *                    reduction, result objects), or NotImplemented
 *   bce_direct(...)  the same for _fastpath.bce_direct
 *   ce_kernel(...)   one CE job over a (N, C) block (full rows, a slice's partials,
 *                    or a slice's gradient), for _fastpath and _kernels._chunk
 *   bce_kernel(...)  one elementwise BCE-with-logits job
 *   configure / config / use_isa   threads, row block, on/off, ISA (tests)
 *
 * Arrays are NumPy arrays, read through the NumPy C API (no buffer-protocol
 * round trip).  The GIL is released while a kernel runs on more than a few
 * thousand elements.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdlib.h>

#include "ck_isa.h"
#include "ck_pool.h"

static const ck_isa_t *isa;
static const char *isa_name;
static int cfg_enabled = 1;
static int cfg_threads = 0;   /* 0: all available cores */
static i64 cfg_row_block = 0; /* 0: about four tasks per thread */
static int default_threads = 1;

#define SMALL_WORK 32768 /* elements below which a job runs on the calling thread alone */
#define GIL_WORK 4096    /* elements from which the GIL is released */
#define SCRATCH_MAX (1 << 22)

static PyObject *str_none, *str_sum, *str_mean;

static int n_threads(void) { return cfg_threads > 0 ? cfg_threads : default_threads; }

/* ---------------------------------------------------------------------------------- */
/* running jobs                                                                        */
/* ---------------------------------------------------------------------------------- */

typedef struct {
    const ce_job *J;
    i64 block;
    double *scr;
    i64 scr_n;
} ce_ctx;


static void ce_task(void *p, i64 task, int tid)
{
    ce_ctx *c = (ce_ctx *)p;
    i64 i0 = task * c->block, i1 = i0 + c->block < c->J->N ? i0 + c->block : c->J->N;
    isa->ce_rows[c->J->f64](c->J, i0, i1, c->scr ? c->scr + (i64)tid * c->scr_n : NULL);
}

/* Run a CE job; the caller may have released the GIL.  Each row is computed by
 * the same code whichever thread and block it falls in.  Returns -1 when the
 * scratch a soft cap needs cannot be allocated (nothing computed then); a
 * missing scratch for the exps only switches every row to recomputing them. */
static int run_ce(ce_job *J)
{
    i64 N = J->N, C = J->C;
    if (N <= 0)
        return 0;
    int nth = n_threads();
    if (nth < 1 || N < 2 || N * C < SMALL_WORK)
        nth = 1;
    i64 block = cfg_row_block > 0 ? cfg_row_block : (N + 4 * (i64)nth - 1) / (4 * (i64)nth);
    if (block < 1)
        block = 1;
    i64 ntasks = (N + block - 1) / block;
    if (nth > ntasks)
        nth = (int)ntasks;
    /* per-thread scratch: the exps of a row (reused by the gradient sweep) and the
     * tile maxima; with a soft cap the capped row and its derivative */
    i64 e_n = (J->grad && J->what == CK_FULL && C <= SCRATCH_MAX) ? C + (C + CK_TILE - 1) / CK_TILE + 8 : 0;
    i64 cap_n = J->softcap != 0.0 ? 2 * C + 16 : 0;
    J->no_escratch = e_n == 0;
    double *scr = NULL;
    if (e_n + cap_n) {
        scr = (double *)malloc((size_t)nth * (size_t)(e_n + cap_n) * sizeof(double));
        if (!scr && e_n) { /* exps recomputed in the gradient sweep, for every row alike */
            e_n = 0;
            J->no_escratch = 1;
            scr = cap_n ? (double *)malloc((size_t)nth * (size_t)cap_n * sizeof(double)) : NULL;
        }
        if (!scr && cap_n)
            return -1;
    }
    ce_ctx ctx = {J, block, scr, e_n + cap_n};
    if (nth == 1)
        for (i64 t = 0; t < ntasks; t++)
            ce_task(&ctx, t, 0);
    else
        ck_pool_run(ce_task, &ctx, ntasks, nth);
    free(scr);
    return 0;
}

typedef struct {
    const bce_job *J;
} bce_ctx;

static void bce_task(void *p, i64 task, int tid)
{
    (void)tid;
    const bce_job *J = ((bce_ctx *)p)->J;
    isa->bce_chunk[J->f64](J, task);
}

static void run_bce(const bce_job *J)
{
    i64 nchunk = (J->n + CK_BCE_CHUNK - 1) / CK_BCE_CHUNK;
    if (nchunk <= 0)
        return;
    int nth = n_threads();
    if (J->n < SMALL_WORK)
        nth = 1;
    bce_ctx ctx = {J};
    if (nth <= 1 || nchunk == 1)
        for (i64 c = 0; c < nchunk; c++)
            bce_task(&ctx, c, 0);
    else
        ck_pool_run(bce_task, &ctx, nchunk, nth);
}

/* Σ of per-chunk compensated sums, in chunk order */
static void fold_parts(const double *part, i64 nchunk, double *hi, double *lo)
{
    double h = 0.0, l = 0.0;
    for (i64 c = 0; c < nchunk; c++) {
        twosum_acc(&h, &l, part[2 * c]);
        l += part[2 * c + 1];
    }
    *hi = h;
    *lo = l;
}

/* compensated Σ v (T = float or double) in a fixed order: 16 lanes, then the lanes */
static void sum_comp(const void *v, i64 n, int f64, double *hi, double *lo)
{
    double h = 0.0, l = 0.0;
    double s[16] = {0}, c[16] = {0};
    i64 j = 0;
    if (f64) {
        const double *d = (const double *)v;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++)
                twosum_acc(&s[k], &c[k], d[j + k]);
        for (; j < n; j++)
            twosum_acc(&s[j & 15], &c[j & 15], d[j]);
    } else {
        const float *f = (const float *)v;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++)
                twosum_acc(&s[k], &c[k], (double)f[j + k]);
        for (; j < n; j++)
            twosum_acc(&s[j & 15], &c[j & 15], (double)f[j]);
    }
    for (int k = 0; k < 16; k++) {
        twosum_acc(&h, &l, s[k]);
        l += c[k];
    }
    *hi = h;
    *lo = l;
}

/* hi + lo of a compensated sum; an infinite or NaN hi has no meaningful lo (inf − inf) */
static double total_hl(double hi, double lo) { return isfinite(hi) ? hi + lo : hi; }

/* (hi + lo) / d, rounded once (nearly): the mean of a compensated sum */
static double div_hl(double hi, double lo, double d)
{
    double q = hi / d;
    if (!isfinite(q) || !isfinite(hi))
        return total_hl(hi, lo) / d;
    double r = fma(-q, d, hi);
    return q + (r + lo) / d;
}

/* ---------------------------------------------------------------------------------- */
/* argument helpers                                                                    */
/* ---------------------------------------------------------------------------------- */

/* a well-behaved float32/float64 array: aligned, native byte order */
static int float_type(PyArrayObject *a)
{
    int t = PyArray_TYPE(a);
    if ((t != NPY_FLOAT && t != NPY_DOUBLE) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a))
        return -1;
    return t == NPY_DOUBLE;
}

/* a signed 64/32-bit integer array: 0 (int64), 1 (int32), -1 otherwise */
static int int_type(PyArrayObject *a)
{
    int t = PyArray_TYPE(a);
    if (!PyTypeNum_ISSIGNED(t) || !PyTypeNum_ISINTEGER(t) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a) ||
        !PyArray_IS_C_CONTIGUOUS(a))
        return -1;
    if (PyArray_ITEMSIZE(a) == 8)
        return 0;
    if (PyArray_ITEMSIZE(a) == 4)
        return 1;
    return -1;
}

/* an exact int or float Python number (bool excluded, as in the Python checks) */
static int plain_number(PyObject *o, double *v)
{
    if (PyFloat_CheckExact(o)) {
        *v = PyFloat_AS_DOUBLE(o);
        return 1;
    }
    if (PyLong_CheckExact(o)) {
        *v = PyLong_AsDouble(o);
        if (*v == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return 1;
    }
    return 0;
}

/* first target outside [0, C) that is not ignore_index, or -1; counts the others */
static i64 check_targets(const void *y, int y32, i64 N, i64 C, int has_ii, i64 ii, i64 *nvalid)
{
    i64 nv = 0;
    for (i64 i = 0; i < N; i++) {
        i64 v = y32 ? (i64)((const int32_t *)y)[i] : ((const i64 *)y)[i];
        if (has_ii && v == ii)
            continue;
        if (v < 0 || v >= C)
            return i;
        nv++;
    }
    *nvalid = nv;
    return -1;
}

/* collect positional + keyword arguments into slots (names in order) */
static int collect(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *const *names, int n,
                   PyObject **out)
{
    if (nargs > n)
        return -1;
    for (int k = 0; k < n; k++)
        out[k] = k < nargs ? args[k] : NULL;
    if (kwnames) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t j = 0; j < nk; j++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, j);
            int found = 0;
            for (int k = 0; k < n; k++)
                if (PyUnicode_CompareWithASCIIString(key, names[k]) == 0) {
                    if (out[k])
                        return -1;
                    out[k] = args[nargs + j];
                    found = 1;
                    break;
                }
            if (!found)
                return -1;
        }
    }
    for (int k = 0; k < n; k++)
        if (!out[k])
            out[k] = Py_None; /* every hook argument defaults to None here */
    return 0;
}

static int reduction_code(PyObject *r)
{
    /* 0 none, 1 sum, 2 mean, -1 anything else (sum_over_batch_size: the Python path) */
    if (r == str_mean)
        return 2;
    if (r == str_none)
        return 0;
    if (r == str_sum)
        return 1;
    if (!PyUnicode_Check(r))
        return -1;
    if (PyUnicode_Compare(r, str_mean) == 0)
        return 2;
    if (PyUnicode_Compare(r, str_none) == 0)
        return 0;
    if (PyUnicode_Compare(r, str_sum) == 0)
        return 1;
    return -1;
}

static PyObject *make_scalar(double v, int f64)
{
    PyArray_Descr *d = PyArray_DescrFromType(f64 ? NPY_DOUBLE : NPY_FLOAT);
    PyObject *r;
    if (f64)
        r = PyArray_Scalar(&v, d, NULL);
    else {
        float f = (float)v;
        r = PyArray_Scalar(&f, d, NULL);
    }
    Py_DECREF(d);
    return r;
}

/* (value, grad or None): steals both references */
static PyObject *value_grad_pair(PyObject *value, PyObject *grad)
{
    if (!grad) {
        grad = Py_None;
        Py_INCREF(grad);
    }
    PyObject *res = PyTuple_New(2);
    if (!res) {
        Py_DECREF(value);
        Py_DECREF(grad);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, value);
    PyTuple_SET_ITEM(res, 1, grad);
    return res;
}

/* grad_into: NULL if unusable here (the Python path then validates and raises),
 * else the array; *inplace when it is the input itself */
static PyArrayObject *usable_grad_into(PyObject *gi, PyArrayObject *x, int *inplace)
{
    if (Py_TYPE(gi) != &PyArray_Type)
        return NULL;
    PyArrayObject *g = (PyArrayObject *)gi;
    if (PyArray_TYPE(g) != PyArray_TYPE(x) || PyArray_NDIM(g) != PyArray_NDIM(x) || !PyArray_ISCARRAY(g) ||
        !PyArray_ISNOTSWAPPED(g))
        return NULL;
    for (int d = 0; d < PyArray_NDIM(x); d++)
        if (PyArray_DIM(g, d) != PyArray_DIM(x, d))
            return NULL;
    char *a = PyArray_BYTES(x), *b = PyArray_BYTES(g);
    npy_intp nb = PyArray_NBYTES(x);
    if (a == b) {
        *inplace = 1;
        return g;
    }
    if (a < b + nb && b < a + nb)
        return NULL; /* overlapping without being the input: the Python path raises */
    *inplace = 0;
    return g;
}

/* ---------------------------------------------------------------------------------- */
/* ce_direct: _fastpath.cross_entropy_direct                                           */
/* ---------------------------------------------------------------------------------- */

static const char *const ce_direct_names[] = {"input", "target", "need_grad", "grad_output", "axis",
                                              "weight", "sample_weight", "ignore_index", "label_smoothing",
                                              "reduction", "z_loss", "base", "grad_into"};

static PyObject *ce_direct(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)self;
    PyObject *a[13];
    if (!cfg_enabled || !isa || collect(args, nargs, kwnames, ce_direct_names, 13, a) < 0)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *input = a[0], *target = a[1], *need_grad_o = a[2], *grad_output = a[3], *axis_o = a[4];
    if (Py_TYPE(input) != &PyArray_Type || Py_TYPE(target) != &PyArray_Type || a[5] != Py_None ||
        a[6] != Py_None || a[11] != Py_None)
        Py_RETURN_NOTIMPLEMENTED;
    PyArrayObject *x = (PyArrayObject *)input, *yt = (PyArrayObject *)target;
    int f64 = float_type(x);
    int nd = PyArray_NDIM(x);
    if (f64 < 0 || nd < 1 || !PyArray_IS_C_CONTIGUOUS(x))
        Py_RETURN_NOTIMPLEMENTED;
    i64 C = PyArray_DIM(x, nd - 1);
    int y32 = int_type(yt);
    if (C <= 0 || y32 < 0 || PyArray_NDIM(yt) != nd - 1)
        Py_RETURN_NOTIMPLEMENTED;
    for (int d = 0; d < nd - 1; d++)
        if (PyArray_DIM(yt, d) != PyArray_DIM(x, d))
            Py_RETURN_NOTIMPLEMENTED;
    int red = reduction_code(a[9]);
    if (red < 0 || !PyLong_CheckExact(axis_o))
        Py_RETURN_NOTIMPLEMENTED;
    long axis = PyLong_AsLong(axis_o);
    if (axis != -1 && axis != nd - 1) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    double eps, z;
    if (!plain_number(a[8], &eps) || !plain_number(a[10], &z) || !(eps >= 0.0 && eps <= 1.0) || !(z >= 0.0))
        Py_RETURN_NOTIMPLEMENTED;
    int has_ii = a[7] != Py_None;
    i64 ii = 0;
    if (has_ii) {
        if (!PyLong_CheckExact(a[7]))
            Py_RETURN_NOTIMPLEMENTED;
        int overflow = 0;
        ii = PyLong_AsLongLongAndOverflow(a[7], &overflow);
        if (overflow || (ii == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    int need_grad = PyObject_IsTrue(need_grad_o);
    if (need_grad < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    double go = 1.0;
    if (need_grad && grad_output != Py_None && (red == 0 || !plain_number(grad_output, &go)))
        Py_RETURN_NOTIMPLEMENTED;
    int inplace = 0;
    PyArrayObject *gi = NULL;
    if (need_grad && a[12] != Py_None) {
        gi = usable_grad_into(a[12], x, &inplace);
        if (!gi)
            Py_RETURN_NOTIMPLEMENTED;
    }
    i64 N = 1;
    for (int d = 0; d < nd - 1; d++)
        N *= PyArray_DIM(x, d);
    i64 nvalid = 0;
    /* a bad target: the Python path runs and raises its error; nothing was written */
    if (check_targets(PyArray_DATA(yt), y32, N, C, has_ii, ii, &nvalid) >= 0)
        Py_RETURN_NOTIMPLEMENTED;

    PyObject *grad = NULL, *lossarr = NULL;
    if (need_grad) {
        if (gi) {
            grad = (PyObject *)gi;
            Py_INCREF(grad);
        } else if (!(grad = PyArray_SimpleNew(nd, PyArray_DIMS(x), PyArray_TYPE(x))))
            return NULL;
    }
    size_t isz = f64 ? 8 : 4;
    void *lossbuf;
    char stackbuf[512];
    if (red == 0) {
        if (!(lossarr = PyArray_SimpleNew(nd - 1, PyArray_DIMS(x), PyArray_TYPE(x)))) {
            Py_XDECREF(grad);
            return NULL;
        }
        lossbuf = PyArray_DATA((PyArrayObject *)lossarr);
    } else if ((size_t)N * isz <= sizeof stackbuf) {
        lossbuf = stackbuf;
    } else if (!(lossbuf = malloc((size_t)N * isz))) {
        Py_XDECREF(grad);
        return PyErr_NoMemory();
    }
    /* the gradient's scale, what finish() would multiply it by */
    double gscale = (red == 2 ? 1.0 / (double)(nvalid > 0 ? nvalid : 1) : 1.0) * go;
    ce_job J;
    memset(&J, 0, sizeof J);
    J.N = N;
    J.C = C;
    J.ldx = J.ldg = C;
    J.x = PyArray_DATA(x);
    J.grad = grad ? PyArray_DATA((PyArrayObject *)grad) : NULL;
    J.f64 = f64;
    J.mode = CK_IDX;
    J.y = PyArray_DATA(yt);
    J.y32 = y32;
    J.has_ii = has_ii;
    J.ii = ii;
    J.eps = eps;
    J.z = z;
    J.C_glob = C;
    J.gs = &gscale;
    J.loss = lossbuf;
    J.exact_rows = 1;
    J.what = CK_FULL;
    (void)inplace;
    if (N * C >= GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS run_ce(&J);
        Py_END_ALLOW_THREADS
    } else
        run_ce(&J); /* no soft cap here: cannot fail */
    PyObject *value;
    if (red == 0)
        value = lossarr;
    else {
        double hi, lo;
        sum_comp(lossbuf, N, f64, &hi, &lo);
        if (lossbuf != stackbuf)
            free(lossbuf);
        double v = red == 2 ? div_hl(hi, lo, (double)nvalid) : total_hl(hi, lo); /* 0/0 = NaN, as finish() */
        if (!(value = make_scalar(v, f64))) {
            Py_XDECREF(grad);
            return NULL;
        }
    }
    return value_grad_pair(value, grad);
}

/* ---------------------------------------------------------------------------------- */
/* bce_direct: _fastpath.bce_direct                                                    */
/* ---------------------------------------------------------------------------------- */

static const char *const bce_direct_names[] = {"input", "target", "need_grad", "grad_output", "sample_weight",
                                               "pos_weight", "label_smoothing", "reduction", "base", "grad_into"};

static PyObject *bce_direct(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)self;
    PyObject *a[10];
    if (!cfg_enabled || !isa || collect(args, nargs, kwnames, bce_direct_names, 10, a) < 0)
        Py_RETURN_NOTIMPLEMENTED;
    if (Py_TYPE(a[0]) != &PyArray_Type || Py_TYPE(a[1]) != &PyArray_Type || a[4] != Py_None ||
        a[5] != Py_None || a[8] != Py_None || a[9] != Py_None)
        Py_RETURN_NOTIMPLEMENTED;
    PyArrayObject *x = (PyArrayObject *)a[0], *t = (PyArrayObject *)a[1];
    int f64 = float_type(x);
    if (f64 < 0 || PyArray_TYPE(t) != PyArray_TYPE(x) || float_type(t) < 0 || !PyArray_IS_C_CONTIGUOUS(x) ||
        !PyArray_IS_C_CONTIGUOUS(t) || PyArray_NDIM(t) != PyArray_NDIM(x))
        Py_RETURN_NOTIMPLEMENTED;
    int nd = PyArray_NDIM(x);
    for (int d = 0; d < nd; d++)
        if (PyArray_DIM(t, d) != PyArray_DIM(x, d))
            Py_RETURN_NOTIMPLEMENTED;
    double ls;
    if (!plain_number(a[6], &ls) || ls != 0.0)
        Py_RETURN_NOTIMPLEMENTED;
    int red = reduction_code(a[7]);
    if (red < 0)
        Py_RETURN_NOTIMPLEMENTED;
    int need_grad = PyObject_IsTrue(a[2]);
    if (need_grad < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    double go = 1.0;
    if (need_grad && a[3] != Py_None && (red == 0 || !plain_number(a[3], &go)))
        Py_RETURN_NOTIMPLEMENTED;
    i64 n = PyArray_SIZE(x);
    PyObject *grad = NULL, *lossarr = NULL;
    if (need_grad && !(grad = PyArray_SimpleNew(nd, PyArray_DIMS(x), PyArray_TYPE(x))))
        return NULL;
    if (red == 0 && !(lossarr = PyArray_SimpleNew(nd, PyArray_DIMS(x), PyArray_TYPE(x)))) {
        Py_XDECREF(grad);
        return NULL;
    }
    i64 nchunk = (n + CK_BCE_CHUNK - 1) / CK_BCE_CHUNK;
    double gscale = (red == 2 ? 1.0 / (double)(n > 0 ? n : 1) : 1.0) * go;
    double *part = (double *)malloc((size_t)(2 * nchunk + 1) * sizeof(double));
    i64 *nbad = (i64 *)calloc((size_t)nchunk + 1, sizeof(i64));
    if (!part || !nbad) {
        free(part);
        free(nbad);
        Py_XDECREF(grad);
        Py_XDECREF(lossarr);
        return PyErr_NoMemory();
    }
    bce_job J;
    memset(&J, 0, sizeof J);
    J.n = n;
    J.x = PyArray_DATA(x);
    J.t = PyArray_DATA(t);
    J.grad = grad ? PyArray_DATA((PyArrayObject *)grad) : NULL;
    J.f64 = f64;
    J.gs = &gscale;
    J.loss = lossarr ? PyArray_DATA((PyArrayObject *)lossarr) : NULL;
    J.part = part;
    J.check = 1;
    J.nbad = nbad;
    if (n >= GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS run_bce(&J);
        Py_END_ALLOW_THREADS
    } else
        run_bce(&J);
    i64 bad = 0;
    for (i64 c = 0; c < nchunk; c++)
        bad += nbad[c];
    double hi = 0.0, lo = 0.0;
    if (!lossarr)
        fold_parts(part, nchunk, &hi, &lo);
    free(part);
    free(nbad);
    if (bad) { /* a target outside [0, 1]: the Python path raises (nothing of the caller's was written) */
        Py_XDECREF(grad);
        Py_XDECREF(lossarr);
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *value = lossarr;
    if (!value) {
        double v = red == 2 ? div_hl(hi, lo, (double)n) : total_hl(hi, lo);
        if (!(value = make_scalar(v, f64))) {
            Py_XDECREF(grad);
            return NULL;
        }
    }
    return value_grad_pair(value, grad);
}

/* ---------------------------------------------------------------------------------- */
/* ce_value / bce_value: the public loss in one C call when the direct path applies    */
/* ---------------------------------------------------------------------------------- */

static PyObject *kw_ce, *kw_ce_cap, *kw_bce; /* keyword names of the fallback calls */

/* a direct hook's (value, grad) → value (new reference); NotImplemented and NULL pass through */
static PyObject *first_or_notimpl(PyObject *r)
{
    if (!r || r == Py_NotImplemented)
        return r;
    PyObject *v = PyTuple_GET_ITEM(r, 0);
    Py_INCREF(v);
    Py_DECREF(r);
    return v;
}

/* fallback(*args[0:2], **dict(zip(names, args[2:]))) → result[0] */
static PyObject *call_fallback(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *r = PyObject_Vectorcall(fallback, args, 2, kwnames);
    (void)nargs;
    if (!r)
        return NULL;
    PyObject *v = PySequence_GetItem(r, 0);
    Py_DECREF(r);
    return v;
}

/* ce_value(fallback, input, target, axis, weight, sample_weight, ignore_index,
 *          label_smoothing, reduction, z_loss, base[, softcap]): what cross_entropy
 * returns.  A soft cap (not None) goes to the fallback, which takes it as a keyword. */
static PyObject *ce_value(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 && nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "ce_value takes 11 or 12 arguments");
        return NULL;
    }
    int cap = nargs == 12 && args[11] != Py_None;
    if (!cap) {
        PyObject *d[13] = {args[1], args[2], Py_False, Py_None, args[3], args[4], args[5], args[6], args[7],
                           args[8], args[9], args[10], Py_None};
        PyObject *r = first_or_notimpl(ce_direct(self, d, 13, NULL));
        if (r != Py_NotImplemented)
            return r; /* the value, or NULL with an error set */
        Py_DECREF(r);
    }
    return call_fallback(args[0], args + 1, nargs - 1, cap ? kw_ce_cap : kw_ce);
}

/* bce_value(fallback, input, target, sample_weight, pos_weight, label_smoothing,
 *           reduction, base): what binary_cross_entropy_with_logits returns */
static PyObject *bce_value(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "bce_value takes 8 arguments");
        return NULL;
    }
    PyObject *d[10] = {args[1], args[2], Py_False, Py_None, args[3], args[4], args[5], args[6], args[7], Py_None};
    PyObject *r = first_or_notimpl(bce_direct(self, d, 10, NULL));
    if (r != Py_NotImplemented)
        return r;
    Py_DECREF(r);
    return call_fallback(args[0], args + 1, nargs - 1, kw_bce);
}

/* ---------------------------------------------------------------------------------- */
/* ce_kernel / bce_kernel: the general entries (validated by the Python callers;       */
/* misuse raises ValueError here, never a crash)                                       */
/* ---------------------------------------------------------------------------------- */

static int bad_arg(const char *what)
{
    PyErr_Format(PyExc_ValueError, "_ckernels: %s", what);
    return -1;
}

static int entry_check(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", name, want);
        return -1;
    }
    if (!isa) {
        PyErr_SetString(PyExc_RuntimeError, "no kernels for this CPU");
        return -1;
    }
    return 0;
}

/* a 2-D float array with unit inner stride: data, rows, cols, row stride */
static int get_block(PyObject *o, int f64, int writable, void **data, i64 *n, i64 *c, i64 *ld, const char *name)
{
    if (!PyArray_Check(o))
        return bad_arg(name);
    PyArrayObject *a = (PyArrayObject *)o;
    npy_intp isz = f64 ? 8 : 4;
    if (float_type(a) != f64 || PyArray_NDIM(a) != 2 || (writable && !PyArray_ISWRITEABLE(a)))
        return bad_arg(name);
    if (PyArray_DIM(a, 1) > 1 && PyArray_STRIDE(a, 1) != isz)
        return bad_arg(name);
    npy_intp rs = PyArray_STRIDE(a, 0);
    if (PyArray_DIM(a, 0) > 1 && (rs % isz != 0 || rs / isz < PyArray_DIM(a, 1)))
        return bad_arg(name);
    *data = PyArray_DATA(a);
    *n = PyArray_DIM(a, 0);
    *c = PyArray_DIM(a, 1);
    *ld = PyArray_DIM(a, 0) > 1 ? rs / isz : PyArray_DIM(a, 1);
    return 0;
}

/* a contiguous 1-D (or any-shape) array of typenum with at least n elements */
static int get_vec(PyObject *o, int typenum, i64 n, int writable, void **data, const char *name)
{
    if (!PyArray_Check(o))
        return bad_arg(name);
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != typenum || !PyArray_ISCARRAY_RO(a) || !PyArray_ISNOTSWAPPED(a) ||
        (writable && !PyArray_ISWRITEABLE(a)) || PyArray_SIZE(a) < n)
        return bad_arg(name);
    *data = PyArray_DATA(a);
    return 0;
}

/* ce_kernel(x, mode, y, t, w, ii, eps, z, gs, grad, loss, exact_rows, softcap, lse, off, C_glob, state, index,
 *           what) → the first row whose target is out of range (nothing written then), or -1.
 * x: (N, C) block = the global columns [off, off + C) of C_glob; w: the block's C
 * class weights; state/index: the (N, 15) float64 / (N, 2) int64 partial states
 * (written by CK_PARTIALS, read by CK_GRAD_SLICE). */
static PyObject *ce_kernel(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (entry_check(nargs, 19, "ce_kernel") < 0)
        return NULL;
    ce_job J;
    memset(&J, 0, sizeof J);
    if (!PyArray_Check(args[0]))
        return bad_arg("x must be an array"), NULL;
    int f64 = float_type((PyArrayObject *)args[0]);
    if (f64 < 0)
        return bad_arg("x must be float32/float64"), NULL;
    J.f64 = f64;
    int ftype = f64 ? NPY_DOUBLE : NPY_FLOAT;
    J.softcap = PyFloat_AsDouble(args[12]);
    J.what = (int)PyLong_AsLong(args[18]);
    if (PyErr_Occurred())
        return NULL;
    void *xd;
    if (get_block(args[0], f64, 0, &xd, &J.N, &J.C, &J.ldx, "x") < 0)
        return NULL;
    J.x = xd;
    J.mode = (int)PyLong_AsLong(args[1]);
    J.eps = PyFloat_AsDouble(args[6]);
    J.z = PyFloat_AsDouble(args[7]);
    J.exact_rows = PyObject_IsTrue(args[11]);
    J.off = PyLong_AsLongLong(args[14]);
    J.C_glob = PyLong_AsLongLong(args[15]);
    if (PyErr_Occurred())
        return NULL;
    J.smooth = J.eps != 0.0;
    if (J.off < 0 || J.C_glob < J.off + J.C || (J.mode != CK_IDX && J.mode != CK_PROB) ||
        (J.what != CK_FULL && J.mode != CK_IDX) || J.what < 0 || J.what > 2 || !(J.softcap >= 0.0) ||
        (J.what == CK_FULL && (J.off != 0 || J.C_glob != J.C)))
        return bad_arg("inconsistent options"), NULL;
    if (J.mode == CK_IDX) {
        if (!PyArray_Check(args[2]) || (J.y32 = int_type((PyArrayObject *)args[2])) < 0 ||
            PyArray_SIZE((PyArrayObject *)args[2]) != J.N)
            return bad_arg("y must hold N int64/int32 class indices"), NULL;
        J.y = PyArray_DATA((PyArrayObject *)args[2]);
        if (args[5] != Py_None) {
            J.has_ii = 1;
            J.ii = PyLong_AsLongLong(args[5]);
            if (PyErr_Occurred())
                return NULL;
        }
    } else {
        void *td;
        i64 tn, tc;
        if (get_block(args[3], f64, 0, &td, &tn, &tc, &J.ldt, "t") < 0)
            return NULL;
        if (tn != J.N || tc != J.C)
            return bad_arg("t must have the shape of x"), NULL;
        J.t = td;
    }
    if (args[4] != Py_None) {
        void *wd;
        if (get_vec(args[4], ftype, J.C, 0, &wd, "w") < 0)
            return NULL;
        J.w = wd;
    }
    if (args[8] != Py_None) {
        void *gd;
        if (!PyArray_Check(args[8]))
            return bad_arg("gs"), NULL;
        i64 gn = PyArray_SIZE((PyArrayObject *)args[8]);
        if (get_vec(args[8], NPY_DOUBLE, J.N ? 1 : 0, 0, &gd, "gs") < 0) /* no rows: no scale either */
            return NULL;
        if (gn != 1 && gn != J.N)
            return bad_arg("gs must have 1 or N entries"), NULL;
        J.gs = (const double *)gd;
        J.gstride = gn == 1 ? 0 : 1;
    }
    if (args[9] != Py_None) {
        void *gd;
        i64 gn, gc;
        if (get_block(args[9], f64, 1, &gd, &gn, &gc, &J.ldg, "grad") < 0)
            return NULL;
        if (gn != J.N || gc != J.C)
            return bad_arg("grad must have the shape of x"), NULL;
        if (J.what == CK_PARTIALS)
            return bad_arg("no gradient in the partials pass"), NULL;
        J.grad = gd;
    }
    if (args[10] != Py_None) {
        if (!PyArray_Check(args[10]))
            return bad_arg("loss"), NULL;
        int lt = PyArray_TYPE((PyArrayObject *)args[10]);
        J.loss_f64 = lt == NPY_DOUBLE;
        if ((lt != ftype && lt != NPY_DOUBLE) || (J.what == CK_GRAD_SLICE && !J.loss_f64))
            return bad_arg("loss must be float64 or x's dtype"), NULL;
        void *ld;
        if (get_vec(args[10], lt, J.N, 1, &ld, "loss") < 0)
            return NULL;
        J.loss = ld;
    }
    if (args[13] != Py_None) {
        void *ld;
        if (get_vec(args[13], NPY_DOUBLE, J.N, 1, &ld, "lse") < 0)
            return NULL;
        J.lse = (double *)ld;
    }
    if (J.what != CK_FULL) {
        void *sd, *id;
        int out = J.what == CK_PARTIALS;
        if (get_vec(args[16], NPY_DOUBLE, J.N * CK_NSTAT, out, &sd, "state") < 0 ||
            get_vec(args[17], NPY_INT64, J.N * 2, out, &id, "index") < 0)
            return NULL;
        J.state = (double *)sd;
        J.index = (i64 *)id;
    }
    if (J.what == CK_PARTIALS && J.smooth) { /* the block's weight sums: the same for every row */
        double ws = 0.0, wp = 0.0, wn = 0.0;
        for (i64 c = 0; c < J.C; c++) {
            double wc = J.w ? (f64 ? ((const double *)J.w)[c] : (double)((const float *)J.w)[c]) : 1.0;
            ws += wc;
            if (J.w) {
                wp += wc > 0.0;
                wn += wc < 0.0;
            }
        }
        J.wsum = ws;
        J.wpos = wp;
        J.wneg = wn;
    }
    if (J.mode == CK_IDX && J.what != CK_PARTIALS) {
        i64 nv;
        i64 bad = check_targets(J.y, J.y32, J.N, J.C_glob, J.has_ii, J.ii, &nv);
        if (bad >= 0)
            return PyLong_FromLongLong(bad);
    }
    int rc;
    if (J.N * J.C >= GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS rc = run_ce(&J);
        Py_END_ALLOW_THREADS
    } else
        rc = run_ce(&J);
    if (rc < 0)
        return PyErr_NoMemory();
    return PyLong_FromLong(-1);
}

/* bce_kernel(x, t, pw, gs, grad, loss, check) → (hi, lo, nbad): the compensated total
 * of the loss (when loss is None) and the number of targets outside [0, 1] */
static PyObject *bce_kernel(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (entry_check(nargs, 7, "bce_kernel") < 0)
        return NULL;
    bce_job J;
    memset(&J, 0, sizeof J);
    if (!PyArray_Check(args[0]))
        return bad_arg("x"), NULL;
    PyArrayObject *x = (PyArrayObject *)args[0];
    int f64 = float_type(x);
    if (f64 < 0 || !PyArray_IS_C_CONTIGUOUS(x))
        return bad_arg("x must be a contiguous float32/float64 array"), NULL;
    int ftype = f64 ? NPY_DOUBLE : NPY_FLOAT;
    J.f64 = f64;
    J.n = PyArray_SIZE(x);
    J.x = PyArray_DATA(x);
    void *p;
    if (get_vec(args[1], ftype, J.n, 0, &p, "t") < 0)
        return NULL;
    J.t = p;
    if (args[2] != Py_None) {
        if (get_vec(args[2], ftype, 1, 0, &p, "pw") < 0)
            return NULL;
        J.pw = p;
        J.P = PyArray_SIZE((PyArrayObject *)args[2]);
    }
    i64 gn = PyArray_Check(args[3]) ? PyArray_SIZE((PyArrayObject *)args[3]) : 0;
    if (get_vec(args[3], NPY_DOUBLE, J.n ? 1 : 0, 0, &p, "gs") < 0)
        return NULL;
    if (gn != 1 && gn != J.n)
        return bad_arg("gs must have 1 or n entries"), NULL;
    J.gs = (const double *)p;
    J.gstride = gn == 1 ? 0 : 1;
    if (args[4] != Py_None) {
        if (get_vec(args[4], ftype, J.n, 1, &p, "grad") < 0)
            return NULL;
        J.grad = p;
    }
    if (args[5] != Py_None) {
        if (get_vec(args[5], ftype, J.n, 1, &p, "loss") < 0)
            return NULL;
        J.loss = p;
    }
    J.check = PyObject_IsTrue(args[6]);
    i64 nchunk = (J.n + CK_BCE_CHUNK - 1) / CK_BCE_CHUNK;
    double *part = (double *)malloc((size_t)(2 * nchunk + 1) * sizeof(double));
    i64 *nbad = (i64 *)calloc((size_t)nchunk + 1, sizeof(i64));
    if (!part || !nbad) {
        free(part);
        free(nbad);
        return PyErr_NoMemory();
    }
    J.part = part;
    J.nbad = nbad;
    if (J.n >= GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS run_bce(&J);
        Py_END_ALLOW_THREADS
    } else
        run_bce(&J);
    double hi = 0.0, lo = 0.0;
    if (!J.loss)
        fold_parts(part, nchunk, &hi, &lo);
    i64 bad = 0;
    for (i64 c = 0; c < nchunk; c++)
        bad += nbad[c];
    free(part);
    free(nbad);
    if (!isfinite(hi))
        lo = 0.0; /* inf − inf in the compensation means nothing */
    return Py_BuildValue("ddL", hi, lo, (long long)bad);
}

/* ---------------------------------------------------------------------------------- */
/* configuration                                                                       */
/* ---------------------------------------------------------------------------------- */

static PyObject *configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3)
        return bad_arg("configure(enabled, threads, row_block)"), NULL;
    int en = PyObject_IsTrue(args[0]);
    long th = PyLong_AsLong(args[1]);
    long long rb = PyLong_AsLongLong(args[2]);
    if (en < 0 || PyErr_Occurred())
        return NULL;
    cfg_enabled = en;
    cfg_threads = th > 0 ? (int)th : 0;
    cfg_row_block = rb > 0 ? rb : 0;
    Py_RETURN_NONE;
}

static PyObject *config(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return Py_BuildValue("{s:O,s:i,s:i,s:L,s:s,s:i}", "enabled", cfg_enabled ? Py_True : Py_False, "threads",
                         n_threads(), "default_threads", default_threads, "row_block", (long long)cfg_row_block,
                         "isa", isa_name ? isa_name : "none", "workers", ck_pool_workers());
}

/* use_isa(name): run one specific compiled copy (tests compare them) */
static PyObject *use_isa(PyObject *self, PyObject *arg)
{
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return NULL;
    const ck_isa_t *t;
    if (!strcmp(name, "best")) {
        t = ck_select_isa(&isa_name);
    } else {
        t = ck_isa_by_name(name);
        if (!t) {
            PyErr_Format(PyExc_ValueError, "ISA %s is not available on this CPU", name);
            return NULL;
        }
        isa_name = !strcmp(name, "avx512") ? "avx512" : !strcmp(name, "avx2") ? "avx2"
                   : !strcmp(name, "x86-64") ? "x86-64" : "generic";
    }
    isa = t;
    return PyUnicode_FromString(isa_name);
}

/* div_hl(hi, lo, d): (hi + lo)/d rounded as the direct paths round a mean */
static PyObject *div_hl_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3)
        return bad_arg("div_hl(hi, lo, d)"), NULL;
    double hi = PyFloat_AsDouble(args[0]), lo = PyFloat_AsDouble(args[1]), d = PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred())
        return NULL;
    return PyFloat_FromDouble(div_hl(hi, lo, d));
}

static PyMethodDef methods[] = {
    {"ce_value", (PyCFunction)(void (*)(void))ce_value, METH_FASTCALL,
     "ce_value(fallback, input, target, axis, weight, sample_weight, ignore_index, label_smoothing, reduction, "
     "z_loss, base[, softcap])"},
    {"bce_value", (PyCFunction)(void (*)(void))bce_value, METH_FASTCALL,
     "bce_value(fallback, input, target, sample_weight, pos_weight, label_smoothing, reduction, base)"},
    {"div_hl", (PyCFunction)(void (*)(void))div_hl_py, METH_FASTCALL, "div_hl(hi, lo, d) = (hi + lo)/d"},
    {"ce_direct", (PyCFunction)(void (*)(void))ce_direct, METH_FASTCALL | METH_KEYWORDS,
     "_fastpath.cross_entropy_direct in C: (value, grad) or NotImplemented."},
    {"bce_direct", (PyCFunction)(void (*)(void))bce_direct, METH_FASTCALL | METH_KEYWORDS,
     "_fastpath.bce_direct in C: (value, grad) or NotImplemented."},
    {"ce_kernel", (PyCFunction)(void (*)(void))ce_kernel, METH_FASTCALL,
     "ce_kernel(x, mode, y, t, w, ii, eps, z, gs, grad, loss, exact_rows, softcap, lse, off, C_glob, state, index, "
     "what)"},
    {"bce_kernel", (PyCFunction)(void (*)(void))bce_kernel, METH_FASTCALL,
     "bce_kernel(x, t, pw, gs, grad, loss, check) -> (hi, lo, nbad)"},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL, "configure(enabled, threads, row_block)"},
    {"config", config, METH_NOARGS, "the current configuration"},
    {"use_isa", use_isa, METH_O, "use_isa('best' | 'avx512' | 'avx2' | 'x86-64' | 'generic')"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_ckernels",
                                    "Compiled CPU kernels of crossentropy (see crossentropy._kernels).", -1, methods};

PyMODINIT_FUNC PyInit__ckernels(void)
{
    import_array();
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    str_none = PyUnicode_InternFromString("none");
    str_sum = PyUnicode_InternFromString("sum");
    str_mean = PyUnicode_InternFromString("mean");
    if (!str_none || !str_sum || !str_mean)
        return NULL;
    kw_ce = Py_BuildValue("(ssssssss)", "axis", "weight", "sample_weight", "ignore_index", "label_smoothing",
                          "reduction", "z_loss", "base");
    kw_ce_cap = Py_BuildValue("(sssssssss)", "axis", "weight", "sample_weight", "ignore_index", "label_smoothing",
                              "reduction", "z_loss", "base", "softcap");
    kw_bce = Py_BuildValue("(sssss)", "sample_weight", "pos_weight", "label_smoothing", "reduction", "base");
    if (!kw_ce || !kw_ce_cap || !kw_bce)
        return NULL;
    isa = ck_select_isa(&isa_name);
    default_threads = ck_available_cpus();
    ck_pool_init();
    PyModule_AddIntConstant(m, "TILE", CK_TILE);
    PyModule_AddIntConstant(m, "BCE_CHUNK", CK_BCE_CHUNK);
    PyModule_AddIntConstant(m, "NSTAT", CK_NSTAT);
    PyModule_AddIntConstant(m, "BIG", (long)CK_BIG);
    return m;
}
