"""Keras's own loss tests (``keras/src/losses/losses_test.py`` from the installed wheel), with ours swapped in.

Every test of the six cross-entropy classes' upstream test cases runs twice:
``<Class>Test_original`` (Keras's class) and ``<Class>Test_ours`` (the name
``keras.src.losses.losses.<Class>``, which the upstream tests read, bound to
``crossentropy.keras.<Class>`` for the duration of the test).  In this
process the Keras backend is TensorFlow; ``test_other_backend`` reruns this
module under the JAX and PyTorch backends in subprocesses (the backend is
fixed when Keras is imported).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

keras = pytest.importorskip("keras")

import crossentropy.keras as ck  # noqa: E402
from tests.upstream._upstream import Difference, Swap, unittest_variants  # noqa: E402

upstream = importlib.import_module("keras.src.losses.losses_test")
BACKEND = keras.backend.backend()

CLASSES = ["BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "CategoricalGeneralizedCrossEntropy"]

# Not selected, with the reason.
EXCLUDE = {
    "SparseCategoricalCrossentropyTest.test_squeezes_singleton_class_dim_on_user_axis":
        "tests the function keras.losses.sparse_categorical_crossentropy, which crossentropy.keras does not "
        "replace (it provides the classes); upstream runs it on the PyTorch backend only",
}

# By-design differences (also in docs/adapters.md).
_AXIS = ("SparseCategoricalCrossentropy(axis=0) computes the loss over that axis on every backend; Keras computes "
         "it on PyTorch only and raises on TensorFlow and JAX")
DIFFERENCES = {
    f"SparseCategoricalCrossentropyTest.{t}": Difference(_AXIS, pytest.fail.Exception, "DID NOT RAISE")
    for t in ("test_binary_segmentation_different_axis", "test_multi_class_segmentation_different_axis")
} if BACKEND in ("tensorflow", "jax") else {}

SELECTED = unittest_variants(
    globals(), upstream,
    {f"{c}Test": [Swap(upstream.losses, c, getattr(ck, c))] for c in CLASSES},
    differences=DIFFERENCES, exclude=EXCLUDE,
)


def test_selection_covers_every_upstream_test_of_the_family():
    # A new upstream test method is picked up automatically; this guards against the
    # opposite: a class renamed upstream would otherwise drop out silently.
    assert all(SELECTED[f"{c}Test"] for c in CLASSES)
    assert sum(len(v) for v in SELECTED.values()) >= 50, SELECTED


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs once, from the TensorFlow-backend process")
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backend(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q", "-rfExX",
         "--no-header", __file__, "-k", "not test_other_backend"],
        env=env, capture_output=True, text=True, timeout=500, cwd=os.getcwd())
    tail = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    counts = dict((k, int(v)) for v, k in re.findall(r"(\d+) (passed|failed|xfailed|xpassed|skipped|error)", tail))
    assert counts.get("passed", 0) >= 2 * 50 and not counts.get("failed") and not counts.get("skipped"), tail
