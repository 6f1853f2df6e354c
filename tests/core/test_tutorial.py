"""The tutorial's worked examples (../shared/seed), with exact values."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import crossentropy as ce

X_BCE = np.array([0.0421, -0.6606, 0.6276, 1.2491, -1.1535, -1.4137, 0.8967, -1.1786, -1.3214, 0.2828])
S_BCE = np.array([0.5105, 0.3406, 0.6519, 0.7772, 0.2398, 0.1957, 0.7103, 0.2353, 0.2106, 0.5702])  # printed σ(X)
Y_BCE = np.array([1.0, 0, 0, 1, 0, 0, 1, 0, 0, 0])
X_CE = np.array([[-0.5698, -0.0558, -0.2550, 1.6812, 0.0238], [-2.1786, 1.3923, -0.2363, -0.4601, -1.4949],
                 [1.3679, 1.2853, 0.4087, -0.5743, -0.2752], [2.1995, 0.1469, -0.1661, 0.4617, -0.4395],
                 [-0.5686, -0.7453, -0.1455, -0.5304, 0.3020], [-0.1489, -0.9143, -1.5282, -0.5023, 1.2751],
                 [-1.3830, -0.6535, 0.5392, -2.2050, -1.4138], [-0.5592, 1.5028, 0.0442, -1.5487, -0.1522],
                 [0.7436, -1.8956, 1.0145, -0.2974, -2.0576], [0.1003, 0.6604, -1.3535, -0.3053, -0.4034]])
Y_CE = np.array([3, 0, 1, 1, 2, 4, 0, 2, 1, 3])


def test_softmax_of_scores():
    p = ce.softmax(np.array([2.0, 1.0, -1.0]))
    assert p.round(4).tolist() == [0.7054, 0.2595, 0.0351]  # the tutorial prints 0.705 / 0.259 / 0.035
    np.testing.assert_allclose(p, np.exp([2, 1, -1]) / np.exp([2, 1, -1]).sum(), rtol=1e-15)


def test_base10_model_sums():
    # Model A: pass probabilities 0.1 0.7 0.6 0.2 of the true outcome; B: 0.8 0.6 0.7 0.9.
    a = ce.binary_cross_entropy(np.array([0.9, 0.3, 0.6, 0.2]), np.array([0.0, 0, 1, 1]), reduction="sum", base=10)
    b = ce.binary_cross_entropy(np.array([0.2, 0.4, 0.7, 0.9]), np.array([0.0, 0, 1, 1]), reduction="sum", base=10)
    assert round(float(a), 4) == 2.0757 and round(float(b), 4) == 0.5194
    np.testing.assert_allclose(a, -np.log10([0.1, 0.7, 0.6, 0.2]).sum(), rtol=1e-14)
    # The tutorial's 2.073 / 0.505 add terms cut short first: model A's terms are
    # truncated (not rounded) to 3 decimals, model B's printed terms to 2 or 3.
    terms_a = [np.floor(-np.log10(v) * 1000) / 1000 for v in [0.1, 0.7, 0.6, 0.2]]
    assert terms_a == [1.0, 0.154, 0.221, 0.698] and round(sum(terms_a), 3) == 2.073
    assert round(0.09 + 0.22 + 0.15 + 0.045, 3) == 0.505


def test_fruit_containers_base10():
    P = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]])
    v = ce.categorical_cross_entropy(P, np.array([0, 2, 2]), reduction="sum", base=10)
    assert round(float(v), 4) == 1.0757
    np.testing.assert_allclose(v, -np.log10([0.7, 0.3, 0.4]).sum(), rtol=1e-14)


def test_torch_cross_entropy_example():
    assert round(float(ce.cross_entropy(X_CE, Y_CE)), 5) == 1.97316  # printed tensor(1.9732)


def test_torch_bce_example_printed_inputs_give_0_45796():
    assert round(float(ce.binary_cross_entropy_with_logits(X_BCE, Y_BCE)), 5) == 0.45796
    assert round(float(ce.binary_cross_entropy(S_BCE, Y_BCE)), 4) == 0.4579  # from the printed σ(X)


def test_no_binary_target_of_the_printed_x_gives_1_0966():
    values = np.array([float(ce.binary_cross_entropy_with_logits(X_BCE, np.array(b, dtype=float)))
                       for b in itertools.product([0, 1], repeat=10)])
    assert len(values) == 1024
    assert not np.any(np.round(values, 4) == 1.0966)
    assert np.abs(values - 1.0966).min() > 2.5e-4  # the closest of all 1024 is still 2.6e-4 away
    printed = np.array([float(ce.binary_cross_entropy(S_BCE, np.array(b, dtype=float)))
                        for b in itertools.product([0, 1], repeat=10)])
    assert not np.any(np.round(printed, 4) == 1.0966)


KERAS_Y = np.array([0, 1, 0, 0, 0, 0], dtype=np.float32)
KERAS_P = np.array([0.5, 0.7, 0.2, 0.3, 0.5, 0.6], dtype=np.float32)


def test_keras_bce_legacy_and_keras3():
    assert f"{float(ce.binary_cross_entropy(KERAS_P, KERAS_Y, compat='tf_keras')):.8f}" == "0.53984624"
    assert f"{float(ce.binary_cross_entropy(KERAS_P, KERAS_Y, compat='keras')):.8f}" == "0.53984642"


def test_keras_bce_keras3_live():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    live = keras.losses.BinaryCrossentropy()(KERAS_Y, KERAS_P).numpy()
    assert live == ce.binary_cross_entropy(KERAS_P, KERAS_Y, compat="keras")  # bitwise
    assert f"{float(live):.8f}" == "0.53984642"


def test_keras_categorical_example():
    v = ce.categorical_cross_entropy(np.array([0.05, 0.85, 0.10], dtype=np.float32),
                                     np.array([0.0, 1.0, 0.0], dtype=np.float32), compat="keras")
    assert f"{float(v):.7f}" == "0.1625189"
    np.testing.assert_allclose(v, -np.log(0.85), rtol=1e-6)
