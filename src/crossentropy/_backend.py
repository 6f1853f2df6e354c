"""A small array namespace layer: NumPy, PyTorch and JAX behind one interface.

The reference implementation is written once against the methods of
:class:`Namespace`.  NumPy and ``jax.numpy`` already follow the array API
standard closely, so :class:`Namespace` forwards to them; PyTorch differs in a
few names (``take_along_dim``, ``clamp``, scalars in ``maximum``), which
:class:`TorchNamespace` papers over.  No framework is imported here unless the
caller hands us one of its arrays: the module of the array's type decides.

Why not ``array_api_compat``?  We need fewer than thirty operations, and
keeping numpy as the only runtime dependency is a stated goal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._errors import InvalidDTypeError

__all__ = ["namespace", "Namespace", "TorchNamespace"]


class Namespace:
    """Operations for array libraries that follow NumPy's spelling."""

    name = "numpy"

    def __init__(self, mod: Any) -> None:
        self.m = mod

    # -- construction / inspection -------------------------------------------------
    def asarray(self, x, dtype=None, like=None):
        if dtype is None and like is not None:
            dtype = like.dtype
        return self.m.asarray(x, dtype=dtype)

    def is_floating(self, x) -> bool:
        return bool(np.issubdtype(np.dtype(x.dtype), np.floating))

    def is_integer(self, x) -> bool:
        return bool(np.issubdtype(np.dtype(x.dtype), np.integer))

    def is_bool(self, x) -> bool:
        return np.dtype(x.dtype) == np.bool_

    def eps(self, x) -> float:
        return float(np.finfo(np.dtype(x.dtype)).eps)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def zeros_like(self, x):
        return self.m.zeros_like(x)

    def ones_like(self, x):
        return self.m.ones_like(x)

    def full_like(self, x, value):
        return self.m.full_like(x, value)

    def astype(self, x, like):
        return x.astype(like.dtype) if x.dtype != like.dtype else x

    def zeros(self, shape, like):
        return self.m.zeros(shape, dtype=like.dtype)

    # -- elementwise ---------------------------------------------------------------
    def exp(self, x):
        return self.m.exp(x)

    def log(self, x):
        return self.m.log(x)

    def log1p(self, x):
        return self.m.log1p(x)

    def expm1(self, x):
        return self.m.expm1(x)

    def abs(self, x):
        return self.m.abs(x)

    def maximum(self, x, y):
        return self.m.maximum(x, y)

    def minimum(self, x, y):
        return self.m.minimum(x, y)

    def clip(self, x, lo, hi):
        return self.m.clip(x, lo, hi)

    def where(self, cond, x, y):
        return self.m.where(cond, x, y)

    def isnan(self, x):
        return self.m.isnan(x)

    def isinf(self, x):
        return self.m.isinf(x)

    def power(self, x, p):
        return x**p

    # -- reductions / shape --------------------------------------------------------
    def sum(self, x, axis=None, keepdims=False):
        return self.m.sum(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return self.m.max(x, axis=axis, keepdims=keepdims)

    def take_along_axis(self, x, idx, axis):
        return self.m.take_along_axis(x, idx, axis=axis)

    def expand_dims(self, x, axis):
        return self.m.expand_dims(x, axis)

    def squeeze(self, x, axis):
        return self.m.squeeze(x, axis=axis)

    def broadcast_to(self, x, shape):
        return self.m.broadcast_to(x, shape)

    def moveaxis(self, x, src, dst):
        return self.m.moveaxis(x, src, dst)

    def one_hot(self, idx, num_classes, axis, like):
        """One-hot of integer ``idx`` with the class axis inserted at ``axis``."""
        classes = self.m.arange(num_classes)
        e = self.expand_dims(idx, axis) == self._class_column(classes, axis, idx.ndim + 1)
        return self.astype(e, like)

    def _class_column(self, classes, axis, ndim):
        shape = [1] * ndim
        shape[axis] = classes.shape[0]
        return self.m.reshape(classes, tuple(shape))

    def any(self, x) -> bool:
        return bool(self.m.any(x))

    def all(self, x) -> bool:
        return bool(self.m.all(x))

    def stop_gradient(self, x):
        return x


class JaxNamespace(Namespace):
    name = "jax"

    def to_numpy(self, x):
        return np.asarray(x)

    def stop_gradient(self, x):
        import jax

        return jax.lax.stop_gradient(x)


class TorchNamespace(Namespace):
    """PyTorch spells a few things differently; everything else forwards."""

    name = "torch"

    def asarray(self, x, dtype=None, like=None):
        t = self.m
        if like is not None:
            return t.as_tensor(x, dtype=like.dtype if dtype is None else dtype, device=like.device)
        return t.as_tensor(x, dtype=dtype)

    def is_floating(self, x) -> bool:
        return bool(x.is_floating_point())

    def is_integer(self, x) -> bool:
        return (not x.is_floating_point()) and (not x.is_complex()) and x.dtype != self.m.bool

    def is_bool(self, x) -> bool:
        return x.dtype == self.m.bool

    def eps(self, x) -> float:
        return float(self.m.finfo(x.dtype).eps)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def astype(self, x, like):
        return x.to(like.dtype) if x.dtype != like.dtype else x

    def zeros(self, shape, like):
        return self.m.zeros(shape, dtype=like.dtype, device=like.device)

    def maximum(self, x, y):
        if not hasattr(y, "dtype"):
            return self.m.clamp(x, min=y)
        if not hasattr(x, "dtype"):
            return self.m.clamp(y, min=x)
        return self.m.maximum(x, y)

    def minimum(self, x, y):
        if not hasattr(y, "dtype"):
            return self.m.clamp(x, max=y)
        if not hasattr(x, "dtype"):
            return self.m.clamp(y, max=x)
        return self.m.minimum(x, y)

    def clip(self, x, lo, hi):
        return self.m.clamp(x, lo, hi)

    def where(self, cond, x, y):
        if not hasattr(x, "dtype") and not hasattr(y, "dtype"):
            raise InvalidDTypeError("internal: torch.where needs one tensor operand")
        return self.m.where(cond, x, y)

    def power(self, x, p):
        return self.m.pow(x, p)

    def sum(self, x, axis=None, keepdims=False):
        if axis is None:
            return self.m.sum(x)
        return self.m.sum(x, dim=axis, keepdim=keepdims)

    def max(self, x, axis=None, keepdims=False):
        if axis is None:
            return self.m.amax(x)
        return self.m.amax(x, dim=axis, keepdim=keepdims)

    def take_along_axis(self, x, idx, axis):
        return self.m.take_along_dim(x, idx, dim=axis)

    def expand_dims(self, x, axis):
        return self.m.unsqueeze(x, axis)

    def squeeze(self, x, axis):
        return self.m.squeeze(x, dim=axis)

    def broadcast_to(self, x, shape):
        return self.m.broadcast_to(x, tuple(shape))

    def one_hot(self, idx, num_classes, axis, like):
        classes = self.m.arange(num_classes, device=idx.device)
        e = self.expand_dims(idx, axis) == self._class_column(classes, axis, idx.ndim + 1)
        return e.to(like.dtype)

    def _class_column(self, classes, axis, ndim):
        shape = [1] * ndim
        shape[axis] = classes.shape[0]
        return classes.reshape(tuple(shape))

    def any(self, x) -> bool:
        return bool(self.m.any(x))

    def all(self, x) -> bool:
        return bool(self.m.all(x))

    def stop_gradient(self, x):
        return x.detach()


_NUMPY = Namespace(np)
_cache: dict[str, Namespace] = {}


def namespace(*arrays) -> Namespace:
    """The namespace of the first non-NumPy array among ``arrays``.

    Python scalars, lists and NumPy arrays all map to NumPy.  Mixing torch and
    JAX arrays in one call is an error.
    """
    found = None
    for a in arrays:
        if a is None:
            continue
        mod = type(a).__module__.split(".")[0]
        if mod in ("numpy", "builtins"):
            continue
        if mod == "torch":
            key = "torch"
        elif mod in ("jax", "jaxlib"):
            key = "jax"
        else:
            key = None
        if key is None:
            continue
        if found is not None and found != key:
            raise InvalidDTypeError(
                f"arrays from different libraries in one call: {found} and {key}"
            )
        found = key
    if found is None:
        return _NUMPY
    ns = _cache.get(found)
    if ns is None:
        if found == "torch":
            import torch

            ns = TorchNamespace(torch)
        else:
            import jax.numpy as jnp

            ns = JaxNamespace(jnp)
        _cache[found] = ns
    return ns


def log_of_base(base) -> float | None:
    """``ln(base)``, or ``None`` for the natural logarithm (no rescaling)."""
    if base is None or base == "e":
        return None
    if isinstance(base, str):
        named = {"bits": 2.0, "bit": 2.0, "nats": None, "nat": None}
        if base not in named:
            from ._errors import InvalidOptionError

            raise InvalidOptionError(
                f"base must be a positive number other than 1, 'e' or 'bits'; got {base!r}"
            )
        b = named[base]
        return None if b is None else math.log(b)
    b = float(base)
    if not (b > 0.0) or b == 1.0 or math.isinf(b):
        from ._errors import InvalidOptionError

        raise InvalidOptionError(f"base must be a positive finite number other than 1; got {base!r}")
    if b == math.e:
        return None
    return math.log(b)
