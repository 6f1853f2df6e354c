"""``log_loss`` with the signature and behaviour of ``sklearn.metrics.log_loss`` (1.9), without scikit-learn.

>>> from crossentropy.sklearn import log_loss
>>> round(log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 6)
0.216162

Nothing here imports scikit-learn; only NumPy and the library's
:func:`crossentropy.categorical_cross_entropy` (``compat='sklearn'``: clip at
the dtype's machine epsilon, no renormalisation) are used.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ._errors import CrossEntropyError, InvalidOptionError, ProbabilityRangeError, ShapeMismatchError
from .categorical import categorical_cross_entropy

__all__ = ["log_loss", "WeightsSumToZeroError"]


class WeightsSumToZeroError(CrossEntropyError, ZeroDivisionError):
    """``normalize=True`` with sample weights that sum to zero (scikit-learn raises ``ZeroDivisionError``)."""


def _num_samples(x) -> int:
    return int(np.shape(x)[0]) if np.ndim(x) else 1


def _proba_array(y_proba):
    a = np.asarray(y_proba)
    if a.dtype.kind not in "fiub":
        raise InvalidOptionError(f"y_proba must be numeric; got dtype {a.dtype}")
    # scikit-learn keeps float64 and float32 and converts everything else to float64.
    if a.dtype not in (np.float64, np.float32):
        a = a.astype(np.float64)
    if a.ndim > 2:
        raise ShapeMismatchError(f"Found array with dim {a.ndim}. None expected <= 2.")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ShapeMismatchError(
            f"Found array with 0 sample(s) (shape={a.shape}) while a minimum of 1 is required."
        )
    if np.isnan(a).any():
        raise InvalidOptionError("Input y_proba contains NaN.")
    if np.isinf(a).any():
        raise InvalidOptionError(f"Input y_proba contains infinity or a value too large for dtype('{a.dtype}').")
    return a


def _encode(y_true, labels):
    """One-hot targets over the sorted classes, and the classes."""
    y = np.asarray(y_true)
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
        lab = np.asarray(labels)
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


def log_loss(y_true, y_proba=None, *, normalize=True, sample_weight=None, labels=None, y_pred="deprecated"):
    r"""Log loss (cross-entropy) of predicted probabilities, as ``sklearn.metrics.log_loss``.

    .. math:: L = \frac{\sum_i s_i \ell_i}{\sum_i s_i},\qquad
              \ell_i = -\sum_k t_{ik} \log \operatorname{clip}(p_{ik}, ε, 1-ε)

    with ``ε`` the machine epsilon of ``y_proba``'s dtype (float32 stays
    float32; anything else becomes float64) and ``t`` the one-hot encoding of
    ``y_true`` over the sorted classes (or ``labels``).  ``normalize=False``
    returns the (weighted) sum.  Rows are not renormalised; a warning says so
    when they do not sum to 1 (relative tolerance ``sqrt(ε)``).

    Shapes: ``y_true`` ``(n,)`` labels of any sortable type, or an
    ``(n, K)`` indicator matrix; ``y_proba`` ``(n, K)`` with columns in the
    sorted class order, or ``(n,)`` / ``(n, 1)``: the probability of the
    larger class of a binary problem.  ``sample_weight`` ``(n,)``.  Returns a
    Python float.

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
    p = _proba_array(y_proba)
    if p.max() > 1:
        raise ProbabilityRangeError(f"y_prob contains values greater than 1: {p.max()}")
    if p.min() < 0:
        raise ProbabilityRangeError(f"y_prob contains values lower than 0: {p.min()}")

    lengths = [_num_samples(p), _num_samples(y_true)]
    sw = None
    if sample_weight is not None:
        if isinstance(sample_weight, numbers.Number):
            sw = np.full(lengths[0], float(sample_weight))
        else:
            sw = np.asarray(sample_weight)
            if sw.ndim != 1:
                raise ShapeMismatchError(f"Sample weights must be 1D array or scalar; got shape {sw.shape}")
            lengths.append(sw.shape[0])
        if sw.size and np.all(sw == 0):
            raise InvalidOptionError("Sample weights must contain at least one non-zero number.")
    if len(set(lengths)) > 1:
        raise ShapeMismatchError(f"Found input variables with inconsistent numbers of samples: {lengths}")

    t, classes = _encode(y_true, labels)
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    eps = np.finfo(p.dtype).eps
    if not np.all(np.isclose(p.sum(axis=1), 1.0, rtol=math.sqrt(eps), atol=1e-8)):
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

    per_sample = categorical_cross_entropy(p, t.astype(p.dtype), reduction="none", compat="sklearn")
    if normalize:
        if sw is not None and float(np.sum(sw)) == 0.0:
            raise WeightsSumToZeroError("Weights sum to zero, can't be normalized")
        return float(np.average(per_sample, weights=sw))
    return float(np.sum(per_sample) if sw is None else np.dot(per_sample, sw))
