"""Exactness of the compiled kernels against mpmath (the naive formulas at 400 digits).

Confident predictions (issue 8, item 6): per-sample CE (index, smoothed and soft
targets) and BCE-with-logits, and their gradients, within 4 ulp of the correctly
rounded result down to losses of 1e-30, subnormal results kept; float64 means
over 1e6 rows within 2 ulp of the exact mean of the per-sample values.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import crossentropy as ce
from crossentropy import _kernels

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels are not built")

@pytest.fixture(autouse=True)
def _mp_digits():
    """400 digits for every test here (the naive formulas, with digits to spare for losses down to 1e-320); set per test, because the other
    exactness modules want other precisions and pytest imports them all first."""
    with mp.workdps(400):
        yield


DTYPES = (np.float32, np.float64)
ULPS = 4


def ulps(ours, exact, dtype):
    """|ours − exact| in units of the last place of the correctly rounded exact value."""
    ours = np.asarray(ours, dtype=np.float64).reshape(-1)
    out = []
    for o, e in zip(ours, exact):
        r = dtype(float(e))  # correctly rounded (mpf → double → dtype: double rounding is harmless at these sizes)
        if r == 0 and e != 0:
            r = dtype(float(e))
        u = float(np.spacing(np.abs(r)))
        out.append(abs(mp.mpf(float(o)) - e) / mp.mpf(u) if u else mp.mpf(0))
    return max(float(v) for v in out) if out else 0.0


def _exact_ce(row, coeffs, z=0.0):
    """−Σ a_c log softmax(row)_c (+ z·lse²) and its gradient, in mpmath."""
    xs = [mp.mpf(float(v)) for v in row]
    lse = mp.log(mp.fsum(mp.exp(v) for v in xs))
    a = [mp.mpf(float(c)) for c in coeffs]
    loss = mp.fsum(-ac * (v - lse) for ac, v in zip(a, xs) if ac != 0) + z * lse * lse
    asum = mp.fsum(a)
    grad = [asum * mp.exp(v - lse) - ac + 2 * z * lse * mp.exp(v - lse) for ac, v in zip(a, xs)]
    return loss, grad


def confident_rows(dtype, C=7):
    """Rows [m, m − t, …] with the target at the max, down to losses of 1e-30 and below."""
    ts = [5.0, 20.0, 40.0, 60.0, 69.0] if dtype == np.float32 else [5.0, 30.0, 200.0, 500.0, 690.0]
    rows = []
    for t in ts:
        rows.append(np.array([0.0] + [-t] * (C - 1), dtype))
        # not exactly representable differences: x − max rounds, which the kernels must correct
        rows.append(np.array([0.3] + [0.3 - t - 0.1 * k for k in range(1, C)], dtype))
        rows.append(np.array([-t * 0.7] * 3 + [1.7] + [-t] * (C - 4), dtype))
    return np.stack(rows)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_index_targets(dtype):
    x = confident_rows(dtype)
    y = x.argmax(1)
    loss = ce.cross_entropy(x, y, reduction="none")
    _, g = ce.value_and_grad(ce.cross_entropy, x, y, reduction="sum")
    worst_l = worst_g = 0.0
    for i in range(x.shape[0]):
        a = np.zeros(x.shape[1])
        a[y[i]] = 1.0
        el, eg = _exact_ce(x[i], a)
        assert 0 < float(el) < 0.1
        worst_l = max(worst_l, ulps([loss[i]], [el], dtype))
        worst_g = max(worst_g, ulps(g[i], eg, dtype))
    assert worst_l <= ULPS, worst_l
    assert worst_g <= ULPS, worst_g
    assert float(loss.min()) < 1e-28  # the range the claim covers is exercised


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["smoothed", "soft", "weighted", "zloss"])
def test_confident_other_targets(dtype, kind):
    x = confident_rows(dtype)
    N, C = x.shape
    y = x.argmax(1)
    rng = np.random.default_rng(0)
    kw = {}
    if kind == "smoothed":
        eps = 0.1
        coeff = np.full((N, C), eps / C)
        coeff[np.arange(N), y] += 1 - eps
        target, kw = y, dict(label_smoothing=eps)
    elif kind == "soft":
        t = rng.random((N, C)).astype(dtype) * dtype(1e-3)
        t[np.arange(N), y] = 0
        t[np.arange(N), y] = dtype(1) - t.sum(1, dtype=dtype)
        coeff, target = t.astype(np.float64), t
    elif kind == "weighted":
        w = (rng.random(C) + 0.5).astype(dtype)
        coeff = np.zeros((N, C))
        coeff[np.arange(N), y] = w[y]
        target, kw = y, dict(weight=w)
    else:
        coeff = np.zeros((N, C))
        coeff[np.arange(N), y] = 1
        target, kw = y, dict(z_loss=1e-4)
    loss = ce.cross_entropy(x, target, reduction="none", **kw)
    _, g = ce.value_and_grad(ce.cross_entropy, x, target, reduction="sum", **kw)
    wl = wg = 0.0
    for i in range(N):
        el, eg = _exact_ce(x[i], coeff[i], kw.get("z_loss", 0.0))
        wl = max(wl, ulps([loss[i]], [el], dtype))
        wg = max(wg, ulps(g[i], eg, dtype))
    assert wl <= ULPS, (kind, wl)
    assert wg <= ULPS, (kind, wg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_results_are_kept(dtype):
    t = 92.0 if dtype == np.float32 else 715.0  # e^-t is subnormal in the dtype
    x = np.array([[0.0, -t, -t - 1], [0.0, -np.inf, -t]], dtype)
    y = np.array([0, 0])
    loss = ce.cross_entropy(x, y, reduction="none")
    _, g = ce.value_and_grad(ce.cross_entropy, x, y, reduction="sum")
    tiny = np.finfo(dtype).tiny
    assert 0 < loss[0] < tiny and 0 < loss[1] < tiny
    assert 0 < g[0, 1] < tiny and -tiny < g[0, 0] < 0 and g[1, 1] == 0
    el, eg = _exact_ce(x[0], [1, 0, 0])
    # a subnormal has fewer significant bits: compare in absolute units of the smallest subnormal
    step = float(np.finfo(dtype).smallest_subnormal)
    assert abs(float(loss[0]) - float(el)) <= step
    assert max(abs(float(a) - float(b)) for a, b in zip(g[0], eg)) <= step


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_confident_and_subnormal(dtype):
    ts = [5.0, 30.0, 60.0, 69.0] if dtype == np.float32 else [5.0, 60.0, 300.0, 690.0]
    sub = 92.0 if dtype == np.float32 else 715.0
    x = np.array(ts + [-v for v in ts] + [sub, -sub], dtype)
    y = np.array([1.0] * len(ts) + [0.0] * len(ts) + [1.0, 0.0], dtype)
    loss = ce.binary_cross_entropy_with_logits(x, y, reduction="none")
    _, g = ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, y, reduction="sum")
    el, eg = [], []
    for v, t in zip(x, y):
        v = mp.mpf(float(v))
        # −[y log σ(x) + (1−y) log σ(−x)], σ(x) = 1/(1+e^-x)
        el.append(t * mp.log1p(mp.exp(-v)) + (1 - t) * mp.log1p(mp.exp(v)))
        eg.append((1 - t) / (1 + mp.exp(-v)) - t / (1 + mp.exp(v)))
    n = 2 * len(ts)
    assert ulps(loss[:n], el[:n], dtype) <= ULPS
    assert ulps(g[:n], eg[:n], dtype) <= ULPS
    step = float(np.finfo(dtype).smallest_subnormal)
    assert 0 < loss[-1] < np.finfo(dtype).tiny and 0 < loss[-2] < np.finfo(dtype).tiny
    assert abs(float(loss[-1]) - float(el[-1])) <= step and abs(float(g[-2]) - float(eg[-2])) <= step


def test_float64_mean_of_a_million_rows():
    rng = np.random.default_rng(11)
    N, C = 1_000_000, 5
    x = rng.standard_normal((N, C)) * 4
    x[::3] *= 30  # very confident and very wrong rows: per-sample values over many orders of magnitude
    y = rng.integers(0, C, N)
    per = ce.cross_entropy(x, y, reduction="none")
    exact_mean = mp.mpf(math.fsum(per.tolist())) / N
    ours = ce.cross_entropy(x, y)
    assert ulps([ours], [exact_mean], np.float64) <= 2
    exact_sum = mp.mpf(math.fsum(per.tolist()))
    assert ulps([ce.cross_entropy(x, y, reduction="sum")], [exact_sum], np.float64) <= 2
    b = rng.standard_normal(N) * 20
    t = (rng.random(N) > 0.5).astype(np.float64)
    perb = ce.binary_cross_entropy_with_logits(b, t, reduction="none")
    assert ulps([ce.binary_cross_entropy_with_logits(b, t)], [mp.mpf(math.fsum(perb.tolist())) / N], np.float64) <= 2
