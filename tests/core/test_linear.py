"""linear_cross_entropy (NumPy and other array libraries): chunked vs the unfused reference, every option."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crossentropy as ce
from crossentropy import _kernels
from crossentropy import _linear_engine as engine
from crossentropy.linear import _reference

RNG = np.random.default_rng(21)
N, D, V = 23, 6, 41
H = RNG.standard_normal((N, D))
W = RNG.standard_normal((V, D)) * 0.7
B = RNG.standard_normal(V)
Y = RNG.integers(0, V, N)
Y_IGN = Y.copy()
Y_IGN[[2, 7, 8]] = -100
CW = RNG.uniform(0.3, 2.0, V)
SW = RNG.uniform(0.2, 1.5, N)

OPTION_SETS = {
    "plain": {},
    "class_weight": dict(class_weight=CW),
    "ignore": dict(ignore_index=-100),
    "smoothing": dict(label_smoothing=0.15),
    "z_loss": dict(z_loss=1e-3),
    "softcap": dict(softcap=4.0),
    "sample_weight": dict(sample_weight=SW),
    "all": dict(class_weight=CW, ignore_index=-100, label_smoothing=0.1, z_loss=1e-2, softcap=3.0),
}


def _target(kw):
    return Y_IGN if kw.get("ignore_index") is not None else Y


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-300, float(np.max(np.abs(b))))) if a.size else 0.0


# The engine's tile shape is fixed by the problem's shape (V = 41 is one tile, N = 23 one block by default);
# small tiles make the small test problem run every mode: 6 tiles of 8 classes (the last 1), blocks of 5 rows.
SMALL_TILES = dict(TILE_CLASSES=8, ROW_BLOCK_BYTES=5 * V * 8, ROW_MULTIPLE=1, MIN_ROWS=1)
TILE = 5 * 8 * 8  # bytes of one small float64 tile
# budget -> mode: None (default) one pass; TILE, 3·TILE two passes (1 or 3 tiles in flight)
LAYOUTS = {"default": (None, None), "tiles_one_pass": (SMALL_TILES, None), "tiles_two_pass": (SMALL_TILES, TILE),
           "tiles_two_pass_3": (SMALL_TILES, 3 * TILE)}


@pytest.fixture
def layout(request, monkeypatch):
    tiles, budget = LAYOUTS[request.param]
    for k, v in (tiles or {}).items():
        monkeypatch.setattr(engine, k, v)
    return budget


@pytest.mark.parametrize("name", list(OPTION_SETS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "sum_over_batch_size"])
@pytest.mark.parametrize("layout", list(LAYOUTS), indirect=True)
def test_chunked_equals_unfused_float64(name, reduction, layout):
    budget = layout
    kw = OPTION_SETS[name]
    y = _target(kw)
    wrt = (0, 1, "bias")
    v, g = ce.value_and_grad(ce.linear_cross_entropy, H, W, y, wrt=wrt, bias=B, reduction=reduction,
                             memory_budget=budget, **kw)
    rv, rg = _reference(H, W, y, wrt=wrt, bias=B, reduction=reduction, **kw)
    assert np.shape(v) == np.shape(rv)
    assert _rel(v, rv) <= 1e-12
    for a, b in zip(g, rg):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert _rel(a, b) <= 1e-12
    np.testing.assert_allclose(ce.linear_cross_entropy(H, W, y, bias=B, reduction=reduction, memory_budget=budget,
                                                       **kw), v, rtol=1e-14)


@pytest.mark.parametrize("layout", ["default", "tiles_two_pass"], indirect=True)
def test_every_pair_of_options_together(layout):
    names = [n for n in OPTION_SETS if n not in ("plain", "all")]
    for a, b in itertools.combinations(names, 2):
        kw = {**OPTION_SETS[a], **OPTION_SETS[b]}
        y = _target(kw)
        v, g = ce.value_and_grad(ce.linear_cross_entropy, H, W, y, wrt=(0, 1, "bias"), bias=B,
                                 memory_budget=layout, **kw)
        rv, rg = _reference(H, W, y, bias=B, **kw)
        assert _rel(v, rv) <= 1e-12, (a, b)
        assert all(_rel(x, r) <= 1e-12 for x, r in zip(g, rg)), (a, b)


def test_num_items_in_batch_makes_micro_batches_add_up_to_the_full_batch():
    """Hugging Face's gradient accumulation: Σ over micro-batches of (loss, grads) with the global count."""
    y = Y_IGN
    n_items = int(np.sum(y != -100))
    full_v, full_g = ce.value_and_grad(ce.linear_cross_entropy, H, W, y, wrt=(0, 1, "bias"), bias=B,
                                       ignore_index=-100)
    acc_v, acc_dw, acc_db, dh = 0.0, np.zeros_like(W), np.zeros_like(B), []
    for sl in (slice(0, 9), slice(9, 17), slice(17, N)):
        v, (gh, gw, gb) = ce.value_and_grad(ce.linear_cross_entropy, H[sl], W, y[sl], wrt=(0, 1, "bias"), bias=B,
                                            ignore_index=-100, num_items_in_batch=n_items)
        acc_v += float(v)
        acc_dw += gw
        acc_db += gb
        dh.append(gh)
    np.testing.assert_allclose(acc_v, full_v, rtol=1e-13)
    np.testing.assert_allclose(np.concatenate(dh), full_g[0], rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(acc_dw, full_g[1], rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(acc_db, full_g[2], rtol=1e-12, atol=1e-16)


def test_grad_output_and_leading_dims():
    h3 = H[:20].reshape(4, 5, D)
    y3 = Y[:20].reshape(4, 5)
    go = RNG.standard_normal((4, 5))
    v, g = ce.value_and_grad(ce.linear_cross_entropy, h3, W, y3, wrt=(0, 1), reduction="none", grad_output=go)
    rv, rg = _reference(h3, W, y3, wrt=(0, 1), reduction="none", grad_output=go)
    assert v.shape == (4, 5) and g[0].shape == (4, 5, D)
    assert _rel(v, rv) <= 1e-12 and _rel(g[0], rg[0]) <= 1e-12 and _rel(g[1], rg[1]) <= 1e-12


@pytest.mark.parametrize("layout", ["default", "tiles_two_pass"], indirect=True)
@pytest.mark.parametrize("dtype", [np.float32])
def test_float32_error_no_larger_than_unfused(dtype, layout):
    """Against a float64 reference, the chunked float32 result is as accurate as the unfused float32 one."""
    h, w, b = H.astype(dtype), W.astype(dtype), B.astype(dtype)
    v32, g32 = ce.value_and_grad(ce.linear_cross_entropy, h, w, Y, wrt=(0, 1), bias=b, label_smoothing=0.1,
                                 memory_budget=layout)
    u32, ug32 = _reference(h, w, Y, wrt=(0, 1), bias=b, label_smoothing=0.1)
    r64, rg64 = _reference(h.astype(np.float64), w.astype(np.float64), Y, wrt=(0, 1), bias=b.astype(np.float64),
                           label_smoothing=0.1)
    eps = np.finfo(dtype).eps
    assert abs(float(v32) - float(r64)) <= max(abs(float(u32) - float(r64)), 4 * eps * abs(float(r64)))
    for a, u, r in zip(g32, ug32, rg64):
        scale = np.max(np.abs(r))
        assert np.max(np.abs(a - r)) <= max(np.max(np.abs(u - r)), 4 * eps * scale) * 1.5


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 12), v=st.integers(1, 17), d=st.integers(1, 5), rows=st.integers(1, 6),
       width=st.integers(1, 9), inflight=st.integers(1, 3),
       smooth=st.sampled_from([0.0, 0.2]), z=st.sampled_from([0.0, 1e-2]), cap=st.sampled_from([None, 2.0]),
       red=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16))
def test_hypothesis_shapes(n, v, d, rows, width, inflight, smooth, z, cap, red, seed):
    saved = engine.TILE_CLASSES, engine.ROW_BLOCK_BYTES, engine.ROW_MULTIPLE, engine.MIN_ROWS
    engine.TILE_CLASSES, engine.ROW_BLOCK_BYTES, engine.ROW_MULTIPLE, engine.MIN_ROWS = width, rows * v * 8, 1, 1
    try:
        _hypothesis_case(n, v, d, min(rows, max(n, 1)) * min(width, v) * 8 * inflight, smooth, z, cap, red, seed)
    finally:
        engine.TILE_CLASSES, engine.ROW_BLOCK_BYTES, engine.ROW_MULTIPLE, engine.MIN_ROWS = saved


def _hypothesis_case(n, v, d, budget, smooth, z, cap, red, seed):
    rng = np.random.default_rng(seed)
    h, w, b = rng.standard_normal((n, d)), rng.standard_normal((v, d)), rng.standard_normal(v)
    y = rng.integers(0, v, n)
    kw = dict(label_smoothing=smooth, z_loss=z, softcap=cap, reduction=red)
    val, g = ce.value_and_grad(ce.linear_cross_entropy, h, w, y, wrt=(0, 1, "bias"), bias=b,
                               memory_budget=budget, **kw)
    rv, rg = _reference(h, w, y, bias=b, **kw)
    np.testing.assert_allclose(val, rv, rtol=1e-12, atol=1e-300, equal_nan=True)
    for a, r in zip(g, rg):
        np.testing.assert_allclose(a, r, rtol=1e-11, atol=1e-14)


def test_other_array_libraries():
    import torch

    v, g = ce.value_and_grad(ce.linear_cross_entropy, torch.tensor(H), torch.tensor(W), torch.tensor(Y),
                             wrt=(0, 1, "bias"), bias=torch.tensor(B), label_smoothing=0.1, memory_budget=V * 8 * 4)
    rv, rg = _reference(H, W, Y, bias=B, label_smoothing=0.1)
    assert isinstance(v, torch.Tensor)
    assert _rel(v.numpy(), rv) <= 1e-12 and all(_rel(a.numpy(), r) <= 1e-12 for a, r in zip(g, rg))


BAD = [
    (lambda: ce.linear_cross_entropy(H, W[:, :3], Y), ce.ShapeMismatchError, "hidden's last dimension must equal"),
    (lambda: ce.linear_cross_entropy(H, W[None], Y), ce.ShapeMismatchError, r"weight must have shape \(V, D\)"),
    (lambda: ce.linear_cross_entropy(H, W, Y, bias=B[:5]), ce.ShapeMismatchError, r"bias must have shape \(41,\)"),
    (lambda: ce.linear_cross_entropy(H, W, Y[:5]), ce.ShapeMismatchError, r"target with class indices must have shape \(23,\)"),
    (lambda: ce.linear_cross_entropy(H.astype(np.float32), W, Y), ce.InvalidDTypeError, "one dtype"),
    (lambda: ce.linear_cross_entropy(H, W, Y, bias=B.astype(np.float32)), ce.InvalidDTypeError, "bias must have the dtype"),
    (lambda: ce.linear_cross_entropy(H, W, Y.astype(np.float64)), ce.InvalidDTypeError, "integer class indices"),
    (lambda: ce.linear_cross_entropy(H, W, np.where(Y == Y[4], 99, Y)), ce.TargetOutOfRangeError, r"target\[4\] = 99 is outside \[0, 41\)"),
    (lambda: ce.linear_cross_entropy(H, W, Y, softcap=0.0), ce.InvalidOptionError, "softcap must be a positive"),
    (lambda: ce.linear_cross_entropy(H, W, Y, memory_budget=100), ce.InvalidOptionError,
     "memory_budget=100 bytes is too small"),
    (lambda: ce.linear_cross_entropy(H, W, Y, memory_budget=-1), ce.InvalidOptionError, "memory_budget must be"),
    (lambda: ce.linear_cross_entropy(H, W, Y, z_loss=-1.0), ce.InvalidOptionError, "z_loss must be"),
    (lambda: ce.linear_cross_entropy(H, W, Y, softcap=-2.0), ce.InvalidOptionError, "softcap must be a positive"),
    (lambda: ce.linear_cross_entropy(H, W, Y, num_items_in_batch=0), ce.InvalidOptionError, "num_items_in_batch must be a positive"),
    (lambda: ce.linear_cross_entropy(H, W, Y, num_items_in_batch=5, reduction="sum"), ce.InvalidOptionError, "needs reduction='mean'"),
    (lambda: ce.linear_cross_entropy(H, W, Y, class_weight=CW[:3]), ce.ShapeMismatchError, "class_weight must have shape"),
    (lambda: ce.grad(ce.linear_cross_entropy, H, W, Y, wrt=2), ce.InvalidOptionError, "no gradient with respect to 'target'"),
]


@pytest.mark.parametrize("call,err,msg", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_is_a_clear_error(call, err, msg, monkeypatch):
    # raised before any heavy work: the engine (every matmul and kernel) must not even start
    def no_work(*a, **k):
        raise AssertionError("the engine ran before the input was checked")

    monkeypatch.setattr("crossentropy.linear.run_engine", no_work)
    with pytest.raises(err, match=msg):
        call()


def test_the_numpy_path_runs_the_engine(monkeypatch):
    calls = []
    real = engine.run
    monkeypatch.setattr("crossentropy.linear.run_engine", lambda *a, **k: calls.append(1) or real(*a, **k))
    ce.value_and_grad(ce.linear_cross_entropy, H, W, Y, wrt=(0, 1))
    assert calls == [1]


def test_loss_only_and_gradient_runs_agree_bitwise(monkeypatch):
    for k, v in SMALL_TILES.items():
        monkeypatch.setattr(engine, k, v)
    for budget in (None, TILE, 2 * TILE):
        kw = dict(bias=B, class_weight=CW, label_smoothing=0.1, z_loss=1e-2, softcap=3.0, memory_budget=budget)
        v = ce.linear_cross_entropy(H, W, Y, reduction="none", **kw)
        v2, _ = ce.value_and_grad(ce.linear_cross_entropy, H, W, Y, wrt=(0,), reduction="none", **kw)
        assert np.array_equal(v, v2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_across_threads_and_budgets(dtype, monkeypatch):
    """Fixed tile shapes: every budget (one or two passes, any tiles in flight) and every kernel thread
    count give the same bits; so does NumPy's BLAS with 1 or 2 threads (OpenBLAS splits only the outputs)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(5)
    n, d, v = 70, 24, 300
    monkeypatch.setattr(engine, "TILE_CLASSES", 64)
    monkeypatch.setattr(engine, "MIN_ROWS", 16)
    monkeypatch.setattr(engine, "ROW_BLOCK_BYTES", 16 * v * np.dtype(dtype).itemsize)
    h, w, b = (rng.standard_normal(s).astype(dtype) for s in ((n, d), (v, d), (v,)))
    y = rng.integers(0, v, n)
    kw = dict(bias=b, label_smoothing=0.05, z_loss=1e-3, softcap=20.0)
    tile = 16 * 64 * np.dtype(dtype).itemsize
    runs = []
    prev = _kernels.configure(threads=1)
    try:
        for threads, blas, budget in [(1, 1, None), (2, 2, None), (2, 1, tile), (1, 2, 3 * tile), (2, 2, 10**9)]:
            _kernels.configure(threads=threads)
            with threadpool_limits(blas):
                runs.append(ce.value_and_grad(ce.linear_cross_entropy, h, w, y, wrt=(0, 1, "bias"),
                                              memory_budget=budget, **kw))
    finally:
        _kernels.configure(threads=prev["threads"] or 0)
    (v0, g0) = runs[0]
    for v1, g1 in runs[1:]:
        assert np.array_equal(v0, v1)
        assert all(np.array_equal(a, c) for a, c in zip(g0, g1))
    kw["bias"] = b.astype(np.float64)
    rv, rg = _reference(h.astype(np.float64), w.astype(np.float64), y, **kw)
    assert _rel(v0, rv) <= 1e-5 and all(_rel(a, r) <= 1e-4 for a, r in zip(g0, rg))
