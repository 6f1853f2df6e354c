r"""Categorical cross-entropy: from logits, from probabilities, NLL, and variants.

Targets are either **class indices** (an integer array with the input's shape
minus the class axis) or **probabilities** (a floating array with the input's
shape: one-hot, soft labels, any distribution).  The class axis is ``axis``
(default ``-1``, as in Keras, optax and NumPy; PyTorch's ``(N, C, d1, ..., dk)``
layout is ``axis=1``).

Options shared by the functions here:

``weight``
    class weights, shape ``(C,)`` (PyTorch's ``weight``).  With index targets
    ``reduction='mean'`` divides by ``Σ weight[y_i]`` as PyTorch does; with
    probability targets each class term is weighted and ``'mean'`` divides by
    the sample count, also as PyTorch does.
``sample_weight``
    per-sample weights broadcast (NumPy rules) to the per-sample loss shape.
``ignore_index``
    a class-index value whose samples contribute nothing and are not counted
    (index targets only; PyTorch uses ``-100``, here the default is ``None``).
``label_smoothing``
    ε in [0, 1]: the target becomes :math:`(1-ε)\,y + ε/C` (PyTorch, Keras).
``reduction``
    ``'none' | 'sum' | 'mean' | 'sum_over_batch_size'``.
``base``
    logarithm base (``None`` = nats, ``2``/``'bits'``, ``10``).
"""

from __future__ import annotations

from typing import Any

from . import _fastpath
from ._backend import log_of_base, namespace
from ._errors import InvalidOptionError, ShapeMismatchError
from ._grad import Key, quiet, register
from ._reduction import Terms, finish
from ._typing import Array, ArrayLike
from ._validation import (
    as_array,
    check_compat,
    check_floating,
    check_index_target,
    check_nonnegative_option,
    check_probabilities,
    check_reduction,
    check_same_shape,
    check_softcap,
    check_unit_interval_option,
    check_weights,
    classify_target,
    normalize_axis,
)
from .activations import SoftmaxParts
from .binary import keras_epsilon

__all__ = [
    "cross_entropy",
    "categorical_cross_entropy",
    "nll_loss",
    "focal_cross_entropy",
    "categorical_focal_cross_entropy",
    "generalized_cross_entropy",
    "poly1_cross_entropy",
    "safe_softmax_cross_entropy",
]


class _Prep:
    """Validated inputs of a categorical loss, in one record."""

    __slots__ = ("xp", "x", "axis", "C", "kind", "idx", "valid", "prob", "w", "wcol", "eps", "sw", "onehot")

    xp: Any  # the array namespace
    x: Array
    axis: int
    C: int
    kind: str  # "index" or "prob"
    idx: Array | None
    valid: Array | None
    prob: Array | None
    w: Array | None
    wcol: Array | None
    eps: float
    sw: Array | None
    onehot: Array | None

    def dense_target(self) -> Array:
        """The (smoothed) target distribution, input-shaped, ignored rows zero."""
        xp = self.xp
        if self.kind == "index":
            y = self.onehot_target()
        else:
            y = self.prob
        if self.eps:
            y = y * (1.0 - self.eps) + self.eps / self.C
        if self.valid is not None:
            y = y * xp.astype(xp.expand_dims(self.valid, self.axis), self.x)
        return y

    def onehot_target(self) -> Array:
        if self.onehot is None:
            self.onehot = self.xp.one_hot(self.idx, self.C, self.axis, self.x)
        return self.onehot

    def coefficients(self) -> Array:
        """``a`` with ``loss_i = -Σ_c a_ic log p_ic``: class weight × target."""
        a = self.dense_target()
        return a if self.wcol is None else a * self.wcol

    def target_grad(self, d_a: Array) -> Array:
        """Chain ``∂loss/∂a_c`` back to the probability target: ``a = w·((1−ε)t + ε/C)``."""
        g = d_a if self.wcol is None else d_a * self.wcol
        return g * (1.0 - self.eps) if self.eps else g

    def norm_weight(self) -> Array | None:
        """``W_i`` for 'mean': ``weight[y_i]`` for index targets (PyTorch)."""
        if self.kind != "index" or self.w is None:
            return None
        xp = self.xp
        wy = xp.take(self.w, self.idx)  # a gather over N, not an N×C one-hot product
        return wy if self.valid is None else xp.where(self.valid, wy, xp.zeros_like(wy))


def _prepare(input: ArrayLike, target: ArrayLike, *, axis: int, weight: ArrayLike | None, ignore_index: int | None,
             label_smoothing: float, reduction: str, sample_weight: ArrayLike | None, probs_input: bool | str = False,
             allow_prob_target: bool = True, allow_index_target: bool = True) -> _Prep:
    xp = namespace(input, target, weight, sample_weight)
    input = as_array(xp, input, None, "input")
    check_floating(xp, input, "input")
    if input.ndim < 1:
        raise ShapeMismatchError(f"input must have at least one (class) dimension; got shape {tuple(input.shape)}")
    check_reduction(reduction)
    r = _Prep()
    r.xp, r.x, r.onehot = xp, input, None
    r.axis = normalize_axis(axis, input.ndim)
    r.C = int(input.shape[r.axis])
    target = as_array(xp, target, input, "target")
    r.kind = classify_target(xp, target)
    r.eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    if probs_input:
        # probs_input="renormalised": rows are divided by their sums (Keras), any scores >= 0 are valid
        check_probabilities(xp, input, "input", renormalised=probs_input == "renormalised")
    if r.kind == "index":
        if not allow_index_target:
            raise InvalidOptionError("target must hold probabilities (floating dtype) for this loss; got integer class indices")
        expected = tuple(s for i, s in enumerate(input.shape) if i != r.axis)
        check_index_target(xp, target, r.C, ignore_index, expected)
        if ignore_index is not None:
            r.valid = target != ignore_index
            # Ignored entries index class 0 so that gathers stay in range; their
            # contribution is masked out afterwards.
            r.idx = xp.where(r.valid, target, xp.zeros_like(target))
        else:
            r.valid, r.idx = None, target
        r.prob = None
    else:
        if not allow_prob_target:
            raise InvalidOptionError(f"target must hold integer class indices for this loss; got dtype {target.dtype}")
        if ignore_index is not None:
            raise InvalidOptionError(
                f"ignore_index={ignore_index} only applies to class-index targets; "
                f"target holds probabilities (dtype {target.dtype})"
            )
        check_same_shape(input, target, "input", "target (probabilities)")
        check_probabilities(xp, target, "target")
        r.prob, r.idx, r.valid = xp.astype(target, input), None, None
    w = check_weights(xp, as_array(xp, weight, input, "weight"), "weight")
    if w is not None:
        if tuple(w.shape) != (r.C,):
            raise ShapeMismatchError(f"weight must have shape ({r.C},), one entry per class; got {tuple(w.shape)}")
        w = xp.astype(w, input)
        r.wcol = xp.class_column(w, r.axis, input.ndim)
    else:
        r.wcol = None
    r.w = w
    r.sw = check_weights(xp, as_array(xp, sample_weight, input, "sample_weight"), "sample_weight")
    return r


def _xlogy(xp: Any, a: Array, logp: Array) -> Array:
    # a·log p with 0·log 0 = 0: a zero-probability class under a zero target
    # (e.g. a −inf logit mask) contributes nothing instead of NaN.  Only the
    # non-finite log is guarded, so that autodiff keeps ∂(a·log p)/∂a = log p at
    # a = 0 (a soft label or class weight that is 0 still has a gradient).
    return a * xp.where((a == 0) & ~xp.isfinite(logp), xp.zeros_like(logp), logp)


def _finish(r: _Prep, loss: Array, grads: dict[Key, Array], *, reduction: str, base: float | None,
            grad_output: ArrayLike | None, norm: Array | None = None) -> tuple[Array, dict[Key, Array]]:
    """Reduce; ``grads`` is the dict of per-sample gradients (empty when none was asked)."""
    value, g = finish(r.xp, Terms(loss, grads or None, norm, r.valid, r.axis), reduction=reduction,
                      sample_weight=r.sw, log_base=log_of_base(base), grad_output=grad_output,
                      need_grad=bool(grads))
    return value, (g or {})


def _wants_target_grad(r: _Prep, wrt: tuple[Key, ...], fname: str) -> bool:
    if 1 not in wrt:
        return False
    if r.kind == "index":
        raise InvalidOptionError(
            f"{fname} has no gradient with respect to target when it holds class indices (integers); "
            "pass probabilities (a floating target) to differentiate with respect to them")
    return True


def _mask(r: _Prep, v: Array) -> Array:
    return v if r.valid is None else r.xp.where(r.valid, v, r.xp.zeros_like(v))


# ---------------------------------------------------------------------------------------------
# cross_entropy (logits)
# ---------------------------------------------------------------------------------------------

def _ce_terms(r: _Prep, z_loss: float, need_grad: bool, need_target_grad: bool = False, sp: SoftmaxParts | None = None,
              softcap: float | None = None) -> tuple[Array, dict[Key, Array]]:
    """Reference per-sample CE from logits, and the gradients asked for: ``(loss, {0: ∂/∂x, 1: ∂/∂t})``.

    Every ``−log p_c`` comes from :class:`~crossentropy.activations.SoftmaxParts`,
    so a confident correct prediction keeps its loss ``log1p(Σ_{j≠y} e^{x_j−x_y})``
    to the last bit instead of rounding ``lse − x_y`` to 0.
    """
    xp, x, ax = r.xp, r.x, r.axis
    th = None
    if softcap is not None:
        # Gemma's logit soft-capping: the loss sees s·tanh(x/s); the chain factor 1 − tanh² comes last.
        th = xp.tanh(x / softcap)
        x = softcap * th
    sp = SoftmaxParts(xp, x, ax) if sp is None else sp
    logp = sp.logp
    if r.kind == "index" and not r.eps:
        # The usual case: gather −log p_y (and its class weight) directly.
        # log p_y = (x_y − shift) − log S from the gathered logit: the same bits as gathering log p,
        # without a full N×C log p array (which XLA, for one, computes whole before the gather).
        x_y = xp.take_along_axis(x, xp.expand_dims(r.idx, ax), ax)
        nll = -xp.squeeze((x_y - sp.shift) - sp.log_s, ax)
        if r.w is not None:
            nll = nll * xp.take(r.w, r.idx)
        loss = _mask(r, nll)
        a = None
    else:
        a = r.coefficients()
        loss = -xp.sum(_xlogy(xp, a, logp), axis=ax)
    lse = None
    if z_loss:
        # z-loss (PaLM): z·(log Σ e^x)² pulls the log-partition towards 0.
        lse = xp.squeeze(sp.lse(), ax)
        loss = loss + _mask(r, z_loss * lse * lse)
    grads: dict[Key, Array] = {}
    if need_grad:
        if a is None:
            # Index targets, no smoothing: w_y·(p − onehot(y)), one elementwise sweep after the
            # row sums.  At y, p_y − 1 is −(1 − p_y) with 1 − p_y exact when y is the row's
            # unique maximum (SoftmaxParts.one_minus_p); otherwise p_y ≤ 1/2 and p_y − 1 is exact.
            is_y = xp.is_class(xp.expand_dims(r.idx, ax), r.C, ax, x.ndim)
            unique = sp.is_max & (sp.n == 1.0)
            p = sp.e / sp.s
            at_y = xp.where(unique, -((sp.s_m1 - (sp.e - 1.0)) / sp.s), p - 1.0)
            g = xp.where(is_y, at_y, p)
            if r.w is not None:
                g = g * xp.expand_dims(xp.take(r.w, r.idx), ax)
            g = _mask_col(r, g)
        else:
            # ∂/∂x_j (−Σ_c a_c log p_c) = (Σ_c a_c) p_j − a_j, exact at the argmax (SoftmaxParts.dual_grad)
            g = sp.dual_grad(a)
        if z_loss:
            g = g + _mask_col(r, 2.0 * z_loss * xp.expand_dims(lse, ax) * sp.p())
        grads[0] = g if th is None else g * (1.0 - th * th)
    if need_target_grad:
        # ∂/∂a_c (−Σ a log p) = −log p_c, with 0 where p_c = 0 would give −(−inf)·… only through a = 0
        grads[1] = r.target_grad(-logp)
    return loss, grads


def _mask_col(r: _Prep, v: Array) -> Array:
    if r.valid is None:
        return v
    return v * r.xp.astype(r.xp.expand_dims(r.valid, r.axis), v)


@quiet
def _ce(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
        axis: int = -1, weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
        ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean", z_loss: float = 0.0,
        softcap: float | None = None, base: float | None = None,
        grad_into: Array | None = None) -> tuple[Array, dict[Key, Array]]:
    # grad_into: see _fastpath (value_and_grad(cross_entropy, x, y, grad_into=x) works in place).
    need_grad = 0 in wrt
    softcap = check_softcap(softcap)
    if 1 not in wrt and softcap is None:
        fast = _fastpath.cross_entropy_direct(input, target, need_grad, grad_output, axis, weight, sample_weight,
                                              ignore_index, label_smoothing, reduction, z_loss, base, grad_into)
        if fast is not NotImplemented:
            return fast[0], ({0: fast[1]} if need_grad else {})
    r = _prepare(input, target, axis=axis, weight=weight, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction, sample_weight=sample_weight)
    z_loss = check_nonnegative_option(z_loss, "z_loss")
    need_t = _wants_target_grad(r, wrt, "cross_entropy")
    if not need_t and softcap is None:
        fast = _fastpath.cross_entropy(r.xp, r.x, r.idx if r.kind == "index" else r.prob, kind=r.kind, axis=r.axis,
                                       weight=r.w, ignore_index=ignore_index, label_smoothing=r.eps, z_loss=z_loss,
                                       need_grad=need_grad, valid=r.valid, sample_weight=r.sw, reduction=reduction,
                                       base=base, grad_output=grad_output, grad_into=grad_into)
        if fast is not NotImplemented:
            # finished: the kernel folded reduction, weights and base into the gradient
            return fast[0], ({0: fast[1]} if need_grad else {})
    loss, grads = _ce_terms(r, z_loss, need_grad, need_t, softcap=softcap)
    value, grads = _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output,
                           norm=r.norm_weight())
    if need_grad and grad_into is not None:
        grads[0] = _fastpath.deliver((value, grads[0]), grad_into, r.x)[1]
    return value, grads


def cross_entropy(input: ArrayLike, target: ArrayLike, /, *, axis: int = -1, weight: ArrayLike | None = None,
                  sample_weight: ArrayLike | None = None, ignore_index: int | None = None, label_smoothing: float = 0.0,
                  reduction: str = "mean", z_loss: float = 0.0, softcap: float | None = None,
                  base: float | None = None) -> Array:
    r"""Softmax cross-entropy from logits, with index or probability targets.

    .. math::
        \ell_i = -\sum_c w_c\, q_{ic} \log \mathrm{softmax}(x_i)_c
                 + z \,\big(\log \textstyle\sum_c e^{x_{ic}}\big)^2,
        \qquad q = (1-ε)\,y + ε/C

    For index targets the first term is PyTorch's
    :math:`-(1-ε) w_{y}\log p_{y} - \tfrac{ε}{C}\sum_c w_c \log p_c`.  The
    log-softmax is computed with the log-sum-exp shift, so logits of ±1e4 are
    exact, and ``0·log 0 = 0`` so a ``-inf`` logit under a zero target is fine
    (optax's *safe* softmax cross-entropy).  Gradient:
    :math:`(\sum_c a_c)\,p - a` with :math:`a_c = w_c q_c`, plus
    :math:`2z\,\mathrm{lse}\,p` for the z-loss.  A confident correct
    prediction keeps its loss :math:`\log(1 + \sum_{j≠y} e^{x_j - x_y})` to
    within a few ulps (down to 1e-30 and below), where ``lse − x_y`` rounds
    to 0 (see ``docs/design.md``, *Exactness*).

    ``softcap=s`` (Gemma's logit soft-capping) computes the loss on
    :math:`s\tanh(x/s)` instead of :math:`x`; the gradient is w.r.t. the
    uncapped ``x`` (times :math:`1 - \tanh^2(x/s)`).

    Shapes: ``input`` ``(..., C, ...)`` with the classes on ``axis``;
    ``target`` either integer with the input's shape minus ``axis``, or
    floating with the input's shape.  ``reduction='none'`` returns the
    input's shape minus ``axis``.

    The tutorial's PyTorch example (the printed 10×5 scores and labels):

    >>> import numpy as np
    >>> from crossentropy import cross_entropy
    >>> X = np.array([[-0.5698, -0.0558, -0.2550, 1.6812, 0.0238],
    ...               [-2.1786, 1.3923, -0.2363, -0.4601, -1.4949],
    ...               [1.3679, 1.2853, 0.4087, -0.5743, -0.2752],
    ...               [2.1995, 0.1469, -0.1661, 0.4617, -0.4395],
    ...               [-0.5686, -0.7453, -0.1455, -0.5304, 0.3020],
    ...               [-0.1489, -0.9143, -1.5282, -0.5023, 1.2751],
    ...               [-1.3830, -0.6535, 0.5392, -2.2050, -1.4138],
    ...               [-0.5592, 1.5028, 0.0442, -1.5487, -0.1522],
    ...               [0.7436, -1.8956, 1.0145, -0.2974, -2.0576],
    ...               [0.1003, 0.6604, -1.3535, -0.3053, -0.4034]])
    >>> y = np.array([3, 0, 1, 1, 2, 4, 0, 2, 1, 3])
    >>> round(float(cross_entropy(X, y)), 5)
    1.97316
    """
    return _fastpath.ce_value(_ce, input, target, axis, weight, sample_weight, ignore_index, label_smoothing,
                              reduction, z_loss, base, softcap)


def safe_softmax_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, axis: int = -1,
                               sample_weight: ArrayLike | None = None, reduction: str = "none",
                               base: float | None = None) -> Array:
    r"""Softmax cross-entropy against probability targets with ``0·log 0 = 0``.

    The name and the ``reduction='none'`` default follow optax's
    ``safe_softmax_cross_entropy``: logits of ``-inf`` (masked classes) with
    zero target probability contribute 0 instead of NaN, and so does their
    gradient.  It is :func:`cross_entropy` with probability targets, which is
    always safe in this library.

    Shapes: ``input`` and ``target`` of the same shape; output without ``axis``.

    >>> import numpy as np
    >>> from crossentropy import safe_softmax_cross_entropy
    >>> x = np.array([[0.0, -np.inf, 0.0]]); t = np.array([[0.5, 0.0, 0.5]])
    >>> safe_softmax_cross_entropy(x, t).tolist()
    [0.6931471805599453]
    """
    xp = namespace(input, target)
    if hasattr(target, "dtype") and xp.is_integer(target):
        raise InvalidOptionError("safe_softmax_cross_entropy takes probability targets; got integer class indices")
    return cross_entropy(input, target, axis=axis, sample_weight=sample_weight, reduction=reduction, base=base)


@quiet
def _safe_ce(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
             axis: int = -1, sample_weight: ArrayLike | None = None, reduction: str = "none",
             base: float | None = None) -> tuple[Array, dict[Key, Array]]:
    xp = namespace(input, target)
    if hasattr(target, "dtype") and xp.is_integer(target):
        raise InvalidOptionError("safe_softmax_cross_entropy takes probability targets; got integer class indices")
    return _ce(input, target, wrt=wrt, grad_output=grad_output, axis=axis, sample_weight=sample_weight,
               reduction=reduction, base=base)


# ---------------------------------------------------------------------------------------------
# from probabilities
# ---------------------------------------------------------------------------------------------

def _renorm_clip_grad(xp: Any, r: _Prep, p: Array, s: Array, inside: Array, G: Array) -> Array:
    """Chain rule through ``p̂ = clip(p / S)``: ``∂L/∂p_j = (u_j G_j − Σ_c u_c G_c p̂_c) / S``."""
    ax = r.axis
    uG = xp.where(inside, G, xp.zeros_like(G))
    return (uG - xp.sum(uG * (p / s), axis=ax, keepdims=True)) / s


@quiet
def _cce(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
         axis: int = -1, weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
         ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
         base: float | None = None, compat: str | None = None) -> tuple[Array, dict[Key, Array]]:
    check_compat(compat, (None, "keras", "tf_keras", "sklearn"))
    r = _prepare(input, target, axis=axis, weight=weight, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction, sample_weight=sample_weight,
                 probs_input="renormalised" if compat in ("keras", "tf_keras") else True)
    xp, p, ax = r.xp, r.x, r.axis
    need_grad, need_t = 0 in wrt, _wants_target_grad(r, wrt, "categorical_cross_entropy")
    a = r.coefficients()
    grads: dict[Key, Array] = {}
    if compat is None:
        logp = xp.log(p)
        loss = -xp.sum(_xlogy(xp, a, logp), axis=ax)
        if need_grad:
            grads[0] = -xp.where(a == 0, xp.zeros_like(p), a / p)
        if need_t:
            grads[1] = r.target_grad(-logp)
    else:
        eps = xp.eps(p) if compat == "sklearn" else keras_epsilon()
        if compat == "sklearn":
            # scikit-learn clips at the dtype's eps and does not renormalise.
            s = None
            c = xp.clip(p, eps, 1.0 - eps)
        elif r.kind == "index" and compat == "keras" and not r.eps and r.wcol is None:
            # Keras's sparse path clips first and then renormalises via
            # softmax(log(clip(p))), i.e. p̂ = clip(p) / Σ clip(p).
            c0 = xp.clip(p, eps, 1.0 - eps)
            s = xp.sum(c0, axis=ax, keepdims=True)
            loss = -xp.sum(_xlogy(xp, a, xp.log(c0)), axis=ax) + _mask(r, xp.squeeze(xp.log(s), ax))
            if need_grad:
                inside = (p >= eps) & (p <= 1.0 - eps)
                g = xp.sum(a, axis=ax, keepdims=True) / s - xp.where(a == 0, xp.zeros_like(p), a / c0)
                grads[0] = xp.where(inside, g, xp.zeros_like(g))
            return _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output,
                           norm=r.norm_weight())
        else:
            # Keras's categorical path: renormalise each row to sum 1, then clip.
            s = xp.sum(p, axis=ax, keepdims=True)
            c = xp.clip(p / s, eps, 1.0 - eps)
        logc = xp.log(c)
        loss = -xp.sum(a * logc, axis=ax)
        if need_grad:
            # clip passes the gradient on the closed interval (TensorFlow's ClipByValue does too)
            u = p if s is None else p / s  # the clip's input decides where it passes the gradient
            inside = (u >= eps) & (u <= 1.0 - eps)
            G = -a / c
            grads[0] = (xp.where(inside, G, xp.zeros_like(G)) if s is None
                        else _renorm_clip_grad(xp, r, p, s, inside, G))
        if need_t:
            grads[1] = r.target_grad(-logc)
    return _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output, norm=r.norm_weight())


def categorical_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, axis: int = -1,
                              weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                              ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                              base: float | None = None, compat: str | None = None) -> Array:
    r"""Categorical cross-entropy from probabilities.

    .. math:: \ell_i = -\sum_c w_c\, q_{ic} \log p_{ic},\qquad q = (1-ε)y + ε/C

    Exact by default: ``-log p`` with no clipping or renormalisation; an
    impossible label costs ``inf``.  ``compat='keras'`` (and ``'tf_keras'``,
    identical here) renormalises each row to sum 1 and clips to
    [1e-7, 1 − 1e-7] as Keras does (for index targets: clip, then renormalise,
    as Keras's sparse loss does); ``compat='sklearn'`` clips at the dtype's eps.

    Shapes: as :func:`cross_entropy`, ``input`` holding probabilities.

    The tutorial's fruit containers in base 10 (it prints 1.073, from rounded
    terms) and Keras's dog example (−ln 0.85):

    >>> import numpy as np
    >>> from crossentropy import categorical_cross_entropy
    >>> P = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]])
    >>> round(float(categorical_cross_entropy(P, np.array([0, 2, 2]), reduction="sum", base=10)), 4)
    1.0757
    >>> print(categorical_cross_entropy(np.array([0.05, 0.85, 0.10], dtype=np.float32),
    ...                                 np.array([0.0, 1.0, 0.0], dtype=np.float32), compat="keras"))
    0.1625189
    """
    return _cce(input, target, axis=axis, weight=weight, sample_weight=sample_weight, ignore_index=ignore_index,
                label_smoothing=label_smoothing, reduction=reduction, base=base, compat=compat)[0]


@quiet
def _nll(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
         axis: int = -1, weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
         ignore_index: int | None = None, reduction: str = "mean",
         base: float | None = None) -> tuple[Array, dict[Key, Array]]:
    r = _prepare(input, target, axis=axis, weight=weight, ignore_index=ignore_index, label_smoothing=0.0,
                 reduction=reduction, sample_weight=sample_weight, allow_prob_target=False)
    xp = r.xp
    a = r.coefficients()
    # −Σ_c a_c log p_c with one-hot a is a gather; the where() keeps −inf in
    # other classes from turning into NaN.
    loss = -xp.sum(_xlogy(xp, a, r.x), axis=r.axis)
    grads: dict[Key, Array] = {0: -a} if 0 in wrt else {}
    return _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output, norm=r.norm_weight())


def nll_loss(input: ArrayLike, target: ArrayLike, /, *, axis: int = -1, weight: ArrayLike | None = None,
             sample_weight: ArrayLike | None = None, ignore_index: int | None = None, reduction: str = "mean",
             base: float | None = None) -> Array:
    r"""Negative log-likelihood from log-probabilities: :math:`\ell_i = -w_{y_i} \log p_{i, y_i}`.

    ``input`` holds log-probabilities (e.g. :func:`~crossentropy.log_softmax`
    output); the loss is the negated entry of the target class.  Gradient:
    ``-w_y`` at the target class, 0 elsewhere.

    Shapes: ``input`` ``(..., C, ...)``; integer ``target`` with the input's
    shape minus ``axis``.

    >>> import numpy as np
    >>> from crossentropy import nll_loss
    >>> logp = np.log(np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3]]))
    >>> nll_loss(logp, np.array([0, 2]), reduction="none").round(4).tolist()
    [0.3567, 1.204]
    """
    return _nll(input, target, axis=axis, weight=weight, sample_weight=sample_weight, ignore_index=ignore_index,
                reduction=reduction, base=base)[0]


# ---------------------------------------------------------------------------------------------
# focal, generalized, poly-1
# ---------------------------------------------------------------------------------------------

def _alpha_col(r: _Prep, alpha: float | ArrayLike | None) -> Array | float | None:
    """α as a scalar or a per-class column broadcast along the class axis."""
    xp = r.xp
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)):
        return float(check_nonnegative_option(alpha, "alpha"))
    a = check_weights(xp, as_array(xp, alpha, r.x, "alpha"), "alpha")
    if tuple(a.shape) != (r.C,):
        raise ShapeMismatchError(f"alpha must be a scalar or have shape ({r.C},); got {tuple(a.shape)}")
    return xp.class_column(xp.astype(a, r.x), r.axis, r.x.ndim)


def _focal_core(r: _Prep, logp: Array, p: Array, one_minus_p: Array, gamma: float, alpha: float | ArrayLike | None,
                need_grad: bool, need_t: bool, sp: SoftmaxParts | None = None) -> tuple[Array, dict[Key, Array]]:
    """ℓ = −Σ_c b_c (1−p_c)^γ log p_c with b = α·w·q.

    Returns ``(loss, {0: ∂ℓ/∂x or ∂ℓ/∂p, 1: ∂ℓ/∂t})``: the first w.r.t. the
    logits when ``sp`` (their :class:`SoftmaxParts`) is given, else w.r.t. ``p``.
    """
    xp, ax = r.xp, r.axis
    b = r.coefficients()
    if alpha is not None:
        b = b * alpha
    safe_omp = xp.where(one_minus_p == 0, xp.ones_like(p), one_minus_p)
    mod = xp.power(one_minus_p, gamma) if gamma != 0 else xp.ones_like(p)
    loss = -xp.sum(_xlogy(xp, b * mod, logp), axis=ax)
    grads: dict[Key, Array] = {}
    if need_grad:
        # d/dp_c [(1−p_c)^γ log p_c] = (1−p_c)^γ / p_c − γ (1−p_c)^(γ−1) log p_c;
        # at p_c = 1 the second term is 0·∞ in form but 0 in the limit.
        dmod_log = xp.where(one_minus_p == 0, xp.zeros_like(p),
                            gamma * xp.power(safe_omp, gamma - 1.0) * logp) if gamma != 0 else xp.zeros_like(p)
        if sp is not None:
            # ∂p_c/∂x_j = p_c(δ_cj − p_j): with g_c = b_c p_c · d/dp_c[...],
            # ∂ℓ/∂x_j = p_j Σ_c g_c − g_j, exact at the argmax (dual_grad).
            g = b * (mod - p * dmod_log)
            grads[0] = sp.dual_grad(xp.where(b == 0, xp.zeros_like(g), g))
        else:
            grads[0] = -xp.where(b == 0, xp.zeros_like(p), b * (mod / p - dmod_log))
    if need_t:
        d_a = -_xlogy(xp, mod, logp)
        grads[1] = r.target_grad(d_a if alpha is None else d_a * alpha)
    return loss, grads


@quiet
def _focal_logits(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (),
                  grad_output: ArrayLike | None = None, gamma: float = 2.0, alpha: float | ArrayLike | None = None,
                  axis: int = -1, weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                  ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                  base: float | None = None, compat: str | None = None) -> tuple[Array, dict[Key, Array]]:
    check_compat(compat, (None, "keras"))
    gamma = check_nonnegative_option(gamma, "gamma")
    r = _prepare(input, target, axis=axis, weight=weight, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction, sample_weight=sample_weight)
    xp = r.xp
    need_grad, need_t = 0 in wrt, _wants_target_grad(r, wrt, "focal_cross_entropy")
    sp = SoftmaxParts(xp, r.x, r.axis)
    if compat == "keras":
        # Keras: softmax, renormalise, clip to [ε, 1−ε], then the probability
        # formula; the gradient chains through the clip and the softmax.
        p = sp.p()
        s = xp.sum(p, axis=r.axis, keepdims=True)
        eps = keras_epsilon()
        c = xp.clip(p / s, eps, 1.0 - eps)
        loss, grads = _focal_core(r, xp.log(c), c, 1.0 - c, gamma, _alpha_col(r, alpha), need_grad, need_t)
        if need_grad:
            u = p / s
            inside = (u >= eps) & (u <= 1.0 - eps)
            gp = _renorm_clip_grad(xp, r, p, s, inside, grads[0])
            grads[0] = p * (gp - xp.sum(p * gp, axis=r.axis, keepdims=True))
        return _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output,
                       norm=r.norm_weight())
    # 1 − p = −expm1(log p): exact even when p rounds to 1.
    loss, grads = _focal_core(r, sp.logp, sp.p(), sp.one_minus_p(), gamma, _alpha_col(r, alpha), need_grad,
                              need_t, sp)
    return _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output, norm=r.norm_weight())


def focal_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, gamma: float = 2.0,
                        alpha: float | ArrayLike | None = None, axis: int = -1, weight: ArrayLike | None = None,
                        sample_weight: ArrayLike | None = None, ignore_index: int | None = None,
                        label_smoothing: float = 0.0, reduction: str = "mean", base: float | None = None,
                        compat: str | None = None) -> Array:
    r"""Categorical focal cross-entropy from logits.

    .. math:: \ell_i = -\sum_c α_c\, w_c\, q_{ic}\,(1 - p_{ic})^γ \log p_{ic},
              \qquad p_i = \mathrm{softmax}(x_i)

    ``alpha`` is ``None`` (no factor), a float, or per-class weights ``(C,)``
    (Keras uses ``alpha=0.25`` by default).  ``gamma=0``, ``alpha=None`` is
    :func:`cross_entropy`.  Exact by default (log-softmax, ``1 − p`` as
    ``−expm1(log p)``); ``compat='keras'`` reproduces Keras's
    ``CategoricalFocalCrossentropy(from_logits=True)``, which applies softmax
    and then clips the probabilities to [1e-7, 1 − 1e-7].

    Shapes: as :func:`cross_entropy`.

    >>> import numpy as np
    >>> from crossentropy import focal_cross_entropy
    >>> x = np.array([[2.0, 1.0, -1.0]])
    >>> round(float(focal_cross_entropy(x, np.array([0]))), 6)  # (1 − 0.705385)² · 0.349012
    0.030294
    """
    return _focal_logits(input, target, gamma=gamma, alpha=alpha, axis=axis, weight=weight,
                         sample_weight=sample_weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, base=base, compat=compat)[0]


@quiet
def _focal_probs(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (),
                 grad_output: ArrayLike | None = None, gamma: float = 2.0, alpha: float | ArrayLike | None = None,
                 axis: int = -1, weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                 ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                 base: float | None = None, compat: str | None = None) -> tuple[Array, dict[Key, Array]]:
    check_compat(compat, (None, "keras"))
    gamma = check_nonnegative_option(gamma, "gamma")
    r = _prepare(input, target, axis=axis, weight=weight, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction, sample_weight=sample_weight,
                 probs_input="renormalised" if compat == "keras" else True)
    xp, p = r.xp, r.x
    need_grad, need_t = 0 in wrt, _wants_target_grad(r, wrt, "categorical_focal_cross_entropy")
    al = _alpha_col(r, alpha)
    if compat is None:
        loss, grads = _focal_core(r, xp.log(p), p, 1.0 - p, gamma, al, need_grad, need_t)
    else:
        # Keras: renormalise, clip to [ε, 1−ε], then −Σ α (1−p̂)^γ y log p̂.
        s = xp.sum(p, axis=r.axis, keepdims=True)
        eps = keras_epsilon()
        c = xp.clip(p / s, eps, 1.0 - eps)
        loss, grads = _focal_core(r, xp.log(c), c, 1.0 - c, gamma, al, need_grad, need_t)
        if need_grad:
            u = p / s
            inside = (u >= eps) & (u <= 1.0 - eps)
            grads[0] = _renorm_clip_grad(xp, r, p, s, inside, grads[0])
    return _finish(r, loss, grads, reduction=reduction, base=base, grad_output=grad_output, norm=r.norm_weight())


def categorical_focal_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, gamma: float = 2.0,
                                    alpha: float | ArrayLike | None = None, axis: int = -1,
                                    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                                    ignore_index: int | None = None, label_smoothing: float = 0.0,
                                    reduction: str = "mean", base: float | None = None,
                                    compat: str | None = None) -> Array:
    r"""Categorical focal cross-entropy from probabilities (Keras's ``CategoricalFocalCrossentropy``).

    .. math:: \ell_i = -\sum_c α_c\, w_c\, q_{ic}\,(1 - p_{ic})^γ \log p_{ic}

    Exact by default; ``compat='keras'`` renormalises and clips as Keras does.

    Shapes: as :func:`categorical_cross_entropy`.

    >>> import numpy as np
    >>> from crossentropy import categorical_focal_cross_entropy
    >>> p = np.array([[0.05, 0.85, 0.10]]); y = np.array([[0.0, 1.0, 0.0]])
    >>> round(float(categorical_focal_cross_entropy(p, y, alpha=0.25)), 8)  # 0.25 * 0.15**2 * -ln 0.85
    0.00091417
    """
    return _focal_probs(input, target, gamma=gamma, alpha=alpha, axis=axis, weight=weight,
                        sample_weight=sample_weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                        reduction=reduction, base=base, compat=compat)[0]


@quiet
def _gce(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
         q: float = 0.5, axis: int = -1, sample_weight: ArrayLike | None = None, ignore_index: int | None = None,
         reduction: str = "mean", base: float | None = None) -> tuple[Array, dict[Key, Array]]:
    q = float(q)
    if not (0.0 < q <= 1.0):
        raise InvalidOptionError(f"q must be in (0, 1]; got {q!r}")
    if base is not None:
        raise InvalidOptionError("base does not apply to generalized_cross_entropy (it has no logarithm)")
    r = _prepare(input, target, axis=axis, weight=None, ignore_index=ignore_index, label_smoothing=0.0,
                 reduction=reduction, sample_weight=sample_weight, probs_input=True)
    xp, ax = r.xp, r.axis
    need_t = _wants_target_grad(r, wrt, "generalized_cross_entropy")
    t = r.dense_target()
    pt = xp.sum(t * r.x, axis=ax)  # probability of the true class (soft targets: expected p)
    loss = _mask(r, (1.0 - xp.power(pt, q)) / q)
    grads: dict[Key, Array] = {}
    if 0 in wrt or need_t:
        # ∂/∂p_j (1 − p_t^q)/q = −p_t^(q−1) t_j  and  ∂/∂t_j = −p_t^(q−1) p_j
        d = -xp.expand_dims(xp.power(pt, q - 1.0), ax)
        if 0 in wrt:
            grads[0] = xp.where(t == 0, xp.zeros_like(r.x), d * t)
        if need_t:
            grads[1] = xp.where(r.x == 0, xp.zeros_like(r.x), d * r.x)
    return _finish(r, loss, grads, reduction=reduction, base=None, grad_output=grad_output)


def generalized_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, q: float = 0.5, axis: int = -1,
                              sample_weight: ArrayLike | None = None, ignore_index: int | None = None,
                              reduction: str = "mean") -> Array:
    r"""Generalized cross-entropy (Zhang & Sabuncu, 2018) from probabilities.

    .. math:: \ell_i = \frac{1 - p_{i,y_i}^{\,q}}{q}, \qquad q ∈ (0, 1]

    Tends to cross-entropy as q → 0 and equals MAE-like ``1 − p_y`` at q = 1
    (Keras's ``CategoricalGeneralizedCrossEntropy``).  Probability targets use
    :math:`p_t = \sum_c y_c p_c`.

    Shapes: as :func:`categorical_cross_entropy`.

    >>> import numpy as np
    >>> from crossentropy import generalized_cross_entropy
    >>> p = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])
    >>> generalized_cross_entropy(p, np.array([0, 2]), q=0.5, reduction="none").round(6).tolist()
    [0.32668, 0.735089]
    """
    return _gce(input, target, q=q, axis=axis, sample_weight=sample_weight, ignore_index=ignore_index,
                reduction=reduction)[0]


@quiet
def _poly1(input: ArrayLike, target: ArrayLike, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
           epsilon: float = 2.0, axis: int = -1, weight: ArrayLike | None = None,
           sample_weight: ArrayLike | None = None, ignore_index: int | None = None, label_smoothing: float = 0.0,
           reduction: str = "mean", base: float | None = None) -> tuple[Array, dict[Key, Array]]:
    r = _prepare(input, target, axis=axis, weight=weight, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction, sample_weight=sample_weight)
    xp, ax = r.xp, r.axis
    epsilon = float(epsilon)
    if base is not None:
        raise InvalidOptionError("base does not apply to poly1_cross_entropy (its polynomial term has no logarithm)")
    need_grad, need_t = 0 in wrt, _wants_target_grad(r, wrt, "poly1_cross_entropy")
    sp = SoftmaxParts(xp, r.x, ax)
    loss, grads = _ce_terms(r, 0.0, need_grad, need_t, sp)
    t = r.dense_target()
    p = sp.p()
    # Σ_c t_c (1 − p_c), with 1 − p_c = −expm1(log p_c) for precision.
    omp = sp.one_minus_p()
    loss = loss + epsilon * xp.sum(t * omp, axis=ax)
    if need_grad:
        # ∂/∂x_j (−Σ_c t_c p_c) = −(t_j p_j − p_j Σ_c t_c p_c)
        tp = t * p
        grads[0] = grads[0] - epsilon * (tp - p * xp.sum(tp, axis=ax, keepdims=True))
    if need_t:
        # the polynomial term's t is the smoothed target without class weights
        grads[1] = grads[1] + (epsilon * (1.0 - r.eps)) * omp
    return _finish(r, loss, grads, reduction=reduction, base=None, grad_output=grad_output, norm=r.norm_weight())


def poly1_cross_entropy(input: ArrayLike, target: ArrayLike, /, *, epsilon: float = 2.0, axis: int = -1,
                        weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                        ignore_index: int | None = None, label_smoothing: float = 0.0,
                        reduction: str = "mean") -> Array:
    r"""Poly-1 cross-entropy (Leng et al., 2022; optax's ``poly_loss_cross_entropy``).

    .. math:: \ell_i = \mathrm{CE}(x_i, y_i) + ε \sum_c y_{ic}\,(1 - p_{ic})

    Shapes: as :func:`cross_entropy`.

    >>> import numpy as np
    >>> from crossentropy import poly1_cross_entropy
    >>> x = np.array([[2.0, 1.0, -1.0]])
    >>> round(float(poly1_cross_entropy(x, np.array([0]), epsilon=2.0)), 6)  # 0.349012 + 2·(1 − 0.705385)
    0.938243
    """
    return _poly1(input, target, epsilon=epsilon, axis=axis, weight=weight, sample_weight=sample_weight,
                  ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)[0]


_ARGS = ("input", "target")
register(cross_entropy, _ce, _ARGS, (0, 1))
register(safe_softmax_cross_entropy, _safe_ce, _ARGS, (0, 1))
register(categorical_cross_entropy, _cce, _ARGS, (0, 1))
register(nll_loss, _nll, _ARGS, (0,))
register(focal_cross_entropy, _focal_logits, _ARGS, (0, 1))
register(categorical_focal_cross_entropy, _focal_probs, _ARGS, (0, 1))
register(generalized_cross_entropy, _gce, _ARGS, (0, 1))
register(poly1_cross_entropy, _poly1, _ARGS, (0, 1))
