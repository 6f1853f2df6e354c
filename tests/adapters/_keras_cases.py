"""Parity cases for crossentropy.keras against keras.losses, on whichever backend is active.

Run as a script (``KERAS_BACKEND=jax python _keras_cases.py``) it prints a JSON
object ``{case: [max|Δvalue|, max|Δgrad|, scale]}``; the tests run it in
subprocesses for the JAX and PyTorch backends (the backend is fixed at import).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402

import crossentropy.keras as ck  # noqa: E402

R = np.random.default_rng(0)
N, C = 6, 4


def _probs(shape, axis=-1):
    e = np.exp(R.normal(size=shape) * 1.5)
    return (e / e.sum(axis=axis, keepdims=True)).astype("float32")


def _onehot(shape, axis=-1):
    idx = R.integers(0, shape[axis], size=tuple(s for i, s in enumerate(shape) if i != axis % len(shape)))
    return np.moveaxis(np.eye(shape[axis], dtype="float32")[idx], -1, axis)


B_T = (R.random((N, C)) > 0.5).astype("float32")
B_P = R.uniform(0.02, 0.98, (N, C)).astype("float32")
B_P_EXT = B_P.copy()
B_P_EXT[0, :2] = [0.0, 1.0]
B_P_EXT[1, :2] = [1e-9, 1 - 1e-9]
B_X = (R.normal(size=(N, C)) * 3).astype("float32")
B_X_EXT = (R.normal(size=(N, C)) * 60).astype("float32")
C_T = _onehot((N, C))
C_P = _probs((N, C))
C_X = (R.normal(size=(N, C)) * 3).astype("float32")
C_P3 = _probs((N, C, 3), axis=1)
C_T3 = _onehot((N, C, 3), axis=1)
S_T = R.integers(0, C, N)
S_T_IGN = S_T.copy()
S_T_IGN[::3] = -1
S_P_UNNORM = (C_P * R.uniform(0.5, 1.5, (N, 1))).astype("float32")
SW = R.uniform(0.0, 2.0, N).astype("float32")
SW2 = R.uniform(0.0, 2.0, (N, C)).astype("float32")

# name -> (class name, kwargs, y_true, y_pred, sample_weight)
CASES = {
    "BCE/default": ("BinaryCrossentropy", {}, B_T, B_P, None),
    "BCE/from_logits": ("BinaryCrossentropy", {"from_logits": True}, B_T, B_X, None),
    "BCE/from_logits extreme (±60σ)": ("BinaryCrossentropy", {"from_logits": True}, B_T, B_X_EXT, None),
    "BCE/p in {0,1} (clip 1e-7)": ("BinaryCrossentropy", {}, B_T, B_P_EXT, None),
    "BCE/label_smoothing=0.2": ("BinaryCrossentropy", {"label_smoothing": 0.2}, B_T, B_P, None),
    "BCE/axis=0": ("BinaryCrossentropy", {"axis": 0, "reduction": "none"}, B_T, B_P, None),
    "BCE/reduction=sum": ("BinaryCrossentropy", {"reduction": "sum"}, B_T, B_P, None),
    "BCE/reduction=none": ("BinaryCrossentropy", {"reduction": "none"}, B_T, B_P, None),
    "BCE/reduction=mean_with_sample_weight": ("BinaryCrossentropy", {"reduction": "mean_with_sample_weight"},
                                              B_T, B_P, SW),
    "BCE/sample_weight (N,)": ("BinaryCrossentropy", {}, B_T, B_P, SW),
    "CCE/default": ("CategoricalCrossentropy", {}, C_T, C_P, None),
    "CCE/from_logits": ("CategoricalCrossentropy", {"from_logits": True}, C_T, C_X, None),
    "CCE/label_smoothing=0.1": ("CategoricalCrossentropy", {"label_smoothing": 0.1}, C_T, C_P, None),
    "CCE/label_smoothing+from_logits": ("CategoricalCrossentropy", {"label_smoothing": 0.3, "from_logits": True},
                                        C_T, C_X, None),
    "CCE/axis=1 (N,C,d)": ("CategoricalCrossentropy", {"axis": 1}, C_T3, C_P3, None),
    "CCE/unnormalised rows": ("CategoricalCrossentropy", {}, C_T, S_P_UNNORM, None),
    "CCE/soft targets": ("CategoricalCrossentropy", {}, _probs((N, C)), C_P, None),
    "CCE/reduction=sum+sample_weight": ("CategoricalCrossentropy", {"reduction": "sum"}, C_T, C_P, SW),
    "CCE/reduction=mean": ("CategoricalCrossentropy", {"reduction": "mean"}, C_T, C_P, SW),
    "SCCE/default": ("SparseCategoricalCrossentropy", {}, S_T, C_P, None),
    "SCCE/from_logits": ("SparseCategoricalCrossentropy", {"from_logits": True}, S_T, C_X, None),
    "SCCE/y_true (N,1)": ("SparseCategoricalCrossentropy", {}, S_T[:, None], C_P, None),
    "SCCE/ignore_class=-1": ("SparseCategoricalCrossentropy", {"ignore_class": -1}, S_T_IGN, C_P, None),
    "SCCE/ignore_class+from_logits+sample_weight": ("SparseCategoricalCrossentropy",
                                                    {"ignore_class": -1, "from_logits": True}, S_T_IGN, C_X, SW),
    "SCCE/ignore_class reduction=sum": ("SparseCategoricalCrossentropy", {"ignore_class": -1, "reduction": "sum"},
                                        S_T_IGN, C_P, None),
    "SCCE/reduction=none": ("SparseCategoricalCrossentropy", {"reduction": "none"}, S_T, C_P, None),
    "BFCE/default": ("BinaryFocalCrossentropy", {}, B_T, B_P, None),
    "BFCE/apply_class_balancing alpha=0.4": ("BinaryFocalCrossentropy",
                                             {"apply_class_balancing": True, "alpha": 0.4}, B_T, B_P, None),
    "BFCE/gamma=0": ("BinaryFocalCrossentropy", {"gamma": 0.0}, B_T, B_P, None),
    "BFCE/gamma=3.5": ("BinaryFocalCrossentropy", {"gamma": 3.5}, B_T, B_P, None),
    "BFCE/from_logits": ("BinaryFocalCrossentropy", {"from_logits": True, "apply_class_balancing": True},
                         B_T, B_X, None),
    "BFCE/label_smoothing=0.1": ("BinaryFocalCrossentropy", {"label_smoothing": 0.1}, B_T, B_P, None),
    "BFCE/sample_weight+sum": ("BinaryFocalCrossentropy", {"reduction": "sum"}, B_T, B_P, SW),
    "CFCE/default": ("CategoricalFocalCrossentropy", {}, C_T, C_P, None),
    "CFCE/alpha per class": ("CategoricalFocalCrossentropy", {"alpha": [0.1, 0.2, 0.3, 0.4]}, C_T, C_P, None),
    "CFCE/gamma=0 alpha=1": ("CategoricalFocalCrossentropy", {"gamma": 0.0, "alpha": 1.0}, C_T, C_P, None),
    "CFCE/from_logits": ("CategoricalFocalCrossentropy", {"from_logits": True}, C_T, C_X, None),
    "CFCE/label_smoothing=0.1": ("CategoricalFocalCrossentropy", {"label_smoothing": 0.1}, C_T, C_P, None),
    "CFCE/axis=1": ("CategoricalFocalCrossentropy", {"axis": 1}, C_T3, C_P3, None),
    "GCE/q=0.5": ("CategoricalGeneralizedCrossEntropy", {}, S_T, C_P, None),
    "GCE/q=0.2 sample_weight": ("CategoricalGeneralizedCrossEntropy", {"q": 0.2}, S_T, C_P, SW),
    "GCE/q=0.8 reduction=none": ("CategoricalGeneralizedCrossEntropy", {"q": 0.8, "reduction": "none"},
                                 S_T, C_P, None),
}

# Cases the TensorFlow backend's own Keras does not support (it raises), skipped there.
TF_UNSUPPORTED = set()


def _grad(fn, x):
    b = keras.backend.backend()
    if b == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            v = fn(xt)
            s = tf.reduce_sum(v * _weights_like(v))
        return np.asarray(v), np.asarray(tape.gradient(s, xt))
    if b == "jax":
        import jax
        import jax.numpy as jnp

        def f(z):
            v = fn(z)
            return jnp.sum(v * _weights_like(v)), v

        (_, v), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(x))
        return np.asarray(v), np.asarray(g)
    if b == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        v = fn(xt)
        (v * torch.as_tensor(_weights_like(v))).sum().backward()
        return v.detach().cpu().numpy(), xt.grad.cpu().numpy()
    raise RuntimeError(b)


def _weights_like(v):
    shape = tuple(v.shape)
    return np.linspace(0.5, 1.5, int(np.prod(shape)) or 1, dtype="float32")[: int(np.prod(shape))].reshape(shape)


def compare(name):
    cls, kw, yt, yp, sw = CASES[name]
    ref = getattr(keras.losses, cls)(**kw)
    ours = getattr(ck, cls)(**kw)
    rv, rg = _grad(lambda z: ref(yt, z, sample_weight=sw), yp)
    ov, og = _grad(lambda z: ours(yt, z, sample_weight=sw), yp)
    assert rv.shape == ov.shape and rv.dtype == ov.dtype, (rv.shape, ov.shape, rv.dtype, ov.dtype)
    dv = float(np.max(np.abs(rv.astype("float64") - ov))) if rv.size else 0.0
    dg = float(np.max(np.abs(rg.astype("float64") - og)))
    scale = max(float(np.max(np.abs(rv))) if rv.size else 0.0, float(np.max(np.abs(rg))), 1.0)
    return dv, dg, scale


# Shape rules: name -> (class name, kwargs, y_true shape, y_pred shape, integer labels).  Keras raising
# (any exception) must coincide with ours raising ShapeMismatchError, on every backend, except the
# by-design differences in SHAPE_DIFFERENCES.
SHAPE_CASES = {
    "BCE (3,1) vs (3,3)": ("BinaryCrossentropy", {}, (3, 1), (3, 3), False),
    "BCE (3,) vs (3,1)": ("BinaryCrossentropy", {}, (3,), (3, 1), False),
    "BCE (3,1) vs (3,)": ("BinaryCrossentropy", {}, (3, 1), (3,), False),
    "BCE (3,3) vs (3,)": ("BinaryCrossentropy", {}, (3, 3), (3,), False),
    "BCE (2,3) vs (3,2)": ("BinaryCrossentropy", {}, (2, 3), (3, 2), False),
    "BCE (1,3) vs (2,3)": ("BinaryCrossentropy", {"from_logits": True}, (1, 3), (2, 3), False),
    "BCE (2,3,1) vs (2,3)": ("BinaryCrossentropy", {}, (2, 3, 1), (2, 3), False),
    "BFCE (3,1) vs (3,3)": ("BinaryFocalCrossentropy", {}, (3, 1), (3, 3), False),
    "BFCE (3,) vs (3,1)": ("BinaryFocalCrossentropy", {}, (3,), (3, 1), False),
    "CCE (3,1) vs (3,3)": ("CategoricalCrossentropy", {}, (3, 1), (3, 3), False),
    "CCE (3,) vs (3,3)": ("CategoricalCrossentropy", {}, (3,), (3, 3), False),
    "CCE (3,4) vs (3,3)": ("CategoricalCrossentropy", {"from_logits": True}, (3, 4), (3, 3), False),
    "CCE (2,3,4) vs (2,3,4)": ("CategoricalCrossentropy", {}, (2, 3, 4), (2, 3, 4), False),
    "SCCE (3,) vs (3,4)": ("SparseCategoricalCrossentropy", {}, (3,), (3, 4), True),
    "SCCE (3,1) vs (3,4)": ("SparseCategoricalCrossentropy", {}, (3, 1), (3, 4), True),
    "SCCE (4,) vs (3,4)": ("SparseCategoricalCrossentropy", {}, (4,), (3, 4), True),
    "SCCE (3,2) vs (3,4)": ("SparseCategoricalCrossentropy", {}, (3, 2), (3, 4), True),
    "SCCE (2,3) vs (2,3,4)": ("SparseCategoricalCrossentropy", {"from_logits": True}, (2, 3), (2, 3, 4), True),
    "SCCE (3,) vs (2,3,4)": ("SparseCategoricalCrossentropy", {}, (3,), (2, 3, 4), True),
    "SCCE axis=0 (3,) vs (4,3)": ("SparseCategoricalCrossentropy", {"axis": 0}, (3,), (4, 3), True),
    "SCCE axis=0 (4,) vs (4,3)": ("SparseCategoricalCrossentropy", {"axis": 0}, (4,), (4, 3), True),
    "CFCE (3,4) vs (3,4)": ("CategoricalFocalCrossentropy", {}, (3, 4), (3, 4), False),
    "CFCE (1,4) vs (3,4)": ("CategoricalFocalCrossentropy", {}, (1, 4), (3, 4), False),
    "CFCE (3,5) vs (3,4)": ("CategoricalFocalCrossentropy", {}, (3, 5), (3, 4), False),
    "GCE (3,) vs (3,4)": ("CategoricalGeneralizedCrossEntropy", {}, (3,), (3, 4), True),
    "GCE (2,) vs (3,4)": ("CategoricalGeneralizedCrossEntropy", {}, (2,), (3, 4), True),
    "GCE (2,3) vs (2,3,4)": ("CategoricalGeneralizedCrossEntropy", {}, (2, 3), (2, 3, 4), True),
}

# Keras raises on these backends where ours computes (by design; docs/adapters.md).
SHAPE_DIFFERENCES = {
    "SCCE axis=0 (3,) vs (4,3)": {"tensorflow", "jax"},
}


def _shape_inputs(yt_shape, yp_shape, integer):
    r = np.random.default_rng(1)
    yp = r.uniform(0.05, 1.0, yp_shape).astype("float32")
    yt = r.integers(0, 2, yt_shape) if integer else r.integers(0, 2, yt_shape).astype("float32")
    return yt, yp


def shape_agreement(name):
    """``(keras raised, ours raised ShapeMismatchError, agree)`` for one SHAPE_CASES entry."""
    from crossentropy import ShapeMismatchError

    cls, kw, ts, ps, integer = SHAPE_CASES[name]
    yt, yp = _shape_inputs(ts, ps, integer)
    out = {}
    for tag, mod in (("keras", keras.losses), ("ours", ck)):
        try:
            v = getattr(mod, cls)(reduction=None, **kw)(yt, yp)
            out[tag] = ("ok", tuple(v.shape))
        except ShapeMismatchError:
            out[tag] = ("ShapeMismatchError", None)
        except Exception as e:  # noqa: BLE001 - Keras raises ValueError or a backend error
            out[tag] = (type(e).__name__, None)
    k_raised, o_raised = out["keras"][0] != "ok", out["ours"][0] != "ok"
    if keras.backend.backend() in SHAPE_DIFFERENCES.get(name, ()):
        agree = k_raised and not o_raised
    else:
        agree = out["keras"] == out["ours"] if not k_raised else out["ours"][0] == "ShapeMismatchError"
    return [out["keras"][0], out["ours"][0], bool(agree)]


def run_all():
    return {name: compare(name) for name in CASES}


if __name__ == "__main__":
    json.dump({"backend": keras.backend.backend(), "results": run_all(),
               "shapes": {name: shape_agreement(name) for name in SHAPE_CASES}}, sys.stdout)
