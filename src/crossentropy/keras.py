"""Keras 3 drop-ins: the cross-entropy losses as ``keras.losses.Loss`` subclasses.

``BinaryCrossentropy``, ``CategoricalCrossentropy``,
``SparseCategoricalCrossentropy``, ``BinaryFocalCrossentropy``,
``CategoricalFocalCrossentropy`` and ``CategoricalGeneralizedCrossEntropy``
take Keras's constructor arguments with Keras's defaults, are called as
``loss(y_true, y_pred, sample_weight=None)``, and reduce exactly as Keras
does (the reduction, ``sample_weight`` broadcasting and masking are Keras's
own ``Loss.__call__``, inherited).  They serialise (``get_config`` /
``from_config``, registered under the package name ``crossentropy``), so a
compiled model saved to ``.keras`` loads back with its loss.

How it computes
---------------
A thin layer over the library: each ``call()`` adjusts shapes as Keras does and
hands ``y_pred``/``y_true`` to the library's own function
(:func:`~crossentropy.binary_cross_entropy`, ``..._with_logits``,
:func:`~crossentropy.cross_entropy`, :func:`~crossentropy.categorical_cross_entropy`,
the focal and generalised losses) with ``reduction='none'`` and, for
probabilities, ``compat='keras'`` (clip to ``[ε, 1-ε]``, ``ε =
keras.config.epsilon()``; renormalise rows for the categorical losses); Keras's
``Loss.__call__`` then weights, masks and reduces.  So a fix in the library
fixes this module, and from logits the losses are exact where Keras's round
(a confident prediction's loss and gradient, see docs/exactness.md).

On the JAX and PyTorch backends the tensors are JAX arrays and torch tensors,
which the library computes on directly (the backend differentiates its
formulas).  TensorFlow's tensors have no array-API namespace: importing this
module on that backend registers :class:`KerasOps` (the library's operations
in ``keras.ops``) for them, with the value checks skipped for graph tensors
(inside ``tf.function``/``fit``), and the gradient is the library's analytic
one through ``keras.ops.custom_gradient`` (first and higher order, ``y_true``
included).  What is still written here: Keras's shape rules, its
backend-specific choices (below) and its label-smoothing class count for an
``axis`` other than the last.

Shapes are checked as Keras checks them (after its rank adjustment: equal
shapes for the binary losses and ``CategoricalCrossentropy``; labels of
``y_pred``'s shape without the class axis for ``SparseCategoricalCrossentropy``;
broadcasting for the focal/generalised categorical losses), raising
:class:`~crossentropy.ShapeMismatchError` (a ``ValueError``) where Keras raises.

Keras's backend-specific behaviour is reproduced where it changes numbers:

* TensorFlow backend: a ``y_pred`` produced by a Keras ``softmax``/``sigmoid``
  (it carries ``_keras_logits``, or is a ``Softmax``/``Sigmoid`` graph op) is
  scored from its logits, unclipped, as Keras does;
  ``SparseCategoricalCrossentropy`` on probabilities clips, then renormalises.
* JAX and PyTorch backends: probabilities are renormalised, then clipped.

>>> import numpy as np
>>> from crossentropy.keras import BinaryCrossentropy
>>> y = np.array([0, 1, 0, 0, 0, 0], dtype="float32")
>>> p = np.array([.5, .7, .2, .3, .5, .6], dtype="float32")
>>> print(f"{float(BinaryCrossentropy()(y, p)):.6f}")
0.539846

Importing this module imports ``keras`` (and so its backend); importing
:mod:`crossentropy` alone does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

import keras
from keras import ops

import crossentropy as _core  # the package's public loss functions, which this module wraps

from . import _backend
from ._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from ._typing import Array, ArrayLike
from .binary import keras_epsilon_set

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalGeneralizedCrossEntropy",
]

_PACKAGE = "crossentropy"


# ---------------------------------------------------------------------------------------------
# the core's operations in keras.ops (TensorFlow tensors have no array-API namespace)
# ---------------------------------------------------------------------------------------------

class _NoNamespace:
    """``Ops.xp`` for :class:`KerasOps`: every operation the core uses is a method of KerasOps, so
    reaching for an array-API function here means the loss is not available on these tensors."""

    def __getattr__(self, name: str) -> NoReturn:
        raise InvalidDTypeError(
            f"this operation needs the array-API function {name!r}, which TensorFlow tensors lack; "
            "it is not available for them (pass NumPy, JAX or PyTorch arrays)")


class KerasOps(_backend.Ops):
    """:class:`crossentropy._backend.Ops` written in ``keras.ops``: the core's reference code on the
    tensors of Keras's TensorFlow backend (eager and graph tensors alike), with autodiff by the
    backend.  Registered for ``tensorflow`` tensors when this module is imported on that backend
    (the JAX and PyTorch backends' tensors already have the core's own namespaces)."""

    def __init__(self) -> None:
        super().__init__(_NoNamespace(), "tensorflow")

    # -- inspection ----------------------------------------------------------------------
    def is_floating(self, x: Array) -> bool:
        return keras.backend.is_float_dtype(x.dtype)

    def is_integer(self, x: Array) -> bool:
        return keras.backend.is_int_dtype(x.dtype)

    def is_bool(self, x: Array) -> bool:
        return keras.backend.standardize_dtype(x.dtype) == "bool"

    def eps(self, x: Array) -> float:
        import ml_dtypes  # NumPy's finfo lacks bfloat16; ml_dtypes (a TensorFlow dependency) has it

        return float(ml_dtypes.finfo(keras.backend.standardize_dtype(x.dtype)).eps)

    def device(self, x: Array) -> None:
        return None

    def dtype_named(self, name: str) -> str:
        return name  # keras.ops takes dtype names

    # -- construction --------------------------------------------------------------------
    def asarray(self, x: ArrayLike, dtype: Any = None, like: Array | None = None) -> Array:
        return ops.convert_to_tensor(x, dtype=like.dtype if (dtype is None and like is not None) else dtype)

    def scalar(self, value: float, like: Array) -> Array:
        return ops.convert_to_tensor(value, dtype=like.dtype)

    def zeros_like(self, x: Array) -> Array:
        return ops.zeros_like(x)

    def ones_like(self, x: Array) -> Array:
        return ops.ones_like(x)

    def full_like(self, x: Array, value: float) -> Array:
        return ops.full_like(x, value)

    def astype(self, x: Array, like: Array) -> Array:
        return x if x.dtype == like.dtype else ops.cast(x, like.dtype)

    def zeros(self, shape: Sequence[int], like: Array) -> Array:
        return ops.zeros(shape, dtype=like.dtype)

    def arange_like(self, n: int, like: Array) -> Array:
        # in ``like``'s dtype: TensorFlow compares int32 with int64 only after a cast
        return ops.arange(n, dtype=like.dtype)

    # -- elementwise ---------------------------------------------------------------------
    def exp(self, x: Array) -> Array:
        return ops.exp(x)

    def log(self, x: Array) -> Array:
        return ops.log(x)

    def log1p(self, x: Array) -> Array:
        return ops.log1p(x)

    def expm1(self, x: Array) -> Array:
        return ops.expm1(x)

    def abs(self, x: Array) -> Array:
        return ops.abs(x)

    def tanh(self, x: Array) -> Array:
        return ops.tanh(x)

    def maximum(self, x: Array, y: ArrayLike) -> Array:
        return ops.maximum(x, y if hasattr(y, "dtype") else self.scalar(y, x))

    def minimum(self, x: Array, y: ArrayLike) -> Array:
        return ops.minimum(x, y if hasattr(y, "dtype") else self.scalar(y, x))

    def clip(self, x: Array, lo: ArrayLike, hi: ArrayLike) -> Array:
        return ops.clip(x, lo, hi)

    def where(self, cond: Array, x: ArrayLike, y: ArrayLike) -> Array:
        if not hasattr(x, "dtype"):
            x = self.scalar(x, y)
        elif not hasattr(y, "dtype"):
            y = self.scalar(y, x)
        return ops.where(cond, x, y)

    def isnan(self, x: Array) -> Array:
        return ops.isnan(x)

    def isinf(self, x: Array) -> Array:
        return ops.isinf(x)

    def isfinite(self, x: Array) -> Array:
        return ops.isfinite(x)

    def power(self, x: Array, p: ArrayLike) -> Array:
        return ops.power(x, p if hasattr(p, "dtype") else self.scalar(p, x))

    # -- reductions / shape --------------------------------------------------------------
    def sum(self, x: Array, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Array:
        return ops.sum(x, axis=axis, keepdims=keepdims)

    def max(self, x: Array, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Array:
        return ops.max(x, axis=axis, keepdims=keepdims)

    def min(self, x: Array, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Array:
        return ops.min(x, axis=axis, keepdims=keepdims)

    def argmax(self, x: Array, axis: int, keepdims: bool = False) -> Array:
        return ops.argmax(x, axis=axis, keepdims=keepdims)

    def take_along_axis(self, x: Array, idx: Array, axis: int) -> Array:
        return ops.take_along_axis(x, idx, axis=axis)

    def take(self, x: Array, idx: Array) -> Array:
        return ops.take(x, idx, axis=0)

    def expand_dims(self, x: Array, axis: int) -> Array:
        return ops.expand_dims(x, axis)

    def squeeze(self, x: Array, axis: int) -> Array:
        return ops.squeeze(x, axis=axis)

    def reshape(self, x: Array, shape: Sequence[int]) -> Array:
        return ops.reshape(x, tuple(shape))

    def broadcast_to(self, x: Array, shape: Sequence[int]) -> Array:
        return ops.broadcast_to(x, tuple(shape))

    def moveaxis(self, x: Array, src: int | Sequence[int], dst: int | Sequence[int]) -> Array:
        return ops.moveaxis(x, src, dst)

    def concat(self, arrays: Sequence[Array], axis: int = 0) -> Array:
        return ops.concatenate(arrays, axis=axis)

    def class_column(self, v: Array, axis: int, ndim: int) -> Array:
        shape = [1] * ndim
        shape[axis] = int(v.shape[0])
        return ops.reshape(v, tuple(shape))

    def one_hot(self, idx: Array, num_classes: int, axis: int, like: Array) -> Array:
        return ops.one_hot(idx, num_classes, axis=axis, dtype=keras.backend.standardize_dtype(like.dtype))

    def is_class(self, k: Array, num_classes: int, axis: int, ndim: int) -> Array:
        return ops.equal(self.class_column(self.arange_like(num_classes, k), axis, ndim), k)

    def first_true(self, mask: Array) -> int:
        return int(ops.argmax(ops.cast(ops.reshape(mask, (-1,)), "int32"), axis=0))

    def any(self, x: Array) -> bool:
        return bool(ops.any(x))

    def all(self, x: Array) -> bool:
        return bool(ops.all(x))

    def stop_gradient(self, x: Array) -> Array:
        return ops.stop_gradient(x)

    def to_numpy(self, x: Array) -> np.ndarray:
        return ops.convert_to_numpy(x)

    def accurate_sum(self, x: Array) -> Array:
        # The compensated cascade needs the element count while tracing; a graph tensor
        # whose size is known only at run time gets the backend's plain sum.
        if any(d is None for d in x.shape):
            return ops.sum(x)
        return super().accurate_sum(x)


def _tf_concrete(x: Array) -> bool:
    import tensorflow as tf

    # A graph tensor (inside tf.function / model.fit) has no values to check.
    return not tf.is_symbolic_tensor(x)


if keras.backend.backend() == "tensorflow":
    _backend.register_library("tensorflow", KerasOps, _tf_concrete)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _eps() -> float:
    return keras.config.epsilon()


def _per_sample(fn: Callable[..., Array], pred: Array, target: Array, **options: Any) -> Array:
    """The core's per-element/per-sample loss ``fn(pred, target, reduction='none', ...)``, its
    ``compat='keras'`` clip at Keras's configured epsilon; Keras's ``Loss.__call__`` then weights,
    masks and reduces it.

    On TensorFlow the gradient is the core's analytic one (:func:`crossentropy.value_and_grad`,
    w.r.t. ``pred`` and a floating ``target``), through ``keras.ops.custom_gradient``: exact where
    the core's is (a confident prediction's ``1 − p``), and one pass instead of the backend's
    autodiff through every operation of the exact formulas (2–3× slower).  The backward recomputes
    from ``pred`` with recorded operations, so an outer tape differentiates it again (gradient
    penalties, Hessians).  JAX and PyTorch arrays go to the core directly; their backends
    differentiate its formulas.
    """
    eps = _eps()
    if not _is_tf():
        with keras_epsilon_set(eps):
            return fn(pred, target, reduction="none", **options)
    wrt = (0, 1) if keras.backend.is_float_dtype(target.dtype) else (0,)

    @ops.custom_gradient
    def loss(z: Array, t: Array) -> tuple[Array, Callable[..., tuple[Array | None, ...]]]:
        with keras_epsilon_set(eps):
            value, g = _core.value_and_grad(fn, z, t, wrt=wrt, reduction="none", **options)

        def grad(*args: Array, upstream: Array | None = None) -> tuple[Array | None, ...]:
            if upstream is None:
                (upstream,) = args
            # per-sample gradients times the upstream per-sample cotangent (the class axis, where the
            # loss has one, is broadcast); g was computed from z by recorded operations, so an
            # outer tape differentiates this product again (second order).
            return tuple(_times_upstream(gi, upstream, options.get("axis", -1)) for gi in g) + ((None,) if len(wrt) == 1 else ())

        return value, grad
    return loss(pred, target)


def _times_upstream(g: Array, upstream: Array, axis: int) -> Array:
    if len(upstream.shape) < len(g.shape):  # the per-sample loss dropped the class axis
        upstream = ops.expand_dims(upstream, axis)
    return g * upstream


def _is_tf() -> bool:
    return keras.backend.backend() == "tensorflow"


def _check_axis(axis: object) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise InvalidOptionError(f"axis must be an int; got {axis!r} of type {type(axis).__name__}")
    return axis


def _check_smoothing(label_smoothing: float) -> float:
    v = float(label_smoothing)
    if not 0.0 <= v <= 1.0:
        raise InvalidOptionError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}")
    return label_smoothing


def _tensors(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    # Loss.__call__ maps convert_to_tensor over nested lists; stack them back.  A variable (Keras's
    # or TensorFlow's) stays a variable under keras.ops.convert_to_tensor, and the core wants the
    # backend's arrays (a tf.Variable has no .ndim; a keras.Variable no array namespace): read it.
    return _value(ops.convert_to_tensor(y_true)), _value(ops.convert_to_tensor(y_pred))


def _value(x: Array) -> Array:
    if isinstance(x, keras.Variable):
        x = x.value  # the backend's own variable or array (a tf.Variable, a jax.Array, a torch Parameter)
    if _is_tf():
        import tensorflow as tf

        if isinstance(x, tf.Variable):
            return tf.convert_to_tensor(x)  # a read: the tape follows it to the variable
    return x


def _same_rank(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Keras's rule: ranks that differ by one with a trailing 1 are made equal."""
    y_true, y_pred = _tensors(y_true, y_pred)
    rt, rp = len(y_true.shape), len(y_pred.shape)
    if rt == rp + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1) if rp != 1 else y_true
        if rp == 1:
            y_pred = ops.expand_dims(y_pred, -1)
    elif rp == rt + 1 and y_pred.shape[-1] == 1:
        if rt == 1:
            y_true = ops.expand_dims(y_true, -1)
        else:
            y_pred = ops.squeeze(y_pred, axis=-1)
    return y_true, y_pred


def _dims(x: Array) -> tuple[int | None, ...]:
    # Static shape; ``None`` for a dimension unknown until run time (symbolic tensors in ``fit``).
    return tuple(None if d is None else int(d) for d in x.shape)


def _mismatch(a: Sequence[int | None], b: Sequence[int | None]) -> bool:
    return len(a) != len(b) or any(p is not None and q is not None and p != q for p, q in zip(a, b))


def _require_same_shape(loss: str, y_true: Array, y_pred: Array) -> None:
    """Keras's rule for the binary and categorical losses: after the rank adjustment, equal shapes."""
    t, p = _dims(y_true), _dims(y_pred)
    if _mismatch(t, p):
        raise ShapeMismatchError(
            f"{loss}: y_true and y_pred must have the same shape (a trailing dimension of 1 is squeezed or "
            f"added first, as Keras does); got y_true.shape={t}, y_pred.shape={p}")
    if loss.startswith("Categorical") and not p:
        raise ShapeMismatchError(f"{loss}: y_true and y_pred must be at least rank 1; got shape {p}")


def _require_broadcastable(loss: str, y_true_shape: tuple[int | None, ...],
                           y_pred_shape: tuple[int | None, ...]) -> None:
    """The focal/generalised categorical losses broadcast y_true against y_pred, as Keras does; a pair that
    does not broadcast gets our error instead of the backend's."""
    for p, q in zip(reversed(y_true_shape), reversed(y_pred_shape)):
        if p is not None and q is not None and p != q and 1 not in (p, q):
            raise ShapeMismatchError(
                f"{loss}: y_true (its one-hot encoding, for integer labels) of shape {y_true_shape} does not "
                f"broadcast against y_pred of shape {y_pred_shape}")


def _broadcast_pair(a: Array, b: Array, a_tail: tuple[int | None, ...] = ()) -> tuple[Array, Array]:
    """``a`` and ``b`` broadcast against each other (Keras broadcasts y_true in the focal/generalised
    losses; the core wants equal shapes).  ``a_tail`` is appended to ``a``'s shape for the comparison
    (the class axis of integer labels).  Shapes unknown until run time are left as they are."""
    sa, sb = _dims(a) + tuple(a_tail), _dims(b)
    if sa == sb or None in sa or None in sb:
        return a, b
    # every dimension is known from here on (checked just above), which mypy cannot infer
    ka, kb = cast("tuple[int, ...]", sa), cast("tuple[int, ...]", sb)
    n = max(len(ka), len(kb))
    pa, pb = (1,) * (n - len(ka)) + ka, (1,) * (n - len(kb)) + kb
    full = tuple(max(p, q) for p, q in zip(pa, pb))
    if full[len(full) - len(sb):] != sb or len(full) != len(sb):
        b = ops.broadcast_to(b, full)
    target = full[:len(full) - len(a_tail)]
    if _dims(a) != target:
        a = ops.broadcast_to(a, target)
    return a, b


def _logits_of(y_pred: Array, op_type: str) -> Array | None:
    """The logits behind a Keras softmax/sigmoid output (TensorFlow backend only), else None."""
    if not _is_tf():
        return None
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        return logits
    import tensorflow as tf

    if (hasattr(y_pred, "op") and not isinstance(y_pred, (tf.__internal__.EagerTensor, tf.Variable))
            and y_pred.op.type == op_type and len(y_pred.op.inputs) == 1):
        return y_pred.op.inputs[0]
    return None


def _class_axis(y_pred: Array, axis: int, loss: str) -> int:
    nd = len(y_pred.shape)
    if nd < 1:
        raise ShapeMismatchError(f"{loss}: y_pred must be at least rank 1; got shape {_dims(y_pred)}")
    if not -nd <= axis < nd:
        raise InvalidOptionError(f"axis={axis} is out of range for y_pred of rank {nd}")
    return axis % nd


def _smoothing_for_core(y: Array, label_smoothing: float, axis: int, ndim: int) -> tuple[Array, float]:
    """``(target, label_smoothing)`` for the core.

    The core smooths over the class axis (``y(1-s) + s/C``, C = classes on ``axis``); Keras counts
    the classes on the *last* axis whatever ``axis`` is.  The two agree when ``axis`` is the last
    one; otherwise Keras's own count is applied here, so its numbers are kept (a restatement of
    that one line, on purpose)."""
    if not label_smoothing or axis == ndim - 1:
        return y, label_smoothing
    c = ops.cast(ops.shape(y)[-1], y.dtype)
    return y * (1.0 - label_smoothing) + label_smoothing / c, 0.0


class _Base(keras.losses.Loss):
    _config_keys: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({k: getattr(self, k) for k in self._config_keys})
        return config


# ---------------------------------------------------------------------------------------------
# binary
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryCrossentropy(_Base):
    r"""Binary cross-entropy, as ``keras.losses.BinaryCrossentropy``.

    .. math:: \ell = \operatorname{mean}_{axis}\; -\big[y \log \hat p + (1-y)\log(1-\hat p)\big],
              \quad \hat p = \operatorname{clip}(p, ε, 1-ε),\quad y ← y(1-s) + s/2

    From logits (``from_logits=True``) nothing is clipped:
    :math:`-[y \log σ(x) + (1-y) \log σ(-x)]` from the overflow-free log-sigmoid.
    Computed by :func:`crossentropy.binary_cross_entropy` (``compat='keras'``) and
    :func:`crossentropy.binary_cross_entropy_with_logits`.

    Shapes: ``y_true`` and ``y_pred`` ``(batch, ..., d)``; the per-sample loss
    drops ``axis``; ``reduction`` then applies Keras's rules.

    The tutorial's Keras example (legacy tf.keras printed 0.53984624, Keras 3
    prints 0.53984642; this matches Keras 3):

    >>> from crossentropy.keras import BinaryCrossentropy
    >>> print(f"{float(BinaryCrossentropy()([0, 1, 0, 0, 0, 0], [.5, .7, .2, .3, .5, .6])):.8f}")
    0.53984642
    """

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str | None = "binary_crossentropy",
                 dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = _check_axis(axis)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_same_shape("BinaryCrossentropy", y_true, y_pred)
        y = ops.cast(y_true, y_pred.dtype)
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Sigmoid")
        if logits is not None:
            bce = _per_sample(_core.binary_cross_entropy_with_logits, logits, y,
                              label_smoothing=self.label_smoothing)
        else:
            bce = _per_sample(_core.binary_cross_entropy, y_pred, y, label_smoothing=self.label_smoothing,
                              compat="keras")
        return ops.mean(bce, axis=self.axis)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryFocalCrossentropy(_Base):
    r"""Binary focal cross-entropy, as ``keras.losses.BinaryFocalCrossentropy``.

    .. math:: \ell = \operatorname{mean}_{axis}\; a_t\,(1 - p_t)^γ\,\mathrm{BCE}(y, p),
              \quad p_t = yp + (1-y)(1-p),\quad a_t = yα + (1-y)(1-α)

    :math:`a_t` applies only with ``apply_class_balancing=True``.  With
    ``from_logits=True``, :math:`p = σ(x)`; the BCE term is clipped as Keras
    does (exact from the logits on the TensorFlow backend, as there).
    Computed by :func:`crossentropy.binary_focal_cross_entropy` and
    :func:`crossentropy.binary_focal_cross_entropy_with_logits` (``compat='keras'``).

    Shapes: as :class:`BinaryCrossentropy`.

    >>> import numpy as np
    >>> from crossentropy.keras import BinaryFocalCrossentropy
    >>> loss = BinaryFocalCrossentropy(gamma=2.0, reduction="none")
    >>> print(np.asarray(loss([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])))
    [0.32986468 0.20579839]
    """

    _config_keys = ("from_logits", "label_smoothing", "axis", "apply_class_balancing", "alpha", "gamma")

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str | None = "binary_focal_crossentropy",
                 dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if float(gamma) < 0:
            raise InvalidOptionError(f"gamma must be >= 0; got {gamma!r}")
        self.apply_class_balancing = apply_class_balancing
        self.alpha = alpha
        self.gamma = gamma
        self.from_logits = from_logits
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = _check_axis(axis)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_same_shape("BinaryFocalCrossentropy", y_true, y_pred)
        y = ops.cast(y_true, y_pred.dtype)
        options = dict(gamma=self.gamma, alpha=self.alpha if self.apply_class_balancing else None,
                       label_smoothing=self.label_smoothing, compat="keras")
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Sigmoid")
        if logits is not None and _is_tf():
            # TensorFlow's Keras takes the BCE factor from the logits (exact), the focal factor from σ(x).
            loss = _per_sample(_core.binary_focal_cross_entropy_with_logits, logits, y, **options)
        else:
            # JAX/PyTorch: from_logits applies a sigmoid, then the clipped probability formula.
            p = ops.sigmoid(y_pred) if self.from_logits else y_pred
            loss = _per_sample(_core.binary_focal_cross_entropy, p, y, **options)
        return ops.mean(loss, axis=self.axis)


# ---------------------------------------------------------------------------------------------
# categorical
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalCrossentropy(_Base):
    r"""Categorical cross-entropy with one-hot/soft targets, as ``keras.losses.CategoricalCrossentropy``.

    .. math:: \ell = -\sum_c q_c \log \hat p_c,\quad
              \hat p = \operatorname{clip}(p / \textstyle\sum_c p_c,\ ε, 1-ε),\quad q = (1-s)y + s/C

    From logits: :math:`-\sum_c q_c \operatorname{log\_softmax}(x)_c`, unclipped, and exact for
    confident predictions (:func:`crossentropy.cross_entropy`; Keras's own ``lse − x_y``
    rounds losses below about 1e-8 to 0).  From probabilities:
    :func:`crossentropy.categorical_cross_entropy` with ``compat='keras'``.

    Shapes: ``y_true`` and ``y_pred`` ``(batch, ..., C, ...)`` with the
    classes on ``axis``; the per-sample loss drops ``axis``.

    The tutorial's Keras example (the dog, −ln 0.85):

    >>> from crossentropy.keras import CategoricalCrossentropy
    >>> print(f"{float(CategoricalCrossentropy()([0, 1, 0], [0.05, 0.85, 0.10])):.7f}")
    0.1625189
    """

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str | None = "categorical_crossentropy",
                 dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = _check_axis(axis)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_same_shape("CategoricalCrossentropy", y_true, y_pred)
        ax = _class_axis(y_pred, self.axis, "CategoricalCrossentropy")
        y, ls = _smoothing_for_core(ops.cast(y_true, y_pred.dtype), self.label_smoothing, ax, len(y_pred.shape))
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Softmax")
        if logits is not None:
            return _per_sample(_core.cross_entropy, logits, y, axis=ax, label_smoothing=ls)
        return _per_sample(_core.categorical_cross_entropy, y_pred, y, axis=ax, label_smoothing=ls, compat="keras")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseCategoricalCrossentropy(_Base):
    r"""Categorical cross-entropy with integer labels, as ``keras.losses.SparseCategoricalCrossentropy``.

    .. math:: \ell = -\log \hat p_{y}

    with :math:`\hat p` as in :class:`CategoricalCrossentropy` (on the
    TensorFlow backend: clip, then renormalise, as Keras does there).
    ``ignore_class`` entries get loss 0 and are masked out of the reduction
    (``'sum_over_batch_size'`` divides by the number of kept entries).

    Shapes: ``y_pred`` ``(batch, ..., C)``; ``y_true`` integer
    ``(batch, ...)`` or ``(batch, ..., 1)``.

    >>> import numpy as np
    >>> from crossentropy.keras import SparseCategoricalCrossentropy
    >>> loss = SparseCategoricalCrossentropy(reduction=None)
    >>> print(np.asarray(loss(np.array([1, 2]), np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]))).round(4))
    [0.0513 2.3026]
    """

    _config_keys = ("from_logits", "ignore_class", "axis")

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str | None = "sum_over_batch_size", axis: int = -1,
                 name: str | None = "sparse_categorical_crossentropy", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = _check_axis(axis)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = _tensors(y_true, y_pred)
        ax = _class_axis(y_pred, self.axis, "SparseCategoricalCrossentropy")
        nd = len(y_pred.shape)
        if len(y_true.shape) == nd and y_true.shape[ax] == 1:
            y_true = ops.squeeze(y_true, axis=ax)
        # Keras's rule (its PyTorch backend's wording for any axis; TensorFlow and JAX accept the last axis only):
        # the labels have the shape of y_pred without the class axis.
        expected = tuple(d for i, d in enumerate(_dims(y_pred)) if i != ax)
        if _mismatch(_dims(y_true), expected):
            where = "up until the last dimension" if ax == nd - 1 else f"except along the class axis {self.axis}"
            raise ShapeMismatchError(
                f"SparseCategoricalCrossentropy: y_true and y_pred must have the same shape {where}: y_true must "
                f"have shape {expected} (or with a 1 inserted at the class axis); got y_true.shape="
                f"{_dims(y_true)}, y_pred.shape={_dims(y_pred)}")
        # Loss.__call__ hands the labels over in the loss's float dtype; the core wants integers.
        labels = ops.cast(y_true, "int32")
        ignore = None if self.ignore_class is None else int(self.ignore_class)
        valid = None if ignore is None else ops.not_equal(labels, ignore)
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Softmax")
        if logits is not None:
            res = _per_sample(_core.cross_entropy, logits, labels, axis=ax, ignore_index=ignore)
        elif _is_tf():
            # TensorFlow's Keras clips, then renormalises: the core's compat='keras' for class indices.
            res = _per_sample(_core.categorical_cross_entropy, y_pred, labels, axis=ax, ignore_index=ignore,
                              compat="keras")
        else:
            # JAX/PyTorch Keras renormalise, then clip: the core's compat='keras' for one-hot targets.
            kept = labels if valid is None else ops.where(valid, labels, ops.zeros_like(labels))
            onehot = ops.one_hot(kept, _dims(y_pred)[ax] or ops.shape(y_pred)[ax], axis=ax, dtype=y_pred.dtype)
            if valid is not None:
                onehot = onehot * ops.expand_dims(ops.cast(valid, y_pred.dtype), ax)
            res = _per_sample(_core.categorical_cross_entropy, y_pred, onehot, axis=ax, compat="keras")
        if valid is not None:
            from keras.src.backend.common.masking import set_keras_mask

            # Keras's own mechanism: Loss.__call__ merges this mask into the reduction.
            set_keras_mask(res, mask=valid)
        return res


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalFocalCrossentropy(_Base):
    r"""Categorical focal cross-entropy, as ``keras.losses.CategoricalFocalCrossentropy``.

    .. math:: \ell = -\sum_c α_c (1 - \hat p_c)^γ\, q_c \log \hat p_c

    with :math:`\hat p` renormalised and clipped as in
    :class:`CategoricalCrossentropy` (``from_logits=True`` applies a softmax
    first, then the same clipping, as Keras does); ``alpha`` a float or a
    per-class list.  Computed by :func:`crossentropy.categorical_focal_cross_entropy`
    and :func:`crossentropy.focal_cross_entropy` (``compat='keras'``).

    Shapes: as :class:`CategoricalCrossentropy`; ``y_true`` broadcasts against ``y_pred``.

    >>> import numpy as np
    >>> from crossentropy.keras import CategoricalFocalCrossentropy
    >>> loss = CategoricalFocalCrossentropy(reduction=None)
    >>> print(np.asarray(loss([[0, 1, 0], [0, 0, 1]], [[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]])).round(6))
    [2.63e-04 6.75912e-01]
    """

    _config_keys = ("from_logits", "label_smoothing", "axis", "alpha", "gamma")

    def __init__(self, alpha: float | Sequence[float] = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "categorical_focal_crossentropy", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if float(gamma) < 0:
            raise InvalidOptionError(f"gamma must be >= 0; got {gamma!r}")
        self.alpha = alpha
        self.gamma = gamma
        self.from_logits = from_logits
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = _check_axis(axis)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_broadcastable("CategoricalFocalCrossentropy", _dims(y_true), _dims(y_pred))
        y, y_pred = _broadcast_pair(ops.cast(y_true, y_pred.dtype), y_pred)
        ax = _class_axis(y_pred, self.axis, "CategoricalFocalCrossentropy")
        y, ls = _smoothing_for_core(y, self.label_smoothing, ax, len(y_pred.shape))
        alpha = list(self.alpha) if isinstance(self.alpha, (list, tuple)) else self.alpha
        fn = _core.focal_cross_entropy if self.from_logits else _core.categorical_focal_cross_entropy
        return _per_sample(fn, y_pred, y, gamma=self.gamma, alpha=alpha, axis=ax, label_smoothing=ls,
                           compat="keras")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalGeneralizedCrossEntropy(_Base):
    r"""Generalized cross-entropy (Zhang & Sabuncu, 2018), as Keras's ``CategoricalGeneralizedCrossEntropy``.

    .. math:: \ell = \frac{1 - p_{y}^{\,q}}{q},\qquad q ∈ (0, 1)

    Computed by :func:`crossentropy.generalized_cross_entropy`.

    Shapes: ``y_pred`` ``(batch, C)`` probabilities; ``y_true`` integer
    labels ``(batch,)`` or ``(batch, 1)``.

    >>> import numpy as np
    >>> from crossentropy.keras import CategoricalGeneralizedCrossEntropy
    >>> loss = CategoricalGeneralizedCrossEntropy(q=0.5, reduction=None)
    >>> print(np.asarray(loss(np.array([0, 1]), np.array([[0.7, 0.3], [0.2, 0.8]]))).round(6))
    [0.32668  0.211146]
    """

    _config_keys = ("q",)

    def __init__(self, q: float = 0.5, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "categorical_generalized_cross_entropy", dtype: Any = None) -> None:
        if not 0 < q < 1:
            raise InvalidOptionError(f"q must be in the open interval (0, 1); got {q!r}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.q = q

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = _tensors(y_true, y_pred)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        _require_broadcastable("CategoricalGeneralizedCrossEntropy", _dims(y_true) + (_dims(y_pred)[-1],),
                               _dims(y_pred))
        # Keras one-hot encodes the labels on the last axis and broadcasts them against y_pred.
        labels, y_pred = _broadcast_pair(ops.cast(y_true, "int32"), y_pred, a_tail=(_dims(y_pred)[-1],))
        return _per_sample(_core.generalized_cross_entropy, y_pred, labels, q=self.q)


# ---------------------------------------------------------------------------------------------
# ``from crossentropy.keras import tf``: TensorFlow with these losses in tf.keras.losses
# ---------------------------------------------------------------------------------------------

class _Forward:
    """Attribute access forwarding to ``target``, with some names overridden."""

    def __init__(self, target: Any, overrides: dict[str, Any]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_overrides", overrides)

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._target, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._target)) | set(self._overrides))

    def __repr__(self) -> str:
        return f"<{self._target.__name__} with crossentropy's losses>"


def _tf_proxy() -> _Forward:
    import tensorflow as tf

    losses = _Forward(keras.losses, {n: globals()[n] for n in __all__})
    return _Forward(tf, {"keras": _Forward(keras, {"losses": losses})})


def __getattr__(name: str) -> Any:
    # ``tf``: the tensorflow module whose ``tf.keras.losses.<Name>`` are this
    # module's classes, so code written against tf.keras runs with a changed
    # import line only (``from crossentropy.keras import tf``).
    if name == "tf":
        proxy = _tf_proxy()
        globals()["tf"] = proxy
        return proxy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
