"""Analytic gradients vs central finite differences (float64), every loss and option."""

from __future__ import annotations

import numpy as np
import pytest

import crossentropy as ce

RNG = np.random.default_rng(12345)
N, C = 4, 5
X = RNG.standard_normal((N, C)) * 2
P = RNG.dirichlet(np.ones(C), N) * 0.9 + 0.02  # interior probabilities (rows sum to 1.0)
P /= P.sum(-1, keepdims=True)
Y = RNG.integers(0, C, N)
T = RNG.dirichlet(np.ones(C), N)
W = RNG.uniform(0.2, 2.0, C)
SW = RNG.uniform(0.2, 2.0, N)
XB = RNG.standard_normal((N, 3)) * 2
PB = RNG.uniform(0.05, 0.95, (N, 3))
TB = RNG.uniform(size=(N, 3))
YB_IGN = Y.copy()
YB_IGN[1] = -1

CASES = [
    # (fn, x, target, options)
    (ce.cross_entropy, X, Y, {}),
    (ce.cross_entropy, X, Y, dict(weight=W, label_smoothing=0.2, sample_weight=SW)),
    (ce.cross_entropy, X, YB_IGN, dict(ignore_index=-1, weight=W)),
    (ce.cross_entropy, X, T, dict(weight=W, label_smoothing=0.1)),
    (ce.cross_entropy, X, Y, dict(z_loss=1e-2)),
    (ce.cross_entropy, X, T, dict(z_loss=0.3, base=2)),
    (ce.cross_entropy, X, Y, dict(base=10, reduction="sum")),
    (ce.cross_entropy, X, Y, dict(reduction="sum_over_batch_size", sample_weight=SW)),
    (ce.safe_softmax_cross_entropy, X, T, {}),
    (ce.nll_loss, np.log(P), Y, dict(weight=W)),
    (ce.categorical_cross_entropy, P, Y, dict(weight=W)),
    (ce.categorical_cross_entropy, P, T, dict(label_smoothing=0.3)),
    (ce.categorical_cross_entropy, P * 0.9, T, dict(compat="keras")),
    (ce.categorical_cross_entropy, P * 0.9, Y, dict(compat="keras")),
    (ce.categorical_cross_entropy, P, T, dict(compat="sklearn")),
    (ce.focal_cross_entropy, X, Y, dict(gamma=2.0, alpha=0.25)),
    (ce.focal_cross_entropy, X, T, dict(gamma=0.5, alpha=W / 3, label_smoothing=0.1)),
    (ce.focal_cross_entropy, X, Y, dict(gamma=1.5, compat="keras")),
    (ce.categorical_focal_cross_entropy, P, Y, dict(gamma=2.0, alpha=0.25)),
    (ce.categorical_focal_cross_entropy, P, T, dict(gamma=0.7)),
    (ce.categorical_focal_cross_entropy, P * 0.9, T, dict(gamma=2.0, compat="keras")),
    (ce.generalized_cross_entropy, P, Y, dict(q=0.3)),
    (ce.generalized_cross_entropy, P, T, dict(q=0.9, sample_weight=SW)),
    (ce.poly1_cross_entropy, X, Y, dict(epsilon=2.0, weight=W)),
    (ce.poly1_cross_entropy, X, T, dict(epsilon=-0.5, label_smoothing=0.2)),
    (ce.binary_cross_entropy, PB, TB, {}),
    (ce.binary_cross_entropy, PB, TB, dict(pos_weight=np.array([1.0, 2.0, 0.5]), label_smoothing=0.1, base=2)),
    (ce.binary_cross_entropy, PB, TB, dict(compat="torch", sample_weight=SW[:, None])),
    (ce.binary_cross_entropy, PB, TB, dict(compat="keras")),
    (ce.binary_cross_entropy, PB, TB, dict(compat="tf_keras")),
    (ce.binary_cross_entropy, PB, TB, dict(compat="sklearn")),
    (ce.binary_cross_entropy_with_logits, XB, TB, dict(pos_weight=np.array([1.0, 3.0, 0.5]))),
    (ce.binary_cross_entropy_with_logits, XB, TB, dict(reduction="sum", base=10)),
    (ce.binary_focal_cross_entropy, PB, TB, dict(gamma=2.0, alpha=0.3)),
    (ce.binary_focal_cross_entropy, PB, TB, dict(gamma=0.5, compat="keras")),
    (ce.binary_focal_cross_entropy_with_logits, XB, TB, dict(gamma=2.0, alpha=0.25)),
    (ce.binary_focal_cross_entropy_with_logits, XB, TB, dict(gamma=0.3, compat="keras", label_smoothing=0.1)),
]


def _fd(fn, x, t, kw, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (float(np.sum(fn(xp, t, **kw))) - float(np.sum(fn(xm, t, **kw)))) / (2 * h)
    return g


@pytest.mark.parametrize("fn,x,t,kw", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_analytic_gradient_matches_central_differences(fn, x, t, kw, reduction):
    kw = dict(kw)
    kw.setdefault("reduction", reduction)
    val, g = ce.value_and_grad(fn, x, t, **kw)
    assert g.shape == x.shape and g.dtype == x.dtype
    np.testing.assert_allclose(g, _fd(fn, x, t, kw), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(val, fn(x, t, **kw))


def test_grad_output_is_a_vector_jacobian_product():
    go = RNG.standard_normal(N)
    g = ce.grad(ce.cross_entropy, X, Y, reduction="none", grad_output=go)
    f = lambda x, t, **k: ce.cross_entropy(x, t, reduction="none") * go  # noqa: E731
    np.testing.assert_allclose(g, _fd(f, X, Y, {}), rtol=1e-6, atol=1e-7)


def _interior(t):
    # soft targets kept away from 0 and 1 so that ±h stays a valid target
    return 0.05 + 0.9 * t


def _fd_target(fn, x, t, kw, h=1e-6):
    return _fd(lambda tt, xx, **k: fn(xx, tt, **k), t, x, kw, h)


TARGET_CASES = [c for c in CASES if np.asarray(c[2]).dtype.kind == "f"]


@pytest.mark.parametrize("fn,x,t,kw", TARGET_CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(TARGET_CASES)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_target_gradient_matches_central_differences(fn, x, t, kw, reduction):
    kw = dict(kw)
    kw.setdefault("reduction", reduction)
    t = _interior(t)
    val, (gx, gt) = ce.value_and_grad(fn, x, t, wrt=(0, 1), **kw)
    assert gt.shape == t.shape and gt.dtype == t.dtype
    np.testing.assert_allclose(gt, _fd_target(fn, x, t, kw), rtol=1e-6, atol=1e-7)
    # the pair equals the single-argument calls (which may take a fast kernel), and by name too
    np.testing.assert_allclose(gx, ce.grad(fn, x, t, **kw), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(gt, ce.grad(fn, x, t, wrt="target", **kw))
    np.testing.assert_allclose(val, fn(x, t, **kw), rtol=1e-14)


def test_wrt_errors_name_the_argument():
    with pytest.raises(ce.InvalidOptionError, match="class indices"):
        ce.grad(ce.cross_entropy, X, Y, wrt=1)
    with pytest.raises(ce.InvalidOptionError, match="wrt=2 is out of range.*input, target"):
        ce.grad(ce.cross_entropy, X, Y, wrt=2)
    with pytest.raises(ce.InvalidOptionError, match="no gradient with respect to 'target'.*'input'"):
        ce.grad(ce.nll_loss, np.log(P), Y, wrt="target")
    with pytest.raises(ce.InvalidOptionError, match="an argument name"):
        ce.grad(ce.cross_entropy, X, Y, wrt=True)
    with pytest.raises(ce.InvalidOptionError, match="at least one"):
        ce.grad(ce.cross_entropy, X, Y, wrt=())


def test_masked_class_target_gradient_is_minus_log_softmax():
    # a -inf logit under a zero label: finite loss, and d/dt of that class is +inf (−log 0)
    x = np.array([[0.0, -np.inf, 1.0]])
    t = np.array([[0.5, 0.0, 0.5]])
    v, (gx, gt) = ce.value_and_grad(ce.cross_entropy, x, t, wrt=(0, 1))
    assert np.isfinite(v) and np.all(np.isfinite(gx)) and gx[0, 1] == 0.0
    np.testing.assert_allclose(gt[0, [0, 2]], -ce.log_softmax(x)[0, [0, 2]] / 1, rtol=1e-15)
    assert gt[0, 1] == np.inf


@pytest.mark.parametrize("target", [Y, T], ids=["index", "prob"])
@pytest.mark.parametrize("kw", [dict(softcap=3.0), dict(softcap=0.7, label_smoothing=0.1, z_loss=1e-2, weight=W)])
def test_softcap_is_the_loss_of_capped_logits(target, kw):
    s = kw["softcap"]
    rest = {k: v for k, v in kw.items() if k != "softcap"}
    capped = s * np.tanh(X / s)
    v, g = ce.value_and_grad(ce.cross_entropy, X, target, **kw)
    rv, rg = ce.value_and_grad(ce.cross_entropy, capped, target, **rest)
    np.testing.assert_allclose(v, rv, rtol=1e-14)
    np.testing.assert_allclose(g, rg * (1 - np.tanh(X / s) ** 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, _fd(ce.cross_entropy, X, target, kw), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_softcap_must_be_positive_and_finite(bad):
    with pytest.raises(ce.InvalidOptionError, match="softcap must be a positive finite number"):
        ce.cross_entropy(X, Y, softcap=bad)


def test_autodiff_of_the_reference_keeps_target_and_weight_gradients_at_zero():
    """0·log p is guarded only where log p is not finite: ∂/∂t at t = 0 is −log p, not 0."""
    import torch

    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([[0.7, 0.0, 0.3]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    ce.cross_entropy(x, t, weight=w).backward()
    logp = torch.log_softmax(x, -1)
    torch.testing.assert_close(t.grad, -(w.detach() * logp), rtol=1e-14, atol=0)
    torch.testing.assert_close(w.grad, -(t.detach() * logp)[0], rtol=1e-14, atol=0)
    xb = torch.tensor([0.3, -1.2], dtype=torch.float64)
    tb = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    ce.binary_cross_entropy_with_logits(xb, tb, reduction="sum").backward()
    torch.testing.assert_close(tb.grad, -xb, rtol=1e-14, atol=1e-16)  # ∂/∂y = log σ(−x) − log σ(x) = −x


def test_weights_summing_to_zero_divide_by_zero_in_value_and_gradient():
    """Non-zero class weights with Σw[y] = 0: ±inf/NaN as PyTorch, never a finite gradient."""
    import torch

    x = RNG.standard_normal((2, 3))
    t, w = np.array([0, 1]), np.array([1.0, -1.0, 2.0])
    with np.errstate(all="ignore"):
        v, g = ce.value_and_grad(ce.cross_entropy, x, t, weight=w)
    assert not np.isfinite(v) and not np.all(np.isfinite(g))
    tv = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t), weight=torch.tensor(w))
    assert float(v) == float(tv)
    # nothing counted at all (every target ignored): NaN loss, zero gradient, as PyTorch
    v0, g0 = ce.value_and_grad(ce.cross_entropy, x, np.array([-100, -100]), ignore_index=-100, weight=w)
    assert np.isnan(v0) and np.all(g0 == 0)
