r"""Binary cross-entropy: from probabilities, from logits, and the focal variants.

Every function here is elementwise: the per-sample loss has the input's shape.
Options shared by all of them:

``sample_weight``
    broadcast (NumPy rules) to the input's shape; multiplies each term.
``pos_weight``
    weight of the positive term, :math:`-[w_+ y \log p + (1-y)\log(1-p)]`
    (PyTorch's ``pos_weight``), broadcast to the input's shape.
``label_smoothing``
    ε in [0, 1]: :math:`y ← y(1-ε) + ε/2` (Keras).
``reduction``
    ``'none' | 'sum' | 'mean' | 'sum_over_batch_size'`` (see
    :mod:`crossentropy._reduction`; ``mean`` is the ``sample_weight``-weighted
    mean, ``sum_over_batch_size`` divides by the element count as Keras and
    PyTorch's ``BCELoss(weight=...)`` do).
``base``
    logarithm base: ``None``/``'e'`` (nats), ``2``/``'bits'``, ``10``, ...
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from . import _fastpath
from ._backend import log_of_base, namespace
from ._grad import Key, quiet, register
from ._reduction import Terms, finish
from ._typing import Array, ArrayLike
from ._validation import (
    as_array,
    check_compat,
    check_floating,
    check_probabilities,
    check_reduction,
    check_same_shape,
    check_unit_interval_option,
    check_weights,
)
from ._errors import InvalidOptionError
from .activations import log_sigmoid, sigmoid

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_focal_cross_entropy",
    "binary_focal_cross_entropy_with_logits",
]

# Keras's backend.epsilon(): the clip used by Keras's probability losses.
KERAS_EPSILON = 1e-7
_keras_epsilon = contextvars.ContextVar("crossentropy_keras_epsilon", default=KERAS_EPSILON)


def keras_epsilon() -> float:
    """The clip of ``compat='keras'``: Keras's default ``keras.config.epsilon()`` (1e-7), or,
    inside :func:`keras_epsilon_set`, the value ``crossentropy.keras`` read from Keras's config."""
    return _keras_epsilon.get()


@contextlib.contextmanager
def keras_epsilon_set(eps: float) -> Iterator[None]:
    """``compat='keras'`` clips at ``eps`` inside this block (context-local: threads do not see it)."""
    token = _keras_epsilon.set(float(eps))
    try:
        yield
    finally:
        _keras_epsilon.reset(token)


# PyTorch's BCELoss backward clamps p(1−p) at a *float32* 1e-12, also for float64.
_TORCH_BCE_EPS = 9.9999999600419720e-13  # == float(np.float32(1e-12))


def _prepare(input: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None, pos_weight: ArrayLike | None,
             label_smoothing: float, reduction: str,
             probs: bool) -> tuple[Any, Array, Array, Array | None, Array | None, float]:
    xp = namespace(input, target, sample_weight, pos_weight)
    input = as_array(xp, input, None, "input")
    check_floating(xp, input, "input")
    target = as_array(xp, target, input, "target")
    check_same_shape(input, target, "input", "target")
    if not xp.is_floating(target):
        target = xp.astype(target, input)  # 0/1 integer or bool labels
    check_reduction(reduction)
    eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    if probs:
        check_probabilities(xp, input, "input")
    check_probabilities(xp, target, "target")
    sample_weight = check_weights(xp, as_array(xp, sample_weight, input, "sample_weight"), "sample_weight")
    pos_weight = check_weights(xp, as_array(xp, pos_weight, input, "pos_weight"), "pos_weight")
    if pos_weight is not None:
        pos_weight = xp.astype(pos_weight, input)
    if eps:
        # Keras: y ← y·(1 − ε) + ε/2.
        target = target * (1.0 - eps) + 0.5 * eps
    return xp, input, target, sample_weight, pos_weight, eps


def _done(xp: Any, loss: Array, grads: dict[Key, Array], eps: float, *, reduction: str, sample_weight: ArrayLike | None,
          base: float | None, grad_output: ArrayLike | None) -> tuple[Array, dict[Key, Array]]:
    """Reduce (``finish``); ``grads[1]`` is w.r.t. the smoothed target, chained to the given one here."""
    if 1 in grads and eps:
        grads[1] = grads[1] * (1.0 - eps)  # ∂y'/∂y for y' = y(1 − ε) + ε/2
    value, g = finish(xp, Terms(loss, grads or None), reduction=reduction, sample_weight=sample_weight,
                      log_base=log_of_base(base), grad_output=grad_output, need_grad=bool(grads))
    return value, (g or {})


def _xlog(xp: Any, t: Array, logv: Array) -> Array:
    # t·log v with the convention 0·log 0 = 0 (a zero-weight term never turns
    # an infinite log into NaN).  Only a non-finite log is guarded, so that
    # autodiff keeps ∂(t·log v)/∂t = log v at t = 0 (hard 0/1 labels).
    return t * xp.where((t == 0) & ~xp.isfinite(logv), xp.zeros_like(logv), logv)


def _bce_probs_terms(xp: Any, p: Array, t: Array, pw: Array, compat: str | None, need_grad: bool,
                     need_t: bool = False) -> tuple[Array, dict[Key, Array]]:
    """Per-element BCE from probabilities, with the compat modes: ``(loss, {0: ∂/∂p, 1: ∂/∂y})``.

    Every mode has the form ``−(w₊·y·L1 + (1−y)·L0)`` with its own logs
    ``L1 ≈ log p`` and ``L0 ≈ log(1−p)``, so ``∂/∂y = L0 − w₊·L1``.
    """
    q = 1.0 - t
    wt = t if pw is None else pw * t
    grads: dict[Key, Array] = {}
    if compat is None:
        # Exact: log1p(-p) keeps precision for small p where log(1 - p) rounds.
        lp, l1p = xp.log(p), xp.log1p(-p)
        loss = -(_xlog(xp, wt, lp) + _xlog(xp, q, l1p))
        if need_grad:
            # ∂/∂p = −w₊y/p + (1−y)/(1−p); 0/0 avoided by the same convention.
            grads[0] = (-xp.where(wt == 0, xp.zeros_like(p), wt / p)
                        + xp.where(q == 0, xp.zeros_like(p), q / (1.0 - p)))
    elif compat == "torch":
        # PyTorch BCELoss clamps each log at −100 so that an impossible label
        # costs 100 instead of inf; its backward divides by max(p(1−p), 1e-12),
        # where ATen's 1e-12 is a float constant (9.9999999600419720e-13 in
        # double), so the float64 gradient at p ∈ {0, 1} matches only with it.
        lp = xp.maximum(xp.log(p), -100.0)
        l1p = xp.maximum(xp.log1p(-p), -100.0)
        loss = (t - 1.0) * l1p - t * lp if pw is None else (t - 1.0) * l1p - wt * lp
        if need_grad:
            if pw is None:
                grads[0] = (p - t) / xp.maximum((1.0 - p) * p, _TORCH_BCE_EPS)
            else:
                grads[0] = (-wt * (1.0 - p) + q * p) / xp.maximum((1.0 - p) * p, _TORCH_BCE_EPS)
    elif compat in ("keras", "tf_keras", "sklearn"):
        eps = keras_epsilon() if compat != "sklearn" else xp.eps(p)
        c = xp.clip(p, eps, 1.0 - eps)
        if compat == "tf_keras":
            # Legacy tf.keras (Keras 2) clipped *and* added ε inside the log.
            lp, l1p = xp.log(c + eps), xp.log(1.0 - c + eps)
            dlp, dl1p = 1.0 / (c + eps), 1.0 / (1.0 - c + eps)
        else:
            lp, l1p = xp.log(c), xp.log(1.0 - c)
            dlp, dl1p = 1.0 / c, 1.0 / (1.0 - c)
        loss = -(wt * lp + q * l1p)
        if need_grad:
            inside = (p >= eps) & (p <= 1.0 - eps)  # clip passes the gradient only inside
            grads[0] = xp.where(inside, -wt * dlp + q * dl1p, xp.zeros_like(p))
    else:
        raise InvalidOptionError(f"compat={compat!r} is not available here")
    if need_t:
        grads[1] = l1p - (lp if pw is None else pw * lp)
    return loss, grads


def _bce_logits_terms(xp: Any, x: Array, t: Array, pw: Array, need_grad: bool,
                      need_t: bool = False) -> tuple[Array, dict[Key, Array]]:
    # −[w₊ y log σ(x) + (1−y) log σ(−x)], using log(1−σ(x)) = log σ(−x): both
    # logs come from the overflow-free log_sigmoid, never from log(σ).
    wt = t if pw is None else pw * t
    q = 1.0 - t
    ls_pos, ls_neg = log_sigmoid(x), log_sigmoid(-x)
    loss = -(_xlog(xp, wt, ls_pos) + _xlog(xp, q, ls_neg))
    grads: dict[Key, Array] = {}
    if need_grad:
        # ∂/∂x = (1−y)σ(x) − w₊ y σ(−x) (= σ(x) − y when w₊ = 1).  σ(−x) is
        # computed directly, not as 1 − σ(x): at x = 30 the latter keeps only
        # 3 significant digits of 9.4e-14, the former all of them.
        grads[0] = q * sigmoid(x) - wt * sigmoid(-x)
    if need_t:
        # ∂/∂y = log σ(−x) − w₊ log σ(x); for w₊ = 1 that is exactly −x (no cancellation near 0).
        grads[1] = -x if pw is None else ls_neg - pw * ls_pos
    return loss, grads


@quiet
def _bce_probs(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (),
               grad_output: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
               pos_weight: ArrayLike | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
               base: float | None = None, compat: str | None = None) -> tuple[Array, dict[Key, Array]]:
    check_compat(compat)
    xp, input, t, sw, pw, eps = _prepare(input, target, sample_weight=sample_weight, pos_weight=pos_weight,
                                         label_smoothing=label_smoothing, reduction=reduction, probs=True)
    loss, grads = _bce_probs_terms(xp, input, t, pw, compat, 0 in wrt, 1 in wrt)
    return _done(xp, loss, grads, eps, reduction=reduction, sample_weight=sw, base=base, grad_output=grad_output)


def binary_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, sample_weight: ArrayLike | None = None,
                         pos_weight: ArrayLike | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                         base: float | None = None, compat: str | None = None) -> Array:
    r"""Binary cross-entropy from probabilities.

    .. math:: \ell_i = -\left[w_+ y_i \log p_i + (1 - y_i)\log(1 - p_i)\right]

    Exact by default: no clipping, ``0·log 0 = 0``, and an impossible label
    (``p = 0`` with ``y = 1``) costs ``inf`` with gradient ``-inf``.
    ``compat`` reproduces a reference bit for bit where it deliberately
    differs: ``'torch'`` (each log clamped at −100), ``'keras'`` (``p``
    clipped to [1e-7, 1 − 1e-7]), ``'tf_keras'`` (legacy Keras 2: clipped and
    ``+1e-7`` inside each log), ``'sklearn'`` (clipped at the dtype's eps).

    Shapes: ``input`` and ``target`` of the same shape (any); ``target`` may
    be soft labels in [0, 1].  ``reduction='none'`` returns that shape.

    The tutorial's Keras example (six labels and predictions) — legacy
    tf.keras printed 0.53984624, Keras 3 gives 0.53984642:

    >>> import numpy as np
    >>> from crossentropy import binary_cross_entropy
    >>> y = np.array([0, 1, 0, 0, 0, 0], dtype=np.float32)
    >>> p = np.array([.5, .7, .2, .3, .5, .6], dtype=np.float32)
    >>> print(f'{binary_cross_entropy(p, y, compat="tf_keras"):.8f} {binary_cross_entropy(p, y, compat="keras"):.8f}')
    0.53984624 0.53984642

    The tutorial's model B in base 10 (four students, passing labels 0 0 1 1):

    >>> p_pass = np.array([0.2, 0.4, 0.7, 0.9]); passed = np.array([0.0, 0.0, 1.0, 1.0])
    >>> round(float(binary_cross_entropy(p_pass, passed, reduction="sum", base=10)), 4)
    0.5194
    """
    return _bce_probs(input, target, sample_weight=sample_weight, pos_weight=pos_weight,
                      label_smoothing=label_smoothing, reduction=reduction, base=base, compat=compat)[0]


@quiet
def _bce_logits(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (),
                grad_output: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                pos_weight: ArrayLike | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                base: float | None = None, grad_into: Array | None = None) -> tuple[Array, dict[Key, Array]]:
    need_grad = 0 in wrt
    if 1 not in wrt:
        fast = _fastpath.bce_direct(input, target, need_grad, grad_output, sample_weight, pos_weight,
                                    label_smoothing, reduction, base, grad_into)
        if fast is not NotImplemented:
            return fast[0], ({0: fast[1]} if need_grad else {})
    xp, input, t, sw, pw, eps = _prepare(input, target, sample_weight=sample_weight, pos_weight=pos_weight,
                                         label_smoothing=label_smoothing, reduction=reduction, probs=False)
    if 1 not in wrt:
        fast = _fastpath.bce_with_logits(xp, input, t, pw, need_grad, sample_weight=sw, reduction=reduction,
                                         base=base, grad_output=grad_output, grad_into=grad_into)
        if fast is not NotImplemented:
            # finished: the kernel folded reduction, weights and base into the gradient
            return fast[0], ({0: fast[1]} if need_grad else {})
    loss, grads = _bce_logits_terms(xp, input, t, pw, need_grad, 1 in wrt)
    value, grads = _done(xp, loss, grads, eps, reduction=reduction, sample_weight=sw, base=base,
                         grad_output=grad_output)
    if need_grad and grad_into is not None:
        grads[0] = _fastpath.deliver((value, grads[0]), grad_into, input)[1]
    return value, grads


def binary_cross_entropy_with_logits(input: ArrayLike, target: ArrayLike, /, *, sample_weight: ArrayLike | None = None,
                                     pos_weight: ArrayLike | None = None, label_smoothing: float = 0.0,
                                     reduction: str = "mean", base: float | None = None) -> Array:
    r"""Binary cross-entropy from logits :math:`x` (probability :math:`σ(x)`).

    .. math:: \ell_i = -\left[w_+ y_i \log σ(x_i) + (1-y_i) \log σ(-x_i)\right]

    Both logs come from :func:`~crossentropy.log_sigmoid`, so any finite logit
    (±1e4 included) and ±inf are exact; nothing is clipped.  Gradient:
    :math:`(1-y)σ(x) - w_+ y σ(-x)`.

    Shapes: ``input`` and ``target`` of the same shape.

    >>> import numpy as np
    >>> from crossentropy import binary_cross_entropy_with_logits
    >>> x = np.array([1e4, -1e4, 0.0]); y = np.array([1.0, 1.0, 0.5])
    >>> binary_cross_entropy_with_logits(x, y, reduction="none").tolist()
    [0.0, 10000.0, 0.6931471805599453]
    """
    return _fastpath.bce_value(_bce_logits, input, target, sample_weight, pos_weight, label_smoothing, reduction,
                               base)


def _focal_terms(xp: Any, one_minus_pt: Array, dpt: Array, bce: Array, grads: dict[Key, Array], t: Array, gamma: float,
                 alpha: float | None, domp_dt: Array | None = None) -> tuple[Array, dict[Key, Array]]:
    r"""Shared focal algebra: ℓ = a_t (1 − p_t)^γ · bce, from the BCE's own gradients.

    ``dpt`` = ∂p_t/∂input, ``grads`` the BCE's ``{0: ∂bce/∂input, 1: ∂bce/∂y}``
    (the keys present are the ones wanted) and ``domp_dt`` = ∂(1 − p_t)/∂y.
    """
    a = None if alpha is None else t * alpha + (1.0 - t) * (1.0 - alpha)
    mod = xp.power(one_minus_pt, gamma) if gamma != 0 else xp.ones_like(bce)
    loss = mod * bce
    if gamma != 0 and grads:
        # ∂(1−p_t)^γ/∂(1−p_t) = γ (1−p_t)^(γ−1); at 1 − p_t = 0 the product with
        # bce (→ 0 there) vanishes, so the 0·inf for γ < 1 is defined as 0.
        safe = xp.where(one_minus_pt == 0, xp.ones_like(bce), one_minus_pt)
        dmod = xp.where(one_minus_pt == 0, xp.zeros_like(bce), gamma * xp.power(safe, gamma - 1.0))
    out: dict[Key, Array] = {}
    if 0 in grads:
        g = (-dmod * dpt * bce + mod * grads[0]) if gamma != 0 else grads[0]
        out[0] = g if a is None else a * g
    if 1 in grads:
        g = (dmod * domp_dt * bce + mod * grads[1]) if gamma != 0 else grads[1]
        if alpha is not None:  # (then a is set)
            # ∂a_t/∂y = 2α − 1
            g = a * g + (2.0 * alpha - 1.0) * loss
        out[1] = g
    if a is not None:
        loss = a * loss
    return loss, out


def _check_gamma(gamma: float) -> float:
    from ._validation import check_nonnegative_option

    return check_nonnegative_option(gamma, "gamma")


def _check_alpha(alpha: float | None) -> float | None:
    if alpha is None:
        return None
    return check_unit_interval_option(alpha, "alpha")


@quiet
def _bfocal_probs(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (),
                  grad_output: ArrayLike | None = None, gamma: float = 2.0, alpha: float | None = None,
                  sample_weight: ArrayLike | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                  base: float | None = None, compat: str | None = None) -> tuple[Array, dict[Key, Array]]:
    check_compat(compat, (None, "keras"))
    gamma, alpha = _check_gamma(gamma), _check_alpha(alpha)
    xp, input, t, sw, _, eps = _prepare(input, target, sample_weight=sample_weight, pos_weight=None,
                                        label_smoothing=label_smoothing, reduction=reduction, probs=True)
    p = input
    bce, grads = _bce_probs_terms(xp, p, t, None, compat, 0 in wrt, 1 in wrt)
    if compat == "keras":
        # Keras's own arithmetic (from the unclipped prediction), for bit parity.
        one_minus_pt = 1.0 - (t * p + (1.0 - t) * (1.0 - p))
    else:
        one_minus_pt = t * (1.0 - p) + (1.0 - t) * p
    dpt = 2.0 * t - 1.0  # ∂p_t/∂p
    loss, grads = _focal_terms(xp, one_minus_pt, dpt, bce, grads, t, gamma, alpha, domp_dt=1.0 - 2.0 * p)
    return _done(xp, loss, grads, eps, reduction=reduction, sample_weight=sw, base=base, grad_output=grad_output)


def binary_focal_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, gamma: float = 2.0,
                               alpha: float | None = None, sample_weight: ArrayLike | None = None,
                               label_smoothing: float = 0.0, reduction: str = "mean", base: float | None = None,
                               compat: str | None = None) -> Array:
    r"""Binary focal cross-entropy from probabilities (Lin et al., 2017).

    .. math:: \ell_i = a_t (1 - p_t)^γ \cdot \mathrm{BCE}(p_i, y_i),\quad
              p_t = y p + (1-y)(1-p),\quad a_t = y α + (1-y)(1-α)

    ``alpha=None`` applies no class balancing (Keras's
    ``apply_class_balancing=False``); a float in [0, 1] applies it.  ``gamma=0``
    and ``alpha=None`` give plain BCE.  ``compat='keras'`` clips the BCE term
    as Keras does.

    Shapes: ``input`` and ``target`` of the same shape.

    >>> import numpy as np
    >>> from crossentropy import binary_focal_cross_entropy
    >>> p = np.array([0.9, 0.2]); y = np.array([1.0, 0.0])
    >>> round(float(binary_focal_cross_entropy(p, y, gamma=2.0, reduction="sum")), 6)
    0.009978
    """
    return _bfocal_probs(input, target, gamma=gamma, alpha=alpha, sample_weight=sample_weight,
                         label_smoothing=label_smoothing, reduction=reduction, base=base, compat=compat)[0]


@quiet
def _bfocal_logits(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (),
                   grad_output: ArrayLike | None = None, gamma: float = 2.0, alpha: float | None = None,
                   sample_weight: ArrayLike | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                   base: float | None = None, compat: str | None = None) -> tuple[Array, dict[Key, Array]]:
    check_compat(compat, (None, "keras"))
    gamma, alpha = _check_gamma(gamma), _check_alpha(alpha)
    xp, input, t, sw, _, eps = _prepare(input, target, sample_weight=sample_weight, pos_weight=None,
                                        label_smoothing=label_smoothing, reduction=reduction, probs=False)
    x = input
    bce, grads = _bce_logits_terms(xp, x, t, None, 0 in wrt, 1 in wrt)
    s, sn = sigmoid(x), sigmoid(-x)
    if compat == "keras":
        # Keras: its sigmoid output carries the logits, so the BCE factor is
        # the exact logits BCE, but the focal factor is 1 − p_t with
        # p_t = y·σ(x) + (1−y)(1 − σ(x)), which loses precision as p_t → 1.
        one_minus_pt = 1.0 - (t * s + (1.0 - t) * (1.0 - s))
        domp_dt = 1.0 - 2.0 * s
    else:
        # 1 − p_t = y σ(−x) + (1−y) σ(x): no cancellation for confident logits.
        one_minus_pt = t * sn + (1.0 - t) * s
        domp_dt = sn - s
    dpt = (2.0 * t - 1.0) * s * sn  # ∂p_t/∂x = (2y−1) σ(x) σ(−x)
    loss, grads = _focal_terms(xp, one_minus_pt, dpt, bce, grads, t, gamma, alpha, domp_dt=domp_dt)
    return _done(xp, loss, grads, eps, reduction=reduction, sample_weight=sw, base=base, grad_output=grad_output)


def binary_focal_cross_entropy_with_logits(input: ArrayLike, target: ArrayLike, /, *, gamma: float = 2.0,
                                           alpha: float | None = None, sample_weight: ArrayLike | None = None,
                                           label_smoothing: float = 0.0, reduction: str = "mean",
                                           base: float | None = None, compat: str | None = None) -> Array:
    r"""Binary focal cross-entropy from logits (optax's ``sigmoid_focal_loss``).

    Same formula as :func:`binary_focal_cross_entropy` with :math:`p = σ(x)`;
    :math:`1 - p_t` is computed as :math:`yσ(-x) + (1-y)σ(x)` so confident
    logits keep full precision.  ``compat='keras'`` reproduces Keras's
    ``BinaryFocalCrossentropy(from_logits=True)`` arithmetic: the same exact
    BCE factor, but :math:`1 - p_t` computed as :math:`1 - [yσ(x) + (1-y)(1-σ(x))]`,
    which rounds to 0 once :math:`p_t` rounds to 1.

    Shapes: ``input`` and ``target`` of the same shape.

    >>> import numpy as np
    >>> from crossentropy import binary_focal_cross_entropy_with_logits
    >>> x = np.array([2.0, -1.0]); y = np.array([1.0, 0.0])
    >>> # 0.25·(1−σ(2))²·(−ln σ(2)) + 0.75·σ(−1)²·(−ln σ(1))
    >>> round(float(binary_focal_cross_entropy_with_logits(x, y, alpha=0.25, reduction="sum")), 6)
    0.017444
    """
    return _bfocal_logits(input, target, gamma=gamma, alpha=alpha, sample_weight=sample_weight,
                          label_smoothing=label_smoothing, reduction=reduction, base=base, compat=compat)[0]


for _public, _impl in ((binary_cross_entropy, _bce_probs), (binary_cross_entropy_with_logits, _bce_logits),
                      (binary_focal_cross_entropy, _bfocal_probs),
                      (binary_focal_cross_entropy_with_logits, _bfocal_logits)):
    register(_public, _impl, ("input", "target"), (0, 1))
