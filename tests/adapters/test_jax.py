"""crossentropy.jax against optax: values and gradients (logits and soft labels), axis/where, jit, vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import crossentropy
import crossentropy.jax as cj

R = np.random.default_rng(0)
X = jnp.asarray(R.normal(size=(5, 4)) * 3, dtype=jnp.float32)
X3 = jnp.asarray(R.normal(size=(3, 4, 2)) * 2, dtype=jnp.float32)
P = jax.nn.softmax(jnp.asarray(R.normal(size=(5, 4)), dtype=jnp.float32))
P3 = jax.nn.softmax(jnp.asarray(R.normal(size=(3, 4, 2)), dtype=jnp.float32), axis=(1, 2))
I = jnp.asarray(R.integers(0, 4, 5))
I3 = jnp.asarray(R.integers(0, 8, 3))
B = jnp.asarray((R.random((5, 4)) > 0.5).astype("float32"))
SOFT = jnp.asarray(R.random((5, 4)).astype("float32"))
WROW = jnp.asarray([True, False, True, True, False])
WEL = jnp.asarray(R.random((5, 4)) > 0.3).at[:, 0].set(True)
XEXT = X * 30.0

# name -> (function name, args, kwargs, differentiate labels too)
CASES = {
    "softmax_cross_entropy/default": ("softmax_cross_entropy", (X, P), {}, True),
    "softmax_cross_entropy/axis=0": ("softmax_cross_entropy", (X, P), {"axis": 0}, True),
    "softmax_cross_entropy/axis=(1,2)": ("softmax_cross_entropy", (X3, P3), {"axis": (1, 2)}, True),
    "softmax_cross_entropy/where rows": ("softmax_cross_entropy", (X, P), {"where": WROW}, True),
    "softmax_cross_entropy/where elements": ("softmax_cross_entropy", (X, P), {"where": WEL}, True),
    "softmax_cross_entropy/extreme logits": ("softmax_cross_entropy", (XEXT, P), {}, True),
    "integer_labels/default": ("softmax_cross_entropy_with_integer_labels", (X, I), {}, False),
    "integer_labels/axis=0": ("softmax_cross_entropy_with_integer_labels", (X.T, I), {"axis": 0}, False),
    "integer_labels/axis=(1,2)": ("softmax_cross_entropy_with_integer_labels", (X3, I3), {"axis": (1, 2)}, False),
    "integer_labels/where rows": ("softmax_cross_entropy_with_integer_labels", (X, I), {"where": WROW}, False),
    "integer_labels/where elements": ("softmax_cross_entropy_with_integer_labels", (X, I), {"where": WEL}, False),
    "integer_labels/extreme logits": ("softmax_cross_entropy_with_integer_labels", (XEXT, I), {}, False),
    "safe_softmax_cross_entropy/default": ("safe_softmax_cross_entropy", (X, P), {}, True),
    "safe_softmax_cross_entropy/-inf logits": ("safe_softmax_cross_entropy",
                                               (X.at[:, 1].set(-jnp.inf), P.at[:, 1].set(0.0)), {}, False),
    "sigmoid_binary_cross_entropy/default": ("sigmoid_binary_cross_entropy", (X, B), {}, True),
    "sigmoid_binary_cross_entropy/soft labels": ("sigmoid_binary_cross_entropy", (X, SOFT), {}, True),
    "sigmoid_binary_cross_entropy/broadcast labels": ("sigmoid_binary_cross_entropy", (X, B[0]), {}, True),
    "sigmoid_binary_cross_entropy/extreme logits": ("sigmoid_binary_cross_entropy", (XEXT, B), {}, True),
    "sigmoid_focal_loss/default": ("sigmoid_focal_loss", (X, B), {}, False),
    "sigmoid_focal_loss/alpha=0.25": ("sigmoid_focal_loss", (X, B), {"alpha": 0.25}, False),
    "sigmoid_focal_loss/gamma=0": ("sigmoid_focal_loss", (X, B), {"gamma": 0.0}, False),
    "sigmoid_focal_loss/gamma=0.5 soft": ("sigmoid_focal_loss", (X, SOFT), {"gamma": 0.5, "alpha": 0.6}, True),
    "sigmoid_focal_loss/gamma=3": ("sigmoid_focal_loss", (X, B), {"gamma": 3.0}, False),
    "poly_loss_cross_entropy/default": ("poly_loss_cross_entropy", (X, P), {}, True),
    "poly_loss_cross_entropy/epsilon=-1": ("poly_loss_cross_entropy", (X, P), {"epsilon": -1.0}, True),
    "poly_loss_cross_entropy/axis=0": ("poly_loss_cross_entropy", (X, P), {"axis": 0}, True),
    "poly_loss_cross_entropy/where elements": ("poly_loss_cross_entropy", (X, P), {"where": WEL}, True),
}


def compare(name):
    fname, args, kw, labels_grad = CASES[name]
    ours, ref = getattr(cj, fname), getattr(optax.losses, fname)
    out = {}
    for tag, f in (("ours", ours), ("ref", ref)):
        # One compiled program per case: op-by-op eager dispatch is far slower.
        v = jax.jit(lambda *a: f(*a, **kw))(*args)
        w = jnp.linspace(0.5, 1.5, v.size).reshape(v.shape)
        argnums = (0, 1) if labels_grad else 0
        g = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a, **kw) * w), argnums=argnums))(*args)
        g = g if labels_grad else (g,)
        out[tag] = (np.asarray(v, dtype="float64"), [np.asarray(gi, dtype="float64") for gi in g])
    (ov, og), (rv, rg) = out["ours"], out["ref"]
    dv = float(np.max(np.abs(ov - rv)))
    dg = max(float(np.max(np.abs(a - b))) for a, b in zip(og, rg))
    scale = max(float(np.max(np.abs(rv))), max(float(np.max(np.abs(b))) for b in rg), 1.0)
    return dv, dg, scale


@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_optax(name):
    dv, dg, scale = compare(name)
    assert dv <= 2e-6 * scale and dg <= 2e-6 * scale, (dv, dg, scale)


def test_signatures_match():
    import inspect

    for n in cj.__all__:
        a, b = inspect.signature(getattr(cj, n)), inspect.signature(getattr(optax.losses, n))
        assert [(p.name, p.kind, p.default) for p in a.parameters.values()] == \
               [(p.name, p.kind, p.default) for p in b.parameters.values()], n


def test_focal_label_gradient_is_the_true_derivative():
    # optax's label gradient at hard 0/1 labels comes out of a logsumexp whose
    # zero-weight terms are masked, and is not the derivative; ours is (finite
    # differences agree), and on soft labels both agree (the parity cases).
    x, y, h = jnp.array([1.3, -0.7]), jnp.array([1.0, 0.0]), 1e-2
    g = jax.grad(lambda lab: cj.sigmoid_focal_loss(x, lab).sum())(y)
    fd = [(cj.sigmoid_focal_loss(x, y.at[i].add(h)).sum() - cj.sigmoid_focal_loss(x, y.at[i].add(-h)).sum())
          / (2 * h) for i in range(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-3)


def test_safe_where_optax_plain_gives_nan():
    x, p = X.at[:, 1].set(-jnp.inf), P.at[:, 1].set(0.0)
    assert jnp.isnan(optax.losses.softmax_cross_entropy(x, p)).all()
    v = cj.softmax_cross_entropy(x, p)
    g = jax.grad(lambda z: cj.softmax_cross_entropy(z, p).sum())(x)
    assert jnp.isfinite(v).all() and jnp.isfinite(g).all()
    np.testing.assert_allclose(v, optax.losses.safe_softmax_cross_entropy(x, p), rtol=1e-6)


def test_gradient_is_analytic_custom_jvp():
    # The derivative is the library's closed form softmax − onehot (jaxpr shows the custom_jvp).
    jaxpr = str(jax.make_jaxpr(lambda z: cj.softmax_cross_entropy_with_integer_labels(z, I))(X))
    assert "custom_jvp" in jaxpr
    g = jax.grad(lambda z: cj.softmax_cross_entropy_with_integer_labels(z, I).sum())(X)
    np.testing.assert_allclose(g, jax.nn.softmax(X) - jax.nn.one_hot(I, 4), atol=1e-6)


@pytest.mark.parametrize("name", ["softmax_cross_entropy/where elements", "integer_labels/axis=(1,2)",
                                  "sigmoid_focal_loss/alpha=0.25", "poly_loss_cross_entropy/where elements"])
def test_jit_and_vmap(name):
    fname, args, kw, _ = CASES[name]
    f = getattr(cj, fname)
    eager = f(*args, **kw)
    jitted = jax.jit(lambda *a: f(*a, **kw))(*args)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    g_e = jax.grad(lambda a0: f(a0, *args[1:], **kw).sum())(args[0])
    g_j = jax.jit(jax.grad(lambda a0: f(a0, *args[1:], **kw).sum()))(args[0])
    np.testing.assert_allclose(g_j, g_e, rtol=1e-5, atol=1e-7)
    if "where" not in kw and "axis" not in kw:
        # vmap over a leading batch of two copies equals stacking.
        stacked = jax.vmap(lambda *a: f(*a, **kw))(*(jnp.stack([a, a]) for a in args))
        np.testing.assert_allclose(stacked[1], eager, rtol=1e-6)
        gv = jax.vmap(jax.grad(lambda a0, a1: f(a0, a1, **kw).sum()))(*(jnp.stack([a, a]) for a in args))
        np.testing.assert_allclose(gv[0], g_e, rtol=1e-5, atol=1e-7)


def test_vmap_over_integer_labels_and_where():
    f = lambda x, y, w: cj.softmax_cross_entropy_with_integer_labels(x, y, where=w)  # noqa: E731
    xs, ys, ws = jnp.stack([X, X * 2]), jnp.stack([I, I]), jnp.stack([WEL, WEL])
    v = jax.vmap(f)(xs, ys, ws)
    ref = optax.losses.softmax_cross_entropy_with_integer_labels(X * 2, I, where=WEL)
    # Absolute agreement at optax's scale: on the confident row ours is exact (log1p of the off-target
    # mass) where optax's float32 lse − x_y is 5e-4 off relatively; float64 decides.
    np.testing.assert_allclose(v[1], ref, rtol=0, atol=2e-6 * float(jnp.max(ref)))
    exact = optax.losses.softmax_cross_entropy_with_integer_labels(
        np.asarray(X * 2, np.float64), np.asarray(I), where=np.asarray(WEL))
    np.testing.assert_allclose(v[1], exact, rtol=4 * float(jnp.finfo(jnp.float32).eps))
    g = jax.vmap(jax.grad(lambda x, y, w: f(x, y, w).sum()))(xs, ys, ws)
    gr = jax.grad(lambda x: optax.losses.softmax_cross_entropy_with_integer_labels(x, I, where=WEL).sum())(X * 2)
    np.testing.assert_allclose(g[1], gr, atol=1e-6)


def test_matches_the_core_library():
    np.testing.assert_allclose(cj.softmax_cross_entropy_with_integer_labels(X, I),
                               crossentropy.cross_entropy(np.asarray(X), np.asarray(I), reduction="none"), rtol=1e-6)
    np.testing.assert_allclose(cj.sigmoid_focal_loss(X, B, alpha=0.25),
                               crossentropy.binary_focal_cross_entropy_with_logits(
                                   np.asarray(X), np.asarray(B), alpha=0.25, reduction="none"), rtol=1e-5)
    np.testing.assert_allclose(cj.poly_loss_cross_entropy(X, P),
                               crossentropy.poly1_cross_entropy(np.asarray(X), np.asarray(P), reduction="none"),
                               rtol=1e-5)


@pytest.mark.parametrize("call, exc", [
    (lambda: cj.softmax_cross_entropy_with_integer_labels(X, P), crossentropy.InvalidDTypeError),
    (lambda: cj.softmax_cross_entropy(I, P), crossentropy.InvalidDTypeError),
    (lambda: cj.softmax_cross_entropy(X, P, axis=5), crossentropy.InvalidOptionError),
    (lambda: cj.softmax_cross_entropy(X, P[:3]), crossentropy.ShapeMismatchError),
    (lambda: cj.softmax_cross_entropy_with_integer_labels(X, I[:3]), crossentropy.ShapeMismatchError),
    (lambda: cj.poly_loss_cross_entropy(X, I), crossentropy.InvalidDTypeError),
    (lambda: cj.softmax_cross_entropy_with_integer_labels(X, I.at[2].set(4)), crossentropy.TargetOutOfRangeError),
    (lambda: cj.softmax_cross_entropy_with_integer_labels(X, I.at[0].set(-1)), crossentropy.TargetOutOfRangeError),
])
def test_errors(call, exc):
    with pytest.raises(exc):
        call()


# ---------------------------------------------------------------------------------------------
# every autodiff mode (float64: the root conftest enables x64), against optax and finite differences
# ---------------------------------------------------------------------------------------------

R64 = np.random.default_rng(3)
X64 = jnp.asarray(R64.normal(size=(4, 5)) * 2)
P64 = jax.nn.softmax(jnp.asarray(R64.normal(size=(4, 5))))
B64 = jnp.asarray(R64.uniform(0.2, 0.8, (4, 5)))  # soft labels: every derivative exists
I64 = jnp.asarray(R64.integers(0, 5, 4))
W64 = jnp.asarray(R64.random((4, 5)) > 0.3).at[:, 0].set(True).at[jnp.arange(4), I64].set(True)

# name -> (function, args, kwargs); the labels are differentiated when floating.
AD_CASES = {
    "softmax_cross_entropy": ("softmax_cross_entropy", (X64, P64), {}),
    "softmax_cross_entropy/where": ("softmax_cross_entropy", (X64, P64), {"where": W64}),
    "softmax_cross_entropy/axis=0": ("softmax_cross_entropy", (X64, P64), {"axis": 0}),
    "safe_softmax_cross_entropy": ("safe_softmax_cross_entropy", (X64, P64), {}),
    "integer_labels": ("softmax_cross_entropy_with_integer_labels", (X64, I64), {}),
    "integer_labels/where": ("softmax_cross_entropy_with_integer_labels", (X64, I64), {"where": W64}),
    "sigmoid_binary_cross_entropy": ("sigmoid_binary_cross_entropy", (X64, B64), {}),
    "sigmoid_focal_loss/alpha=0.3": ("sigmoid_focal_loss", (X64, B64), {"alpha": 0.3}),
    "sigmoid_focal_loss/gamma=0.5": ("sigmoid_focal_loss", (X64, B64), {"gamma": 0.5}),
    "poly_loss_cross_entropy": ("poly_loss_cross_entropy", (X64, P64), {}),
    "poly_loss_cross_entropy/eps=-1 where": ("poly_loss_cross_entropy", (X64, P64), {"epsilon": -1.0, "where": W64}),
}


def _weighted(mod, name):
    # Distinct weights per row so that a mix-up of rows cannot cancel out.
    fname, args, kw = AD_CASES[name]
    f = getattr(mod, fname)

    def g(*a):
        v = f(*a, **kw)
        return v * jnp.linspace(0.5, 1.5, v.shape[0]).reshape((-1,) + (1,) * (v.ndim - 1)) if v.ndim else v

    argnums = (0, 1) if jnp.issubdtype(args[1].dtype, jnp.floating) else (0,)
    return g, args, argnums


def _maxdiff(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    return max(float(jnp.max(jnp.abs(jnp.asarray(u) - jnp.asarray(v)))) for u, v in zip(la, lb))


@pytest.mark.parametrize("name", list(AD_CASES))
@pytest.mark.parametrize("mode", ["jvp", "jacfwd", "jacrev", "hessian"])
def test_autodiff_mode_matches_optax(name, mode):
    ours, args, argnums = _weighted(cj, name)
    ref, _, _ = _weighted(optax.losses, name)
    if mode == "jvp":
        tangents = tuple(jnp.asarray(np.random.default_rng(5).normal(size=args[i].shape)) for i in argnums)
        fix = lambda f: (lambda *d: f(*d, *args[len(argnums):]))  # noqa: E731
        a = jax.jvp(fix(ours), args[:len(argnums)], tangents)
        b = jax.jvp(fix(ref), args[:len(argnums)], tangents)
    else:
        tr = {"jacfwd": jax.jacfwd, "jacrev": jax.jacrev, "hessian": jax.hessian}[mode]
        total = (lambda f: (lambda *a: jnp.sum(f(*a)))) if mode == "hessian" else (lambda f: f)
        a = jax.jit(tr(total(ours), argnums=argnums))(*args)
        b = jax.jit(tr(total(ref), argnums=argnums))(*args)
    assert _maxdiff(a, b) <= 1e-12


@pytest.mark.parametrize("name", list(AD_CASES))
def test_check_grads_both_modes_orders_1_and_2(name):
    from jax.test_util import check_grads

    ours, args, argnums = _weighted(cj, name)
    n = len(argnums)
    f = lambda *d: ours(*d, *args[n:])  # noqa: E731
    check_grads(f, args[:n], order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("fname, extra", [("softmax_cross_entropy", 0.0), ("safe_softmax_cross_entropy", 0.0),
                                          ("poly_loss_cross_entropy", 2.0)])
def test_label_cotangent_is_minus_log_softmax(fname, extra):
    # At one-hot labels the cotangent of a zero label is −log p_c (+ ε(1 − p_c) for poly-1), not 0;
    # central differences agree (no value checks, so labels may step below 0 as check_grads does).
    x = jnp.array([[10.0, -2.0, 1.0], [0.5, 0.25, -3.0]])
    y = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    f = getattr(cj, fname)
    g = jax.grad(lambda lab: f(x, lab).sum())(y)
    logp = jax.nn.log_softmax(x)
    expected = -logp + extra * (1.0 - jnp.exp(logp))
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    if not extra:
        assert float(g[0, 1]) == pytest.approx(12.0001, abs=1e-4)  # −log softmax: 12 + log(1 + e^-12 + e^-9)
    h = 1e-6
    for i, j in [(0, 1), (0, 2), (1, 0), (1, 1)]:
        fd = (f(x, y.at[i, j].add(h)).sum() - f(x, y.at[i, j].add(-h)).sum()) / (2 * h)
        assert float(g[i, j]) == pytest.approx(float(fd), rel=1e-7, abs=1e-7)


def test_masked_logits_keep_finite_exact_derivatives_of_every_order():
    # A −inf logit (safe CE) or a where-masked class: the loss, gradient, Jacobian and Hessian
    # are finite and equal those of the same problem with that class removed.
    x = jnp.array([[2.0, -jnp.inf, 0.5, -1.0], [0.3, -jnp.inf, -jnp.inf, 1.0]])
    y = jnp.array([[0.6, 0.0, 0.3, 0.1], [0.5, 0.0, 0.0, 0.5]])
    live = ~jnp.isinf(x)
    keep = [[0, 2, 3], [0, 3]]
    losses = {
        "safe": (lambda a, lab: cj.safe_softmax_cross_entropy(a, lab), cj.safe_softmax_cross_entropy),
        "plain": (lambda a, lab: cj.softmax_cross_entropy(a, lab), cj.softmax_cross_entropy),
        "where": (lambda a, lab: cj.softmax_cross_entropy(jnp.where(live, a, 7.0), lab, where=live),
                  cj.softmax_cross_entropy),
        "poly": (lambda a, lab: cj.poly_loss_cross_entropy(a, lab, epsilon=1.5),
                 lambda a, lab: cj.poly_loss_cross_entropy(a, lab, epsilon=1.5)),
    }
    for name, (f, reduced) in losses.items():
        total = lambda a, f=f: f(a, y).sum()  # noqa: E731
        value, g, gf, H = jax.jit(lambda a, t=total: (t(a), jax.grad(t)(a), jax.jacfwd(t)(a), jax.hessian(t)(a)))(x)
        assert jnp.isfinite(value) and jnp.isfinite(g).all() and jnp.isfinite(H).all(), name
        np.testing.assert_allclose(gf, g, rtol=1e-13, atol=1e-15)
        for r, cols in enumerate(keep):
            cols, masked = jnp.array(cols), jnp.array([c for c in range(4) if c not in cols])
            sub = lambda a, r=r, cols=cols, reduced=reduced: reduced(a[None], y[r, cols][None]).sum()  # noqa: E731
            gs, Hs = jax.jit(lambda a, s=sub: (jax.grad(s)(a), jax.hessian(s)(a)))(x[r, cols])
            np.testing.assert_allclose(g[r, cols], gs, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(H[r][:, r][jnp.ix_(cols, cols)], Hs, rtol=1e-12, atol=1e-15)
            assert float(jnp.max(jnp.abs(g[r, masked]))) == 0.0, name
            assert float(jnp.max(jnp.abs(H[r][:, r][masked]))) == 0.0, name


@pytest.mark.parametrize("fname, option, value", [("poly_loss_cross_entropy", "epsilon", 1.7),
                                                  ("sigmoid_focal_loss", "gamma", 1.3),
                                                  ("sigmoid_focal_loss", "alpha", 0.35)])
def test_option_derivatives_traced_and_exact(fname, option, value):
    # epsilon / gamma / alpha may be jit arguments (optax's tests trace them) and have derivatives.
    f = getattr(cj, fname)
    x, y = (X64, P64) if fname.startswith("poly") else (X64, B64)
    base = {"alpha": 0.35} if option == "gamma" else {}
    loss = lambda v: f(x, y, **base, **{option: v}).sum()  # noqa: E731
    v = jnp.asarray(value)
    g = jax.jit(jax.grad(loss))(v)
    fd = (loss(v + 1e-6) - loss(v - 1e-6)) / 2e-6
    assert float(g) == pytest.approx(float(fd), rel=1e-7)
    ref = jax.grad(lambda w: getattr(optax.losses, fname)(x, y, **base, **{option: w}).sum())(v)
    assert float(g) == pytest.approx(float(ref), rel=1e-12)
    np.testing.assert_allclose(jax.jit(lambda w: f(x, y, **base, **{option: w}))(v), f(x, y, **base, **{option: value}),
                               rtol=1e-14)


def test_transforms_compose():
    # jit ∘ vmap ∘ hessian, vmap ∘ jacfwd, grad ∘ jit over the integer-label and soft losses.
    xs = jnp.stack([X64, 2 * X64])
    per = lambda a, lab: cj.softmax_cross_entropy_with_integer_labels(a, lab).sum()  # noqa: E731
    H = jax.jit(jax.vmap(jax.hessian(per), in_axes=(0, None)))(xs, I64)
    np.testing.assert_allclose(H[1], jax.hessian(lambda a: optax.losses.softmax_cross_entropy_with_integer_labels(
        a, I64).sum())(2 * X64), atol=1e-13)
    J = jax.vmap(jax.jacfwd(lambda a, lab: cj.poly_loss_cross_entropy(a, lab)), in_axes=(0, None))(xs, P64)
    np.testing.assert_allclose(J[0], jax.jacrev(lambda a: optax.losses.poly_loss_cross_entropy(a, P64))(X64),
                               atol=1e-13)
    g = jax.grad(jax.jit(lambda a: cj.sigmoid_focal_loss(a, B64, alpha=0.25).sum()))(X64)
    np.testing.assert_allclose(g, jax.grad(lambda a: optax.losses.sigmoid_focal_loss(a, B64, alpha=0.25).sum())(X64),
                               atol=1e-13)


def test_integer_labels_out_of_range_or_masked_never_score_another_class():
    # Traced labels cannot be checked: out of [0, C) gives NaN (optax wraps −1 to the last class).
    v = jax.jit(cj.softmax_cross_entropy_with_integer_labels)(X, I.at[0].set(-1).at[1].set(4))
    assert jnp.isnan(v[:2]).all() and jnp.isfinite(v[2:]).all()
    with pytest.raises(crossentropy.TargetOutOfRangeError, match=r"labels\[0\] = -1 is outside \[0, 4\)"):
        cj.softmax_cross_entropy_with_integer_labels(X, I.at[0].set(-1))
    # A label whose own class is masked out: the masked softmax gives it probability 0, loss +inf
    # (optax: logsumexp of the unmasked classes minus the masked logit, a number of either sign).
    w = jnp.ones((5, 4), bool).at[0, I[0]].set(False)
    v = cj.softmax_cross_entropy_with_integer_labels(X, I, where=w)
    assert v[0] == jnp.inf and jnp.isfinite(v[1:]).all()
    g = jax.grad(lambda a: cj.softmax_cross_entropy_with_integer_labels(a, I, where=w).sum())(X)
    assert jnp.isfinite(g).all() and g[0, I[0]] == 0.0


@pytest.mark.parametrize("fname", ["softmax_cross_entropy", "safe_softmax_cross_entropy", "poly_loss_cross_entropy"])
def test_no_class_at_all_gives_zero_like_optax(fname):
    # optax's own test_mask selects a random subset of classes, which is empty now and then.
    f, ref = getattr(cj, fname), getattr(optax.losses, fname)
    x, y = jnp.zeros((3, 0)), jnp.zeros((3, 0))
    np.testing.assert_array_equal(f(x, y), ref(x, y))
    np.testing.assert_array_equal(f(x[0], y[0]), 0.0)
    assert jax.grad(lambda a: f(a, y).sum())(x).shape == (3, 0)
