"""``log_loss`` with the signature and behaviour of ``sklearn.metrics.log_loss`` (1.9), without scikit-learn.

>>> from crossentropy.sklearn import log_loss
>>> round(log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 6)
0.216162

Nothing here imports scikit-learn; the per-sample losses come from the
library's :func:`crossentropy.categorical_cross_entropy` (``compat='sklearn'``:
clip at the dtype's machine epsilon, no renormalisation).

Any array library
-----------------
``y_proba`` may be an array of any array-API library (PyTorch, JAX, CuPy,
``array_api_strict``, ...) on any device: the probabilities, the one-hot
targets and the sample weights are then computed with in that library, on
``y_proba``'s device, and only the final number comes back as a Python float
(as scikit-learn does with ``array_api_dispatch``).  The labels ``y_true`` are
read on the host (their classes decide the encoding, and they may be strings),
from whichever library and device they are on; so are the few values the
checks need (the extreme probabilities, whether a NaN is present).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from ._backend import namespace
from ._errors import CrossEntropyError, InvalidOptionError, ProbabilityRangeError, ShapeMismatchError
from ._typing import Array, ArrayLike
from .categorical import categorical_cross_entropy

__all__ = ["log_loss", "WeightsSumToZeroError"]


class WeightsSumToZeroError(CrossEntropyError, ZeroDivisionError):
    """``normalize=True`` with sample weights that sum to zero (scikit-learn raises ``ZeroDivisionError``)."""


def _host(a: ArrayLike) -> np.ndarray:
    """A NumPy view/copy of ``a`` for reading values (labels, weights), from any library and device."""
    if a is None or isinstance(a, (np.ndarray, np.generic, numbers.Number, list, tuple, str)):
        return np.asarray(a)
    if hasattr(a, "__dlpack__"):
        try:
            # DLPack ≥ 1.0: the exporter copies to the host when asked (a GPU tensor, a
            # non-default array_api_strict device); np.asarray would refuse there.
            return np.from_dlpack(a, device="cpu")
        except (TypeError, ValueError, BufferError, NotImplementedError, RuntimeError, AttributeError):
            pass
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    return np.asarray(a)  # pandas, lists of lists, other array-likes


def _num_samples(x: Array) -> int:
    return int(x.shape[0]) if len(x.shape) else 1


def _float_dtype(ops: Any, a: Array) -> Array:
    """scikit-learn's choice: float64, float32 and float16 stay; anything else becomes float64
    (float32 on a device without float64, as scikit-learn's ``supported_float_dtypes``)."""
    xp = ops.xp
    if ops.is_floating(a):
        return a
    wide = getattr(xp, "float64", None)
    try:
        if wide is not None and "float64" not in xp.__array_namespace_info__().dtypes(device=ops.device(a)):
            wide = None
    except (AttributeError, TypeError):
        pass
    return xp.astype(a, wide if wide is not None else xp.float32)


def _proba_array(y_proba: ArrayLike) -> tuple[Any, Array]:
    """``(ops, array)``: ``y_proba`` in its own library (NumPy for NumPy arrays and Python data), checked."""
    if isinstance(y_proba, (list, tuple)) or not hasattr(y_proba, "shape") or not hasattr(y_proba, "dtype"):
        y_proba = np.asarray(y_proba)
    elif type(y_proba).__module__.split(".")[0] == "pandas":
        y_proba = y_proba.to_numpy()
    ops = namespace(y_proba)
    a = y_proba
    if ops.name == "numpy":
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise InvalidOptionError(f"y_proba must be numeric; got dtype {a.dtype}")
        # scikit-learn keeps float64, float32 and float16, and converts everything else to float64.
        if a.dtype not in (np.float64, np.float32, np.float16):
            a = a.astype(np.float64)
    elif not (ops.is_floating(a) or ops.is_integer(a) or ops.is_bool(a)):
        raise InvalidOptionError(f"y_proba must be numeric; got dtype {a.dtype}")
    else:
        a = _float_dtype(ops, a)
    if a.ndim > 2:
        raise ShapeMismatchError(f"Found array with dim {a.ndim}. None expected <= 2.")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ShapeMismatchError(
            f"Found array with 0 sample(s) (shape={tuple(a.shape)}) while a minimum of 1 is required."
        )
    xp = ops.xp
    if ops.any(xp.isnan(a)):
        raise InvalidOptionError("Input y_proba contains NaN.")
    if ops.any(xp.isinf(a)):
        raise InvalidOptionError(f"Input y_proba contains infinity or a value too large for dtype('{a.dtype}').")
    hi, lo = float(xp.max(a)), float(xp.min(a))
    if hi > 1:
        raise ProbabilityRangeError(f"y_prob contains values greater than 1: {hi}")
    if lo < 0:
        raise ProbabilityRangeError(f"y_prob contains values lower than 0: {lo}")
    return ops, a


def _encode(y_true: ArrayLike, labels: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """One-hot targets over the sorted classes (a NumPy array), and the classes."""
    y = _host(y_true)
    if y.ndim == 2 and y.shape[1] > 1 and labels is None:
        # A label indicator matrix: its columns are the classes 0..K-1.
        return y.astype(np.float64), np.arange(y.shape[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ShapeMismatchError(f"y_true must be 1-D labels or a 2-D indicator matrix; got shape {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise InvalidOptionError("Unknown label type: continuous. y_true must hold class labels, not real values")
    if labels is not None:
        lab = _host(labels)
        classes = np.unique(lab)
        if classes.shape != lab.shape or not np.all(classes == lab):
            warnings.warn(
                f"Labels passed were {labels}. But this function assumes labels are ordered "
                f"lexicographically. Pass the ordered labels={classes.tolist()} and ensure that "
                "the columns of y_prob correspond to this ordering.",
                UserWarning, stacklevel=3,
            )
        missing = ~np.isin(y, classes)
        if missing.any():
            raise InvalidOptionError(
                f"y_true contains values {set(y[missing].tolist())} not belonging to the passed labels {labels}."
            )
        if classes.shape[0] < 2:
            raise InvalidOptionError(f"The labels array needs to contain at least two labels, got {classes}.")
    else:
        classes = np.unique(y)
        if classes.shape[0] < 2:
            raise InvalidOptionError(
                f"y_true contains only one label ({classes[0] if classes.size else None}). Please provide the "
                "list of all expected class labels explicitly through the labels argument."
            )
    return (y[:, None] == classes[None, :]).astype(np.float64), classes


def _sample_weight(sample_weight: ArrayLike | None, n: int) -> tuple[np.ndarray | None, list[int]]:
    """Host copy of the weights (for the checks), and the lengths to compare."""
    if sample_weight is None:
        return None, []
    if isinstance(sample_weight, numbers.Number):
        return np.full(n, float(sample_weight)), []  # type: ignore[arg-type]  # a real number here
    sw = _host(sample_weight)
    if sw.ndim != 1:
        raise ShapeMismatchError(f"Sample weights must be 1D array or scalar; got shape {sw.shape}")
    return sw, [sw.shape[0]]


def log_loss(y_true: ArrayLike, y_proba: ArrayLike | None = None, *, normalize: bool = True,
             sample_weight: ArrayLike | None = None, labels: ArrayLike | None = None,
             y_pred: ArrayLike | str = "deprecated") -> float:
    r"""Log loss (cross-entropy) of predicted probabilities, as ``sklearn.metrics.log_loss``.

    .. math:: L = \frac{\sum_i s_i \ell_i}{\sum_i s_i},\qquad
              \ell_i = -\sum_k t_{ik} \log \operatorname{clip}(p_{ik}, ε, 1-ε)

    with ``ε`` the machine epsilon of ``y_proba``'s dtype (float64, float32
    and float16 are kept; anything else becomes float64) and ``t`` the one-hot
    encoding of ``y_true`` over the sorted classes (or ``labels``).
    ``normalize=False`` returns the (weighted) sum.  Rows are not
    renormalised; a warning says so when they do not sum to 1 (relative
    tolerance ``sqrt(ε)``).

    Shapes: ``y_true`` ``(n,)`` labels of any sortable type, or an
    ``(n, K)`` indicator matrix; ``y_proba`` ``(n, K)`` with columns in the
    sorted class order, or ``(n,)`` / ``(n, 1)``: the probability of the
    larger class of a binary problem.  ``sample_weight`` ``(n,)``.  Any
    array-API library and device for ``y_proba`` (computed there; see the
    module docstring).  Returns a Python float.

    Errors (as scikit-learn, the library's classes): probabilities outside
    [0, 1], NaN or inf, inconsistent lengths, fewer than two classes, labels
    missing from ``labels``, a class count that differs from ``y_proba``'s
    columns, all-zero sample weights, and (signed) weights summing to zero under ``normalize=True``
    (:class:`WeightsSumToZeroError`, a ``ZeroDivisionError``).

    >>> from crossentropy.sklearn import log_loss
    >>> round(log_loss([0, 1, 1], [0.1, 0.8, 0.6]), 6)  # binary, 1-D: P(class 1)
    0.279777
    >>> round(log_loss([0, 1], [[1.0, 0.0], [1.0, 0.0]], normalize=False), 4)  # clipped at float64 eps
    36.0437
    """
    if not (isinstance(y_pred, str) and y_pred == "deprecated"):
        if y_proba is not None:
            raise InvalidOptionError("Cannot use both `y_pred` and `y_proba`. `y_pred` is deprecated, use `y_proba` instead.")
        warnings.warn("`y_pred` was renamed to `y_proba` in version 1.9 and will be removed in 1.11. "
                      "Use `y_proba` instead.", FutureWarning, stacklevel=2)
        y_proba = y_pred
    if y_proba is None:
        raise InvalidOptionError("y_proba is required")
    if not isinstance(normalize, (bool, np.bool_)):
        raise InvalidOptionError(f"normalize must be a bool; got {normalize!r}")
    ops, p = _proba_array(y_proba)
    xp = ops.xp
    n = _num_samples(p)

    sw, sw_len = _sample_weight(sample_weight, n)
    lengths = [n, _num_samples(_host(y_true))] + sw_len
    if sw is not None and sw.size and np.all(sw == 0):
        raise InvalidOptionError("Sample weights must contain at least one non-zero number.")
    if len(set(lengths)) > 1:
        raise ShapeMismatchError(f"Found input variables with inconsistent numbers of samples: {lengths}")

    t, classes = _encode(y_true, labels)
    if p.ndim == 1:
        p = xp.reshape(p, (n, 1))
    if p.shape[1] == 1:
        p = xp.concat([1 - p, p], axis=1)
    eps = ops.eps(p)
    row_sums = xp.sum(p, axis=1)
    # |Σ_k p_k − 1| ≤ 1e-8 + sqrt(ε)·1: np.isclose(·, 1, rtol=sqrt(ε), atol=1e-8), as scikit-learn.
    if not ops.all(xp.abs(row_sums - 1) <= 1e-8 + math.sqrt(eps)):
        warnings.warn("The y_prob values do not sum to one. Make sure to pass probabilities.", UserWarning,
                      stacklevel=2)
    if t.shape[1] != p.shape[1]:
        if labels is None:
            raise ShapeMismatchError(
                f"y_true and y_prob contain different number of classes: {t.shape[1]} vs {p.shape[1]}. Please "
                f"provide the true labels explicitly through the labels argument. Classes found in y_true: {classes}"
            )
        raise ShapeMismatchError(
            f"The number of classes in labels is different from that in y_prob. Classes found in labels: {classes}"
        )

    if normalize and sw is not None and float(np.sum(sw)) == 0.0:
        raise WeightsSumToZeroError("Weights sum to zero, can't be normalized")
    if ops.name == "numpy":
        per_sample = categorical_cross_entropy(p, t.astype(p.dtype), reduction="none", compat="sklearn")
        if normalize:
            return float(np.average(per_sample, weights=sw))
        return float(np.sum(per_sample) if sw is None else np.dot(per_sample, sw))
    # Another library: the one-hot targets and the weights go to y_proba's device, the sums stay there.
    target = ops.asarray(t, like=p)
    per_sample = categorical_cross_entropy(p, target, reduction="none", compat="sklearn")
    if sw is None:
        total = xp.sum(per_sample)
        return float(total / n if normalize else total)
    w = ops.asarray(sw, like=per_sample)
    total = xp.sum(per_sample * w)
    return float(total / xp.sum(w) if normalize else total)
