"""Activations: sigmoid, log-sigmoid, softmax, log-softmax and log-sum-exp.

Each is stable for every finite input and for ±inf wherever the mathematical
limit exists, works along any axis, and accepts NumPy, PyTorch or JAX arrays
(returning the caller's type).
"""

from __future__ import annotations

from ._backend import namespace
from ._grad import quiet
from ._validation import check_floating, normalize_axis

__all__ = ["sigmoid", "log_sigmoid", "softmax", "log_softmax", "logsumexp"]


@quiet
def sigmoid(x, /):
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
def log_sigmoid(x, /):
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

    With ``m`` the row maximum at index ``k`` (one argmax), every ``e^{x_j−m}``
    is ≤ 1 and ``e^{x_k−m} = 1`` exactly, so ``S = Σ_j e^{x_j−m} = 1 + S_off``
    with ``S_off = Σ_{j≠k} e^{x_j−m}`` summed *without* the k term.  Then

    * ``log S = log1p(S_off)``, exact even when ``S_off`` is below the unit
      roundoff (``log(S)`` would round ``S`` to 1 and give 0);
    * ``log p_c = (x_c − m) − log1p(S_off)``: at ``c = k`` this is
      ``−log1p(S_off)`` (the loss of a confident correct prediction, down to
      1e-30 and below), elsewhere a sum of two same-signed terms;
    * ``1 − p_c = −expm1(log p_c)``, exact where ``p_c`` rounds to 1.

    ``m`` is gathered from ``x`` (not a detached max), so autodiff of these
    formulas is exact too: ``∂ log1p(S_off)/∂x_k`` supplies the ``−Σ_{j≠k} p_j``
    that makes ``∂ lse/∂x_k = p_k``.  A row whose maximum is not finite (all
    ``−inf``, a ``+inf``, NaN) shifts by 0 and takes ``log S`` directly, so
    ``−inf``/``inf``/NaN come out as the plain formula gives them.
    """

    __slots__ = ("xp", "axis", "is_k", "shift", "e", "s", "s_off", "log_s", "logp")

    def __init__(self, xp, x, axis):
        self.xp, self.axis = xp, axis
        k = xp.argmax(x, axis=axis, keepdims=True)
        m = xp.take_along_axis(x, k, axis)
        finite = xp.isfinite(m)
        self.shift = xp.where(finite, m, xp.zeros_like(m))
        self.is_k = xp.is_class(k, int(x.shape[axis]), axis, x.ndim)
        self.e = e = xp.exp(x - self.shift)
        self.s_off = s_off = xp.sum(xp.where(self.is_k, xp.zeros_like(e), e), axis=axis, keepdims=True)
        s_all = xp.sum(e, axis=axis, keepdims=True)
        self.s = xp.where(finite, 1.0 + s_off, s_all)
        self.log_s = xp.where(finite, xp.log1p(s_off), xp.log(s_all))
        self.logp = (x - self.shift) - self.log_s

    def lse(self):
        """``log Σ e^x`` with the class axis kept."""
        return self.shift + self.log_s

    def p(self):
        # e/S (two roundings), not exp(log p), whose error grows with |log p|
        return self.e / self.s

    def one_minus_p(self):
        # 1 − p_k = S_off/S at the argmax; elsewhere p ≤ 1/2 and −expm1(log p) is exact enough
        return self.xp.where(self.is_k, self.s_off / self.s, -self.xp.expm1(self.logp))

    def dual_grad(self, a):
        """``(Σ_c a_c)·p − a``, the gradient of ``−Σ_c a_c log p_c`` w.r.t. the logits.

        At the argmax class it is evaluated as ``Σ_{c≠k} a_c − (Σ_c a_c)(1 − p_k)``:
        for a one-hot ``a`` on ``k`` that is ``−a_k(1 − p_k)`` with ``1 − p_k``
        exact, where ``p_k − 1`` would round to 0 for a confident prediction.
        """
        xp, ax = self.xp, self.axis
        total = xp.sum(a, axis=ax, keepdims=True)
        off = xp.sum(xp.where(self.is_k, xp.zeros_like(a), a), axis=ax, keepdims=True)
        at_k = off - total * self.one_minus_p()
        return xp.where(self.is_k, at_k, total * self.p() - a)


@quiet
def logsumexp(x, /, *, axis=-1, keepdims=False):
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
def log_softmax(x, /, *, axis=-1):
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
def softmax(x, /, *, axis=-1):
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

def _vjp_impl(fn, vjp):
    def impl(x, /, *, wrt=(), grad_output=None, **opts):
        xp = namespace(x)
        y = fn(x, **opts)
        if not wrt:
            return y, {}
        g = xp.ones_like(y) if grad_output is None else xp.astype(xp.asarray(grad_output, like=y), y)
        return y, {0: vjp(xp, x, y, g, **opts)}

    return impl


def _sigmoid_vjp(xp, x, y, g):
    return g * y * (1.0 - y)  # σ' = σ(1 − σ)


def _log_sigmoid_vjp(xp, x, y, g):
    return g * sigmoid(-x)  # d/dx log σ(x) = σ(−x)


def _softmax_vjp(xp, x, y, g, axis=-1):
    # J = diag(p) − p pᵀ  ⇒  Jᵀg = p ⊙ (g − ⟨g, p⟩)
    return y * (g - xp.sum(g * y, axis=axis, keepdims=True))


def _log_softmax_vjp(xp, x, y, g, axis=-1):
    # J = I − 1 pᵀ  ⇒  Jᵀg = g − p Σg
    return g - xp.exp(y) * xp.sum(g, axis=axis, keepdims=True)


def _logsumexp_vjp(xp, x, y, g, axis=-1, keepdims=False):
    ax = normalize_axis(axis, x.ndim)
    if not keepdims:
        g, y = xp.expand_dims(g, ax), xp.expand_dims(y, ax)
    return g * xp.exp(x - y)  # ∂lse/∂x = softmax(x)


from ._grad import register as _register  # noqa: E402

for _fn, _vjp in ((sigmoid, _sigmoid_vjp), (log_sigmoid, _log_sigmoid_vjp), (softmax, _softmax_vjp),
                  (log_softmax, _log_softmax_vjp), (logsumexp, _logsumexp_vjp)):
    _register(_fn, _vjp_impl(_fn, _vjp), ("x",))
