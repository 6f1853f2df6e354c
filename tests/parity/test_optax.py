"""Live parity with optax (values, and input gradients through jax.grad)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crossentropy as ce

DTYPES = [np.float32, np.float64]


def _jax_vg(fn, x, *args, **kw):
    v = np.asarray(fn(jnp.asarray(x), *args, **kw))
    g = np.asarray(jax.grad(lambda z: jnp.sum(fn(z, *args, **kw)))(jnp.asarray(x)))
    return v, g


def _inputs(rng, shape, dtype, extreme):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if extreme:
        x.reshape(-1)[:4] = [1e4, -1e4, 1e4, -1e4]
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["randn", "pm1e4"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_cross_entropy(parity, rng, dtype, extreme, axis):
    shape = (5, 4, 3)
    x = _inputs(rng, shape, dtype, extreme)
    t = np.moveaxis(rng.dirichlet(np.ones(shape[axis]), size=(5, 3 if axis == 1 else 4)), -1, axis).astype(dtype)
    v, g = _jax_vg(optax.losses.softmax_cross_entropy, x, jnp.asarray(t), axis=axis)
    ov, og = ce.value_and_grad(ce.cross_entropy, x, t, axis=axis, reduction="none")
    parity.check("optax", "softmax_cross_entropy", f"axis={axis}; {'±1e4' if extreme else 'randn'}", ours=ov, theirs=v,
                 grad_ours=og, grad_theirs=g, dtype=dtype, factor=256)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["randn", "pm1e4"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_cross_entropy_with_integer_labels(parity, rng, dtype, extreme, axis):
    shape = (5, 4, 3)
    x = _inputs(rng, shape, dtype, extreme)
    y = rng.integers(0, shape[axis], (5, 3) if axis == 1 else (5, 4))
    v, g = _jax_vg(optax.losses.softmax_cross_entropy_with_integer_labels, x, jnp.asarray(y), axis=axis)
    ov, og = ce.value_and_grad(ce.cross_entropy, x, y, axis=axis, reduction="none")
    parity.check("optax", "softmax_cross_entropy_with_integer_labels", f"axis={axis}; {'±1e4' if extreme else 'randn'}",
                 ours=ov, theirs=v, grad_ours=og, grad_theirs=g, dtype=dtype, factor=256)


@pytest.mark.parametrize("dtype", DTYPES)
def test_safe_softmax_cross_entropy_minus_inf_masks(parity, rng, dtype):
    x = _inputs(rng, (6, 5), dtype, False)
    x[:, 0] = -np.inf
    x[2, 1:3] = -np.inf
    t = rng.dirichlet(np.ones(5), 6).astype(dtype)
    t[np.isinf(x)] = 0
    t /= t.sum(-1, keepdims=True)
    v, g = _jax_vg(optax.losses.safe_softmax_cross_entropy, x, jnp.asarray(t))
    ov, og = ce.value_and_grad(ce.safe_softmax_cross_entropy, x, t)
    parity.check("optax", "safe_softmax_cross_entropy", "-inf masks", ours=ov, theirs=v, grad_ours=og,
                 grad_theirs=g, dtype=dtype)
    # optax's plain softmax_cross_entropy gives NaN there (0·−inf); ours is always safe.
    assert np.isnan(np.asarray(optax.losses.softmax_cross_entropy(jnp.asarray(x), jnp.asarray(t)))).any()
    # and its `where` class mask equals −inf logits here
    w = ~np.isinf(x)
    xf = np.where(w, x, 0).astype(dtype)
    vw = np.asarray(optax.losses.softmax_cross_entropy(jnp.asarray(xf), jnp.asarray(t), where=jnp.asarray(w)))
    parity.check("optax", "softmax_cross_entropy", "where= class mask vs our -inf logits", ours=ov, theirs=vw,
                 dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["randn", "pm1e4"])
def test_sigmoid_binary_cross_entropy(parity, rng, dtype, extreme):
    x = _inputs(rng, (7, 3), dtype, extreme)
    t = rng.uniform(size=(7, 3)).astype(dtype)
    t[:3] = np.round(t[:3])
    v, g = _jax_vg(optax.losses.sigmoid_binary_cross_entropy, x, jnp.asarray(t))
    ov, og = ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, t, reduction="none")
    parity.check("optax", "sigmoid_binary_cross_entropy", "±1e4" if extreme else "randn", ours=ov, theirs=v,
                 grad_ours=og, grad_theirs=g, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha,gamma", [(None, 2.0), (0.25, 2.0), (0.25, 0.0), (0.6, 1.5)])
@pytest.mark.parametrize("extreme", [False, True], ids=["randn", "pm1e4"])
def test_sigmoid_focal_loss(parity, rng, dtype, alpha, gamma, extreme):
    x = _inputs(rng, (7, 3), dtype, extreme)
    t = rng.integers(0, 2, (7, 3)).astype(dtype)
    v, g = _jax_vg(optax.losses.sigmoid_focal_loss, x, jnp.asarray(t), alpha=alpha, gamma=gamma)
    ov, og = ce.value_and_grad(ce.binary_focal_cross_entropy_with_logits, x, t, alpha=alpha, gamma=gamma,
                               reduction="none")
    parity.check("optax", "sigmoid_focal_loss", f"alpha={alpha}, gamma={gamma}; {'±1e4' if extreme else 'randn'}",
                 ours=ov, theirs=v, grad_ours=og, grad_theirs=g, dtype=dtype, factor=256)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epsilon", [2.0, -1.0, 0.5])
def test_poly_loss_cross_entropy(parity, rng, dtype, epsilon):
    x = _inputs(rng, (6, 5), dtype, False)
    t = rng.dirichlet(np.ones(5), 6).astype(dtype)
    v, g = _jax_vg(optax.losses.poly_loss_cross_entropy, x, jnp.asarray(t), epsilon=epsilon)
    ov, og = ce.value_and_grad(ce.poly1_cross_entropy, x, t, epsilon=epsilon, reduction="none")
    parity.check("optax", "poly_loss_cross_entropy", f"epsilon={epsilon}", ours=ov, theirs=v, grad_ours=og,
                 grad_theirs=g, dtype=dtype)


@settings(max_examples=20, deadline=None)
@given(batch=st.lists(st.integers(0, 4), max_size=2), C=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(DTYPES))
def test_integer_labels_hypothesis_shapes(parity, batch, C, seed, dtype):
    rng = np.random.default_rng(seed)
    x = _inputs(rng, (*batch, C), dtype, False)
    y = rng.integers(0, C, tuple(batch))
    v = np.asarray(optax.losses.softmax_cross_entropy_with_integer_labels(jnp.asarray(x), jnp.asarray(y)))
    ov = ce.cross_entropy(x, y, reduction="none")
    parity.check("optax", "softmax_cross_entropy_with_integer_labels", "hypothesis shapes (*batch, C)", ours=ov,
                 theirs=v, dtype=dtype)
