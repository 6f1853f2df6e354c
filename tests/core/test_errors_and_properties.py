"""Bad input (error classes and messages), extremes, NaN, and hypothesis properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import crossentropy as ce
from crossentropy import (InvalidDTypeError, InvalidOptionError, ProbabilityRangeError, ShapeMismatchError,
                          TargetOutOfRangeError)

X = np.array([[2.0, 1.0, -1.0], [0.5, 0.5, 3.0]])


@pytest.mark.parametrize("call,cls,words", [
    (lambda: ce.cross_entropy(X, np.array([0, 3])), TargetOutOfRangeError, ["target[1]", "= 3", "[0, 3)"]),
    (lambda: ce.cross_entropy(X, np.array([-2, 0]), ignore_index=-1), TargetOutOfRangeError, ["target[0]", "-2", "ignore_index=-1"]),
    (lambda: ce.binary_cross_entropy(np.array([0.5, 1.5]), np.array([0.0, 1.0])), ProbabilityRangeError, ["input[1]", "1.5", "[0, 1]"]),
    (lambda: ce.binary_cross_entropy(np.array([0.5]), np.array([-0.1])), ProbabilityRangeError, ["target[0]", "[0, 1]"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1, 2])), ShapeMismatchError, ["(2,)", "(3,)"]),
    (lambda: ce.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(4)), ShapeMismatchError, ["(3,)", "(4,)"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1]), sample_weight=np.ones(3)), ShapeMismatchError, ["sample_weight", "broadcast"]),
    (lambda: ce.cross_entropy(np.array([[1, 2]]), np.array([0])), InvalidDTypeError, ["input", "floating", "int"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1]), reduction="avg"), InvalidOptionError, ["reduction", "'avg'", "'mean'"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1]), label_smoothing=1.5), InvalidOptionError, ["label_smoothing", "[0, 1]", "1.5"]),
    (lambda: ce.cross_entropy(X, np.full((2, 3), 1 / 3), ignore_index=-100), InvalidOptionError, ["ignore_index", "probabilities"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1]), weight=np.ones(2)), ShapeMismatchError, ["weight", "(3,)"]),
    (lambda: ce.cross_entropy(X, np.array([True, False])), InvalidDTypeError, ["bool"]),
    (lambda: ce.binary_cross_entropy(np.array([0.5]), np.array([1.0]), compat="tf"), InvalidOptionError, ["compat", "'tf'"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1]), base=1), InvalidOptionError, ["base"]),
    (lambda: ce.focal_cross_entropy(X, np.array([0, 1]), gamma=-1), InvalidOptionError, ["gamma", ">= 0"]),
    (lambda: ce.generalized_cross_entropy(np.full((1, 2), 0.5), np.array([0]), q=0), InvalidOptionError, ["q", "(0, 1]"]),
    (lambda: ce.cross_entropy(X, np.array([0, 1]), axis=2), InvalidOptionError, ["axis=2"]),
    (lambda: ce.cross_entropy(torch.tensor(X), jnp.array([0, 1])), InvalidDTypeError, ["torch", "jax"]),
])
def test_bad_input_raises_library_error_naming_the_problem(call, cls, words):
    with pytest.raises(cls) as e:
        call()
    assert isinstance(e.value, ce.CrossEntropyError)
    assert isinstance(e.value, (ValueError, TypeError))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_extremes_exact():
    assert ce.cross_entropy(np.array([[1e4, -1e4]]), np.array([1])) == 2e4
    assert ce.cross_entropy(np.array([[np.inf, 0.0]]), np.array([1])) == np.inf
    assert ce.binary_cross_entropy(np.array([1e-300]), np.array([1.0])) == pytest.approx(300 * np.log(10), rel=1e-15)
    v, g = ce.value_and_grad(ce.binary_cross_entropy, np.array([0.0]), np.array([1.0]))
    assert v == np.inf and g[0] == -np.inf
    assert ce.binary_cross_entropy(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert ce.categorical_cross_entropy(np.array([[0.0, 1.0]]), np.array([0])) == np.inf
    np.testing.assert_allclose(ce.logsumexp(np.array([-1e4, -1e4])), -1e4 + np.log(2), rtol=1e-15)


def test_nan_propagates():
    x = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]])
    v = ce.cross_entropy(x, np.array([1, 1]), reduction="none")
    assert np.isnan(v[0]) and np.isfinite(v[1])
    assert np.isnan(ce.binary_cross_entropy(np.array([np.nan, 0.5]), np.array([1.0, 0.0])))
    assert np.isnan(ce.binary_cross_entropy_with_logits(np.array([0.0]), np.array([np.nan])))


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 6), C=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), eps=st.sampled_from([0.0, 0.3]),
       weighted=st.booleans())
def test_index_and_one_hot_targets_agree(N, C, seed, eps, weighted):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C)) * 3
    y = rng.integers(0, C, N)
    w = rng.uniform(0.1, 2, C) if weighted else None
    oh = np.eye(C)[y]
    vi, gi = ce.value_and_grad(ce.cross_entropy, x, y, label_smoothing=eps, weight=w, reduction="sum")
    vo, go = ce.value_and_grad(ce.cross_entropy, x, oh, label_smoothing=eps, weight=w, reduction="sum")
    np.testing.assert_allclose(vi, vo, rtol=1e-13)
    np.testing.assert_allclose(gi, go, rtol=1e-13, atol=1e-15)
    p = ce.softmax(x)
    np.testing.assert_allclose(ce.categorical_cross_entropy(p, y, reduction="none"),
                               ce.categorical_cross_entropy(p, oh, reduction="none"), rtol=1e-14)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 8), C=st.integers(2, 5), seed=st.integers(0, 2**32 - 1), base=st.sampled_from([2, 10, 3.5]))
def test_reduction_relations_and_base_scaling(N, C, seed, base):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    sw = rng.uniform(0.1, 2, N)
    none = ce.cross_entropy(x, y, reduction="none", sample_weight=sw)
    np.testing.assert_allclose(ce.cross_entropy(x, y, reduction="sum", sample_weight=sw), none.sum(), rtol=1e-14)
    np.testing.assert_allclose(ce.cross_entropy(x, y, reduction="mean", sample_weight=sw), none.sum() / sw.sum(), rtol=1e-14)
    np.testing.assert_allclose(ce.cross_entropy(x, y, reduction="sum_over_batch_size", sample_weight=sw), none.sum() / N, rtol=1e-14)
    np.testing.assert_allclose(ce.cross_entropy(x, y, reduction="none", base=base), ce.cross_entropy(x, y, reduction="none") / np.log(base), rtol=1e-14)
    g = ce.grad(ce.cross_entropy, x, y, base=base)
    np.testing.assert_allclose(g, ce.grad(ce.cross_entropy, x, y) / np.log(base), rtol=1e-13, atol=1e-16)


@settings(max_examples=10, deadline=None)
@given(N=st.integers(1, 5), C=st.integers(2, 5), seed=st.integers(0, 2**32 - 1), eps=st.sampled_from([0.0, 0.2]))
def test_torch_and_jax_inputs_same_numbers_and_autograd(N, C, seed, eps):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C)) * 2
    y = rng.integers(0, C, N)
    v, g = ce.value_and_grad(ce.focal_cross_entropy, x, y, gamma=1.5, label_smoothing=eps)
    X = torch.tensor(x, requires_grad=True)
    out = ce.focal_cross_entropy(X, torch.tensor(y), gamma=1.5, label_smoothing=eps)
    assert isinstance(out, torch.Tensor)
    out.backward()
    np.testing.assert_allclose(out.item(), v, rtol=1e-13)
    np.testing.assert_allclose(X.grad.numpy(), g, rtol=1e-10, atol=1e-14)
    jout = ce.focal_cross_entropy(jnp.asarray(x), jnp.asarray(y), gamma=1.5, label_smoothing=eps)
    assert isinstance(jout, jax.Array)
    np.testing.assert_allclose(float(jout), v, rtol=1e-13)
    jg = jax.grad(lambda z: ce.focal_cross_entropy(z, jnp.asarray(y), gamma=1.5, label_smoothing=eps))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(jg), g, rtol=1e-10, atol=1e-14)
    tg = ce.grad(ce.focal_cross_entropy, torch.tensor(x), torch.tensor(y), gamma=1.5, label_smoothing=eps)
    assert isinstance(tg, torch.Tensor)
    np.testing.assert_allclose(tg.numpy(), g, rtol=1e-13, atol=1e-15)
