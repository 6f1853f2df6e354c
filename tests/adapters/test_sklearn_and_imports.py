"""crossentropy.sklearn.log_loss against sklearn.metrics.log_loss; import isolation of every adapter."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import sklearn.metrics

import crossentropy
from crossentropy.sklearn import WeightsSumToZeroError, log_loss

R = np.random.default_rng(0)
P3 = R.dirichlet(np.ones(3), 8)
Y3 = R.integers(0, 3, 8)
Y3[:3] = [0, 1, 2]

CASES = {
    "multiclass": ((Y3, P3), {}),
    "string labels": ((np.array(["b", "a", "c"])[Y3], P3), {}),
    "normalize=False": ((Y3, P3), {"normalize": False}),
    "sample_weight": ((Y3, P3), {"sample_weight": R.uniform(0, 2, 8)}),
    "sample_weight+normalize=False": ((Y3, P3), {"sample_weight": R.uniform(0, 2, 8), "normalize": False}),
    "labels (class absent from y_true)": ((np.array([0, 1, 1, 0]), R.dirichlet(np.ones(3), 4)),
                                          {"labels": [0, 1, 2]}),
    "binary 1-D proba": ((np.array([0, 1, 1, 0, 1]), np.array([0.1, 0.8, 0.6, 0.3, 0.99])), {}),
    "binary (n,1) proba": ((np.array([0, 1, 1]), np.array([[0.1], [0.8], [0.6]])), {}),
    "clip at float64 eps (p=0,1)": ((np.array([0, 1, 1]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])), {}),
    "clip at float32 eps": ((np.array([0, 1, 1]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], "float32")), {}),
    "rows not summing to 1": ((Y3, P3 * 0.7), {}),
    "indicator matrix y_true": ((np.eye(3)[Y3], P3), {}),
    "integer proba dtype": ((np.array([0, 1]), np.array([[1, 0], [0, 1]])), {}),
    "float16 proba (clip at float16 eps)": ((np.array([0, 1, 1]), np.array([[1, 0], [0.3, 0.7], [0.999, 0.001]],
                                                                            "float16")), {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_sklearn(name):
    args, kw = CASES[name]
    with warnings.catch_warnings(record=True) as w_ref:
        warnings.simplefilter("always")
        ref = sklearn.metrics.log_loss(*args, **kw)
    with warnings.catch_warnings(record=True) as w_ours:
        warnings.simplefilter("always")
        ours = log_loss(*args, **kw)
    assert isinstance(ours, float)
    assert abs(ours - ref) <= 1e-12 * max(1.0, abs(ref)), (ours, ref)
    assert sorted({type(x.message).__name__ for x in w_ours}) == sorted({type(x.message).__name__ for x in w_ref})


ERRORS = {
    "proba > 1": (([0, 1], [[0.5, 0.6], [0.2, 1.2]]), {}, "greater than 1"),
    "proba < 0": (([0, 1], [[0.5, 0.5], [-0.2, 1.2]]), {}, "greater than 1"),
    "inconsistent lengths": (([0, 1, 1], [[0.5, 0.5], [0.2, 0.8]]), {}, "inconsistent numbers of samples"),
    "one class": (([1, 1], [[0.5, 0.5], [0.2, 0.8]]), {}, "only one label"),
    "labels too few": (([1, 1], [[0.5, 0.5], [0.2, 0.8]]), {"labels": [1]}, "at least two labels"),
    "y_true not in labels": (([0, 3], [[0.5, 0.5], [0.2, 0.8]]), {"labels": [0, 1]}, "not belonging"),
    "class count mismatch": (([0, 1, 2], [[0.5, 0.5], [0.2, 0.8], [0.3, 0.7]]), {}, "different number of classes"),
    "labels count mismatch": (([0, 1], [[0.5, 0.5], [0.2, 0.8]]), {"labels": [0, 1, 2]}, "number of classes"),
    "NaN": (([0, 1], [[0.5, np.nan], [0.2, 0.8]]), {}, "NaN"),
    "continuous y_true": (([0.5, 1.0], [[0.5, 0.5], [0.2, 0.8]]), {}, "continuous"),
    "3-D proba": (([0, 1], np.full((2, 2, 2), 0.5)), {}, "dim 3"),
    "y_pred and y_proba": (([0, 1], [[0.5, 0.5], [0.2, 0.8]]), {"y_pred": [[0.5, 0.5], [0.2, 0.8]]}, "both"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_error_cases_like_sklearn(name):
    args, kw, text = ERRORS[name]
    with pytest.raises(ValueError):
        sklearn.metrics.log_loss(*args, **kw)
    with pytest.raises(crossentropy.CrossEntropyError, match=text) as e:
        log_loss(*args, **kw)
    assert isinstance(e.value, ValueError)


def test_weights_summing_to_zero():
    with pytest.raises(ValueError, match="non-zero"):
        sklearn.metrics.log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]], sample_weight=[0, 0])
    with pytest.raises(crossentropy.InvalidOptionError, match="non-zero"):
        log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]], sample_weight=[0, 0])
    with pytest.raises(ZeroDivisionError):
        sklearn.metrics.log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]], sample_weight=[1.0, -1.0])
    with pytest.raises(WeightsSumToZeroError):
        log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]], sample_weight=[1.0, -1.0])


# ---------------------------------------------------------------------------------------------
# any array-API library and device (scikit-learn's own array-API tests run in tests/upstream)
# ---------------------------------------------------------------------------------------------

def _strict(dtype_name, device_name):
    xs = pytest.importorskip("array_api_strict")
    return lambda a: xs.asarray(np.asarray(a, dtype=dtype_name), device=xs.Device(device_name))


def _torch(dtype_name):
    torch = pytest.importorskip("torch")
    return lambda a: torch.asarray(np.asarray(a, dtype=dtype_name))


def _jax(dtype_name):
    jnp = pytest.importorskip("jax.numpy")
    return lambda a: jnp.asarray(np.asarray(a, dtype=dtype_name))


ARRAY_LIBS = {
    "array_api_strict device1 float32": lambda: _strict("float32", "device1"),
    "array_api_strict CPU float64": lambda: _strict("float64", "CPU_DEVICE"),
    "torch float32": lambda: _torch("float32"),
    "torch float64": lambda: _torch("float64"),
    "jax float64": lambda: _jax("float64"),
}


@pytest.mark.parametrize("lib", list(ARRAY_LIBS))
@pytest.mark.parametrize("case", ["multiclass", "sample_weight+normalize=False", "binary 1-D proba",
                                  "clip at float64 eps (p=0,1)", "labels (class absent from y_true)"])
def test_array_api_input_matches_numpy(lib, case):
    # Computed in the caller's library on its device: array_api_strict's device1 refuses any
    # conversion to NumPy, so passing there shows y_proba never went through NumPy.
    conv = ARRAY_LIBS[lib]()
    (y, p), kw = CASES[case]
    kw = {k: conv(v) if k == "sample_weight" else v for k, v in kw.items()}
    ours = log_loss(conv(y), conv(p), **kw)
    dtype = "float32" if "float32" in lib else "float64"
    ref = log_loss(y, np.asarray(p, dtype=dtype), **{k: np.asarray(v) if k == "sample_weight" else v
                                                        for k, v in CASES[case][1].items()})
    assert isinstance(ours, float)
    assert ours == pytest.approx(ref, rel=4 * np.finfo(dtype).eps)


def test_array_api_errors_name_the_values():
    conv = _strict("float32", "device1")
    with pytest.raises(crossentropy.ProbabilityRangeError, match="greater than 1: 1.5"):
        log_loss([0, 1], conv([[0.5, 0.5], [-0.5, 1.5]]))
    with pytest.raises(crossentropy.InvalidOptionError, match="NaN"):
        log_loss([0, 1], conv([[0.5, np.nan], [0.2, 0.8]]))
    with pytest.warns(UserWarning, match="do not sum to one"):
        log_loss([0, 1], conv([[0.5, 0.4], [0.2, 0.8]]))


def test_deprecated_y_pred_keyword():
    with pytest.warns(FutureWarning):
        v = log_loss([0, 1], y_pred=[[0.5, 0.5], [0.2, 0.8]])
    assert v == pytest.approx(sklearn.metrics.log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]]))


def test_signature_matches():
    import inspect

    a, b = inspect.signature(log_loss), inspect.signature(sklearn.metrics.log_loss)
    assert [(p.name, p.kind, p.default) for p in a.parameters.values()] == \
           [(p.name, p.kind, p.default) for p in b.parameters.values()]


ISOLATION = """
import sys
import crossentropy
for fw in ("torch", "jax", "keras", "tensorflow", "sklearn", "optax"):
    assert fw not in sys.modules, fw
import crossentropy.sklearn
assert "sklearn" not in sys.modules
mod, own, others = {adapter!r}, {own!r}, {others!r}
__import__(mod)
assert own in sys.modules
for fw in others:
    assert fw not in sys.modules, (mod, fw)
print("ok")
"""


@pytest.mark.parametrize("adapter, own, others", [
    ("crossentropy.torch", "torch", ("jax", "keras", "tensorflow", "sklearn")),
    ("crossentropy.jax", "jax", ("torch", "keras", "tensorflow", "sklearn")),
])
def test_importing_crossentropy_imports_no_framework(adapter, own, others):
    r = subprocess.run([sys.executable, "-c", ISOLATION.format(adapter=adapter, own=own, others=others)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
