"""crossentropy.keras against keras.losses: parity on TensorFlow (in process), JAX and
PyTorch (subprocesses: the Keras backend is fixed at import), serialisation, fit, saving,
and the tutorial's TensorFlow snippets."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import crossentropy  # noqa: E402
import crossentropy.keras as ck  # noqa: E402

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import _keras_cases  # noqa: E402

TOL = 2e-6  # relative to the case's scale (float32)
CLASSES = ["BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "CategoricalGeneralizedCrossEntropy"]


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in sys.path if p])
    return env


def test_backend_in_this_process_is_tensorflow():
    assert keras.backend.backend() == "tensorflow"


@pytest.mark.parametrize("name", list(_keras_cases.CASES))
def test_parity_tensorflow(name):
    dv, dg, scale = _keras_cases.compare(name)
    assert dv <= TOL * scale, f"value differs by {dv}"
    assert dg <= TOL * scale, f"gradient differs by {dg}"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_parity_other_backends(backend):
    out = subprocess.run([sys.executable, str(HERE / "_keras_cases.py")], env=_env(backend), capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    d = json.loads(out.stdout)
    assert d["backend"] == backend
    bad = {k: v for k, v in d["results"].items() if max(v[0], v[1]) > TOL * v[2]}
    assert not bad, bad
    bad_shapes = {k: v for k, v in d["shapes"].items() if not v[2]}
    assert not bad_shapes, bad_shapes


@pytest.mark.parametrize("name", list(_keras_cases.SHAPE_CASES))
def test_shape_rules_as_keras_tensorflow(name):
    # Keras raises (ValueError, or a backend error for the broadcasting losses) exactly when ours
    # raises ShapeMismatchError; where both compute, the per-sample shapes agree.
    keras_outcome, ours_outcome, agree = _keras_cases.shape_agreement(name)
    assert agree, (keras_outcome, ours_outcome)


def test_shape_error_message_names_both_shapes():
    with pytest.raises(crossentropy.ShapeMismatchError, match=r"must have the same shape.*\(3, 1\).*\(3, 3\)"):
        ck.BinaryCrossentropy()(np.zeros((3, 1)), np.full((3, 3), 0.5))
    with pytest.raises(ValueError, match="up until the last dimension"):
        ck.SparseCategoricalCrossentropy()(np.zeros(4, dtype="int32"), np.full((3, 2), 0.5))


def test_signatures_match():
    import inspect

    for n in CLASSES:
        a = inspect.signature(getattr(ck, n).__init__)
        b = inspect.signature(getattr(keras.losses, n).__init__)
        assert [(p.name, p.default) for p in a.parameters.values()] == \
               [(p.name, p.default) for p in b.parameters.values()], n
        assert issubclass(getattr(ck, n), keras.losses.Loss)


@pytest.mark.parametrize("name, kw", [
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1, "axis": 0, "reduction": "sum"}),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2, "axis": 1, "name": "cce"}),
    ("SparseCategoricalCrossentropy", {"ignore_class": 3, "from_logits": True, "reduction": None}),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5}),
    ("CategoricalFocalCrossentropy", {"alpha": [0.1, 0.9], "gamma": 3.0, "from_logits": True}),
    ("CategoricalGeneralizedCrossEntropy", {"q": 0.3, "reduction": "mean"}),
])
def test_config_round_trip(name, kw):
    loss = getattr(ck, name)(**kw)
    cfg = loss.get_config()
    ref_cfg = getattr(keras.losses, name)(**kw).get_config()
    for k, v in ref_cfg.items():
        if k != "name" or "name" in kw:
            assert cfg[k] == v, k
    again = type(loss).from_config(cfg)
    assert again.get_config() == cfg
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == cfg


def _digits_like(n=64, d=8, k=3, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d)).astype("float32")
    y = (x[:, :k].argmax(1)).astype("int32")
    return x, y


def _model(k=3, activation="softmax"):
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                             keras.layers.Dense(k, activation=activation)])


def test_fit_matches_keras_with_softmax_output():
    # A softmax output layer: Keras (TF) scores from its logits inside fit; so must we.
    x, y = _digits_like()
    hist = {}
    for tag, loss in (("keras", keras.losses.SparseCategoricalCrossentropy()),
                      ("ours", ck.SparseCategoricalCrossentropy())):
        m = _model()
        m.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        hist[tag] = m.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hist["ours"], hist["keras"], rtol=1e-5)


def test_save_and_load_compiled_model(tmp_path):
    x, y = _digits_like()
    yoh = np.eye(3, dtype="float32")[y]
    m = _model(activation=None)
    m.compile(optimizer="adam", loss=ck.CategoricalFocalCrossentropy(from_logits=True, gamma=1.0, alpha=[.2, .3, .5],
                                                                     label_smoothing=0.05))
    m.fit(x, yoh, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    m.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, ck.CategoricalFocalCrossentropy)
    assert loaded.loss.get_config() == m.loss.get_config()
    np.testing.assert_allclose(loaded.evaluate(x, yoh, verbose=0), m.evaluate(x, yoh, verbose=0), rtol=1e-6)
    loaded.fit(x, yoh, epochs=1, verbose=0)  # the optimizer state came back too


def test_compile_by_instance_in_all_classes():
    x, y = _digits_like(n=32)
    yoh = np.eye(3, dtype="float32")[y]
    targets = {"BinaryCrossentropy": yoh, "CategoricalCrossentropy": yoh, "SparseCategoricalCrossentropy": y,
               "BinaryFocalCrossentropy": yoh, "CategoricalFocalCrossentropy": yoh,
               "CategoricalGeneralizedCrossEntropy": y}
    for n in CLASSES:
        act = "sigmoid" if n.startswith("Binary") else "softmax"
        m = _model(activation=act)
        m.compile(optimizer="sgd", loss=getattr(ck, n)())
        h = m.fit(x, targets[n], epochs=1, verbose=0).history["loss"]
        assert np.isfinite(h).all(), n


@pytest.mark.parametrize("make", [
    lambda: ck.BinaryCrossentropy(label_smoothing=1.5),
    lambda: ck.CategoricalCrossentropy(axis=True),
    lambda: ck.CategoricalGeneralizedCrossEntropy(q=1.0),
    lambda: ck.BinaryFocalCrossentropy(gamma=-1.0),
])
def test_invalid_options_raise_library_errors(make):
    with pytest.raises(crossentropy.InvalidOptionError):
        make()


def test_invalid_reduction_raises_value_error_like_keras():
    with pytest.raises(ValueError):
        ck.BinaryCrossentropy(reduction="avg")


TUTORIAL = """\
{import_line}

actual_values = [0, 1, 0, 0, 0, 0]
predicted_values = [.5, .7, .2, .3, .5, .6]

binary_cross_entropy = tf.keras.losses.BinaryCrossentropy()
loss = binary_cross_entropy(actual_values, predicted_values)
print(loss.numpy)

actual_values = [0, 1, 0]
predicted_values = [0.05, 0.85, 0.10]

loss = tf.keras.losses.CategoricalCrossentropy()
loss = loss(actual_values, predicted_values)
print(loss.numpy)
"""


def test_tutorial_tensorflow_snippets_unchanged_but_the_import():
    # Run in this process (its Keras backend is TensorFlow, asserted above):
    # the same text twice, only the import line differs.
    import contextlib
    import io

    outs = []
    for line in ("import tensorflow as tf", "from crossentropy.keras import tf"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(TUTORIAL.format(import_line=line), "<tutorial>", "exec"), {})
        outs.append(buf.getvalue())
    assert outs[0] == outs[1], outs
    assert "numpy=0.5398464" in outs[1] and "numpy=0.1625189" in outs[1]
    # And the classes really are ours:
    assert ck.tf.keras.losses.BinaryCrossentropy is ck.BinaryCrossentropy
    assert ck.tf.keras.losses.MeanSquaredError is keras.losses.MeanSquaredError


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("kind", ["tf.Variable", "keras.Variable"])
def test_variables_as_predictions(name, kind):
    """A variable as ``y_pred`` (what a user's GradientTape often watches) gives Keras's value and
    gradient; a tf.Variable stays a variable under keras.ops.convert_to_tensor."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    sparse = name in ("SparseCategoricalCrossentropy", "CategoricalGeneralizedCrossEntropy")  # integer labels
    logits = rng.normal(size=(4, 5)).astype(np.float32)
    y = rng.integers(0, 5, 4) if sparse else (rng.random((4, 5)) > 0.5).astype(np.float32)
    if name.startswith("Categorical") and not sparse:
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
    results = []
    probs = name == "CategoricalGeneralizedCrossEntropy"  # probabilities only (no from_logits)
    options = {} if probs else {"from_logits": True}
    if probs:
        logits = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for cls in (getattr(keras.losses, name), getattr(ck, name)):
        v = tf.Variable(logits) if kind == "tf.Variable" else keras.Variable(logits)
        with tf.GradientTape() as tape:
            tape.watch(v.value if kind == "keras.Variable" else v)
            loss = cls(**options)(y, v)
        g = tape.gradient(loss, v.value if kind == "keras.Variable" else v)
        results.append((float(loss), np.asarray(g)))
    (ref, gref), (ours, gours) = results
    assert abs(ours - ref) <= TOL * max(1.0, abs(ref))
    assert np.max(np.abs(gours - gref)) <= TOL * max(1.0, float(np.max(np.abs(gref))))
