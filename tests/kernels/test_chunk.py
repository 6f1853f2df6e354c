"""The in-place chunk kernels (crossentropy._kernels._chunk) against the reference.

The reference is ``crossentropy.cross_entropy`` on the reference path (kernels
off) with ``reduction='none'``, the soft cap applied by hand
(``z = s·tanh(x/s)``, gradient × ``1 − tanh²``) and the per-row gradient scale
as ``grad_output``.  Every option, unsplit and split over the vocabulary.
"""

from __future__ import annotations

import numpy as np
import pytest

import crossentropy as ce
from crossentropy import _kernels

from .conftest import reference

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels are not built")

if _kernels.available():
    from crossentropy._kernels import _chunk

DTYPES = (np.float32, np.float64)


def tol(dtype):
    return 64 * float(np.finfo(dtype).eps)


def close(ours, ref, dtype, what):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, what
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    d = float(np.abs(ours - ref).max()) if ref.size else 0.0
    assert d <= tol(dtype) * scale, f"{what}: differs by {d:.3g} (scale {scale:.3g})"


def expected(x, y, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None,
             grad_scale=None):
    """(loss, lse, grad) per row from the reference path."""
    x64 = x.astype(np.float64)
    if softcap is not None:
        th = np.tanh(x64 / softcap)
        z = (softcap * th).astype(x.dtype)
    else:
        z = x
    gs = np.ones(x.shape[0]) if grad_scale is None else np.broadcast_to(grad_scale, (x.shape[0],))
    loss, g = reference(lambda: ce.value_and_grad(ce.cross_entropy, z, y, reduction="none", weight=weight,
                                                  ignore_index=ignore_index, label_smoothing=label_smoothing,
                                                  z_loss=z_loss, grad_output=gs.astype(x.dtype)))
    lse = reference(lambda: ce.logsumexp(z.astype(np.float64), axis=-1))
    if softcap is not None:
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_unsplit_matches_reference(dtype, case):
    x, y = problem(dtype)
    kw, y = _materialise(CASES[case], x, y)
    rl, rlse, rg = expected(x, y, **kw)
    block = x.copy()
    loss, lse = _chunk.ce_chunk(block, y, **kw)
    close(loss, rl, dtype, "loss")
    close(lse, rlse, dtype, "lse")
    close(block, rg, dtype, "grad")
    # forward only: the same loss, the block untouched (or capped)
    block2 = x.copy()
    loss2, _ = _chunk.ce_chunk(block2, y, need_grad=False, **kw)
    assert np.array_equal(loss2, loss)
    if "softcap" not in kw:
        assert np.array_equal(block2, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_split_matches_reference(dtype, case):
    x, y = problem(dtype, seed=case)
    N, C = x.shape
    kw, y = _materialise(CASES[case], x, y)
    rl, rlse, rg = expected(x, y, **kw)
    cuts = [0, 1700, 1701, 4100, C]  # uneven slices, one of a single class
    part_kw = {k: v for k, v in kw.items() if k in ("weight", "ignore_index", "label_smoothing", "softcap")}
    grad = x.copy()
    states = [_chunk.ce_partials(grad[:, a:b], y, class_offset=a, num_classes=C, **part_kw)
              for a, b in zip(cuts, cuts[1:])]
    state = _chunk.merge_partials(states)
    fin_kw = {k: v for k, v in kw.items() if k in ("weight", "ignore_index", "label_smoothing", "z_loss")}
    loss, lse = _chunk.finish_partials(state, y, **fin_kw)
    close(loss, rl, dtype, "split loss")
    close(lse, rlse, dtype, "split lse")
    loss_b = np.empty(N)
    for a, b in zip(cuts, cuts[1:]):  # pass 2 on row-strided views of one array
        _chunk.ce_chunk_grad(grad[:, a:b], state, y, class_offset=a, num_classes=C, loss=loss_b,
                             **{k: v for k, v in kw.items() if k != "grad_scale"} | (
                                 {"grad_scale": kw["grad_scale"]} if "grad_scale" in kw else {}))
    close(grad, rg, dtype, "split grad")
    assert np.allclose(loss_b, loss, rtol=1e-15, atol=0)
    # the all-reduce form: Σ_r rescale(state_r, M, K) is the merged state
    contribs = [_chunk.rescale_partials(s, state[:, 0], state[:, 1]) for s in states]
    assert all(np.array_equal(c[:, :2], state[:, :2]) for c in contribs)  # m, k: the global ones
    reduced = state.copy()
    reduced[:, 2:] = sum(c[:, 2:] for c in contribs)  # what a sum all-reduce gives
    assert np.allclose(reduced[:, 2:], state[:, 2:], rtol=1e-13, atol=1e-300)
    assert np.allclose(_chunk.finish_partials(reduced, y, **fin_kw)[0], loss, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_rows_stay_exact_when_split(dtype):
    t = 60.0 if dtype == np.float32 else 600.0
    x = np.full((3, 4100), -t, dtype)
    x[:, 2500] = 0.0
    y = np.full(3, 2500)
    s1 = _chunk.ce_partials(x[:, :2048].copy(), y, class_offset=0, num_classes=4100)
    s2 = _chunk.ce_partials(x[:, 2048:].copy(), y, class_offset=2048, num_classes=4100)
    loss, _ = _chunk.finish_partials(_chunk.merge_partials([s1, s2]), y)
    exact = np.log1p(4099 * np.exp(-t))  # log1p of a tiny sum: full precision in float64
    assert np.allclose(loss, exact, rtol=4 * np.finfo(dtype).eps, atol=0) and exact > 0


def test_nonfinite_rows_are_nan():
    x = np.array([[0.0, np.nan, 1.0], [0.0, np.inf, 1.0], [-np.inf] * 3, [0.0, -np.inf, 1.0]])
    y = np.array([0, 0, 0, 2])
    block = x.copy()
    loss, _ = _chunk.ce_chunk(block, y)
    assert np.isnan(loss[:3]).all() and np.isnan(block[:3]).all()
    assert np.isfinite(loss[3]) and block[3, 1] == 0.0
    y2 = np.array([-1, -1, -1, 2])
    block = x.copy()
    loss, _ = _chunk.ce_chunk(block, y2, ignore_index=-1)
    assert (loss[:3] == 0).all()


def test_bitwise_across_threads_and_blocks(kernels_config):
    x, y = problem(np.float32, N=67, C=3001)
    out = []
    for threads in (1, 2, 3):
        for block in (0, 1, 7):
            kernels_config.configure(threads=threads, row_block=block)
            b = x.copy()
            loss, lse = _chunk.ce_chunk(b, y, label_smoothing=0.1, softcap=20.0, z_loss=1e-4)
            st = _chunk.ce_partials(x[:, :1000].copy(), y, class_offset=0, num_classes=3001, label_smoothing=0.1)
            out.append(b.tobytes() + loss.tobytes() + lse.tobytes() + st.tobytes())
    assert all(o == out[0] for o in out[1:])


def test_errors():
    x = np.zeros((4, 6), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ce.InvalidOptionError, match="softcap"):
        _chunk.ce_chunk(x.copy(), y, softcap=0.0)
    with pytest.raises(ce.InvalidOptionError, match="softcap"):
        _chunk.ce_chunk(x.copy(), y, softcap=-2.0)
    with pytest.raises(ce.TargetOutOfRangeError, match=r"target\[2\] = 6 is outside \[0, 6\) classes"):
        _chunk.ce_chunk(x.copy(), np.array([0, 1, 6, 0]))
    with pytest.raises(ce.TargetOutOfRangeError, match=r"target\[1\] = 9"):
        _chunk.ce_partials(x.copy(), np.array([0, 9, 0, 0]), class_offset=0, num_classes=8)
    with pytest.raises(ce.ShapeMismatchError, match="target must have shape"):
        _chunk.ce_chunk(x.copy(), np.zeros(3, np.int64))
    with pytest.raises(ce.ShapeMismatchError, match="weight must have shape"):
        _chunk.ce_chunk(x.copy(), y, weight=np.ones(5, np.float32))
    with pytest.raises(ce.InvalidDTypeError, match="weight must have the logits' dtype"):
        _chunk.ce_chunk(x.copy(), y, weight=np.ones(6))
    with pytest.raises(ce.InvalidDTypeError, match="float32 or float64"):
        _chunk.ce_chunk(x.astype(np.float16), y)
    with pytest.raises(ce.ShapeMismatchError, match="do not fit"):
        _chunk.ce_partials(x.copy(), y, class_offset=3, num_classes=8)
    with pytest.raises(ce.ShapeMismatchError, match="contiguous columns"):
        _chunk.ce_chunk(np.zeros((4, 12), np.float32)[:, ::2], y)
    with pytest.raises(ce.InvalidOptionError, match="writeable"):
        ro = x.copy()
        ro.flags.writeable = False
        _chunk.ce_chunk(ro, y)
    with pytest.raises(ce.InvalidOptionError, match="label_smoothing"):
        _chunk.ce_chunk(x.copy(), y, label_smoothing=1.5)
    with pytest.raises(ce.ShapeMismatchError, match="grad_scale"):
        _chunk.ce_chunk(x.copy(), y, grad_scale=np.ones(3))
