"""Exactness claims, held to mpmath: confident predictions, long sums, subnormal results.

A confident correct prediction has the per-sample loss
``log1p(Σ_{j≠y} e^{x_j − x_y})``; computing it as ``lse − x_y`` (what PyTorch,
Keras and optax do) rounds every loss below the unit roundoff to 0.  The
library keeps it within a few ulps of the correctly rounded value, down to
losses of 1e-30 and below, on every array library (the reference path) — the
fast-kernel path is held to the same bounds in ``tests/kernels``.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import crossentropy as ce
from crossentropy import _kernels


@pytest.fixture(autouse=True)
def _mp_digits():
    """60 digits for every test here (digits to spare); set per test, because the other
    exactness modules want other precisions and pytest imports them all first."""
    with mp.workdps(60):
        yield


ULPS = 4  # the bound the library promises for per-sample values and gradients

# t ↦ a row [0, −t − u_1, …]: the loss is about (C−1)·e^{−t}; up to ~1e-30 (f32) and ~1e-300 (f64).
TS = {np.float32: [3.0, 8.0, 17.0, 30.0, 50.0, 68.0], np.float64: [3.0, 20.0, 40.0, 100.0, 300.0, 680.0]}
C = 6


@pytest.fixture(params=["numpy", "torch", "jax", "array_api_strict"])
def lib(request):
    """Run the reference path: NumPy with the kernels off, or another array library."""
    name = request.param
    if name == "numpy":
        prev = _kernels.configure(enabled=False)
        yield name, np.asarray
        _kernels.configure(enabled=prev["enabled"])
        return
    if name == "torch":
        import torch

        yield name, torch.as_tensor
    elif name == "jax":
        import jax.numpy as jnp

        yield name, jnp.asarray
    else:
        import array_api_strict as xs

        yield name, xs.asarray


def _np(a):
    if hasattr(a, "detach"):
        return a.detach().numpy()
    if type(a).__module__.startswith("array_api_strict"):
        return np.from_dlpack(a)
    return np.asarray(a)


def ulps(got, exact: mp.mpf, dtype) -> float:
    """|got − exact| in units of the last place of ``exact`` rounded to ``dtype``."""
    r = dtype(float(exact))
    sp = np.spacing(np.abs(r)) if r != 0 else np.finfo(dtype).smallest_subnormal
    return float(abs(mp.mpf(float(got)) - exact) / mp.mpf(float(sp)))


def _rows(dtype, confident_only=False):
    rng = np.random.default_rng(7)
    ts = [t for t in TS[dtype] if t > 3.0] if confident_only else TS[dtype]
    rows = [np.concatenate([[0.0], -t - 3.0 * rng.random(C - 1)]) for t in ts]
    return np.array(rows, dtype=dtype)


def _exact_parts(row):
    """(m, S_off) in mpmath for a row whose maximum is at index 0."""
    v = [mp.mpf(float(a)) for a in row]
    m = v[0]
    s_off = mp.fsum(mp.exp(a - m) for a in v[1:])
    return v, m, s_off


def _exact_ce(row, q):
    """Σ_c q_c (lse − x_c) and its gradient (Σq) p − q, exactly."""
    v, m, s_off = _exact_parts(row)
    log_s = mp.log1p(s_off)
    nlp = [(m - a) + log_s for a in v]  # −log p_c
    p = [mp.exp(a - m) / (1 + s_off) for a in v]
    p[0] = 1 / (1 + s_off)
    one_minus_p0 = s_off / (1 + s_off)
    sq = mp.fsum(q)
    loss = mp.fsum(qc * n for qc, n in zip(q, nlp))
    grad = [sq * pc - qc for pc, qc in zip(p, q)]
    grad[0] = mp.fsum(q[1:]) - sq * one_minus_p0
    return loss, grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["index", "smoothed", "soft"])
def test_confident_cross_entropy_within_4_ulps(lib, dtype, target):
    name, arr = lib
    # Soft/smoothed targets: at t = 3 the target-class gradient Σ_{c≠k} q_c − (1 − p_k) cancels
    # (0.1 − 0.075), an ill-conditioned value no formula gets within 4 ulp; confident rows only.
    x = _rows(dtype, confident_only=target != "index")
    n = x.shape[0]
    eps = 0.1
    if target == "index":
        y = np.zeros(n, np.int64)
        kw, qs = {}, [[1.0] + [0.0] * (C - 1)] * n
    elif target == "smoothed":
        y = np.zeros(n, np.int64)
        kw = dict(label_smoothing=eps)
        q1 = [mp.mpf(eps) / C] * C
        q1[0] = 1 - mp.mpf(eps) + mp.mpf(eps) / C
        qs = [q1] * n
    else:
        y = np.full((n, C), 0.02, dtype)
        y[:, 0] = 0.9
        kw, qs = {}, [[mp.mpf(float(v)) for v in row] for row in y]
    v, g = ce.value_and_grad(ce.cross_entropy, arr(x), arr(y), reduction="none", **kw)
    v, g = _np(v), _np(g)
    assert v.dtype == dtype and g.dtype == dtype
    for i in range(n):
        loss, grad = _exact_ce(x[i], [mp.mpf(q) for q in qs[i]])
        assert ulps(v[i], loss, dtype) <= ULPS, (name, i, float(v[i]), float(loss))
        for c in range(C):
            assert ulps(g[i, c], grad[c], dtype) <= ULPS, (name, i, c, float(g[i, c]), float(grad[c]))
    if target == "index":
        # The smallest losses are far below the unit roundoff: lse − x_y would give exactly 0.
        assert 0 < v[-1] < 1e-28


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_confident_bce_with_logits_within_4_ulps(lib, dtype):
    name, arr = lib
    x = np.array(TS[dtype], dtype)
    y = np.ones_like(x)
    v, g = ce.value_and_grad(ce.binary_cross_entropy_with_logits, arr(x), arr(y), reduction="none")
    v, g = _np(v), _np(g)
    for i, xi in enumerate(x):
        e = mp.exp(-mp.mpf(float(xi)))
        assert ulps(v[i], mp.log1p(e), dtype) <= ULPS, (name, float(xi), float(v[i]))
        assert ulps(g[i], -e / (1 + e), dtype) <= ULPS, (name, float(xi), float(g[i]))


def test_subnormal_losses_are_not_flushed(lib):
    name, arr = lib
    if name == "jax":
        import jax.numpy as jnp

        # XLA's CPU backend runs with flush-to-zero: even jnp.float64(5e-324) + 0 is 0 there, so no
        # library computing in JAX can return a subnormal.  Documented in docs/compatibility.md.
        assert float(jnp.asarray(5e-324, dtype=jnp.float64) + 0) == 0.0
        return
    x = np.array([[0.0, -740.0, -741.0]])  # loss ≈ e^{-740} ≈ 4e-322: a float64 subnormal
    v = _np(ce.cross_entropy(arr(x), arr(np.array([0])), reduction="none"))[0]
    exact = mp.log1p(mp.exp(-740) + mp.exp(-741))
    assert v > 0
    assert abs(mp.mpf(float(v)) - exact) <= np.finfo(np.float64).smallest_subnormal
    vb = _np(ce.binary_cross_entropy_with_logits(arr(np.array([740.0])), arr(np.array([1.0])), reduction="none"))
    assert abs(mp.mpf(float(vb[0])) - mp.exp(-740)) <= np.finfo(np.float64).smallest_subnormal


def _ulps_vs_fsum(got, per_sample) -> float:
    exact = math.fsum(per_sample.tolist()) / per_sample.size
    return abs(float(got) - exact) / float(np.spacing(abs(exact)))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_float64_reduction_of_a_million_rows_within_2_ulps(reduction):
    """Compensated sums: the reduced loss is within 2 ulp of the exact mean/sum of the per-sample values."""
    rng = np.random.default_rng(11)
    n = 1_000_000
    x = rng.standard_normal((n, 3)) * 4
    y = rng.integers(0, 3, n)
    prev = _kernels.configure(enabled=False)
    try:
        per = ce.cross_entropy(x, y, reduction="none")
        got = ce.cross_entropy(x, y, reduction=reduction)
        per_b = ce.binary_cross_entropy_with_logits(x[:, 0], (y == 0).astype(np.float64), reduction="none")
        got_b = ce.binary_cross_entropy_with_logits(x[:, 0], (y == 0).astype(np.float64), reduction=reduction)
    finally:
        _kernels.configure(enabled=prev["enabled"])
    scale = 1 if reduction == "mean" else n
    assert _ulps_vs_fsum(got / scale, per) <= 2
    assert _ulps_vs_fsum(got_b / scale, per_b) <= 2


def test_accurate_sum_beats_naive_summation():
    """The compensated cascade on a sum that plain float32 accumulation gets badly wrong."""
    from crossentropy._backend import namespace

    import torch

    v = torch.tensor([1.0] + [1e-8] * 100_000, dtype=torch.float32)  # exact: 1.001
    ops = namespace(v)
    got = float(ops.accurate_sum(v))
    assert abs(got - 1.001) <= float(np.spacing(np.float32(1.001)))
    naive = torch.zeros((), dtype=torch.float32)
    for chunk in v.split(1024):  # running float32 sums lose every 1e-8
        naive = naive + chunk.sum()
    assert abs(float(naive) - 1.001) > 10 * float(np.spacing(np.float32(1.001)))
