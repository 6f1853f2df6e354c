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
``call()`` is written with ``keras.ops`` only, so it runs on every Keras
backend (TensorFlow, JAX, PyTorch), inside ``model.fit``'s compiled graph
too, and the backend's autodiff differentiates it.  It states the library's
formulas with the library's ``compat='keras'`` semantics for probabilities
(clip to ``[ε, 1-ε]`` with ``ε = keras.config.epsilon()``; renormalise rows
for the categorical losses) and the overflow-free forms for logits.  The
library's own functions are not called here: on the TensorFlow backend the
tensors are ``tf.Tensor`` objects (graph tensors inside ``fit``), which have
no array-API namespace for the library to dispatch on (see "One truth per
formula" in ``docs/adapters.md``).

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

from typing import Any

import keras
from keras import ops

from ._errors import InvalidOptionError, ShapeMismatchError
from ._typing import ArrayLike

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
# helpers (keras.ops only)
# ---------------------------------------------------------------------------------------------

def _eps() -> float:
    return keras.config.epsilon()


def _is_tf() -> bool:
    return keras.backend.backend() == "tensorflow"


def _check_axis(axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise InvalidOptionError(f"axis must be an int; got {axis!r} of type {type(axis).__name__}")
    return axis


def _check_smoothing(label_smoothing: float) -> float:
    v = float(label_smoothing)
    if not 0.0 <= v <= 1.0:
        raise InvalidOptionError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}")
    return label_smoothing


def _tensors(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Any, Any]:
    # Loss.__call__ maps convert_to_tensor over nested lists; stack them back.
    return ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)


def _same_rank(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Any, Any]:
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


def _dims(x: Any) -> tuple[int | None, ...]:
    # Static shape; ``None`` for a dimension unknown until run time (symbolic tensors in ``fit``).
    return tuple(None if d is None else int(d) for d in x.shape)


def _mismatch(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) != len(b) or any(p is not None and q is not None and p != q for p, q in zip(a, b))


def _require_same_shape(loss: str, y_true: Any, y_pred: Any) -> None:
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


def _logits_of(y_pred: Any, op_type: str) -> Any:
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


def _bce_from_logits(y: Any, x: Any) -> Any:
    # −[y log σ(x) + (1−y) log σ(−x)] = max(x, 0) − x·y + log(1 + e^{−|x|}): no overflow.
    return ops.maximum(x, 0.0) - x * y + ops.log1p(ops.exp(-ops.abs(x)))


def _bce_from_probs(y: Any, p: Any) -> Any:
    eps = _eps()
    c = ops.clip(p, eps, 1.0 - eps)
    return -(y * ops.log(c) + (1.0 - y) * ops.log(1.0 - c))


def _log_softmax(x: Any, axis: int) -> Any:
    m = ops.stop_gradient(ops.max(x, axis=axis, keepdims=True))
    s = x - m
    return s - ops.log(ops.sum(ops.exp(s), axis=axis, keepdims=True))


def _renorm_clip(p: Any, axis: int) -> Any:
    eps = _eps()
    return ops.clip(p / ops.sum(p, axis=axis, keepdims=True), eps, 1.0 - eps)


def _smooth_categorical(y: Any, label_smoothing: float, dtype: Any) -> Any:
    if label_smoothing:
        # Keras counts the classes on the last axis, whatever ``axis`` is.
        c = ops.cast(ops.shape(y)[-1], dtype)
        y = y * (1.0 - label_smoothing) + label_smoothing / c
    return y


class _Base(keras.losses.Loss):
    _config_keys: tuple = ()

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
    :math:`\max(x,0) - xy + \log(1+e^{-|x|})`.

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

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Any:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_same_shape("BinaryCrossentropy", y_true, y_pred)
        y = ops.cast(y_true, y_pred.dtype)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Sigmoid")
        bce = _bce_from_logits(y, logits) if logits is not None else _bce_from_probs(y, y_pred)
        return ops.mean(bce, axis=self.axis)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryFocalCrossentropy(_Base):
    r"""Binary focal cross-entropy, as ``keras.losses.BinaryFocalCrossentropy``.

    .. math:: \ell = \operatorname{mean}_{axis}\; a_t\,(1 - p_t)^γ\,\mathrm{BCE}(y, p),
              \quad p_t = yp + (1-y)(1-p),\quad a_t = yα + (1-y)(1-α)

    :math:`a_t` applies only with ``apply_class_balancing=True``.  With
    ``from_logits=True``, :math:`p = σ(x)`; the BCE term is clipped as Keras
    does (exact from the logits on the TensorFlow backend, as there).

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

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Any:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_same_shape("BinaryFocalCrossentropy", y_true, y_pred)
        y = ops.cast(y_true, y_pred.dtype)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            x = y_pred
            p = ops.sigmoid(x)
            bce = _bce_from_logits(y, x) if _is_tf() else _bce_from_probs(y, p)
        else:
            p = y_pred
            logits = _logits_of(y_pred, "Sigmoid")
            bce = _bce_from_logits(y, logits) if logits is not None else _bce_from_probs(y, p)
        p_t = y * p + (1.0 - y) * (1.0 - p)
        loss = ops.power(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            loss = (y * self.alpha + (1.0 - y) * (1.0 - self.alpha)) * loss
        return ops.mean(loss, axis=self.axis)


# ---------------------------------------------------------------------------------------------
# categorical
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalCrossentropy(_Base):
    r"""Categorical cross-entropy with one-hot/soft targets, as ``keras.losses.CategoricalCrossentropy``.

    .. math:: \ell = -\sum_c q_c \log \hat p_c,\quad
              \hat p = \operatorname{clip}(p / \textstyle\sum_c p_c,\ ε, 1-ε),\quad q = (1-s)y + s/C

    From logits: :math:`-\sum_c q_c \operatorname{log\_softmax}(x)_c`, unclipped.

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

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Any:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_same_shape("CategoricalCrossentropy", y_true, y_pred)
        y = _smooth_categorical(ops.cast(y_true, y_pred.dtype), self.label_smoothing, y_pred.dtype)
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Softmax")
        logp = _log_softmax(logits, self.axis) if logits is not None else ops.log(_renorm_clip(y_pred, self.axis))
        return -ops.sum(y * logp, axis=self.axis)


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

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Any:
        y_true, y_pred = _tensors(y_true, y_pred)
        nd = len(y_pred.shape)
        if nd < 1:
            raise ShapeMismatchError(f"SparseCategoricalCrossentropy: y_pred must be at least rank 1; got shape {_dims(y_pred)}")
        ax = self.axis % nd if -nd <= self.axis < nd else None
        if ax is None:
            raise InvalidOptionError(f"axis={self.axis} is out of range for y_pred of rank {nd}")
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
        valid = None
        if self.ignore_class is not None:
            valid = ops.not_equal(y_true, ops.cast(self.ignore_class, y_true.dtype))
            y_true = ops.where(valid, y_true, ops.zeros_like(y_true))
        labels = ops.cast(y_true, "int32")
        onehot = ops.cast(ops.one_hot(labels, y_pred.shape[ax] if y_pred.shape[ax] is not None
                                      else ops.shape(y_pred)[ax], axis=ax), y_pred.dtype)
        logits = y_pred if self.from_logits else _logits_of(y_pred, "Softmax")
        if logits is not None:
            logp = _log_softmax(logits, ax)
        elif _is_tf():
            # TensorFlow's Keras clips first and renormalises through a softmax of the logs.
            eps = _eps()
            logp = _log_softmax(ops.log(ops.clip(y_pred, eps, 1.0 - eps)), ax)
        else:
            logp = ops.log(_renorm_clip(y_pred, ax))
        res = -ops.sum(onehot * logp, axis=ax)
        if valid is not None:
            res = ops.where(valid, res, ops.zeros_like(res))
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
    per-class list.

    Shapes: as :class:`CategoricalCrossentropy`.

    >>> import numpy as np
    >>> from crossentropy.keras import CategoricalFocalCrossentropy
    >>> loss = CategoricalFocalCrossentropy(reduction=None)
    >>> print(np.asarray(loss([[0, 1, 0], [0, 0, 1]], [[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]])).round(6))
    [2.63e-04 6.75912e-01]
    """

    _config_keys = ("from_logits", "label_smoothing", "axis", "alpha", "gamma")

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                 axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "categorical_focal_crossentropy", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if float(gamma) < 0:
            raise InvalidOptionError(f"gamma must be >= 0; got {gamma!r}")
        self.alpha = alpha
        self.gamma = gamma
        self.from_logits = from_logits
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = _check_axis(axis)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Any:
        y_true, y_pred = _same_rank(y_true, y_pred)
        _require_broadcastable("CategoricalFocalCrossentropy", _dims(y_true), _dims(y_pred))
        y = _smooth_categorical(ops.cast(y_true, y_pred.dtype), self.label_smoothing, y_pred.dtype)
        p = ops.softmax(y_pred, axis=self.axis) if self.from_logits else y_pred
        c = _renorm_clip(p, self.axis)
        alpha = self.alpha
        if isinstance(alpha, (list, tuple)):
            alpha = ops.convert_to_tensor(alpha, dtype=y_pred.dtype)
        focal = ops.power(1.0 - c, self.gamma) * alpha * (-y * ops.log(c))
        return ops.sum(focal, axis=self.axis)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalGeneralizedCrossEntropy(_Base):
    r"""Generalized cross-entropy (Zhang & Sabuncu, 2018), as Keras's ``CategoricalGeneralizedCrossEntropy``.

    .. math:: \ell = \frac{1 - p_{y}^{\,q}}{q},\qquad q ∈ (0, 1)

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

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Any:
        y_true, y_pred = _tensors(y_true, y_pred)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        n = y_pred.shape[-1] if y_pred.shape[-1] is not None else ops.shape(y_pred)[-1]
        _require_broadcastable("CategoricalGeneralizedCrossEntropy", _dims(y_true) + (_dims(y_pred)[-1],),
                               _dims(y_pred))
        onehot = ops.cast(ops.one_hot(ops.cast(y_true, "int32"), n), y_pred.dtype)
        p = ops.sum(y_pred * onehot, axis=-1)
        return (1.0 - ops.power(p, self.q)) / self.q


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


def _tf_proxy() -> Any:
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
