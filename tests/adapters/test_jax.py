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
])
def test_errors(call, exc):
    with pytest.raises(exc):
        call()
