"""Array-library dispatch: any array-API library behind one small :class:`Ops` object.

The reference implementation is written once against :class:`Ops`, whose
methods use only the Python array API standard (through the library's own
namespace, or ``array_api_compat``'s wrapper where the library is not yet
compliant) plus a few extras the standard lacks (``stop_gradient``,
``one_hot``, a compensated sum).  So the same code runs on NumPy, PyTorch,
JAX, CuPy, Dask, ``array_api_strict`` and any other compliant library, on the
caller's device, and returns the caller's array type: nothing is converted to
NumPy behind the caller's back.  Autodiff flows through because only the
framework's own operations are called.

``namespace(*arrays)`` picks the library: the first argument that is an array
of a library other than NumPy decides; Python scalars, lists and NumPy arrays
map to NumPy.  Mixing two non-NumPy libraries is an error.  Nothing is
imported until an array of that library is seen.

A library without an array-API namespace (TensorFlow) is taught to
``namespace`` by an adapter: :func:`register_library` maps its top-level
module name to an :class:`Ops` subclass and a concreteness test.  The core
itself never imports such a library; ``crossentropy.keras`` registers
TensorFlow's tensors (with an :class:`Ops` written in ``keras.ops``) when it
is imported.

Values are read (``bool(...)``) only by validation, and only for
:func:`concrete` arrays: a JAX tracer inside ``jit``, a Dask array, a tensor
under ``torch.compile`` tracing or a ``vmap``-batched tensor has no values to
read, so the value checks are skipped there and the computation itself
(branch-free ``where`` code) goes on symbolically.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._errors import InvalidDTypeError, InvalidOptionError

__all__ = ["namespace", "Ops", "concrete", "log_of_base", "register_library"]


class Ops:
    """The operations the reference code uses, on one array-API namespace ``xp``."""

    def __init__(self, xp: Any, name: str) -> None:
        self.xp = xp
        self.name = name

    # -- inspection ----------------------------------------------------------------------
    def is_floating(self, x) -> bool:
        return bool(self.xp.isdtype(x.dtype, "real floating"))

    def is_integer(self, x) -> bool:
        return bool(self.xp.isdtype(x.dtype, "integral"))

    def is_bool(self, x) -> bool:
        return bool(self.xp.isdtype(x.dtype, "bool"))

    def eps(self, x) -> float:
        return float(self.xp.finfo(x.dtype).eps)

    def device(self, x):
        import array_api_compat

        return array_api_compat.device(x)

    def dtype_named(self, name: str):
        """The library's dtype for a NumPy dtype name (``'int64'``), or None if it has none."""
        return getattr(self.xp, name, None)

    # -- construction --------------------------------------------------------------------
    def asarray(self, x, dtype=None, like=None):
        if like is not None:
            return self.xp.asarray(x, dtype=like.dtype if dtype is None else dtype, device=self.device(like))
        return self.xp.asarray(x, dtype=dtype)

    def scalar(self, value, like):
        """A 0-d array of ``like``'s dtype and device."""
        return self.xp.asarray(value, dtype=like.dtype, device=self.device(like))

    def zeros_like(self, x):
        return self.xp.zeros_like(x)

    def ones_like(self, x):
        return self.xp.ones_like(x)

    def full_like(self, x, value):
        return self.xp.full_like(x, value)

    def astype(self, x, like):
        return x if x.dtype == like.dtype else self.xp.astype(x, like.dtype)

    def zeros(self, shape, like):
        return self.xp.zeros(shape, dtype=like.dtype, device=self.device(like))

    def arange_like(self, n, like):
        return self.xp.arange(n, device=self.device(like))

    # -- elementwise ---------------------------------------------------------------------
    def exp(self, x):
        return self.xp.exp(x)

    def log(self, x):
        return self.xp.log(x)

    def log1p(self, x):
        return self.xp.log1p(x)

    def expm1(self, x):
        return self.xp.expm1(x)

    def abs(self, x):
        return self.xp.abs(x)

    def tanh(self, x):
        return self.xp.tanh(x)

    def maximum(self, x, y):
        return self.xp.maximum(x, y if hasattr(y, "dtype") else self.scalar(y, x))

    def minimum(self, x, y):
        return self.xp.minimum(x, y if hasattr(y, "dtype") else self.scalar(y, x))

    def clip(self, x, lo, hi):
        return self.xp.clip(x, lo, hi)

    def where(self, cond, x, y):
        if not hasattr(x, "dtype"):
            x = self.scalar(x, y)
        elif not hasattr(y, "dtype"):
            y = self.scalar(y, x)
        return self.xp.where(cond, x, y)

    def isnan(self, x):
        return self.xp.isnan(x)

    def isinf(self, x):
        return self.xp.isinf(x)

    def isfinite(self, x):
        return self.xp.isfinite(x)

    def power(self, x, p):
        return self.xp.pow(x, p if hasattr(p, "dtype") else self.scalar(p, x))

    # -- reductions / shape --------------------------------------------------------------
    def sum(self, x, axis=None, keepdims=False):
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return self.xp.max(x, axis=axis, keepdims=keepdims)

    def min(self, x, axis=None, keepdims=False):
        return self.xp.min(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis, keepdims=False):
        return self.xp.argmax(x, axis=axis, keepdims=keepdims)

    def take_along_axis(self, x, idx, axis):
        return self.xp.take_along_axis(x, idx, axis=axis)

    def take(self, x, idx):
        """``x[idx]`` for a 1-D ``x`` and an integer ``idx`` of any shape."""
        flat = self.xp.reshape(idx, (-1,))
        return self.xp.reshape(self.xp.take(x, flat, axis=0), tuple(idx.shape))

    def expand_dims(self, x, axis):
        return self.xp.expand_dims(x, axis=axis)

    def squeeze(self, x, axis):
        return self.xp.squeeze(x, axis=axis)

    def reshape(self, x, shape):
        return self.xp.reshape(x, tuple(shape))

    def broadcast_to(self, x, shape):
        return self.xp.broadcast_to(x, tuple(shape))

    def moveaxis(self, x, src, dst):
        return self.xp.moveaxis(x, src, dst)

    def class_column(self, v, axis, ndim):
        """A length-C vector reshaped to broadcast along ``axis`` of an ``ndim``-d array."""
        shape = [1] * ndim
        shape[axis] = int(v.shape[0])
        return self.xp.reshape(v, tuple(shape))

    def one_hot(self, idx, num_classes, axis, like):
        """One-hot of integer ``idx`` with the class axis inserted at ``axis``, in ``like``'s dtype."""
        classes = self.class_column(self.arange_like(num_classes, idx), axis, idx.ndim + 1)
        return self.xp.astype(self.expand_dims(idx, axis) == classes, like.dtype)

    def is_class(self, k, num_classes, axis, ndim):
        """Boolean mask ``c == k`` along ``axis`` for a keepdims index array ``k``."""
        return self.class_column(self.arange_like(num_classes, k), axis, ndim) == k

    def concat(self, arrays, axis=0):
        return self.xp.concat(arrays, axis=axis)

    def first_true(self, mask) -> int:
        """Row-major position of the first True entry of ``mask`` (error messages only)."""
        return int(self.xp.argmax(self.xp.astype(self.xp.reshape(mask, (-1,)), self.xp.int8), axis=0))

    def any(self, x) -> bool:
        return bool(self.xp.any(x))

    def all(self, x) -> bool:
        return bool(self.xp.all(x))

    def stop_gradient(self, x):
        return x

    def eager(self):
        """A context in which operations on concrete arrays give concrete results (validation)."""
        import contextlib

        return contextlib.nullcontext()

    def to_numpy(self, x):
        """For error messages and host-side bookkeeping only (never for the computation)."""
        return np.asarray(x)

    # -- compensated summation -----------------------------------------------------------
    def accurate_sum(self, x):
        """Σ of all entries, within about one rounding of the exact sum.

        A cascade of error-free transformations (Knuth's TwoSum): the entries
        are added in pairs, ``s = a + b`` with the rounding error
        ``e = (a − (s − b')) + (b − b')``, ``b' = s − a``, carried in a second
        array that is summed the same way.  ``log2 N`` vectorised sweeps over
        halving arrays, O(N) work in all, a fixed order (deterministic), and
        only elementwise ops and slicing, so autodiff and ``jit`` go through.
        The error is about one ulp of the result plus O(N·ε²)·Σ|x|, against
        the O(log N · ε)·Σ|x| of plain pairwise summation.
        """
        # Written with this object's own methods, so that a subclass for a library
        # without an array-API namespace (KerasOps) gets it unchanged.
        hi = self.reshape(x, (-1,))
        n = int(hi.shape[0])
        if n <= 2:
            return self.sum(hi)
        lo = None
        while n > 1:
            if n % 2:
                hi = self.concat([hi, self.zeros((1,), like=hi)])
                if lo is not None:
                    lo = self.concat([lo, self.zeros((1,), like=lo)])
                n += 1
            a, b = hi[0::2], hi[1::2]
            s = a + b
            bv = s - a
            err = (a - (s - bv)) + (b - bv)
            lo = err if lo is None else lo[0::2] + lo[1::2] + err
            hi = s
            n //= 2
        # An infinite partial sum makes err NaN (inf − inf); the plain sum is right then.
        total = hi[0] + lo[0]
        return self.where(self.isfinite(hi[0]), total, hi[0])


class _NumpyOps(Ops):
    """NumPy: the same operations, a few spelled for speed (plain ndarray methods)."""

    def device(self, x):
        return "cpu"

    def asarray(self, x, dtype=None, like=None):
        return np.asarray(x, dtype=like.dtype if (dtype is None and like is not None) else dtype)

    def scalar(self, value, like):
        return like.dtype.type(value)

    def zeros(self, shape, like):
        return np.zeros(shape, dtype=like.dtype)

    def arange_like(self, n, like):
        return np.arange(n)

    def take(self, x, idx):
        return x[idx]

    def accurate_sum(self, x):
        a = np.asarray(x).reshape(-1)
        if a.size <= 2 or not np.issubdtype(a.dtype, np.floating):
            return a.sum()
        if a.dtype == np.float32:
            # Summed in float64 (24 + 29 guard bits): one rounding to float32 at the end.
            return np.float32(super().accurate_sum(a.astype(np.float64)))
        return a.dtype.type(super().accurate_sum(a))


class _JaxOps(Ops):
    def stop_gradient(self, x):
        import jax

        return jax.lax.stop_gradient(x)

    def eager(self):
        # Inside jit, even an operation on a concrete array (a closed-over constant) gives a
        # tracer; validation reads values, so it evaluates them at trace time instead.
        import jax

        return jax.ensure_compile_time_eval()


class _TorchOps(Ops):
    def stop_gradient(self, x):
        return x.detach()

    def device(self, x):
        return x.device

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def take(self, x, idx):
        return x[idx]

    def take_along_axis(self, x, idx, axis):
        # torch.take_along_dim takes int64 indices only; int32 class labels (Keras casts to them) are cast.
        return self.xp.take_along_axis(x, idx if idx.dtype == self.xp.int64 else self.xp.astype(idx, self.xp.int64),
                                       axis=axis)


_NUMPY: Ops = _NumpyOps(np if hasattr(np, "isdtype") else None, "numpy")  # type: ignore[arg-type]
if _NUMPY.xp is None:  # NumPy < 2: the compat wrapper supplies the array-API names
    import array_api_compat.numpy as _compat_np

    _NUMPY = _NumpyOps(_compat_np, "numpy")
_cache: dict[Any, Ops] = {}
# Libraries taught by an adapter (register_library): module name -> (make Ops, concreteness test).
_registered: dict[str, tuple[Any, Any]] = {}


def register_library(module: str, make, is_concrete) -> None:
    """Teach :func:`namespace` the arrays of a library that has no array-API namespace.

    ``module`` is the top-level module of the array type (``'tensorflow'``);
    ``make()`` returns the :class:`Ops` for it and ``is_concrete(x)`` says
    whether ``x``'s values can be read now (False for a graph tensor, so the
    value checks are skipped there, as for a JAX tracer).  Adapters call this
    when they are imported (``crossentropy.keras``); the core imports nothing
    of the library.
    """
    _registered[module] = (make, is_concrete)
    _cache.pop(module, None)


def _library(a) -> str | None:
    """Short name of the array library of ``a``; None for NumPy and plain Python values."""
    t = type(a)
    if t is np.ndarray or isinstance(a, (int, float, bool, complex, list, tuple, np.generic)):
        return None
    mod = t.__module__.split(".")[0]
    if mod == "torch":
        return "torch"
    if mod in ("jax", "jaxlib"):
        return "jax"
    if mod in _registered:
        return mod
    if hasattr(a, "__array_namespace__") or mod in ("cupy", "dask", "sparse", "ndonnx"):
        return mod
    return None


def namespace(*arrays) -> Ops:
    """The :class:`Ops` of the arrays' library (NumPy for NumPy arrays and plain Python values)."""
    found = None
    first = None
    for a in arrays:
        if a is None:
            continue
        lib = _library(a)
        if lib is None:
            continue
        if found is not None and found != lib:
            raise InvalidDTypeError(f"arrays from different libraries in one call: {found} and {lib}")
        found, first = lib, (a if first is None else first)
    if found is None:
        return _NUMPY
    ops = _cache.get(found)
    if ops is None:
        ops = _make(found, first)
        _cache[found] = ops
    return ops


def _make(lib: str, example) -> Ops:
    if lib == "torch":
        import array_api_compat.torch as xt

        return _TorchOps(xt, "torch")
    if lib == "jax":
        import jax.numpy as jnp

        return _JaxOps(jnp, "jax")
    if lib in _registered:
        return _registered[lib][0]()
    try:
        import array_api_compat

        xp = array_api_compat.array_namespace(example)
    except (ImportError, TypeError) as e:
        raise InvalidDTypeError(
            f"arrays of type {type(example).__module__}.{type(example).__name__} are not supported: "
            f"they do not follow the Python array API standard ({e})"
        ) from None
    return Ops(xp, lib)


def concrete(x) -> bool:
    """Whether ``x``'s values can be read now (see the module docstring)."""
    if x is None or type(x) is np.ndarray:
        return True
    lib = _library(x)
    if lib is None:
        return True
    if lib == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if lib == "torch":
        import torch

        if x.device.type == "meta" or torch.compiler.is_compiling():
            return False
        if type(x).__name__ == "FakeTensor":
            return False
        # vmap's batched tensors cannot be branched on, at any level of a
        # stack of torch.func transforms (e.g. vmap(grad(f))).
        functorch = torch._C._functorch
        while functorch.is_functorch_wrapped_tensor(x):
            if functorch.is_batchedtensor(x):
                return False
            x = functorch.get_unwrapped(x)
        return True
    if lib in _registered:
        return bool(_registered[lib][1](x))
    import array_api_compat

    return not array_api_compat.is_lazy_array(x)


def log_of_base(base) -> float | None:
    """``ln(base)``, or ``None`` for the natural logarithm (no rescaling)."""
    if base is None or base == "e":
        return None
    if isinstance(base, str):
        named = {"bits": 2.0, "bit": 2.0, "nats": None, "nat": None}
        if base not in named:
            raise InvalidOptionError(
                f"base must be a positive number other than 1, 'e' or 'bits'; got {base!r}"
            )
        b = named[base]
        return None if b is None else math.log(b)
    b = float(base)
    if not (b > 0.0) or b == 1.0 or math.isinf(b):
        raise InvalidOptionError(f"base must be a positive finite number other than 1; got {base!r}")
    if b == math.e:
        return None
    return math.log(b)
