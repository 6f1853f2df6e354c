"""The CPU chunk kernels (crossentropy._kernels._chunk) against the reference.

The reference is ``crossentropy.cross_entropy`` on the reference path (kernels
off) with ``reduction='none'``, the soft cap applied by hand (``z = s·tanh(x/s)``
in float64 then rounded, gradient × ``1 − tanh²``) and the per-row gradient scale
as ``grad_output``.  Every option, unsplit and split over the vocabulary (uneven,
multi-tile, one-column slices), finite and non-finite rows.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import crossentropy as ce
from crossentropy import _kernels

from .conftest import reference

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels are not built")

if _kernels.available():
    from crossentropy._kernels import _chunk

DTYPES = (np.float32, np.float64)


def close(ours, ref, dtype, what, factor=64.0):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, what
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"{what}: NaN pattern\n{ours}\n{ref}"
    assert np.array_equal(np.isposinf(ours), np.isposinf(ref)) and np.array_equal(np.isneginf(ours),
                                                                                  np.isneginf(ref)), what
    fin = np.isfinite(ref)
    if not fin.any():
        return
    scale = max(1.0, float(np.abs(ref[fin]).max()))
    d = float(np.abs(ours[fin] - ref[fin]).max())
    assert d <= factor * np.finfo(dtype).eps * scale, f"{what}: differs by {d:.3g} (scale {scale:.3g})"


def expected(x, y, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None,
             grad_scale=None):
    """(loss, lse, grad) per row from the reference path."""
    x64 = x.astype(np.float64)
    z = (softcap * np.tanh(x64 / softcap)).astype(x.dtype) if softcap is not None else x
    gs = np.ones(x.shape[0]) if grad_scale is None else np.broadcast_to(grad_scale, (x.shape[0],))
    loss, g = reference(lambda: ce.value_and_grad(ce.cross_entropy, z, y, reduction="none", weight=weight,
                                                  ignore_index=ignore_index, label_smoothing=label_smoothing,
                                                  z_loss=z_loss, grad_output=gs.astype(x.dtype)))
    lse = reference(lambda: ce.logsumexp(z.astype(np.float64), axis=-1))
    if softcap is not None:
        with np.errstate(invalid="ignore"):
            g = (g.astype(np.float64) * (1.0 - np.tanh(x64 / softcap) ** 2)).astype(x.dtype)
    return loss, lse, g


def problem(dtype, N=23, C=5003, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C)) * 4).astype(dtype)
    y = rng.integers(0, C, N)
    x[np.arange(0, N, 4), y[::4]] += 25  # some confident rows
    return x, y


CASES = [
    {},
    dict(weight="w"),
    dict(ignore_index=-100),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, weight="w"),
    dict(z_loss=1e-3),
    dict(softcap=15.0),
    dict(grad_scale="g"),
    dict(weight="w", ignore_index=-100, label_smoothing=0.1, z_loss=1e-4, softcap=30.0, grad_scale="g"),
]


def _materialise(kw, x, y):
    kw = dict(kw)
    rng = np.random.default_rng(1)
    if kw.get("weight") == "w":
        kw["weight"] = (rng.random(x.shape[1]) + 0.5).astype(x.dtype)
    if kw.get("grad_scale") == "g":
        kw["grad_scale"] = rng.random(x.shape[0]) * 3
    if "ignore_index" in kw:
        y = y.copy()
        y[1::5] = kw["ignore_index"]
    return kw, y


def _split_run(x, y, kw, cuts, grad=True):
    """vocab_partials per slice → merge → vocab_finish per slice (in place on a copy)."""
    N, C = x.shape
    w = kw.get("weight")
    part_kw = {k: kw[k] for k in ("label_smoothing", "softcap") if k in kw}
    parts = [_chunk.vocab_partials(x[:, a:b], y, class_offset=a, num_classes=C,
                                   weight=None if w is None else w[a:b], **part_kw)
             for a, b in zip(cuts, cuts[1:])]
    merged = _chunk.merge_partials(parts)
    out = x.copy()
    fin = {k: kw[k] for k in ("ignore_index", "label_smoothing", "z_loss", "softcap") if k in kw}
    loss = lse = None
    for a, b in zip(cuts, cuts[1:]):
        g = out[:, a:b]  # a row-strided view: the slice's gradient in place
        gkw = dict(grad_scale=kw.get("grad_scale", 1.0), grad_into=g) if grad else {}
        lo, ls = _chunk.vocab_finish(g, y, merged, class_offset=a, num_classes=C,
                                     weight=None if w is None else w[a:b], **fin, **gkw)
        if loss is None:
            loss, lse = lo, ls
        else:  # every slice reports the same row loss
            assert np.array_equal(lo, loss, equal_nan=True) and np.array_equal(ls, lse, equal_nan=True)
    return loss, lse, out, parts, merged


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_unsplit_matches_reference(dtype, case):
    x, y = problem(dtype)
    kw, y = _materialise(CASES[case], x, y)
    rl, rlse, rg = expected(x, y, **kw)
    g = x.copy()
    loss, lse = _chunk.chunk_cross_entropy(g, y, **{**kw, "grad_scale": kw.get("grad_scale", 1.0)}, grad_into=g)
    close(loss, rl, dtype, "loss")
    close(lse, rlse, dtype, "lse")
    close(g, rg, dtype, "grad (in place)")
    # a separate output buffer, and the loss alone (logits untouched)
    x0 = x.copy()
    out = np.empty_like(x)
    loss2, _ = _chunk.chunk_cross_entropy(x, y, **{**kw, "grad_scale": kw.get("grad_scale", 1.0)}, grad_into=out)
    assert np.array_equal(out, g) and np.array_equal(loss2, loss) and np.array_equal(x, x0)
    loss3, _ = _chunk.chunk_cross_entropy(x, y, **{k: v for k, v in kw.items() if k != "grad_scale"})
    assert np.array_equal(loss3, loss) and np.array_equal(x, x0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_split_matches_reference(dtype, case):
    x, y = problem(dtype, seed=case)
    N, C = x.shape
    kw, y = _materialise(CASES[case], x, y)
    rl, rlse, rg = expected(x, y, **kw)
    loss, lse, g, parts, merged = _split_run(x, y, kw, [0, 1700, 1701, 4100, C])  # uneven, one single-class slice
    close(loss, rl, dtype, "split loss")
    close(lse, rlse, dtype, "split lse")
    close(g, rg, dtype, "split grad")
    # one slice merges to itself, and the all-reduce form (lift, then sum) is the merge
    one = _chunk.vocab_partials(x, y, class_offset=0, num_classes=C, weight=kw.get("weight"),
                                **{k: kw[k] for k in ("label_smoothing", "softcap") if k in kw})
    same = _chunk.merge_partials([one])
    assert np.array_equal(same.stats, one.stats) and np.array_equal(same.index, one.index)
    m, k, kp = merged.stats[:, 0], merged.index[:, 0], merged.index[:, 1]
    summed = sum(_chunk.lift_partials(p, m, k, kp) for p in parts)
    summed[:, 0] = m
    assert np.allclose(summed, merged.stats, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_rows_stay_exact_when_split(dtype):
    t = 60.0 if dtype == np.float32 else 600.0
    x = np.full((3, 4100), -t, dtype)
    x[:, 2500] = 0.0
    y = np.full(3, 2500)
    loss, _, g, _, _ = _split_run(x, y, {}, [0, 2048, 4100])
    exact = np.log1p(4099 * np.exp(-t))  # log1p of a tiny sum: full precision in float64
    assert exact > 0 and np.allclose(loss, exact, rtol=4 * np.finfo(dtype).eps, atol=0)
    exact_g = -4099 * np.exp(-t) / (1 + 4099 * np.exp(-t))  # the target's gradient, not p − 1 = 0
    assert np.allclose(g[:, 2500], exact_g, rtol=4 * np.finfo(dtype).eps, atol=0)


NONFINITE = [
    [0.0, np.nan, 1.0, 2.0],
    [0.0, np.inf, 1.0, 2.0],
    [np.inf, np.inf, 1.0, 2.0],
    [-np.inf] * 4,
    [0.0, -np.inf, 1.0, 2.0],
    [np.nan] * 4,
]


@pytest.mark.parametrize("kw", [{}, dict(label_smoothing=0.1), dict(z_loss=1e-3), dict(weight="w"),
                                dict(label_smoothing=0.2, weight="w")], ids=str)
def test_nonfinite_rows_as_the_reference(kw):
    x = np.array(NONFINITE * 2)
    y = np.array([0, 0, 2, 0, 3, 1, 2, 1, 0, 2, 1, 0])
    kw = dict(kw)
    if "weight" in kw:
        kw["weight"] = np.array([0.5, 0.0, 2.0, 1.0])
    rl, rlse, rg = expected(x, y, **kw)
    g = x.copy()
    loss, lse = _chunk.chunk_cross_entropy(g, y, **kw, grad_scale=1.0, grad_into=g)
    close(loss, rl, np.float64, "unsplit loss")
    close(lse, rlse, np.float64, "unsplit lse")
    close(g, rg, np.float64, "unsplit grad")
    for cuts in ([0, 2, 4], [0, 1, 3, 4]):
        sl, slse, sg, _, _ = _split_run(x, y, kw, cuts)
        close(sl, rl, np.float64, f"split {cuts} loss")
        close(slse, rlse, np.float64, f"split {cuts} lse")


def test_softcap_derivative_keeps_precision():
    """sech²(u) at |u| = 12 in float32: 1 − tanh² rounds to 0 there, 4e/(1+e)² does not."""
    s = 10.0
    x = np.array([[120.0, 0.0, -120.0, 1.0]], np.float32)
    y = np.array([1])
    g = x.copy()
    _chunk.chunk_cross_entropy(g, y, softcap=s, grad_scale=1.0, grad_into=g)
    z = s * np.tanh(x.astype(np.float64) / s)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    gz = p.copy()
    gz[0, 1] -= 1
    exact = gz / np.cosh(x.astype(np.float64) / s) ** 2
    assert g[0, 0] != 0 and g[0, 2] != 0
    assert np.allclose(g, exact, rtol=1e-5, atol=0)


def test_bitwise_across_threads_and_blocks(kernels_config):
    x, y = problem(np.float32, N=67, C=3001)
    out = []
    for threads in (1, 2, 3):
        for block in (0, 1, 7):
            kernels_config.configure(threads=threads, row_block=block)
            g = x.copy()
            loss, lse = _chunk.chunk_cross_entropy(g, y, label_smoothing=0.1, softcap=20.0, z_loss=1e-4,
                                                   grad_scale=0.5, grad_into=g)
            p = _chunk.vocab_partials(x[:, :1000], y, class_offset=0, num_classes=3001, label_smoothing=0.1)
            out.append(g.tobytes() + loss.tobytes() + lse.tobytes() + p.stats.tobytes() + p.index.tobytes())
    assert all(o == out[0] for o in out[1:])


@pytest.mark.skipif(importlib.util.find_spec("crossentropy._kernels.triton") is None,
                    reason="the CUDA (Triton) chunk API is not in this tree")
def test_same_state_layout_as_the_cuda_kernels():
    """One merge rule for CPU and CUDA states: the Triton module's torch merge of our states is ours."""
    torch = pytest.importorskip("torch")
    from crossentropy._kernels import triton as tk
    from crossentropy._kernels.triton import _layout

    assert tuple(_layout.FIELDS) == _chunk.STATE_FIELDS and _layout.BIG == _chunk.BIG
    x, y = problem(np.float64, N=9, C=300)
    x[0, 5] = np.inf
    x[1, 7] = np.nan
    w = np.random.default_rng(2).random(300) + 0.5
    parts = [_chunk.vocab_partials(x[:, a:b], y, class_offset=a, num_classes=300, weight=w[a:b],
                                   label_smoothing=0.1) for a, b in ((0, 100), (100, 250), (250, 300))]
    ours = _chunk.merge_partials(parts)
    theirs = tk.merge_partials([tk.Partials(torch.from_numpy(p.stats), torch.from_numpy(p.index), p.options)
                                for p in parts])
    assert np.array_equal(theirs.index.numpy(), ours.index)
    assert np.allclose(theirs.stats.numpy(), ours.stats, rtol=1e-14, atol=0, equal_nan=True)


def test_errors():
    x = np.zeros((4, 6), np.float32)
    y = np.zeros(4, np.int64)
    g = x.copy()
    with pytest.raises(ce.InvalidOptionError, match="softcap"):
        _chunk.chunk_cross_entropy(x, y, softcap=0.0)
    with pytest.raises(ce.InvalidOptionError, match="softcap"):
        _chunk.chunk_cross_entropy(x, y, softcap=-2.0)
    with pytest.raises(ce.TargetOutOfRangeError, match=r"target\[2\] = 6 is outside \[0, 6\) classes"):
        _chunk.chunk_cross_entropy(x, np.array([0, 1, 6, 0]))
    with pytest.raises(ce.TargetOutOfRangeError, match=r"target\[1\] = 9 is outside \[0, 8\) classes"):
        p = _chunk.vocab_partials(x, np.array([0, 9, 0, 0]), class_offset=0, num_classes=8)
        _chunk.vocab_finish(x, np.array([0, 9, 0, 0]), p, class_offset=0, num_classes=8)
    with pytest.raises(ce.ShapeMismatchError, match="target must have shape"):
        _chunk.chunk_cross_entropy(x, np.zeros(3, np.int64))
    with pytest.raises(ce.ShapeMismatchError, match="weight must have shape"):
        _chunk.chunk_cross_entropy(x, y, weight=np.ones(5, np.float32))
    with pytest.raises(ce.InvalidDTypeError, match="float32 or float64"):
        _chunk.chunk_cross_entropy(x.astype(np.float16), y)
    with pytest.raises(ce.InvalidOptionError, match="class_offset"):
        _chunk.vocab_partials(x, y, class_offset=3, num_classes=8)
    with pytest.raises(ce.InvalidOptionError, match="contiguous along its class axis"):
        _chunk.chunk_cross_entropy(np.zeros((4, 12), np.float32)[:, ::2], y)
    with pytest.raises(ce.InvalidOptionError, match="grad_into was given without grad_scale"):
        _chunk.chunk_cross_entropy(x, y, grad_into=g)
    with pytest.raises(ce.InvalidOptionError, match="grad_scale was given without grad_into"):
        _chunk.chunk_cross_entropy(x, y, grad_scale=1.0)
    with pytest.raises(ce.InvalidOptionError, match="overlaps"):
        big = np.zeros((5, 6), np.float32)
        _chunk.chunk_cross_entropy(big[:4], y, grad_scale=1.0, grad_into=big[1:])
    with pytest.raises(ce.InvalidDTypeError, match="grad_into must have the logits' dtype"):
        _chunk.chunk_cross_entropy(x, y, grad_scale=1.0, grad_into=np.zeros((4, 6)))
    with pytest.raises(ce.InvalidOptionError, match="label_smoothing"):
        _chunk.chunk_cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(ce.ShapeMismatchError, match="grad_scale"):
        _chunk.chunk_cross_entropy(x, y, grad_scale=np.ones(3), grad_into=g)
    p = _chunk.vocab_partials(x, y, class_offset=0, num_classes=6, label_smoothing=0.1)
    with pytest.raises(ce.InvalidOptionError, match="merged was computed with options"):
        _chunk.vocab_finish(x, y, p, class_offset=0, num_classes=6)
    with pytest.raises(ce.InvalidOptionError, match="computed with options"):
        _chunk.merge_partials([p, _chunk.vocab_partials(x, y, class_offset=0, num_classes=6)])
