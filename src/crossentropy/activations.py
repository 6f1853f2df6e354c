"""Activations: sigmoid, log-sigmoid, softmax, log-softmax and log-sum-exp.

Each is stable for every finite input and for ±inf wherever the mathematical
limit exists, works along any axis, and accepts NumPy, PyTorch or JAX arrays
(returning the caller's type).
"""

from __future__ import annotations

from typing import Any, Callable

from ._backend import namespace
from ._grad import Key, quiet
from ._typing import Array, ArrayLike
from ._validation import check_floating, normalize_axis

__all__ = ["sigmoid", "log_sigmoid", "softmax", "log_softmax", "logsumexp"]


@quiet
def sigmoid(x: ArrayLike, /) -> Array:
    r"""Logistic sigmoid :math:`σ(x) = 1 / (1 + e^{-x})`, elementwise.

    Computed from :math:`e^{-|x|}` so that no ``exp`` overflows:
    :math:`σ(x) = 1/(1+e^{-|x|})` for :math:`x ≥ 0` and
    :math:`e^{-|x|}/(1+e^{-|x|})` otherwise.  :math:`σ(±∞) = 1, 0`.

    Shapes: any; the output has the input's shape and dtype.

    >>> import numpy as np
    >>> from crossentropy import sigmoid
    >>> sigmoid(np.array([-np.inf, -1e4, 0.0, 2.0, np.inf])).round(4).tolist()
    [0.0, 0.0, 0.5, 0.8808, 1.0]
    """
    xp = namespace(x)
    check_floating(xp, x, "x")
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@quiet
def log_sigmoid(x: ArrayLike, /) -> Array:
    r""":math:`\log σ(x) = \min(x, 0) - \log(1 + e^{-|x|})`, elementwise.

    The split form never overflows and keeps full relative precision for very
    negative ``x`` (where ``log(sigmoid(x))`` would give ``-inf``).  Note
    :math:`\log(1 - σ(x)) = \log σ(-x)`, which is how the binary losses get the
    second term.

    Shapes: any; output like the input.

    >>> import numpy as np
    >>> from crossentropy import log_sigmoid
    >>> log_sigmoid(np.array([-1e4, 0.0, np.inf])).tolist()
    [-10000.0, -0.6931471805599453, 0.0]
    """
    xp = namespace(x)
    check_floating(xp, x, "x")
    return xp.minimum(x, 0.0) - xp.log1p(xp.exp(-xp.abs(x)))


class SoftmaxParts:
    """The pieces of a softmax along ``axis``, computed so that confident rows stay exact.

    With ``m`` the row maximum, every ``e_j = e^{x_j−m}`` is ≤ 1 and the
    maxima's terms are exactly 1, so ``S = Σ_j e_j = n + D`` where ``n`` is the
    number of maxima and ``D = Σ_j (e_j − [x_j = m])`` — the maxima contribute
    ``e_j − 1 = 0`` *exactly*, so ``D`` holds only the small terms, with no
    rounding against a 1.  Then

    * ``log S = log1p(D + (n − 1))``, exact even when ``D`` is far below the
      unit roundoff (``log(S)`` would round ``S`` to 1 and give 0);
    * ``log p_c = (x_c − m) − log S``: at a maximum this is ``−log1p(D)``, the
      loss of a confident correct prediction, down to 1e-30 and below;
      elsewhere a sum of two same-signed terms;
    * ``p = e/S`` (two roundings, not ``exp(log p)``, whose error grows with
      ``|log p|``) and, at a maximum, ``1 − p = (S − 1)/S``: exact where ``p``
      rounds to 1.

    ``m`` is a detached maximum (the shift cancels mathematically), and the
    maxima's ``e_j − 1`` keep the derivative ``e_j``, so autodiff of these
    formulas gives the exact derivatives in every mode.  A row whose maximum is
    not finite (all ``−inf``, a ``+inf``, NaN) shifts by 0 and takes
    ``log S`` directly, so ``−inf``/``inf``/NaN come out as the plain formula
    gives them.  Cost: one max, one exp, one compare and two sums per row —
    no argmax or gather.
    """

    __slots__ = ("xp", "axis", "is_max", "n", "shift", "e", "s", "s_m1", "log_s", "logp")

    def __init__(self, xp: Any, x: Array, axis: int) -> None:
        self.xp, self.axis = xp, axis
        if int(x.shape[axis]) == 0:  # no class at all: an empty sum (S = 0, log S = −inf)
            m = xp.zeros(tuple(1 if i == axis else int(d) for i, d in enumerate(x.shape)), like=x)
            finite = m != m
        else:
            m = xp.stop_gradient(xp.max(x, axis=axis, keepdims=True))
            finite = xp.isfinite(m)
        self.shift = xp.where(finite, m, xp.zeros_like(m))
        self.is_max = (x == m) & finite
        self.e = e = xp.exp(x - self.shift)
        d = xp.sum(xp.where(self.is_max, e - 1.0, e), axis=axis, keepdims=True)
        self.n = n = xp.sum(xp.astype(self.is_max, x), axis=axis, keepdims=True)
        self.s_m1 = s_m1 = d + (n - 1.0)  # S − 1 (finite rows); n − 1 is an exact small integer
        self.s = n + d
        # log(d) only for the non-finite rows: a finite row may have d = 0 exactly (every other
        # e_j underflowed), and autodiff of where() sends 0·(1/d) = NaN into an unused log(0).
        self.log_s = xp.where(finite, xp.log1p(s_m1), xp.log(xp.where(finite, xp.ones_like(d), d)))
        self.logp = (x - self.shift) - self.log_s

    def lse(self) -> Array:
        """``log Σ e^x`` with the class axis kept."""
        return self.shift + self.log_s

    def p(self) -> Array:
        return self.e / self.s

    def one_minus_p(self) -> Array:
        # At a maximum 1 − p_c = (S − e_c)/S.  S − e_c is computed as (S − 1) − (e_c − 1): the same
        # value as S − 1 (e_c − 1 is exactly 0 there), but with the derivative of S − e_c, so that
        # autodiff of this formula is exact too.  Elsewhere p ≤ 1/2 and −expm1(log p) is exact enough.
        xp = self.xp
        return xp.where(self.is_max, (self.s_m1 - (self.e - 1.0)) / self.s, -xp.expm1(self.logp))

    def dual_grad(self, a: Array) -> Array:
        """``(Σ_c a_c)·p − a``, the gradient of ``−Σ_c a_c log p_c`` w.r.t. the logits.

        At the maximum of a row (when it is unique) it is evaluated as
        ``Σ_{c≠k} a_c − (Σa)(1 − p_k)``, the first sum taken over the other
        classes directly: for a one-hot ``a`` on ``k`` that is ``−a_k(1 − p_k)``
        with ``1 − p_k`` exact, where ``p_k − 1`` would round to 0 for a
        confident prediction; for smoothed targets ``Σ_{c≠k} a_c`` is a sum of
        the small coefficients, not ``1 − a_k`` (which would carry ``a_k``'s
        rounding).  Tied maxima have ``p ≤ 1/2``: the plain form is exact there.
        """
        xp, ax = self.xp, self.axis
        total = xp.sum(a, axis=ax, keepdims=True)
        unique = self.is_max & (self.n == 1.0)
        off = xp.sum(xp.where(unique, xp.zeros_like(a), a), axis=ax, keepdims=True)
        e, s = self.e, self.s
        # elementwise only (one fused sweep): 1 − p_k = (S − e_k)/S as in one_minus_p()
        return xp.where(unique, off - total * ((self.s_m1 - (e - 1.0)) / s), total * (e / s) - a)


@quiet
def logsumexp(x: ArrayLike, /, *, axis: int = -1, keepdims: bool = False) -> Array:
    r""":math:`\log \sum_j e^{x_j}` along ``axis``, without overflow.

    :math:`m + \log\sum_j e^{x_j - m}` with :math:`m = \max_j x_j`.  A row of
    all ``-inf`` gives ``-inf``; a row containing ``+inf`` gives ``+inf``.

    Shapes: ``x`` of any shape; the output drops ``axis`` unless ``keepdims``.

    >>> import numpy as np
    >>> from crossentropy import logsumexp
    >>> float(logsumexp(np.array([1e4, 1e4])))  # 1e4 + ln 2
    10000.69314718056
    >>> float(logsumexp(np.array([-np.inf, -np.inf])))
    -inf
    """
    xp = namespace(x)
    check_floating(xp, x, "x")
    axis = normalize_axis(axis, x.ndim)
    out = SoftmaxParts(xp, x, axis).lse()
    return out if keepdims else xp.squeeze(out, axis)


@quiet
def log_softmax(x: ArrayLike, /, *, axis: int = -1) -> Array:
    r""":math:`\log \mathrm{softmax}(x)_i = x_i - \log\sum_j e^{x_j}` along ``axis``.

    Shapes: any; output like the input.  ``-inf`` entries give ``-inf``.

    >>> import numpy as np
    >>> from crossentropy import log_softmax
    >>> log_softmax(np.array([0.0, -np.inf])).tolist()
    [0.0, -inf]
    """
    xp = namespace(x)
    check_floating(xp, x, "x")
    axis = normalize_axis(axis, x.ndim)
    return SoftmaxParts(xp, x, axis).logp


@quiet
def softmax(x: ArrayLike, /, *, axis: int = -1) -> Array:
    r""":math:`\mathrm{softmax}(x)_i = e^{x_i} / \sum_j e^{x_j}` along ``axis``.

    The tutorial's scores Blue = 2, Green = 1, Red = −1 (it prints 0.705,
    0.259, 0.035; the last is 0.0351 when rounded, not truncated):

    >>> import numpy as np
    >>> from crossentropy import softmax
    >>> softmax(np.array([2.0, 1.0, -1.0])).round(4).tolist()
    [0.7054, 0.2595, 0.0351]

    Shapes: any; output like the input.  ``-inf`` entries get probability 0.
    """
    xp = namespace(x)
    check_floating(xp, x, "x")
    axis = normalize_axis(axis, x.ndim)
    return SoftmaxParts(xp, x, axis).p()


# -- analytic vector-Jacobian products, for value_and_grad(sigmoid, x, grad_output=g) ----------

def _vjp_impl(fn: Callable[..., Array], vjp: Callable[..., Array]) -> Callable[..., tuple[Array, dict[Key, Array]]]:
    def impl(x: Array, /, *, wrt: tuple[Key, ...] = (), grad_output: ArrayLike | None = None,
             **opts: Any) -> tuple[Array, dict[Key, Array]]:
        xp = namespace(x)
        y = fn(x, **opts)
        if not wrt:
            return y, {}
        g = xp.ones_like(y) if grad_output is None else xp.astype(xp.asarray(grad_output, like=y), y)
        return y, {0: vjp(xp, x, y, g, **opts)}

    return impl


def _sigmoid_vjp(xp: Any, x: Array, y: Array, g: Array) -> Array:
    return g * y * (1.0 - y)  # σ' = σ(1 − σ)


def _log_sigmoid_vjp(xp: Any, x: Array, y: Array, g: Array) -> Array:
    return g * sigmoid(-x)  # d/dx log σ(x) = σ(−x)


def _softmax_vjp(xp: Any, x: Array, y: Array, g: Array, axis: int = -1) -> Array:
    # J = diag(p) − p pᵀ  ⇒  Jᵀg = p ⊙ (g − ⟨g, p⟩)
    return y * (g - xp.sum(g * y, axis=axis, keepdims=True))


def _log_softmax_vjp(xp: Any, x: Array, y: Array, g: Array, axis: int = -1) -> Array:
    # J = I − 1 pᵀ  ⇒  Jᵀg = g − p Σg
    return g - xp.exp(y) * xp.sum(g, axis=axis, keepdims=True)


def _logsumexp_vjp(xp: Any, x: Array, y: Array, g: Array, axis: int = -1, keepdims: bool = False) -> Array:
    ax = normalize_axis(axis, x.ndim)
    if not keepdims:
        g, y = xp.expand_dims(g, ax), xp.expand_dims(y, ax)
    return g * xp.exp(x - y)  # ∂lse/∂x = softmax(x)


from ._grad import register as _register  # noqa: E402

for _fn, _vjp in ((sigmoid, _sigmoid_vjp), (log_sigmoid, _log_sigmoid_vjp), (softmax, _softmax_vjp),
                  (log_softmax, _log_softmax_vjp), (logsumexp, _logsumexp_vjp)):
    _register(_fn, _vjp_impl(_fn, _vjp), ("x",))
