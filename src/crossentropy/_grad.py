"""Analytic gradients: one entry point for every loss and activation.

Each public function is backed by an implementation that returns
``(value, gradient)``; the public function discards the gradient, while
:func:`value_and_grad` and :func:`grad` return it.  This keeps every public
function to one return type while the forward and backward share one pass
(and one fast kernel, where one exists).
"""

from __future__ import annotations

__all__ = ["value_and_grad", "grad"]

_IMPLS: dict = {}


def register(public, impl, n_arrays: int):
    _IMPLS[public] = (impl, n_arrays)


def value_and_grad(fn, /, *arrays, grad_output=None, **options):
    r"""The value of ``fn(*arrays, **options)`` and its gradient w.r.t. ``arrays[0]``.

    For a reduced (scalar) loss the gradient is :math:`∂L/∂x`; for
    ``reduction='none'`` or an activation it is the vector-Jacobian product
    :math:`\sum_i g_i ∂L_i/∂x` with ``g = grad_output`` (ones by default).  A
    scalar ``grad_output`` scales a reduced loss's gradient.

    Shapes: the gradient has the shape and dtype of ``arrays[0]``.

    >>> import numpy as np
    >>> from crossentropy import cross_entropy, value_and_grad
    >>> loss, g = value_and_grad(cross_entropy, np.array([[2.0, 1.0, -1.0]]), np.array([0]))
    >>> round(float(loss), 6), g.round(4).tolist()  # g = softmax - onehot
    (0.349012, [[-0.2946, 0.2595, 0.0351]])
    """
    try:
        impl, n = _IMPLS[fn]
    except (KeyError, TypeError):
        from ._errors import InvalidOptionError

        raise InvalidOptionError(
            f"fn must be a loss or activation of crossentropy; got {getattr(fn, '__name__', fn)!r}"
        ) from None
    if len(arrays) != n:
        from ._errors import InvalidOptionError

        raise InvalidOptionError(f"{fn.__name__} takes {n} array argument(s); got {len(arrays)}")
    return impl(*arrays, need_grad=True, grad_output=grad_output, **options)


def grad(fn, /, *arrays, grad_output=None, **options):
    """Only the gradient part of :func:`value_and_grad`.

    >>> import numpy as np
    >>> from crossentropy import binary_cross_entropy_with_logits, grad
    >>> grad(binary_cross_entropy_with_logits, np.array([0.0, 0.0]), np.array([1.0, 0.0]), reduction="sum").tolist()
    [-0.5, 0.5]
    """
    return value_and_grad(fn, *arrays, grad_output=grad_output, **options)[1]


def quiet(impl):
    """Silence NumPy's floating-point warnings inside a loss implementation.

    ``log(0) = -inf`` and ``0·inf`` guarded by ``where`` are intended results
    here (exact mode), not accidents worth a warning; NaN still propagates.
    """
    import functools

    import numpy as np

    @functools.wraps(impl)
    def wrapper(*args, **kwargs):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            return impl(*args, **kwargs)

    return wrapper
