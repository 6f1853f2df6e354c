"""JAX drop-ins for optax's cross-entropy losses: the library's formulas and gradients, every autodiff mode.

``softmax_cross_entropy``, ``softmax_cross_entropy_with_integer_labels``,
``safe_softmax_cross_entropy``, ``sigmoid_binary_cross_entropy``,
``sigmoid_focal_loss`` and ``poly_loss_cross_entropy`` take optax's
arguments (``axis`` and ``where`` included) and return per-example losses of
optax's shapes; reduce them yourself (``.mean()``) as with optax.

How it computes
---------------
A thin layer over the library: the per-example losses *and* their closed-form
derivatives come from :mod:`crossentropy` itself, called on the JAX arrays
(``reduction='none'``; :func:`crossentropy.value_and_grad` with
``wrt=(logits, labels)``), so a fix in the library fixes this module.  Each
loss is a :func:`jax.custom_jvp` whose tangent is
:math:`\\sum_c (∂ℓ/∂x_c)\\,\\dot x_c + (∂ℓ/∂y_c)\\,\\dot y_c` with those
closed-form partials.  JAX transposes it for reverse mode, so

* ``jax.grad``/``vjp`` give the analytic cotangent of every floating argument,
  the labels included (``−log_softmax`` for the softmax losses, ``−x`` for the
  sigmoid one), and ``jax.jvp``/``jacfwd`` the same derivatives forwards;
* higher orders (``jax.hessian``, ``jacfwd(jacrev)``, ``check_grads`` of any
  order) differentiate the closed-form partials, which are themselves plain
  ``jax.numpy`` code of the library;
* ``jit``, ``vmap`` and ``grad`` compose: inside a transformation the library
  skips its value checks (tracers have no values) and runs branch-free code.

Masks (``where``) become ``−inf`` logits with zero labels, which the library
treats with ``0·log 0 = 0``; the tangents at masked entries are set to 0 (the
loss does not depend on them), so masked classes never turn a gradient into
NaN.  A row with no unmasked entry gives 0, as in optax.
``poly_loss_cross_entropy`` is linear in ``epsilon``: it is evaluated as
``CE + ε·(poly1(ε=1) − CE)`` from the library's two functions, so ``epsilon``
may be traced (``jit``) and differentiated.  ``sigmoid_focal_loss`` is
``a_t·(1−p_t)^γ·BCE`` around the library's BCE (JAX differentiates the
product), because the library takes ``gamma``/``alpha`` as Python numbers and
optax's callers may trace them.

>>> import jax, jax.numpy as jnp
>>> from crossentropy.jax import softmax_cross_entropy_with_integer_labels
>>> x = jnp.array([[2.0, 1.0, -1.0]]); y = jnp.array([0])
>>> print(softmax_cross_entropy_with_integer_labels(x, y).round(6))
[0.349012]
>>> jax.grad(lambda z: softmax_cross_entropy_with_integer_labels(z, y).sum())(x).round(4).tolist()  # softmax - onehot
[[-0.2946, 0.2595, 0.0351]]

Importing this module imports ``jax``; importing :mod:`crossentropy` alone
does not.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from ._backend import concrete, namespace
from ._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from ._grad import value_and_grad
from ._typing import ArrayLike
from ._validation import check_index_target
from .binary import binary_cross_entropy_with_logits as _core_bce_with_logits
from .categorical import cross_entropy as _core_cross_entropy
from .categorical import poly1_cross_entropy as _core_poly1
from .categorical import safe_softmax_cross_entropy as _core_safe_ce

__all__ = [
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "poly_loss_cross_entropy",
]


# ---------------------------------------------------------------------------------------------
# one custom_jvp around the library: per-example loss, closed-form partials as the tangent map
# ---------------------------------------------------------------------------------------------

class _Spec(tuple):
    """Static description of a library call: ``(function, options, class axis or None)``; hashable."""

    def __new__(cls, fn: Callable[..., Any], options: dict[str, Any], axis: int | None) -> _Spec:
        return super().__new__(cls, (fn, tuple(sorted(options.items())), axis))


@functools.lru_cache(maxsize=None)
def _compiled(spec: _Spec, wrt: tuple[int, ...]) -> Callable[..., Any]:
    """The library call of ``spec`` (value, or value and partials w.r.t. ``wrt``), under ``jax.jit``.

    Every array is a ``jit`` argument, hence a tracer inside: the library skips its value checks
    (optax checks no values either, and ``check_grads`` steps labels just outside [0, 1]) and
    runs its branch-free code; the compiled program is cached per shape, also for eager calls.
    """
    fn, options, _ = spec
    options = dict(options)
    if not wrt:
        return jax.jit(lambda x, y: fn(x, y, reduction="none", **options))
    return jax.jit(lambda x, y: value_and_grad(fn, x, y, wrt=wrt, reduction="none", **options))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _library_loss(spec: _Spec, x: jax.Array, y: jax.Array | None, mask: jax.Array | None) -> jax.Array:
    return _compiled(spec, ())(x, y)


def _library_loss_jvp(spec: _Spec, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, Any]:
    axis = spec[2]
    x, y, mask = primals
    # Symbolic-zero tangents (arguments not being differentiated) are skipped, so an infinite
    # partial (−log p at a −inf logit, w.r.t. its label) never meets a zero tangent as inf·0.
    wrt = tuple(i for i, (a, t) in enumerate(zip((x, y), tangents[:2]))
                if not isinstance(t, SymbolicZero) and jnp.issubdtype(a.dtype, jnp.inexact))
    if not wrt:
        value = _compiled(spec, ())(x, y)
        return value, jnp.zeros_like(value)
    value, partials = _compiled(spec, wrt)(x, y)
    tangent = None
    for i, d in zip(wrt, partials):
        if mask is not None:
            d = jnp.where(mask, d, jnp.zeros_like(d))  # the loss does not depend on masked entries
        term = d * tangents[i]
        if axis is not None:
            term = jnp.sum(term, axis=axis)
        tangent = term if tangent is None else tangent + term
    return value, tangent


_library_loss.defjvp(_library_loss_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------------------------------------
# argument handling (static: dtypes, ranks, axes; never values, which jit does not have)
# ---------------------------------------------------------------------------------------------

def _floating(x: ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InvalidDTypeError(f"{name} must be a floating-point array; got dtype {x.dtype}")
    return x


def _axis(axis: int | tuple[int, ...] | None, ndim: int) -> int | tuple[int, ...]:
    """Canonical axis: an int, a tuple of ints, or None (all axes)."""
    def one(a: Any) -> int:
        try:
            a = operator.index(a)
        except TypeError:
            raise InvalidOptionError(f"axis must be an int, a tuple of ints or None; got {axis!r}") from None
        if not -ndim <= a < ndim:
            raise InvalidOptionError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        return a % ndim

    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(one(a) for a in axis)
    return one(axis)


def _classes_last(a: jax.Array, ax: int | tuple[int, ...]) -> jax.Array:
    """Move the class axes ``ax`` (int or tuple) to the end, flattened into one; returns the array."""
    ax = ax if isinstance(ax, tuple) else (ax,)
    batch = tuple(i for i in range(a.ndim) if i not in ax)
    a = jnp.transpose(a, batch + ax)
    return jnp.reshape(a, tuple(a.shape[:len(batch)]) + (-1,))


def _where(where: ArrayLike | None, shape: tuple[int, ...], ax: int | tuple[int, ...]) -> jax.Array | None:
    """optax's ``where``: the logits' shape, or without the class axis (then broadcast along it)."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.ndim != len(shape):
        where = jnp.expand_dims(where, ax)
    try:
        return jnp.broadcast_to(where, shape)
    except ValueError:
        raise ShapeMismatchError(f"where of shape {where.shape} does not broadcast to the logits' shape {shape}") from None


def _masked(x: jax.Array, y: jax.Array | None,
            where: jax.Array | None) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Masked classes as ``−inf`` logits under zero labels; rows with no class left get finite zeros.

    Returns ``(x, y, keep)`` with ``keep`` the rows (last axis reduced) that have a class, or None.
    """
    if where is None:
        return x, y, None
    keep = jnp.any(where, axis=-1)
    live = where & keep[..., None]
    x = jnp.where(live, x, jnp.where(keep[..., None], -jnp.inf, 0.0).astype(x.dtype))
    if y is not None and jnp.issubdtype(y.dtype, jnp.inexact):
        y = jnp.where(live, y, jnp.zeros_like(y))
    return x, y, keep


def _rows(out: jax.Array, keep: jax.Array | None) -> jax.Array:
    return out if keep is None else jnp.where(keep, out, jnp.zeros_like(out))


def _prob_args(logits: ArrayLike, labels: ArrayLike, axis: int | tuple[int, ...] | None, where: ArrayLike | None,
               fname: str) -> tuple[jax.Array, Any, jax.Array | None, jax.Array | None]:
    logits = _floating(logits, "logits")
    labels = _floating(labels, "labels")
    try:
        shape = jnp.broadcast_shapes(logits.shape, labels.shape)
    except ValueError:
        raise ShapeMismatchError(
            f"{fname}: labels of shape {labels.shape} do not broadcast to logits of shape {logits.shape}"
        ) from None
    logits = jnp.broadcast_to(logits, shape)
    labels = jnp.broadcast_to(labels.astype(logits.dtype), shape)
    if logits.ndim == 0:
        raise ShapeMismatchError(f"{fname}: logits must have a class axis; got a scalar")
    ax = _axis(axis, logits.ndim)
    where = _where(where, shape, ax)
    # The library takes one class axis: flatten the class axes into the last one.
    logits, labels = _classes_last(logits, ax), _classes_last(labels, ax)
    where = None if where is None else _classes_last(where, ax)
    return _masked(logits, labels, where) + (where,)


def _soft(fn: Callable[..., Any], x: jax.Array, y: jax.Array | None, where: jax.Array | None,
          **options: Any) -> jax.Array:
    """The library's per-example ``fn`` over the last (class) axis; ``where`` masks its partials."""
    if x.shape[-1] == 0:
        # No class at all (optax's tests mask every entry out of a random vector now and then):
        # every sum over the classes is empty, the loss is 0 (an index label is out of range there).
        return jnp.zeros(x.shape[:-1], x.dtype)
    return _library_loss(_Spec(fn, options, -1), x, y, where)


# ---------------------------------------------------------------------------------------------
# softmax losses
# ---------------------------------------------------------------------------------------------

def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike, axis: int | tuple[int, ...] | None = -1,
                          where: ArrayLike | None = None) -> jax.Array:
    r"""Softmax cross-entropy against probability labels (optax's ``softmax_cross_entropy``).

    .. math:: \ell = -\sum_{c ∈ \text{where}} y_c \log \mathrm{softmax}(x)_c

    (softmax over the ``where`` entries only; ``0·log 0 = 0``).  Partials:
    :math:`∂ℓ/∂x = (\sum_c y_c)\,p - y`, :math:`∂ℓ/∂y = -\log p`.

    Shapes: ``logits`` ``[..., num_classes]`` (classes on ``axis``, an int, a
    tuple of ints or ``None``); ``labels`` broadcastable to it; ``where``
    of the logits' shape or without ``axis``.  Returns the shape without
    ``axis``.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import softmax_cross_entropy
    >>> print(softmax_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[0.5, 0.5]])))
    [0.6931472]
    """
    x, y, keep, where = _prob_args(logits, labels, axis, where, "softmax_cross_entropy")
    return _rows(_soft(_core_safe_ce, x, y, where), keep)


def safe_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Softmax cross-entropy with ``0·log 0 = 0`` (optax's ``safe_softmax_cross_entropy``).

    A ``-inf`` logit under a zero label contributes 0 to the loss and to the
    logits' gradient instead of NaN.  Classes on the last axis.

    Shapes: ``logits`` ``[..., num_classes]``, ``labels`` broadcastable to it;
    returns ``[...]``.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import safe_softmax_cross_entropy
    >>> print(safe_softmax_cross_entropy(jnp.array([[0.0, -jnp.inf, 0.0]]), jnp.array([[0.5, 0.0, 0.5]])))
    [0.6931472]
    """
    x, y, _, _ = _prob_args(logits, labels, -1, None, "safe_softmax_cross_entropy")
    return _soft(_core_safe_ce, x, y, None)


def poly_loss_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, epsilon: float = 2.0,
                            axis: int | tuple[int, ...] | None = -1, where: ArrayLike | None = None) -> jax.Array:
    r"""Poly-1 cross-entropy (Leng et al., 2022; optax's ``poly_loss_cross_entropy``).

    .. math:: \ell = \mathrm{CE}(x, y) + ε \sum_c y_c (1 - p_c)

    Shapes: as :func:`softmax_cross_entropy`.  ``epsilon`` may be a traced
    scalar; :math:`∂ℓ/∂ε = \sum_c y_c (1 - p_c)`.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import poly_loss_cross_entropy
    >>> print(poly_loss_cross_entropy(jnp.array([[2.0, 1.0, -1.0]]), jnp.array([[1.0, 0.0, 0.0]])).round(6))
    [0.938243]
    """
    x, y, keep, where = _prob_args(logits, labels, axis, where, "poly_loss_cross_entropy")
    eps = jnp.asarray(epsilon, dtype=x.dtype)
    ce = _soft(_core_safe_ce, x, y, where)
    # ℓ is linear in ε: ℓ = CE + ε·T with T = poly1(ε=1) − CE, both from the library.
    poly_term = _soft(_core_poly1, x, y, where, epsilon=1.0) - ce
    return _rows(ce + eps * poly_term, keep)


def softmax_cross_entropy_with_integer_labels(logits: ArrayLike, labels: ArrayLike,
                                              axis: int | tuple[int, ...] | None = -1,
                                              where: ArrayLike | None = None) -> jax.Array:
    r"""Softmax cross-entropy against class indices (optax's ``softmax_cross_entropy_with_integer_labels``).

    .. math:: \ell = -\log \mathrm{softmax}_{\text{where}}(x)_{y}

    Partial: :math:`∂ℓ/∂x = \mathrm{softmax}(x) - \mathrm{onehot}(y)`.  A
    tuple ``axis`` flattens those axes into one class axis (``num_classes`` is
    then their product).  Rows with no ``where`` entry give 0.

    Shapes: ``logits`` ``[..., num_classes]``; integer ``labels`` ``[...]``.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import softmax_cross_entropy_with_integer_labels
    >>> print(softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 4)), jnp.array([1, 3])))  # ln 4
    [1.3862944 1.3862944]
    """
    logits = _floating(logits, "logits")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise InvalidDTypeError(f"labels must hold integer class indices; got dtype {labels.dtype}")
    if logits.ndim == 0:
        raise ShapeMismatchError("logits must have a class axis; got a scalar")
    ax = _axis(axis, logits.ndim)
    where = _where(where, logits.shape, ax)
    x = _classes_last(logits, ax)
    where = None if where is None else _classes_last(where, ax)
    if tuple(labels.shape) != tuple(x.shape[:-1]):
        raise ShapeMismatchError(
            f"labels must have shape {tuple(x.shape[:-1])} (the logits' shape without the class axis); "
            f"got {labels.shape}")
    num_classes = int(x.shape[-1])
    if concrete(labels):
        # Eager labels: the library's own range check, on a host copy (one device→host read).
        host = np.asarray(labels)
        check_index_target(namespace(host), host, num_classes, None, host.shape, name="labels")
    x, _, keep = _masked(x, None, where)
    out = _rows(_soft(_core_cross_entropy, x, labels, where, axis=-1), keep)
    # Traced labels cannot be checked: an index outside [0, C) gives NaN, never another class's loss
    # (optax wraps negative indices, e.g. −1 scores the last class).
    return jnp.where((labels >= 0) & (labels < num_classes), out, jnp.nan)


# ---------------------------------------------------------------------------------------------
# sigmoid losses (elementwise)
# ---------------------------------------------------------------------------------------------

def _binary_args(logits: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
    logits = _floating(logits, "logits")
    labels = jnp.asarray(labels)
    try:
        shape = jnp.broadcast_shapes(logits.shape, labels.shape)
    except ValueError:
        raise ShapeMismatchError(f"labels of shape {labels.shape} do not broadcast to logits of shape {logits.shape}") from None
    return jnp.broadcast_to(logits, shape), jnp.broadcast_to(labels.astype(logits.dtype), shape)


def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Elementwise sigmoid cross-entropy (optax's ``sigmoid_binary_cross_entropy``).

    .. math:: \ell = -\left[y \log σ(x) + (1-y) \log σ(-x)\right]

    Partials: :math:`∂ℓ/∂x = σ(x) - y`, :math:`∂ℓ/∂y = -x`.  Both logs are
    overflow-free.

    Shapes: ``logits`` and ``labels`` broadcastable to each other; returns
    the broadcast shape.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import sigmoid_binary_cross_entropy
    >>> f32 = jnp.float32
    >>> sigmoid_binary_cross_entropy(jnp.array([1e4, -1e4, 0.0], f32), jnp.array([1.0, 1.0, 0.5], f32)).tolist()
    [0.0, 10000.0, 0.6931471824645996]
    """
    x, y = _binary_args(logits, labels)
    return _library_loss(_Spec(_core_bce_with_logits, {}, None), x, y, None)


def sigmoid_focal_loss(logits: ArrayLike, labels: ArrayLike, *, alpha: float | jax.Array | None = None,
                       gamma: float | jax.Array = 2.0) -> jax.Array:
    r"""Sigmoid focal loss (Lin et al., 2017; optax's ``sigmoid_focal_loss``).

    .. math:: \ell = a_t\,(1 - p_t)^γ\,\mathrm{BCE}(x, y),\quad
              1 - p_t = yσ(-x) + (1-y)σ(x),\quad a_t = αy + (1-α)(1-y)

    ``alpha=None`` applies no class balancing.  Labels may be soft (in [0, 1]);
    ``alpha`` and ``gamma`` may be traced and differentiated.

    Shapes: as :func:`sigmoid_binary_cross_entropy`.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import sigmoid_focal_loss
    >>> print(sigmoid_focal_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]), alpha=0.25).round(6))
    [0.000451 0.016994]
    """
    x, y = _binary_args(logits, labels)
    gamma = jnp.asarray(gamma, dtype=x.dtype)
    bce = _library_loss(_Spec(_core_bce_with_logits, {}, None), x, y, None)
    # 1 − p_t as a sum of two non-negative terms: no cancellation when p_t → 1.
    q = y * jax.nn.sigmoid(-x) + (1.0 - y) * jax.nn.sigmoid(x)
    # (1 − p_t)^γ, with the derivative of q^γ taken as 0 at q = 0 (the product with BCE → 0
    # vanishes there for every γ ≥ 0): the inner where keeps γ·q^(γ−1) from being inf·0.
    positive = q > 0
    modulator = jnp.where(positive, jnp.power(jnp.where(positive, q, 1.0), gamma),
                          jnp.where(gamma == 0, 1.0, 0.0).astype(x.dtype))
    loss = modulator * bce
    if alpha is None:
        return loss
    alpha = jnp.asarray(alpha, dtype=x.dtype)
    return (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
