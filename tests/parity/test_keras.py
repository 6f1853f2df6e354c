"""Live parity with Keras 3 losses on the TensorFlow backend (values and input gradients).

Keras's probability losses clip to [1e-7, 1 − 1e-7] (and renormalise categorical
rows); ours reproduce that with ``compat='keras'``.  Keras's logits losses for
BCE / CCE / sparse CCE are exact and match our default mode; its focal losses
with ``from_logits=True`` apply sigmoid/softmax and then clip, which our
``compat='keras'`` on the logits focal functions reproduces.

Per-element (``reduction=None``) values are compared in units in the last place
(``ULPS`` below: 0 means bitwise); reduced values and gradients within
``tol(dtype)``.  Keras's BCE and binary focal losses average over the last
axis per sample: our elementwise losses are averaged the same way here.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import itertools  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import crossentropy as ce  # noqa: E402

assert keras.backend.backend() == "tensorflow"

DTYPES = [np.float32, np.float64]
# Keras reduction → ours ("mean_with_sample_weight" is our sample-weighted 'mean').
REDUCTIONS = {None: "none", "sum": "sum", "sum_over_batch_size": "sum_over_batch_size",
              "mean_with_sample_weight": "mean"}

# Largest per-element distance in ulps between Keras and ours, per loss (measured,
# asserted).  0 = bitwise.  Nonzero where Keras's arithmetic order differs.
# Only the probability (clipping) paths are compared in ulps; logits paths and
# GCE (TensorFlow's pow differs from NumPy's by up to ~20 ulp) use tol(dtype).
ULPS = {
    "BinaryCrossentropy": 4,  # after the per-sample mean over the last axis and the sample weight
    "CategoricalCrossentropy": 2,
    "SparseCategoricalCrossentropy": 2,
    "BinaryFocalCrossentropy": 4,
    "CategoricalFocalCrossentropy": 4,
    "CategoricalFocalCrossentropy(from_logits)": 4,
}


def _keras_vg(loss_obj, y_true, y_pred, sample_weight=None):
    x = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        out = loss_obj(y_true, x, sample_weight=sample_weight)
        total = tf.reduce_sum(out)
    return out.numpy(), tape.gradient(total, x).numpy()


def _ours_vg(fn, x, t, red, *, per_sample_mean=False, sw=None, **kw):
    """Our value and gradient, optionally averaged over the last axis first (Keras's BCE)."""
    if not per_sample_mean:
        return ce.value_and_grad(fn, x, t, reduction=red, sample_weight=sw, **kw)
    # mean over the last axis, then sample weights and the reduction over samples
    C = x.shape[-1]
    v, g = ce.value_and_grad(fn, x, t, reduction="none", **kw)
    v = v.mean(-1)
    w = np.ones(v.shape, dtype=x.dtype) if sw is None else np.broadcast_to(sw, v.shape).astype(x.dtype)
    g = g * (w[..., None] / C)
    vw = v * w
    if red == "none":
        return vw, g
    if red == "sum":
        return vw.sum(dtype=x.dtype), g
    if red == "sum_over_batch_size":
        n = v.size
        return (vw.sum(dtype=x.dtype) / n if n else x.dtype.type(0)), g / max(n, 1)
    d = w.sum()
    return vw.sum(dtype=x.dtype) / d, g / d


def _compare(parity, name, opts, kv, kg, ov, og, dtype, red):
    if red is None and name in ULPS:
        parity.record_exact("keras", name, opts + "; per element", ours=ov, theirs=kv, dtype=dtype, ulps=ULPS[name])
    parity.check("keras", name, opts, ours=ov, theirs=kv, grad_ours=og, grad_theirs=kg, dtype=dtype, factor=64)


def _probs_with_edges(rng, shape, dtype):
    p = rng.uniform(size=shape).astype(dtype)
    p.reshape(-1)[:3] = [0.0, 1.0, 1e-9]
    return p


def _logits(rng, shape, dtype, extreme):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if extreme:
        x.reshape(-1)[:4] = [1e4, -1e4, 1e4, -1e4]
    return x


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing,use_sw", list(itertools.product([0.0, 0.2], [False, True])))
def test_binary_crossentropy(parity, rng, dtype, from_logits, smoothing, use_sw):
    shape = (6, 3)
    x = _logits(rng, shape, dtype, True) if from_logits else _probs_with_edges(rng, shape, dtype)
    y = rng.integers(0, 2, shape).astype(dtype)
    sw = rng.uniform(0, 2, 6).astype(dtype) if use_sw else None
    name = "BinaryCrossentropy" + ("(from_logits)" if from_logits else "")
    for kred, ored in REDUCTIONS.items():
        k = keras.losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing, reduction=kred,
                                            dtype=np.dtype(dtype).name)
        kv, kg = _keras_vg(k, y, x, sw)
        if from_logits:
            ov, og = _ours_vg(ce.binary_cross_entropy_with_logits, x, y, ored, per_sample_mean=True, sw=sw,
                              label_smoothing=smoothing)
        else:
            ov, og = _ours_vg(ce.binary_cross_entropy, x, y, ored, per_sample_mean=True, sw=sw,
                              label_smoothing=smoothing, compat="keras")
        opts = f"label_smoothing={smoothing}, sample_weight={use_sw}, reduction={kred}" + ("" if from_logits else "; compat='keras'")
        _compare(parity, name, opts, kv, kg, ov, og, dtype, kred)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing,use_sw,kdim", list(itertools.product([0.0, 0.2], [False, True], [False, True])))
def test_categorical_crossentropy(parity, rng, dtype, from_logits, smoothing, use_sw, kdim):
    N, C = 5, 4
    shape = (N, 3, C) if kdim else (N, C)
    if from_logits:
        x = _logits(rng, shape, dtype, True)
    else:
        x = rng.dirichlet(np.ones(C), size=shape[:-1]).astype(dtype)
        x.reshape(-1, C)[0] = [0.0, 1.0, 0.0, 0.0]
        x.reshape(-1, C)[1] *= 0.5  # rows not summing to one: Keras renormalises
    y = np.eye(C, dtype=dtype)[rng.integers(0, C, shape[:-1])]
    sw = rng.uniform(0, 2, N).astype(dtype) if use_sw else None
    osw = None if sw is None else (sw[:, None] if kdim else sw)
    name = "CategoricalCrossentropy" + ("(from_logits)" if from_logits else "")
    for kred, ored in REDUCTIONS.items():
        if kdim and use_sw and kred == "mean_with_sample_weight":
            # Keras divides by Σ sample_weight before broadcasting it over d
            # (N weights), we by the broadcast weights (N·d): a by-design difference.
            continue
        k = keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=smoothing, reduction=kred,
                                                 dtype=np.dtype(dtype).name)
        kv, kg = _keras_vg(k, y, x, osw)
        if from_logits:
            ov, og = ce.value_and_grad(ce.cross_entropy, x, y, label_smoothing=smoothing, sample_weight=osw,
                                       reduction=ored)
        else:
            ov, og = ce.value_and_grad(ce.categorical_cross_entropy, x, y, label_smoothing=smoothing,
                                       sample_weight=osw, reduction=ored, compat="keras")
        opts = (f"{'(N, d, C); ' if kdim else ''}label_smoothing={smoothing}, sample_weight={use_sw}, reduction={kred}"
                + ("" if from_logits else "; compat='keras'"))
        _compare(parity, name, opts, kv, kg, ov, og, dtype, kred)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("use_sw,ignore", list(itertools.product([False, True], [False, True])))
def test_sparse_categorical_crossentropy(parity, rng, dtype, from_logits, use_sw, ignore):
    N, C = 8, 5
    x = _logits(rng, (N, C), dtype, True) if from_logits else rng.dirichlet(np.ones(C), N).astype(dtype)
    if not from_logits:
        x[0] = [0.0, 1.0, 0.0, 0.0, 0.0]
        x[1] *= 0.5
    y = rng.integers(0, C, N)
    if ignore:
        y[::3] = -1
    sw = rng.uniform(0, 2, N).astype(dtype) if use_sw else None
    name = "SparseCategoricalCrossentropy" + ("(from_logits)" if from_logits else "")
    for kred, ored in REDUCTIONS.items():
        if ignore and kred == "mean_with_sample_weight":
            continue  # Keras folds its mask into the weights there; not a reduction we define
        k = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, reduction=kred,
                                                       ignore_class=-1 if ignore else None, dtype=np.dtype(dtype).name)
        kv, kg = _keras_vg(k, y, x, sw)
        kw = dict(sample_weight=sw, reduction=ored, ignore_index=-1 if ignore else None)
        if from_logits:
            ov, og = ce.value_and_grad(ce.cross_entropy, x, y, **kw)
        else:
            ov, og = ce.value_and_grad(ce.categorical_cross_entropy, x, y, compat="keras", **kw)
        opts = f"sample_weight={use_sw}, ignore_class={ignore}, reduction={kred}" + ("" if from_logits else "; compat='keras'")
        _compare(parity, name, opts, kv, kg, ov, og, dtype, kred)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("balance,gamma,smoothing", [(False, 2.0, 0.0), (True, 2.0, 0.1), (True, 0.5, 0.0), (False, 0.0, 0.2)])
def test_binary_focal_crossentropy(parity, rng, dtype, from_logits, balance, gamma, smoothing):
    shape = (6, 3)
    x = _logits(rng, shape, dtype, True) if from_logits else _probs_with_edges(rng, shape, dtype)
    if gamma < 1:
        # Where 1 − p_t rounds to 0, d(1−p_t)^γ is infinite for γ < 1 and
        # TensorFlow's gradient is NaN; ours takes the limit 0 of the product.
        x = np.clip(x, -8.0, 8.0) if from_logits else np.clip(x, 0.01, 0.99)
    y = rng.integers(0, 2, shape).astype(dtype)
    sw = rng.uniform(0, 2, 6).astype(dtype)
    name = "BinaryFocalCrossentropy" + ("(from_logits)" if from_logits else "")
    fn = ce.binary_focal_cross_entropy_with_logits if from_logits else ce.binary_focal_cross_entropy
    for kred, ored in REDUCTIONS.items():
        k = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=balance, alpha=0.3, gamma=gamma,
                                                 from_logits=from_logits, label_smoothing=smoothing, reduction=kred,
                                                 dtype=np.dtype(dtype).name)
        kv, kg = _keras_vg(k, y, x, sw)
        ov, og = _ours_vg(fn, x, y, ored, per_sample_mean=True, sw=sw, gamma=gamma, alpha=0.3 if balance else None,
                          label_smoothing=smoothing, compat="keras")
        opts = f"apply_class_balancing={balance}, gamma={gamma}, label_smoothing={smoothing}, reduction={kred}; compat='keras'"
        _compare(parity, name, opts, kv, kg, ov, og, dtype, kred)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("alpha,gamma,smoothing", [(0.25, 2.0, 0.0), (0.5, 0.5, 0.1), (1.0, 0.0, 0.0)])
def test_categorical_focal_crossentropy(parity, rng, dtype, from_logits, alpha, gamma, smoothing):
    N, C = 6, 4
    if from_logits:
        x = _logits(rng, (N, C), dtype, True)
    else:
        x = rng.dirichlet(np.ones(C), N).astype(dtype)
        x[0] = [0.0, 1.0, 0.0, 0.0]
        x[1] *= 0.5
    y = np.eye(C, dtype=dtype)[rng.integers(0, C, N)]
    sw = rng.uniform(0, 2, N).astype(dtype)
    name = "CategoricalFocalCrossentropy" + ("(from_logits)" if from_logits else "")
    fn = ce.focal_cross_entropy if from_logits else ce.categorical_focal_cross_entropy
    for kred, ored in REDUCTIONS.items():
        k = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, from_logits=from_logits,
                                                      label_smoothing=smoothing, reduction=kred,
                                                      dtype=np.dtype(dtype).name)
        kv, kg = _keras_vg(k, y, x, sw)
        ov, og = ce.value_and_grad(fn, x, y, gamma=gamma, alpha=alpha, label_smoothing=smoothing, sample_weight=sw,
                                   reduction=ored, compat="keras")
        opts = f"alpha={alpha}, gamma={gamma}, label_smoothing={smoothing}, reduction={kred}; compat='keras'"
        _compare(parity, name, opts, kv, kg, ov, og, dtype, kred)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_categorical_generalized_cross_entropy(parity, rng, dtype, q):
    N, C = 7, 4
    p = rng.dirichlet(np.ones(C), N).astype(dtype)
    y = rng.integers(0, C, N)
    sw = rng.uniform(0, 2, N).astype(dtype)
    for kred, ored in REDUCTIONS.items():
        k = keras.losses.CategoricalGeneralizedCrossEntropy(q=q, reduction=kred, dtype=np.dtype(dtype).name)
        kv, kg = _keras_vg(k, y, p, sw)
        ov, og = ce.value_and_grad(ce.generalized_cross_entropy, p, y, q=q, sample_weight=sw, reduction=ored)
        _compare(parity, "CategoricalGeneralizedCrossEntropy", f"q={q}, reduction={kred}", kv, kg, ov, og, dtype, kred)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_kdim_batch_is_zero_in_keras_and_sum_over_batch_size(parity, dtype):
    # Keras's divide_no_nan: an empty batch averages to 0 (PyTorch's mean is NaN).
    x = np.zeros((0, 3, 4), dtype=dtype)
    y = np.zeros((0, 3, 4), dtype=dtype)
    k = keras.losses.CategoricalCrossentropy(from_logits=True, dtype=np.dtype(dtype).name)
    kv = k(y, x).numpy()
    ov = ce.cross_entropy(x, y, reduction="sum_over_batch_size")
    assert kv == 0.0 and ov == 0.0
    assert np.isnan(ce.cross_entropy(x, y, reduction="mean"))
    parity.check("keras", "CategoricalCrossentropy(from_logits)", "empty (0, d, C) batch; reduction=sum_over_batch_size",
                 ours=ov, theirs=kv, dtype=dtype)
