"""Live parity with PyTorch: losses and input gradients (torch autograd).

References: ``F.cross_entropy`` (index and probability targets, class weights,
``ignore_index``, ``label_smoothing``, K-dim inputs via ``axis=1``),
``F.nll_loss``, ``F.binary_cross_entropy`` (ours with ``compat='torch'``; its
``weight`` is our ``sample_weight`` with ``reduction='sum_over_batch_size'``)
and ``F.binary_cross_entropy_with_logits`` (``pos_weight``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import crossentropy as ce

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]
IGNORE = -100


def _t(a, grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_(True) if grad else t


def _torch_vg(fn, x, *args, **kw):
    """Value of a torch loss and its gradient w.r.t. ``x`` (of the summed value)."""
    X = _t(x, grad=True)
    out = fn(X, *args, **kw)
    out.sum().backward()
    return out.detach().numpy(), X.grad.numpy()


def _opts(**kw):
    return ", ".join(f"{k}={v}" for k, v in kw.items() if v not in (None, False, 0, 0.0)) or "defaults"


def _logits(rng, shape, dtype, extreme=False):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if extreme:
        flat = x.reshape(-1)
        k = max(1, flat.size // 6)
        idx = rng.choice(flat.size, size=min(flat.size, 2 * k), replace=False)
        flat[idx[:k]] = 1e4
        flat[idx[k:]] = -1e4
    return x


def _layout(kdim, N, C):
    return ((N, C, 3, 2), 1, (N, 3, 2)) if kdim else ((N, C), -1, (N,))


# ---------------------------------------------------------------------------------------------
# F.cross_entropy with class-index targets
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kdim", [False, True], ids=["2d", "kdim"])
@pytest.mark.parametrize("use_weight,ignore,smoothing", list(itertools.product([False, True], [False, True], [0.0, 0.25])))
@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "pm1e4"])
def test_cross_entropy_index(parity, rng, dtype, kdim, use_weight, ignore, smoothing, extreme):
    N, C = 7, 5
    shape, axis, tshape = _layout(kdim, N, C)
    x = _logits(rng, shape, dtype, extreme)
    y = rng.integers(0, C, tshape)
    if ignore:
        y.reshape(-1)[:: 3] = IGNORE
    w = rng.uniform(0.1, 3.0, C).astype(dtype) if use_weight else None
    for red in REDUCTIONS:
        tkw = dict(reduction=red, label_smoothing=smoothing)
        if w is not None:
            tkw["weight"] = _t(w)
        if ignore:
            tkw["ignore_index"] = IGNORE
        ref, gref = _torch_vg(F.cross_entropy, x, _t(y), **tkw)
        val, g = ce.value_and_grad(ce.cross_entropy, x, y, axis=axis, weight=w, reduction=red,
                                   label_smoothing=smoothing, ignore_index=IGNORE if ignore else None)
        opts = _opts(weight=use_weight, ignore_index=ignore, label_smoothing=smoothing, reduction=red)
        layout = "K-dim axis=1" if kdim else "(N, C)"
        parity.check("torch", "F.cross_entropy (index targets)", f"{layout}; {opts}; {'±1e4' if extreme else 'randn'}",
                     ours=val, theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype,
                     factor=256 if extreme else 64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kdim", [False, True], ids=["2d", "kdim"])
@pytest.mark.parametrize("use_weight,smoothing", list(itertools.product([False, True], [0.0, 0.3])))
def test_cross_entropy_probability_targets(parity, rng, dtype, kdim, use_weight, smoothing):
    N, C = 6, 4
    shape, axis, _ = _layout(kdim, N, C)
    x = _logits(rng, shape, dtype)
    t = rng.dirichlet(np.ones(C), size=int(np.prod(shape)) // C).astype(dtype)
    t = np.moveaxis(t.reshape(tuple(s for i, s in enumerate(shape) if i != axis % len(shape)) + (C,)), -1, axis)
    w = rng.uniform(0.1, 3.0, C).astype(dtype) if use_weight else None
    for red in REDUCTIONS:
        tkw = dict(reduction=red, label_smoothing=smoothing)
        if w is not None:
            tkw["weight"] = _t(w)
        ref, gref = _torch_vg(F.cross_entropy, x, _t(t), **tkw)
        val, g = ce.value_and_grad(ce.cross_entropy, x, t, axis=axis, weight=w, reduction=red,
                                   label_smoothing=smoothing)
        layout = "K-dim axis=1" if kdim else "(N, C)"
        parity.check("torch", "F.cross_entropy (probability targets)",
                     f"{layout}; {_opts(weight=use_weight, label_smoothing=smoothing, reduction=red)}",
                     ours=val, theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_minus_inf_mask_index_targets(parity, dtype, smoothing):
    # −inf logits on non-target classes: finite loss without smoothing; with
    # smoothing the ε/C share on a −inf class makes it +inf in both libraries.
    x = np.array([[0.0, -np.inf, 2.0, 1.0], [-np.inf, -np.inf, 3.0, 1e4], [5.0, -1e4, -np.inf, 0.0]], dtype=dtype)
    y = np.array([2, 3, 0])
    for red in REDUCTIONS:
        ref, gref = _torch_vg(F.cross_entropy, x, _t(y), reduction=red, label_smoothing=smoothing)
        val, g = ce.value_and_grad(ce.cross_entropy, x, y, reduction=red, label_smoothing=smoothing)
        parity.check("torch", "F.cross_entropy (index targets)",
                     f"-inf mask; {_opts(label_smoothing=smoothing, reduction=red)}", ours=val, theirs=ref,
                     grad_ours=g if not smoothing else None, grad_theirs=gref if not smoothing else None,
                     dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_empty_and_all_ignored(parity, dtype):
    C = 3
    cases = {
        "empty batch": (np.zeros((0, C), dtype=dtype), np.zeros((0,), dtype=np.int64), None),
        "empty K-dim": (np.zeros((2, C, 0), dtype=dtype), np.zeros((2, 0), dtype=np.int64), None),
        "all ignored": (np.ones((4, C), dtype=dtype), np.full((4,), IGNORE), IGNORE),
    }
    for name, (x, y, ign) in cases.items():
        axis = 1 if x.ndim == 3 else -1
        for red in REDUCTIONS:
            for w in (None, np.array([1.0, 2.0, 3.0], dtype=dtype)):
                tkw = dict(reduction=red)
                if ign is not None:
                    tkw["ignore_index"] = ign
                if w is not None:
                    tkw["weight"] = _t(w)
                ref, gref = _torch_vg(F.cross_entropy, x, _t(y), **tkw)
                val, g = ce.value_and_grad(ce.cross_entropy, x, y, axis=axis, weight=w, reduction=red,
                                           ignore_index=ign)
                if red == "mean":
                    assert np.isnan(val) and np.isnan(ref)  # 0/0: PyTorch and we agree on NaN
                parity.check("torch", "F.cross_entropy (index targets)", f"{name}; {_opts(weight=w is not None, reduction=red)}",
                             ours=val, theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(0, 9), C=st.integers(1, 7), extra=st.lists(st.integers(1, 3), max_size=2),
       seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES), smoothing=st.sampled_from([0.0, 0.1, 1.0]))
def test_cross_entropy_hypothesis_shapes(parity, N, C, extra, seed, dtype, smoothing):
    rng = np.random.default_rng(seed)
    shape = (N, C, *extra)
    x = _logits(rng, shape, dtype)
    y = rng.integers(0, C, (N, *extra))
    ref, gref = _torch_vg(F.cross_entropy, x, _t(y), reduction="sum", label_smoothing=smoothing)
    val, g = ce.value_and_grad(ce.cross_entropy, x, y, axis=1, reduction="sum", label_smoothing=smoothing)
    parity.check("torch", "F.cross_entropy (index targets)", "hypothesis shapes (N, C, *d); reduction=sum",
                 ours=val, theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# F.nll_loss
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kdim", [False, True], ids=["2d", "kdim"])
@pytest.mark.parametrize("use_weight,ignore", list(itertools.product([False, True], [False, True])))
def test_nll_loss(parity, rng, dtype, kdim, use_weight, ignore):
    N, C = 6, 4
    shape, axis, tshape = _layout(kdim, N, C)
    logp = np.asarray(torch.log_softmax(_t(_logits(rng, shape, dtype)), dim=axis))
    logp.reshape(-1)[::7] = -np.inf  # impossible classes (log 0)
    y = rng.integers(0, C, tshape)
    y = np.where(np.take_along_axis(logp, np.expand_dims(y, axis), axis).squeeze(axis) == -np.inf, (y + 1) % C, y)
    if ignore:
        y.reshape(-1)[::4] = IGNORE
    w = rng.uniform(0.1, 3.0, C).astype(dtype) if use_weight else None
    for red in REDUCTIONS:
        tkw = dict(reduction=red)
        if w is not None:
            tkw["weight"] = _t(w)
        if ignore:
            tkw["ignore_index"] = IGNORE
        ref, gref = _torch_vg(F.nll_loss, logp, _t(y), **tkw)
        val, g = ce.value_and_grad(ce.nll_loss, logp, y, axis=axis, weight=w, reduction=red,
                                   ignore_index=IGNORE if ignore else None)
        layout = "K-dim axis=1" if kdim else "(N, C)"
        parity.check("torch", "F.nll_loss", f"{layout}; {_opts(weight=use_weight, ignore_index=ignore, reduction=red)}",
                     ours=val, theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# F.binary_cross_entropy (probabilities) — ours with compat='torch'
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("edge", [False, True], ids=["interior", "p_in_0_1_edges"])
def test_binary_cross_entropy_torch_compat(parity, rng, dtype, use_weight, edge):
    shape = (8, 3)
    p = rng.uniform(size=shape).astype(dtype)
    t = rng.uniform(size=shape).astype(dtype)
    t[:4] = np.round(t[:4])
    if edge:
        p[0, :] = [0.0, 1.0, 0.0]
        t[0, :] = [1.0, 0.0, 0.0]
        p[1, :] = [1e-30 if dtype == np.float64 else 1e-40, 1.0 - 1e-7, 1e-7]
    w = rng.uniform(0.0, 2.0, shape).astype(dtype) if use_weight else None
    for red in REDUCTIONS:
        tkw = dict(reduction=red)
        if w is not None:
            tkw["weight"] = _t(w)
        ref, gref = _torch_vg(F.binary_cross_entropy, p, _t(t), **tkw)
        # BCELoss(weight) 'mean' divides by the element count: our 'sum_over_batch_size'.
        ours_red = "sum_over_batch_size" if red == "mean" else red
        val, g = ce.value_and_grad(ce.binary_cross_entropy, p, t, sample_weight=w, reduction=ours_red, compat="torch")
        parity.check("torch", "F.binary_cross_entropy", f"compat='torch'; {_opts(weight=use_weight, reduction=red)}"
                     f"{'; p∈{0,1}, 1e-30' if edge else ''}", ours=val, theirs=ref, grad_ours=g, grad_theirs=gref,
                     dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_exact_mode_differs_only_where_torch_clamps(dtype):
    # The default (exact) mode agrees with torch wherever torch's −100 clamp is inactive.
    p = np.array([0.25, 0.5, 1e-45 if dtype == np.float64 else 0.0, 0.0], dtype=dtype)
    t = np.array([1.0, 0.0, 1.0, 1.0], dtype=dtype)
    ref = F.binary_cross_entropy(_t(p), _t(t), reduction="none").numpy()
    ours = ce.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_allclose(ours[:2], ref[:2], rtol=1e-6)
    assert ref[3] == 100.0 and ours[3] == np.inf


# ---------------------------------------------------------------------------------------------
# F.binary_cross_entropy_with_logits (pos_weight)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_weight,use_pos", list(itertools.product([False, True], [False, True])))
@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "pm1e4_inf"])
def test_bce_with_logits(parity, rng, dtype, use_weight, use_pos, extreme):
    shape = (9, 4)
    x = _logits(rng, shape, dtype, extreme)
    t = rng.uniform(size=shape).astype(dtype)
    t[:5] = np.round(t[:5])
    if extreme:
        # PyTorch is NaN at ±inf logits except where the loss is +inf
        # (test_bce_with_logits_infinite_logits shows the difference).
        x[0] = [1e4, -1e4, np.inf, 30.0]
        t[0] = [1.0, 0.0, 0.5, 1.0]
    w = rng.uniform(0.0, 2.0, shape).astype(dtype) if use_weight else None
    pw = rng.uniform(0.5, 4.0, (4,)).astype(dtype) if use_pos else None
    for red in REDUCTIONS:
        tkw = dict(reduction=red)
        if w is not None:
            tkw["weight"] = _t(w)
        if pw is not None:
            tkw["pos_weight"] = _t(pw)
        ref, gref = _torch_vg(F.binary_cross_entropy_with_logits, x, _t(t), **tkw)
        ours_red = "sum_over_batch_size" if red == "mean" else red
        val, g = ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, t, sample_weight=w, pos_weight=pw,
                                   reduction=ours_red)
        parity.check("torch", "F.binary_cross_entropy_with_logits",
                     f"{_opts(weight=use_weight, pos_weight=use_pos, reduction=red)}; {'±1e4, +inf' if extreme else 'randn'}",
                     ours=val, theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_empty(parity, dtype):
    x = np.zeros((0, 3), dtype=dtype)
    for red in REDUCTIONS:
        ref, gref = _torch_vg(F.binary_cross_entropy_with_logits, x, _t(x), reduction=red)
        ours_red = "mean" if red == "mean" else red
        val, g = ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, x, reduction=ours_red)
        parity.check("torch", "F.binary_cross_entropy_with_logits", f"empty batch; reduction={red}", ours=val,
                     theirs=ref, grad_ours=g, grad_theirs=gref, dtype=dtype)


def test_bce_with_logits_infinite_logits_by_design_difference():
    # σ(+inf) = 1 with y = 1 costs exactly 0 here; PyTorch computes inf − inf = NaN.
    x = np.array([np.inf, -np.inf, np.inf, -np.inf])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    ref = F.binary_cross_entropy_with_logits(_t(x), _t(t), reduction="none").numpy()
    ours = ce.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert np.isnan(ref[:2]).all() and np.isnan(ref[3])
    assert ours.tolist() == [0.0, 0.0, np.inf, np.inf]
