"""Validation and option normalisation, in one place.

Every check raises one of the classes in :mod:`crossentropy._errors` with a
message that names the argument, what was expected and what came.  NaN is
never an error: comparisons with NaN are false, so NaN slips through the
range checks and propagates into the loss (documented behaviour).
"""

from __future__ import annotations

import numpy as np

from ._errors import (
    InvalidDTypeError,
    InvalidOptionError,
    ProbabilityRangeError,
    ShapeMismatchError,
    TargetOutOfRangeError,
)

REDUCTIONS = ("none", "sum", "mean", "sum_over_batch_size")
PROB_COMPAT = (None, "torch", "keras", "tf_keras", "sklearn")


def check_floating(xp, x, name: str) -> None:
    if not hasattr(x, "dtype") or not xp.is_floating(x):
        got = getattr(x, "dtype", type(x).__name__)
        raise InvalidDTypeError(f"{name} must be a floating-point array; got dtype {got}")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise InvalidOptionError(
            f"reduction must be one of {', '.join(repr(r) for r in REDUCTIONS)}; got {reduction!r}"
        )
    return reduction


def check_compat(compat, allowed=PROB_COMPAT) -> None:
    if compat not in allowed:
        raise InvalidOptionError(
            f"compat must be one of {', '.join(repr(c) for c in allowed)}; got {compat!r}"
        )


def check_unit_interval_option(value, name: str) -> float:
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise InvalidOptionError(f"{name} must be in [0, 1]; got {value!r}")
    return v


def check_nonnegative_option(value, name: str) -> float:
    v = float(value)
    if not (v >= 0.0):
        raise InvalidOptionError(f"{name} must be >= 0; got {value!r}")
    return v


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise InvalidOptionError(f"{name} must be an int; got {axis!r}")
    if not -ndim <= axis < ndim:
        raise InvalidOptionError(f"{name}={axis} is out of range for an input with {ndim} dimensions")
    return int(axis) % ndim


def _first_bad(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _fmt_pos(name: str, pos: tuple) -> str:
    return f"{name}[{', '.join(str(p) for p in pos)}]"


def check_weights(xp, w, name: str):
    """Weights: a numeric array.  Any real value is allowed, negative ones too:
    a weighted sum is defined for every weight (PyTorch computes with negative
    class weights, and its own test samples draw them from [-9, 9]); NaN passes
    through to the result."""
    if w is None:
        return None
    if not hasattr(w, "dtype"):
        w = np.asarray(w, dtype=np.float64)
    if not (xp.is_floating(w) or xp.is_integer(w) or xp.is_bool(w)):
        raise InvalidDTypeError(f"{name} must be a numeric array; got dtype {w.dtype}")
    return w


def check_probabilities(xp, p, name: str) -> None:
    a = xp.to_numpy(p)
    bad = (a < 0) | (a > 1)
    if bad.any():
        pos = _first_bad(bad) if a.ndim else ()
        val = a[pos] if pos else a
        raise ProbabilityRangeError(
            f"{_fmt_pos(name, pos) if pos else name} = {val!r} is outside [0, 1]; "
            f"{name} must hold probabilities"
        )


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ShapeMismatchError(
            f"{name_b} must have the shape of {name_a} {tuple(a.shape)}; got {tuple(b.shape)}"
        )


def check_index_target(xp, target, num_classes: int, ignore_index, expected_shape, name="target"):
    """Class-index targets: integer dtype, right shape, every entry in range."""
    if tuple(target.shape) != tuple(expected_shape):
        raise ShapeMismatchError(
            f"{name} with class indices must have shape {tuple(expected_shape)} "
            f"(the input's shape without its class axis); got {tuple(target.shape)}"
        )
    a = xp.to_numpy(target)
    bad = (a < 0) | (a >= num_classes)
    if ignore_index is not None:
        bad &= a != ignore_index
    if bad.any():
        pos = _first_bad(bad) if a.ndim else ()
        val = int(a[pos]) if pos else int(a)
        where = _fmt_pos(name, pos) if pos else name
        extra = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
        raise TargetOutOfRangeError(f"{where} = {val} is outside [0, {num_classes}) classes{extra}")


def classify_target(xp, target, name="target") -> str:
    """'index' for integer targets, 'prob' for floating ones."""
    if not hasattr(target, "dtype"):
        raise InvalidDTypeError(f"{name} must be an array; got {type(target).__name__}")
    if xp.is_integer(target):
        return "index"
    if xp.is_floating(target):
        return "prob"
    if xp.is_bool(target):
        raise InvalidDTypeError(
            f"{name} has dtype bool; pass class indices as integers or probabilities as floats"
        )
    raise InvalidDTypeError(f"{name} must hold integer class indices or floating probabilities; got dtype {target.dtype}")


def as_array(xp, x, like, name):
    """Lists and scalars become arrays of ``like``'s library (and dtype if floating)."""
    if x is None:
        return None
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and like is not None:
        return xp.asarray(arr, like=like)
    if like is not None and xp.name == "torch":
        return xp.asarray(arr, dtype=None, like=None).to(like.device)
    return xp.asarray(arr)
