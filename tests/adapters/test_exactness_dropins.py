"""The drop-ins keep the library's exactness: confident predictions within 4 ulp of mpmath.

PyTorch, Keras and optax return 0 for these losses (see docs/exactness.md); the
torch, JAX and Keras drop-ins return the correctly rounded value, and its gradient
(Keras: from logits; from probabilities it clips at Keras's epsilon on purpose).
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

@pytest.fixture(autouse=True)
def _mp_digits():
    """60 digits for every test here (digits to spare); set per test, because the other
    exactness modules want other precisions and pytest imports them all first."""
    with mp.workdps(60):
        yield


TS = {np.float32: [10.0, 30.0, 60.0, 68.0], np.float64: [20.0, 40.0, 300.0, 680.0]}


def _rows(dtype):
    rng = np.random.default_rng(5)
    return np.array([np.concatenate([[0.0], -t - rng.random(5)]) for t in TS[dtype]], dtype=dtype)


def _exact(row):
    s = mp.fsum(mp.exp(mp.mpf(float(v))) for v in row[1:])
    return mp.log1p(s), -s / (1 + s)


def _ulps(got, ex, dtype):
    r = dtype(float(ex))
    return float(abs(mp.mpf(float(got)) - ex) / mp.mpf(float(np.spacing(np.abs(r)))))


def _check(dtype, loss, gy):
    for i, row in enumerate(_rows(dtype)):
        lo, g = _exact(row)
        assert _ulps(loss[i], lo, dtype) <= 4, (i, float(loss[i]), float(lo))
        assert _ulps(gy[i], g, dtype) <= 4, (i, float(gy[i]), float(g))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_dropin(dtype):
    import torch

    from crossentropy.torch.functional import cross_entropy

    x = torch.tensor(_rows(dtype), requires_grad=True)
    y = torch.zeros(len(x), dtype=torch.int64)
    loss = cross_entropy(x, y, reduction="none")
    loss.sum().backward()
    _check(dtype, loss.detach().numpy(), x.grad[:, 0].numpy())
    assert float(torch.nn.functional.cross_entropy(x.detach(), y, reduction="none")[-1]) == 0.0  # what torch gives


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jax_dropin(dtype):
    import jax
    import jax.numpy as jnp

    from crossentropy.jax import softmax_cross_entropy_with_integer_labels as f

    x = jnp.asarray(_rows(dtype))
    y = jnp.zeros(x.shape[0], dtype=jnp.int32)
    loss = f(x, y)
    g = jax.grad(lambda a: f(a, y).sum())(x)
    _check(dtype, np.asarray(loss), np.asarray(g)[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", ["CategoricalCrossentropy", "SparseCategoricalCrossentropy"])
def test_keras_dropin(dtype, cls):
    import keras
    import tensorflow as tf

    import crossentropy.keras as ck

    assert keras.backend.backend() == "tensorflow"
    rows = _rows(dtype)
    y = np.zeros(len(rows), dtype="int32")
    if cls == "CategoricalCrossentropy":
        y = np.eye(rows.shape[1], dtype=dtype)[y]
    name = np.dtype(dtype).name
    x = tf.constant(rows)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = getattr(ck, cls)(from_logits=True, reduction=None, dtype=name)(y, x)
        total = tf.reduce_sum(loss)
    g = tape.gradient(total, x).numpy()
    _check(dtype, loss.numpy(), g[:, 0])
    ref = getattr(keras.losses, cls)(from_logits=True, reduction=None, dtype=name)(y, x)
    assert float(ref[-1]) == 0.0  # what Keras gives
