"""JAX drop-ins for optax's cross-entropy losses, with analytic gradients.

``softmax_cross_entropy``, ``softmax_cross_entropy_with_integer_labels``,
``safe_softmax_cross_entropy``, ``sigmoid_binary_cross_entropy``,
``sigmoid_focal_loss`` and ``poly_loss_cross_entropy`` take optax's
arguments (``axis`` and ``where`` included) and return per-example losses of
optax's shapes; reduce them yourself (``.mean()``) as with optax.

Each is a :func:`jax.custom_vjp` whose backward pass is the closed-form
gradient of the library (``softmax − target``, ``σ(x) − y``, the focal and
poly-1 formulas of :mod:`crossentropy`), not the autodiff of the forward
pass; the cotangent for floating labels (soft targets) is the derivative of
the same formula.  Everything is ``jax.numpy`` with static shapes and no
value-dependent Python control flow, so the functions are ``jit``-,
``vmap``- and ``grad``-safe.  (The library's own functions validate by
reading values, which tracers under ``jit`` do not have; the formulas here
are the library's, restated, and the tests hold them to it.)

One deliberate difference: every softmax loss here treats ``0·log 0`` as 0,
so a ``-inf`` logit (a masked class) under a zero label gives a finite loss
and gradient; optax's plain ``softmax_cross_entropy`` gives NaN there.

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

import jax
import jax.numpy as jnp

from ._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError

__all__ = [
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "poly_loss_cross_entropy",
]


# ---------------------------------------------------------------------------------------------
# validation (static: dtypes, ranks, axes — never values, which jit does not have)
# ---------------------------------------------------------------------------------------------

def _floating(x, name):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InvalidDTypeError(f"{name} must be a floating-point array; got dtype {x.dtype}")
    return x


def _axis(axis, ndim):
    """Canonical axis: an int, a tuple of ints, or None (all axes)."""
    def one(a):
        try:
            a = operator.index(a)
        except TypeError:
            raise InvalidOptionError(f"axis must be an int, a tuple of ints or None; got {axis!r}") from None
        if not -ndim <= a < ndim:
            raise InvalidOptionError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        return a % ndim

    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(one(a) for a in axis)
    return one(axis)


def _where(where, logits, axis):
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.ndim != logits.ndim:
        where = jnp.expand_dims(where, axis)
    return jnp.broadcast_to(where, logits.shape)


def _xlogy(a, logp):
    return jnp.where(a == 0, jnp.zeros_like(logp), a * logp)


def _mask(v, where):
    return v if where is None else jnp.where(where, v, jnp.zeros_like(v))


# ---------------------------------------------------------------------------------------------
# softmax cross-entropy with probability labels (plain, safe, poly-1 share it)
# ---------------------------------------------------------------------------------------------

def _soft_ce_fwd_terms(logits, labels, where, axis):
    logp = jax.nn.log_softmax(logits, axis=axis, where=where)
    loss = -jnp.sum(_mask(_xlogy(labels, logp), where), axis=axis)
    return loss, logp


def _soft_ce_formula(logits, labels, where, axis, epsilon):
    loss, logp = _soft_ce_fwd_terms(logits, labels, where, axis)
    if epsilon is not None:
        p = _mask(jnp.exp(logp), where)
        loss = loss + epsilon * jnp.sum(_mask(labels * (1.0 - p), where), axis=axis)
    return loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _soft_ce(logits, labels, where, axis, epsilon):
    return _soft_ce_formula(logits, labels, where, axis, epsilon)


def _soft_ce_fwd(logits, labels, where, axis, epsilon):
    loss, logp = _soft_ce_fwd_terms(logits, labels, where, axis)
    p = _mask(jnp.exp(logp), where)
    if epsilon is not None:
        loss = loss + epsilon * jnp.sum(_mask(labels * (1.0 - p), where), axis=axis)
    return loss, (logits, labels, where, epsilon, p)


def _soft_ce_bwd(axis, res, g):
    logits, labels, where, epsilon, p = res
    a = _mask(labels, where)
    # ∂/∂x_j −Σ_c a_c log p_c = (Σ_c a_c) p_j − a_j
    dx = jnp.sum(a, axis=axis, keepdims=True) * p - a
    if epsilon is not None:
        # ∂/∂x_j −ε Σ_c a_c p_c = −ε (a_j p_j − p_j Σ_c a_c p_c)
        ap = a * p
        dx = dx - epsilon * (ap - p * jnp.sum(ap, axis=axis, keepdims=True))
    gx = jnp.expand_dims(g, axis)
    dx = _mask(dx * gx, where).astype(logits.dtype)
    # Soft labels: the derivative of the same formula w.r.t. the labels.
    _, vjp_y = jax.vjp(lambda y: _soft_ce_formula(jax.lax.stop_gradient(logits), y, where, axis, epsilon), labels)
    (dy,) = vjp_y(g)
    deps = None if epsilon is None else jnp.zeros_like(epsilon)
    return dx, dy, None, deps


_soft_ce.defvjp(_soft_ce_fwd, _soft_ce_bwd)


def _prob_args(logits, labels, axis, where, fname):
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
    ax = _axis(axis, logits.ndim)
    return logits, labels, ax, _where(where, logits, ax)


def softmax_cross_entropy(logits, labels, axis=-1, where=None):
    r"""Softmax cross-entropy against probability labels (optax's ``softmax_cross_entropy``).

    .. math:: \ell = -\sum_{c ∈ \text{where}} y_c \log \mathrm{softmax}(x)_c

    (softmax over the ``where`` entries only).  Gradient w.r.t. the logits:
    :math:`(\sum_c y_c)\,p - y`.

    Shapes: ``logits`` ``[..., num_classes]`` (classes on ``axis``, an int, a
    tuple of ints or ``None``); ``labels`` broadcastable to it; ``where``
    of the logits' shape or without ``axis``.  Returns the shape without
    ``axis``.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import softmax_cross_entropy
    >>> print(softmax_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[0.5, 0.5]])))
    [0.6931472]
    """
    logits, labels, ax, where = _prob_args(logits, labels, axis, where, "softmax_cross_entropy")
    return _soft_ce(logits, labels, where, ax, None)


def safe_softmax_cross_entropy(logits, labels):
    r"""Softmax cross-entropy with ``0·log 0 = 0`` (optax's ``safe_softmax_cross_entropy``).

    A ``-inf`` logit under a zero label contributes 0 to the loss and its
    gradient instead of NaN.  Classes on the last axis.

    Shapes: ``logits`` ``[..., num_classes]``, ``labels`` broadcastable to it;
    returns ``[...]``.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import safe_softmax_cross_entropy
    >>> print(safe_softmax_cross_entropy(jnp.array([[0.0, -jnp.inf, 0.0]]), jnp.array([[0.5, 0.0, 0.5]])))
    [0.6931472]
    """
    logits, labels, ax, _ = _prob_args(logits, labels, -1, None, "safe_softmax_cross_entropy")
    return _soft_ce(logits, labels, None, ax, None)


def poly_loss_cross_entropy(logits, labels, *, epsilon=2.0, axis=-1, where=None):
    r"""Poly-1 cross-entropy (Leng et al., 2022; optax's ``poly_loss_cross_entropy``).

    .. math:: \ell = \mathrm{CE}(x, y) + ε \sum_c y_c (1 - p_c)

    Gradient w.r.t. the logits: :math:`(\sum_c y_c) p - y - ε\,(y p - p \sum_c y_c p_c)`.

    Shapes: as :func:`softmax_cross_entropy`.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import poly_loss_cross_entropy
    >>> print(poly_loss_cross_entropy(jnp.array([[2.0, 1.0, -1.0]]), jnp.array([[1.0, 0.0, 0.0]])).round(6))
    [0.938243]
    """
    logits, labels, ax, where = _prob_args(logits, labels, axis, where, "poly_loss_cross_entropy")
    return _soft_ce(logits, labels, where, ax, jnp.asarray(epsilon, dtype=logits.dtype))


# ---------------------------------------------------------------------------------------------
# integer labels
# ---------------------------------------------------------------------------------------------

def _int_ce_formula(logits, labels, where, axis):
    label_logits = jnp.take_along_axis(logits, jnp.expand_dims(labels, axis), axis=axis).squeeze(axis)
    lse = jax.nn.logsumexp(logits, axis=axis, where=where)
    out = lse - label_logits
    if where is not None:
        out = jnp.where(jnp.any(where, axis), out, jnp.zeros_like(out))
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _int_ce(logits, labels, where, axis):
    return _int_ce_formula(logits, labels, where, axis)


def _int_ce_fwd(logits, labels, where, axis):
    return _int_ce_formula(logits, labels, where, axis), (logits, labels, where)


def _int_ce_bwd(axis, res, g):
    logits, labels, where = res
    p = jax.nn.softmax(logits, axis=axis, where=where)
    onehot = jnp.arange(logits.shape[axis]).reshape(
        tuple(-1 if i == axis else 1 for i in range(logits.ndim))) == jnp.expand_dims(labels, axis)
    dx = p - onehot.astype(logits.dtype)
    if where is not None:
        dx = dx * jnp.any(where, axis=axis, keepdims=True)
        dx = jnp.where(where | onehot, dx, jnp.zeros_like(dx))
    return (dx * jnp.expand_dims(g, axis)).astype(logits.dtype), None, None


_int_ce.defvjp(_int_ce_fwd, _int_ce_bwd)


def softmax_cross_entropy_with_integer_labels(logits, labels, axis=-1, where=None):
    r"""Softmax cross-entropy against class indices (optax's ``softmax_cross_entropy_with_integer_labels``).

    .. math:: \ell = \log \sum_{c ∈ \text{where}} e^{x_c} - x_{y}

    Gradient w.r.t. the logits: ``softmax(x) − onehot(y)``.  A tuple
    ``axis`` flattens those axes into one class axis (``num_classes`` is
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
    where = None if where is None else jnp.asarray(where)
    ax = _axis(axis, logits.ndim)
    if where is not None and where.ndim != logits.ndim:
        where = jnp.expand_dims(where, ax)
    if isinstance(ax, tuple):
        # Move the class axes last (keeping their order) and flatten them into one.
        batch = tuple(i for i in range(logits.ndim) if i not in ax)
        logits = logits.transpose(batch + ax).reshape(tuple(logits.shape[i] for i in batch) + (-1,))
        if where is not None:
            where = jnp.broadcast_to(where, tuple(jnp.shape(where)))
            where = where.transpose(batch + ax).reshape(tuple(where.shape[i] for i in batch) + (-1,))
        ax = len(batch)
    expected = tuple(s for i, s in enumerate(logits.shape) if i != ax)
    if tuple(labels.shape) != expected:
        raise ShapeMismatchError(
            f"labels must have shape {expected} (the logits' shape without the class axis); got {labels.shape}"
        )
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape)
    return _int_ce(logits, labels, where, ax)


# ---------------------------------------------------------------------------------------------
# sigmoid (elementwise)
# ---------------------------------------------------------------------------------------------

def _binary_args(logits, labels):
    logits = _floating(logits, "logits")
    labels = jnp.asarray(labels)
    try:
        shape = jnp.broadcast_shapes(logits.shape, labels.shape)
    except ValueError:
        raise ShapeMismatchError(f"labels of shape {labels.shape} do not broadcast to logits of shape {logits.shape}") from None
    return jnp.broadcast_to(logits, shape), jnp.broadcast_to(labels.astype(logits.dtype), shape)


def _bce_formula(x, y):
    return -(y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))


@jax.custom_vjp
def _bce(x, y):
    return _bce_formula(x, y)


def _bce_fwd(x, y):
    return _bce_formula(x, y), (x, y)


def _bce_bwd(res, g):
    x, y = res
    # ∂/∂x = σ(x) − y;  ∂/∂y = log σ(−x) − log σ(x) = −x
    return g * (jax.nn.sigmoid(x) - y), -g * x


_bce.defvjp(_bce_fwd, _bce_bwd)


def sigmoid_binary_cross_entropy(logits, labels):
    r"""Elementwise sigmoid cross-entropy (optax's ``sigmoid_binary_cross_entropy``).

    .. math:: \ell = -\left[y \log σ(x) + (1-y) \log σ(-x)\right]

    Gradient: :math:`σ(x) - y`.  Both logs are overflow-free.

    Shapes: ``logits`` and ``labels`` broadcastable to each other; returns
    the broadcast shape.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import sigmoid_binary_cross_entropy
    >>> f32 = jnp.float32
    >>> sigmoid_binary_cross_entropy(jnp.array([1e4, -1e4, 0.0], f32), jnp.array([1.0, 1.0, 0.5], f32)).tolist()
    [0.0, 10000.0, 0.6931471824645996]
    """
    x, y = _binary_args(logits, labels)
    return _bce(x, y)


def _focal_formula(x, y, alpha, gamma):
    s, sn = jax.nn.sigmoid(x), jax.nn.sigmoid(-x)
    omp = y * sn + (1.0 - y) * s  # 1 − p_t without cancellation
    loss = jnp.power(omp, gamma) * _bce_formula(x, y)
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return loss


@jax.custom_vjp
def _focal(x, y, alpha, gamma):
    return _focal_formula(x, y, alpha, gamma)


def _focal_fwd(x, y, alpha, gamma):
    return _focal_formula(x, y, alpha, gamma), (x, y, alpha, gamma)


def _focal_bwd(res, g):
    x, y, alpha, gamma = res
    s, sn = jax.nn.sigmoid(x), jax.nn.sigmoid(-x)
    omp = y * sn + (1.0 - y) * s
    bce = _bce_formula(x, y)
    mod = jnp.power(omp, gamma)
    # ∂(1−p_t)/∂x = (1 − 2y) σ(x) σ(−x); at 1 − p_t = 0 the product with bce (→ 0) is 0.
    safe = jnp.where(omp == 0, jnp.ones_like(omp), omp)
    dmod = jnp.where(omp == 0, jnp.zeros_like(omp), gamma * jnp.power(safe, gamma - 1.0) * (1.0 - 2.0 * y) * s * sn)
    dx = dmod * bce + mod * (s - y)
    if alpha is not None:
        dx = (alpha * y + (1.0 - alpha) * (1.0 - y)) * dx
    _, vjp_y = jax.vjp(lambda yy: _focal_formula(jax.lax.stop_gradient(x), yy, alpha, gamma), y)
    (dy,) = vjp_y(g)
    return (g * dx).astype(x.dtype), dy, None if alpha is None else jnp.zeros_like(alpha), jnp.zeros_like(gamma)


_focal.defvjp(_focal_fwd, _focal_bwd)


def sigmoid_focal_loss(logits, labels, *, alpha=None, gamma=2.0):
    r"""Sigmoid focal loss (Lin et al., 2017; optax's ``sigmoid_focal_loss``).

    .. math:: \ell = a_t\,(1 - p_t)^γ\,\mathrm{BCE}(x, y),\quad
              1 - p_t = yσ(-x) + (1-y)σ(x),\quad a_t = αy + (1-α)(1-y)

    ``alpha=None`` applies no class balancing.  Labels may be soft (in [0, 1]).

    Shapes: as :func:`sigmoid_binary_cross_entropy`.

    >>> import jax.numpy as jnp
    >>> from crossentropy.jax import sigmoid_focal_loss
    >>> print(sigmoid_focal_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]), alpha=0.25).round(6))
    [0.000451 0.016994]
    """
    x, y = _binary_args(logits, labels)
    a = None if alpha is None else jnp.asarray(alpha, dtype=x.dtype)
    return _focal(x, y, a, jnp.asarray(gamma, dtype=x.dtype))
