"""Live parity with ``sklearn.metrics.log_loss`` (ours with ``compat='sklearn'``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss

import crossentropy as ce

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_sw,normalize", [(False, True), (True, True), (True, False)])
def test_binary_log_loss(parity, rng, dtype, use_sw, normalize):
    p = rng.uniform(size=12).astype(dtype)
    p[:4] = [0.0, 1.0, 1e-30, 1.0 - 1e-12]
    y = rng.integers(0, 2, 12)
    y[:2] = [1, 0]  # impossible labels: sklearn clips at the dtype's eps
    sw = rng.uniform(0, 2, 12) if use_sw else None
    ref = log_loss(y, p, sample_weight=sw, normalize=normalize, labels=[0, 1])
    ours = ce.binary_cross_entropy(p, y.astype(dtype), compat="sklearn", sample_weight=sw,
                                   reduction="mean" if normalize else "sum")
    parity.check("sklearn", "log_loss (binary)", f"sample_weight={use_sw}, normalize={normalize}", ours=ours,
                 theirs=ref, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_sw,normalize", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("target", ["index", "one-hot"])
def test_multiclass_log_loss(parity, rng, dtype, use_sw, normalize, target):
    N, C = 15, 4
    P = rng.dirichlet(np.ones(C), N).astype(dtype)
    P[0] = [0.0, 1.0, 0.0, 0.0]
    y = rng.integers(0, C, N)
    y[0] = 0
    sw = rng.uniform(0, 2, N) if use_sw else None
    ref = log_loss(y, P, sample_weight=sw, normalize=normalize, labels=list(range(C)))
    t = y if target == "index" else np.eye(C, dtype=dtype)[y]
    ours = ce.categorical_cross_entropy(P, t, compat="sklearn", sample_weight=sw,
                                        reduction="mean" if normalize else "sum")
    parity.check("sklearn", "log_loss (multiclass)", f"{target} targets, sample_weight={use_sw}, normalize={normalize}",
                 ours=ours, theirs=ref, dtype=dtype)


def test_unnormalised_rows_are_not_renormalised_in_sklearn_1_9(parity):
    # scikit-learn 1.9 warns about rows not summing to 1 but does not renormalise.
    P = np.array([[0.2, 0.2, 0.2], [0.5, 0.3, 0.1]])
    y = np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = log_loss(y, P, labels=[0, 1, 2])
    ours = ce.categorical_cross_entropy(P, y, compat="sklearn")
    parity.check("sklearn", "log_loss (multiclass)", "rows not summing to 1", ours=ours, theirs=ref,
                 dtype=np.float64)
    assert abs(ref - (-np.log(0.2) - np.log(0.3)) / 2) < 1e-15


@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 30), C=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES))
def test_multiclass_hypothesis(parity, N, C, seed, dtype):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(C), N).astype(dtype)
    P /= P.sum(-1, keepdims=True)
    y = rng.integers(0, C, N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = log_loss(y, P, labels=list(range(C)))
    parity.check("sklearn", "log_loss (multiclass)", "hypothesis shapes", ours=ce.categorical_cross_entropy(
        P, y, compat="sklearn"), theirs=ref, dtype=dtype)
