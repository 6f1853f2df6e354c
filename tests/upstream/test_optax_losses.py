"""optax's own classification-loss tests (``optax/losses/_classification_test.py`` from the installed wheel).

Every test of the six cross-entropy functions' upstream test cases runs twice:
``<Case>_original`` and ``<Case>_ours``, where ``optax.losses._classification.<fn>``
(the name the upstream tests read) is bound to ``crossentropy.jax.<fn>`` for
the duration of the test.  Only the function under test is swapped: where an
upstream test compares against another loss (e.g. the focal loss against
``sigmoid_binary_cross_entropy``), that other loss stays optax's.
"""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("optax")

import crossentropy.jax as cj  # noqa: E402
from tests.upstream._upstream import Swap, unittest_variants  # noqa: E402

upstream = importlib.import_module("optax.losses._classification_test")

CASES = {
    "SoftmaxCrossEntropyTest": "softmax_cross_entropy",
    "SafeSoftmaxCrossEntropyTest": "safe_softmax_cross_entropy",
    "SoftmaxCrossEntropyWithIntegerLabelsTest": "softmax_cross_entropy_with_integer_labels",
    "SigmoidCrossEntropyTest": "sigmoid_binary_cross_entropy",
    "PolyLossTest": "poly_loss_cross_entropy",
    "SigmoidFocalLossTest": "sigmoid_focal_loss",
}

SELECTED = unittest_variants(
    globals(), upstream,
    {case: [Swap(upstream._classification, fn, getattr(cj, fn))] for case, fn in CASES.items()},
)


def test_selection_covers_every_upstream_test_of_the_family():
    assert all(SELECTED[c] for c in CASES)
    assert sum(len(v) for v in SELECTED.values()) >= 70, SELECTED
