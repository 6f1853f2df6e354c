"""Validation and option normalisation, in one place.

Every check raises one of the classes in :mod:`crossentropy._errors` with a
message that names the argument, what was expected and what came.  NaN is
never an error: comparisons with NaN are false, so NaN slips through the
range checks and propagates into the loss (documented behaviour).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._backend import concrete
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


def _locate(xp, mask) -> tuple:
    """Index tuple of the first True entry of a boolean array (row-major)."""
    shape = tuple(int(d) for d in mask.shape)
    if not shape:
        return ()
    if xp.name == "numpy":
        flat = int(np.flatnonzero(mask)[0])
    else:
        flat = xp.first_true(mask)
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _value_at(xp, a, pos):
    v = a[pos] if pos else a
    # a 0-d array converts with float()/int() on every library and device
    return float(v) if xp.is_floating(a) else int(v)


def _fmt_pos(name: str, pos: tuple) -> str:
    return f"{name}[{', '.join(str(p) for p in pos)}]" if pos else name


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


def check_probabilities(xp, p, name: str, *, renormalised: bool = False) -> None:
    """Every entry in [0, 1] (NaN passes: it propagates).  Skipped for arrays
    without readable values (JAX tracers, lazy arrays): see ``_backend.concrete``.

    ``renormalised``: the loss divides each row by its sum first (Keras's
    categorical losses, ``compat='keras'``), so any non-negative scores are
    valid there and only a negative entry is an error."""
    if not concrete(p):
        return
    with xp.eager():
        bad = (p < 0) if renormalised else (p < 0) | (p > 1)
        if xp.any(bad):
            pos = _locate(xp, bad)
            if renormalised:
                raise ProbabilityRangeError(
                    f"{_fmt_pos(name, pos)} = {_value_at(xp, p, pos)!r} is negative; {name} must hold non-negative "
                    "scores (each row is renormalised to sum 1)")
            raise ProbabilityRangeError(
                f"{_fmt_pos(name, pos)} = {_value_at(xp, p, pos)!r} is outside [0, 1]; {name} must hold probabilities"
            )


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ShapeMismatchError(
            f"{name_b} must have the shape of {name_a} {tuple(a.shape)}; got {tuple(b.shape)}"
        )


def check_index_target(xp, target, num_classes: int, ignore_index, expected_shape, name="target"):
    """Class-index targets: integer dtype, right shape, every entry in range.

    The range check is two reductions (min and max) over the targets; only
    when they fail is the offending entry located for the message.
    """
    if tuple(target.shape) != tuple(expected_shape):
        raise ShapeMismatchError(
            f"{name} with class indices must have shape {tuple(expected_shape)} "
            f"(the input's shape without its class axis); got {tuple(target.shape)}"
        )
    if not concrete(target) or math.prod(target.shape) == 0:
        return
    with xp.eager():
        t = target
        if ignore_index is not None:
            t = xp.where(target == ignore_index, xp.zeros_like(target), target)
        if int(xp.min(t)) >= 0 and int(xp.max(t)) < num_classes:
            return
        bad = (t < 0) | (t >= num_classes)
        pos = _locate(xp, bad)
        val = int(_value_at(xp, target, pos))
    extra = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
    raise TargetOutOfRangeError(f"{_fmt_pos(name, pos)} = {val} is outside [0, {num_classes}) classes{extra}")


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
    """Bring an argument into ``xp``'s library: lists, scalars and (when the
    call's library is not NumPy) NumPy arrays become arrays of that library on
    ``like``'s device (floating values in ``like``'s dtype); arrays of the
    call's library pass through untouched."""
    if x is None:
        return None
    if hasattr(x, "dtype") and hasattr(x, "shape") and not (xp.name != "numpy" and isinstance(x, np.ndarray)):
        return x
    arr = np.asarray(x)
    if like is None:
        return arr if xp.name == "numpy" else xp.asarray(arr)
    if arr.dtype.kind == "f" and not isinstance(x, np.ndarray):
        return xp.asarray(arr, like=like)
    if xp.name == "numpy":
        return arr
    return xp.asarray(arr, dtype=xp.dtype_named(arr.dtype.name), like=like)


def check_softcap(softcap: Any) -> float | None:
    """Logit soft-capping ``s·tanh(x/s)``: ``None`` (off) or a positive finite number."""
    if softcap is None:
        return None
    try:
        v = float(softcap)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"softcap must be a positive finite number (or None); got {softcap!r}") from None
    if not (0.0 < v < math.inf):
        raise InvalidOptionError(f"softcap must be a positive finite number (or None); got {softcap!r}")
    return v


def check_ignore_index(ignore_index: Any) -> int | None:
    """``None`` or an integer class index (a bool is refused: it is almost always a mistake)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise InvalidOptionError(f"ignore_index must be an int or None; got {ignore_index!r}")
    return int(ignore_index)
