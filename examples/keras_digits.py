"""Train a small Keras model on scikit-learn's digits with keras.losses.SparseCategoricalCrossentropy
and with crossentropy.keras's, from the same initial weights; plot both loss curves.

    python examples/keras_digits.py [--steps 30] [--out FILE.png]

(--steps counts epochs of model.fit; the backend is Keras's, TensorFlow unless
KERAS_BACKEND says otherwise.)  Exits non-zero if the curves differ by more than --rtol.
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _common import load_digits, parse, report  # noqa: E402

import crossentropy.keras as ck  # noqa: E402


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    # A softmax output: Keras scores it from its logits; crossentropy.keras does the same.
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="tanh"),
                             keras.layers.Dense(10, activation="softmax")])


def train(loss, weights, x, y, epochs):
    model = make_model()
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
    hist = model.fit(x, y, epochs=epochs, batch_size=256, shuffle=False, verbose=0)
    return hist.history["loss"], model.get_weights()


def first_gradients(loss, weights, x, y):
    """Gradients of the loss w.r.t. the weights at the initial point (any backend)."""
    model = make_model()
    model.set_weights(weights)
    b = keras.backend.backend()
    if b == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss(y, model(x))
        return [np.asarray(g) for g in tape.gradient(value, model.trainable_weights)]
    raise NotImplementedError(f"first_gradients is written for the TensorFlow backend, not {b}")


def run(epochs, n=None):
    x, y = load_digits(n)
    w0 = make_model().get_weights()
    ref = train(keras.losses.SparseCategoricalCrossentropy(), w0, x, y, epochs)
    ours = train(ck.SparseCategoricalCrossentropy(), w0, x, y, epochs)
    return ref, ours, (x, y, w0)


def main(argv=None):
    a = parse(argv, 30, "keras")
    (ref, _), (ours, _), _ = run(a.steps)
    return report("keras", ref, ours, a.out, a.rtol, "keras.losses.SparseCategoricalCrossentropy",
                  "crossentropy.keras.SparseCategoricalCrossentropy")


if __name__ == "__main__":
    sys.exit(main())
