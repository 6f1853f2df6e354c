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


def _safe_max(xp, x, axis):
    # Shifting by the row maximum keeps exp() in range; a non-finite maximum
    # (all -inf, or a +inf present) is replaced by 0 so that x - m stays
    # defined.  The shift cancels mathematically, hence no gradient through it.
    m = xp.stop_gradient(xp.max(x, axis=axis, keepdims=True))
    finite = (m == m) & (xp.abs(m) != float("inf"))
    return xp.where(finite, m, xp.zeros_like(m))


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
    m = _safe_max(xp, x, axis)
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
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
    m = _safe_max(xp, x, axis)
    shifted = x - m
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


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
    e = xp.exp(x - _safe_max(xp, x, axis))
    return e / xp.sum(e, axis=axis, keepdims=True)


# -- analytic vector-Jacobian products, for value_and_grad(sigmoid, x, grad_output=g) ----------

def _vjp_impl(fn, vjp):
    def impl(x, /, *, need_grad=False, grad_output=None, **opts):
        xp = namespace(x)
        y = fn(x, **opts)
        if not need_grad:
            return y, None
        g = xp.ones_like(y) if grad_output is None else xp.astype(xp.asarray(grad_output, like=y), y)
        return y, vjp(xp, x, y, g, **opts)

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

_register(sigmoid, _vjp_impl(sigmoid, _sigmoid_vjp), 1)
_register(log_sigmoid, _vjp_impl(log_sigmoid, _log_sigmoid_vjp), 1)
_register(softmax, _vjp_impl(softmax, _softmax_vjp), 1)
_register(log_softmax, _vjp_impl(log_softmax, _log_softmax_vjp), 1)
_register(logsumexp, _vjp_impl(logsumexp, _logsumexp_vjp), 1)
