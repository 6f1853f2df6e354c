"""Fast kernels vs the reference: values, gradients, errors, determinism, in-place mode, fallback."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import crossentropy as ce
from crossentropy import _kernels, binary, categorical

from .conftest import reference

# Without the compiled kernels the comparisons below still run (reference
# against reference); the tests that need the kernels themselves are marked.
needs_kernels = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels are not built")

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("none", "sum", "mean", "sum_over_batch_size")


def tol(dtype, factor=64.0):
    return factor * float(np.finfo(np.dtype(dtype)).eps)


def assert_close(ours, ref, dtype, what, factor=64.0):
    o, r = np.asarray(ours), np.asarray(ref)
    assert o.shape == r.shape, f"{what}: shape {o.shape} vs {r.shape}"
    assert o.dtype == r.dtype, f"{what}: dtype {o.dtype} vs {r.dtype}"
    assert np.array_equal(np.isnan(o), np.isnan(r)), f"{what}: NaN pattern differs\n{o}\n{r}"
    assert np.array_equal(np.isposinf(o), np.isposinf(r)) and np.array_equal(np.isneginf(o), np.isneginf(r)), what
    fin = np.isfinite(r)
    scale = max(1.0, float(np.abs(r[fin]).max()) if fin.any() else 1.0)
    d = float(np.abs(o[fin].astype(np.float64) - r[fin]).max()) if fin.any() else 0.0
    assert d <= tol(dtype, factor) * scale, f"{what}: differs by {d:.3g} (scale {scale:.3g})"


def vg_both(fn, *arrays, **kw):
    ours = ce.value_and_grad(fn, *arrays, **kw)
    ref = reference(lambda: ce.value_and_grad(fn, *arrays, **kw))
    return ours, ref


def logits(rng, n, c, dtype, scale=3.0):
    return (rng.standard_normal((n, c)) * scale).astype(dtype)


@pytest.fixture
def must_use_kernel(monkeypatch):
    """Make the reference CE/BCE terms fail, so a test proves the kernel ran."""
    def boom(*a, **k):
        raise AssertionError("reference path ran where the kernel should have")

    monkeypatch.setattr(categorical, "_ce_terms", boom)
    monkeypatch.setattr(binary, "_bce_logits_terms", boom)


# ---------------------------------------------------------------------------------------------
# agreement with the reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 10, 300, 2 * 2048 + 77])
def test_ce_index_options(dtype, C):
    rng = np.random.default_rng(C)
    N = 13
    x = logits(rng, N, C, dtype)
    y = rng.integers(0, C, N)
    w = rng.random(C).astype(dtype) + 0.1
    cases = [
        {},
        dict(weight=w),
        dict(ignore_index=int(y[3])),
        dict(ignore_index=-100),
        dict(label_smoothing=0.1),
        dict(label_smoothing=1.0, weight=w),
        dict(z_loss=1e-3),
        dict(label_smoothing=0.2, weight=w, ignore_index=int(y[0]), z_loss=1e-2),
        dict(sample_weight=rng.random(N).astype(dtype)),
        dict(base=2),
    ]
    for kw in cases:
        for red in REDUCTIONS:
            (v, g), (rv, rg) = vg_both(ce.cross_entropy, x, y, reduction=red, **kw)
            assert_close(v, rv, dtype, f"C={C} {kw} {red} value")
            assert_close(g, rg, dtype, f"C={C} {kw} {red} grad")
            assert type(v) is type(rv)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [7, 2048 + 5])
def test_ce_prob_targets(dtype, C):
    rng = np.random.default_rng(1)
    N = 9
    x = logits(rng, N, C, dtype)
    t = rng.random((N, C)).astype(dtype)
    t /= t.sum(1, keepdims=True)
    t[0] = 0
    t[0, 3] = 1  # one-hot row
    x[1, :4] = -np.inf  # masked classes under zero target
    t[1, :4] = 0
    w = rng.random(C).astype(dtype)
    for kw in ({}, dict(weight=w), dict(label_smoothing=0.3), dict(z_loss=1e-2), dict(weight=w, label_smoothing=0.1)):
        for red in REDUCTIONS:
            (v, g), (rv, rg) = vg_both(ce.cross_entropy, x, t, reduction=red, **kw)
            assert_close(v, rv, dtype, f"prob {kw} {red} value")
            assert_close(g, rg, dtype, f"prob {kw} {red} grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [5, 3000])
def test_ce_extreme_logits(dtype, C):
    """±1e4, −inf masks, +inf, NaN, all −inf rows: same values and NaN/inf patterns as the reference."""
    rng = np.random.default_rng(2)
    N = 10
    x = logits(rng, N, C, dtype)
    y = rng.integers(0, C, N)
    x[0, :] = 1e4
    x[0, 1] = -1e4
    x[1, ::2] = -1e4
    x[2, 1:] = -np.inf
    y[2] = 0
    x[3, :] = -np.inf  # all −inf: NaN
    x[4, 2] = np.inf
    x[5, 1] = np.nan
    x[6, y[6]] = -np.inf  # impossible label: inf loss
    x[7, : C // 2] = -np.inf  # a whole tile of −inf (C = 3000)
    for kw in ({}, dict(label_smoothing=0.1), dict(z_loss=1e-3), dict(ignore_index=int(y[5]))):
        for red in ("none", "sum"):
            (v, g), (rv, rg) = vg_both(ce.cross_entropy, x, y, reduction=red, **kw)
            assert_close(v, rv, dtype, f"extreme {kw} {red} value")
            assert_close(g, rg, dtype, f"extreme {kw} {red} grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_empty_and_nd(dtype):
    rng = np.random.default_rng(3)
    for x, y in ((np.zeros((0, 4), dtype), np.zeros(0, np.int64)),
                 (logits(rng, 6, 5, dtype).reshape(2, 3, 5), rng.integers(0, 5, (2, 3))),
                 (logits(rng, 1, 5, dtype)[0], np.array(2))):
        for red in REDUCTIONS:
            (v, g), (rv, rg) = vg_both(ce.cross_entropy, x, y, reduction=red)
            assert_close(v, rv, dtype, f"{x.shape} {red} value")
            assert_close(g, rg, dtype, f"{x.shape} {red} grad")
    x0 = np.zeros((0, 4), dtype)  # no rows: per-row options of no entries
    for kw in (dict(reduction="none", grad_output=np.zeros(0, dtype)), dict(sample_weight=np.zeros(0, dtype))):
        for y0 in (np.zeros(0, np.int64), np.zeros((0, 4), dtype)):
            (v, g), (rv, rg) = vg_both(ce.cross_entropy, x0, y0, **kw)
            assert_close(v, rv, dtype, f"empty {kw} value")
            assert g.shape == rg.shape == (0, 4)
        kwb = {k: np.zeros((0, 4), dtype) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        (v, g), (rv, rg) = vg_both(ce.binary_cross_entropy_with_logits, x0, x0, **kwb)  # elementwise: (0, 4)
        assert_close(v, rv, dtype, f"empty bce {kw} value")
    x = logits(rng, 4, 3, dtype)
    y = np.full(4, -100)
    for red in REDUCTIONS:  # all ignored
        (v, g), (rv, rg) = vg_both(ce.cross_entropy, x, y, reduction=red, ignore_index=-100)
        assert_close(v, rv, dtype, f"all ignored {red} value")
        assert_close(g, rg, dtype, f"all ignored {red} grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits(dtype):
    rng = np.random.default_rng(4)
    shape = (40, 70)
    x = (rng.standard_normal(shape) * 6).astype(dtype)
    x[0, :6] = [1e4, -1e4, np.inf, -np.inf, np.nan, 0.0]
    t = rng.random(shape).astype(dtype)
    t[1] = 0
    t[2] = 1
    cases = [{}, dict(pos_weight=rng.random(70).astype(dtype) * 3), dict(pos_weight=np.array(2.5, dtype)),
             dict(sample_weight=rng.random(shape).astype(dtype)), dict(label_smoothing=0.1), dict(base=10)]
    for kw in cases:
        for red in REDUCTIONS:
            (v, g), (rv, rg) = vg_both(ce.binary_cross_entropy_with_logits, x, t, reduction=red, **kw)
            assert_close(v, rv, dtype, f"bce {kw} {red} value")
            assert_close(g, rg, dtype, f"bce {kw} {red} grad")
            v2 = ce.binary_cross_entropy_with_logits(x, t, reduction=red, **kw)
            assert_close(v2, rv, dtype, f"bce fwd {kw} {red}")
    big = (rng.standard_normal(200_003) * 4).astype(dtype)  # several chunks + a ragged end
    tb = (rng.random(200_003) > 0.5).astype(dtype)
    (v, g), (rv, rg) = vg_both(ce.binary_cross_entropy_with_logits, big, tb)
    assert_close(v, rv, dtype, "bce big value")
    assert_close(g, rg, dtype, "bce big grad")
    assert_close(v, ce.binary_cross_entropy_with_logits(big, tb), dtype, "bce big fwd vs vg")


@needs_kernels
def test_kernels_actually_run(must_use_kernel):
    rng = np.random.default_rng(5)
    x = logits(rng, 8, 1000, np.float32)
    y = rng.integers(0, 1000, 8)
    ce.cross_entropy(x, y)
    ce.value_and_grad(ce.cross_entropy, x, y, weight=np.ones(1000, np.float32), label_smoothing=0.1)
    t = rng.random((8, 1000)).astype(np.float32)
    ce.value_and_grad(ce.cross_entropy, x, t / t.sum(1, keepdims=True))
    ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, (t > 0.5).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# errors: the same classes and messages as the reference path
# ---------------------------------------------------------------------------------------------

def _err(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the point is to compare what was raised
        return type(e), str(e)
    return None


@pytest.mark.parametrize("grad", [False, True])
def test_same_errors(grad):
    x = np.zeros((20, 10), np.float32)
    call = (lambda f, *a, **k: ce.value_and_grad(f, *a, **k)) if grad else (lambda f, *a, **k: f(*a, **k))
    bad = [
        lambda: call(ce.cross_entropy, x, np.r_[np.zeros(17, int), 12, 0, 0]),
        lambda: call(ce.cross_entropy, x, np.r_[np.zeros(19, int), -1]),
        lambda: call(ce.cross_entropy, x, np.zeros(20, int), ignore_index=5, label_smoothing=1.5),
        lambda: call(ce.cross_entropy, x, np.zeros(19, int)),
        lambda: call(ce.cross_entropy, x, np.zeros(20, int), reduction="avg"),
        lambda: call(ce.cross_entropy, x, np.zeros(20, int), z_loss=-1.0),
        lambda: call(ce.binary_cross_entropy_with_logits, x, np.full((20, 10), 1.5, np.float32)),
        lambda: call(ce.binary_cross_entropy_with_logits, x, np.zeros((20, 9), np.float32)),
    ]
    for f in bad:
        ours = _err(f)
        assert ours is not None
        assert ours == reference(lambda: _err(f))
    got = _err(bad[0])
    assert "target[17] = 12 is outside [0, 10) classes" in got[1]


# ---------------------------------------------------------------------------------------------
# determinism: threads and row blocks change no bit
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_across_threads_and_blocks(dtype, kernels_config):
    rng = np.random.default_rng(6)
    N, C = 64, 2 * 2048 + 300  # parallel kernel (N·C above the serial threshold), several tiles
    x = logits(rng, N, C, dtype)
    y = rng.integers(0, C, N)
    t = rng.random((N, C)).astype(dtype)
    t /= t.sum(1, keepdims=True)
    xb = (rng.standard_normal(300_001) * 4).astype(dtype)
    tb = rng.random(300_001).astype(dtype)
    results = []
    for threads in (1, 2):
        for block in (0, 1, 3, 64):
            kernels_config.configure(threads=threads, row_block=block)
            r = []
            for red in ("none", "mean"):
                r += list(ce.value_and_grad(ce.cross_entropy, x, y, reduction=red, label_smoothing=0.1, z_loss=1e-3))
                r += list(ce.value_and_grad(ce.cross_entropy, x, t, reduction=red))
                r += list(ce.value_and_grad(ce.binary_cross_entropy_with_logits, xb, tb, reduction=red))
                r.append(ce.binary_cross_entropy_with_logits(xb, tb, reduction=red))
            results.append([np.asarray(a).tobytes() for a in r])
    for other in results[1:]:
        assert other == results[0]


# ---------------------------------------------------------------------------------------------
# in-place mode
# ---------------------------------------------------------------------------------------------

@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_inplace_matches_and_allocates_nothing(dtype):
    rng = np.random.default_rng(7)
    N, C = 32, 20000
    x = logits(rng, N, C, dtype)
    y = rng.integers(0, C, N)
    ref_v, ref_g = ce.value_and_grad(ce.cross_entropy, x, y)
    nbytes = x.nbytes
    buf = x.copy()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        v, g = ce.value_and_grad(ce.cross_entropy, buf, y, grad_into=buf)
        _, peak_inplace = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        v2, g2 = ce.value_and_grad(ce.cross_entropy, x, y)
        _, peak_fresh = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert g is buf
    assert v == ref_v
    assert np.array_equal(g, ref_g)  # the same kernel arithmetic, bit for bit
    assert peak_inplace < nbytes / 20, f"in-place peak {peak_inplace} B vs logits {nbytes} B"
    assert peak_fresh < nbytes * 1.05 + 1e6, f"peak {peak_fresh} B: more than the gradient ({nbytes} B)"
    # a separate output buffer, prob targets and BCE
    out = np.empty_like(x)
    v3, g3 = ce.value_and_grad(ce.cross_entropy, x, y, grad_into=out)
    assert g3 is out and np.array_equal(out, ref_g)
    t = rng.random((N, C)).astype(dtype)
    t /= t.sum(1, keepdims=True)
    rv, rg = ce.value_and_grad(ce.cross_entropy, x, t, label_smoothing=0.1)
    buf = x.copy()
    v4, g4 = ce.value_and_grad(ce.cross_entropy, buf, t, label_smoothing=0.1, grad_into=buf)
    assert g4 is buf and np.array_equal(buf, rg) and v4 == rv
    tb = (t > 1.0 / C).astype(dtype)
    rv, rg = ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, tb)
    buf = x.copy()
    v5, g5 = ce.value_and_grad(ce.binary_cross_entropy_with_logits, buf, tb, grad_into=buf)
    assert g5 is buf and np.array_equal(buf, rg) and v5 == rv


def test_grad_into_validation_and_reference_path():
    x = np.zeros((4, 3), np.float32)
    y = np.zeros(4, int)
    with pytest.raises(ce.ShapeMismatchError, match="grad_into must have the shape of input"):
        ce.value_and_grad(ce.cross_entropy, x, y, grad_into=np.zeros((4, 2), np.float32))
    with pytest.raises(ce.InvalidDTypeError, match="grad_into must have the dtype"):
        ce.value_and_grad(ce.cross_entropy, x, y, grad_into=np.zeros((4, 3)))
    with pytest.raises(ce.InvalidOptionError, match="overlaps"):
        big = np.zeros((5, 3), np.float32)
        ce.value_and_grad(ce.cross_entropy, big[:4], y, grad_into=big[1:])
    # where no kernel applies (class axis not last), the reference gradient is copied in
    x3 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y3 = np.zeros((2, 4), int)
    out = np.empty_like(x3)
    v, g = ce.value_and_grad(ce.cross_entropy, x3, y3, axis=1, grad_into=out)
    rv, rg = reference(lambda: ce.value_and_grad(ce.cross_entropy, x3, y3, axis=1))
    assert g is out and np.allclose(out, rg) and v == rv


# ---------------------------------------------------------------------------------------------
# the instruction-set copies agree
# ---------------------------------------------------------------------------------------------

@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_isa_copy_agrees(dtype):
    ck = _kernels._ck
    rng = np.random.default_rng(9)
    x = logits(rng, 40, 3000, dtype)
    x[0, :5] = [np.inf, 1, 2, 3, 4]
    x[1, 7] = np.nan
    y = rng.integers(0, 3000, 40)
    t = rng.random((40, 3000)).astype(dtype)
    t /= t.sum(1, keepdims=True)
    xb = (rng.standard_normal(70_001) * 5).astype(dtype)
    tb = rng.random(70_001).astype(dtype)
    results = {}
    try:
        for isa in ("avx512", "avx2", "x86-64", "generic"):
            try:
                ck.use_isa(isa)
            except ValueError:
                continue
            r = []
            r += ce.value_and_grad(ce.cross_entropy, x, y, reduction="none", label_smoothing=0.1, z_loss=1e-3)
            r += ce.value_and_grad(ce.cross_entropy, x, t, reduction="none")
            r += ce.value_and_grad(ce.binary_cross_entropy_with_logits, xb, tb, reduction="none")
            results[isa] = r
    finally:
        ck.use_isa("best")
    # no copy left the x87 stack full (MMX registers alias it): long double arithmetic,
    # which NumPy's float formatting uses, still works
    assert np.longdouble(1.5) * 2 == 3 and not np.isnan(np.longdouble(1) / 3)
    assert repr(np.float32(1.5)) in ("np.float32(1.5)", "1.5")
    assert results
    first = next(iter(results.values()))
    for name, r in results.items():
        for a, b in zip(r, first):
            assert_close(a, b, dtype, f"{name} vs {next(iter(results))}", factor=8.0)


# ---------------------------------------------------------------------------------------------
# fallback without the compiled kernels
# ---------------------------------------------------------------------------------------------

_CHILD = """
import sys, numpy as np
if sys.argv[1] == "blocked":
    sys.modules["crossentropy._kernels._ckernels"] = None  # as if the extension was never built
import crossentropy as ce
from crossentropy import _kernels, _fastpath
x = np.load(sys.argv[2]); y = np.load(sys.argv[3])
v, g = ce.value_and_grad(ce.cross_entropy, x, y, label_smoothing=0.1)
b = ce.binary_cross_entropy_with_logits(x, (x > 0).astype(x.dtype))
np.savez(sys.argv[4], v=v, g=g, b=b, available=_kernels.available(), enabled=_kernels.get() is not None,
         direct=_fastpath.cross_entropy_direct(x, y, False, None, -1, None, None, None, 0.0, "mean", 0.0, None,
                                               None) is NotImplemented)
"""


@pytest.mark.parametrize("how", ["blocked", "env"])
def test_fallback_without_kernels(how, tmp_path):
    """Without the extension (never built, or CROSSENTROPY_KERNELS=0) the reference path runs: same results."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(8)
    x = logits(rng, 6, 50, np.float32)
    y = rng.integers(0, 50, 6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    env = {**os.environ, "CROSSENTROPY_KERNELS": "0" if how == "env" else "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, how, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                           str(tmp_path / "out.npz")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    assert not bool(out["enabled"]) and bool(out["direct"])
    assert bool(out["available"]) == (how == "env" and _kernels.available())
    rv, rg = reference(lambda: ce.value_and_grad(ce.cross_entropy, x, y, label_smoothing=0.1))
    rb = reference(lambda: ce.binary_cross_entropy_with_logits(x, (x > 0).astype(x.dtype)))
    assert out["v"] == rv and np.array_equal(out["g"], rg) and out["b"] == rb  # the reference, bit for bit
    kv, kg = ce.value_and_grad(ce.cross_entropy, x, y, label_smoothing=0.1)
    assert_close(out["v"], kv, np.float32, "fallback vs kernel value")
    assert_close(out["g"], kg, np.float32, "fallback vs kernel grad")


def test_reference_path_when_disabled(kernels_config, monkeypatch):
    rng = np.random.default_rng(8)
    x = logits(rng, 6, 50, np.float32)
    y = rng.integers(0, 50, 6)
    kernels_config.configure(enabled=False)
    assert _kernels.get() is None
    called = []
    monkeypatch.setattr(categorical, "_ce_terms", lambda *a, **k: called.append(1) or _ce_terms(*a, **k))
    ce.value_and_grad(ce.cross_entropy, x, y)
    out = x.copy()
    v2, g2 = ce.value_and_grad(ce.cross_entropy, out, y, grad_into=out)
    assert called and g2 is out
    assert _kernels.warmup() is _kernels.available()


_ce_terms = categorical._ce_terms


def test_torch_inputs_take_the_reference_path():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 5])
    v = ce.cross_entropy(x, y)
    assert isinstance(v, torch.Tensor)
    assert abs(float(v) - float(torch.nn.functional.cross_entropy(x, y))) < 1e-12
