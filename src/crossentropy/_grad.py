"""Analytic gradients: one entry point for every loss and activation.

Each public function is backed by an implementation that returns
``(value, gradients)``; the public function discards the gradients, while
:func:`value_and_grad` and :func:`grad` return them.  This keeps every public
function to one return type while the forward and backward share one pass
(and one fast kernel, where one exists).

An implementation is called with ``wrt``, the tuple of arguments whose
gradient is wanted (positions of array arguments, or names of keyword array
options such as ``"bias"``), and returns ``(value, {key: gradient})``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence, TypeVar, Union

import numpy as np

from ._errors import InvalidOptionError
from ._typing import Array, ArrayLike

__all__ = ["value_and_grad", "grad"]

Key = Union[int, str]  # an array argument's position, or a keyword array option's name
_F = TypeVar("_F", bound=Callable[..., Any])


class _Entry:
    __slots__ = ("impl", "names", "differentiable")

    def __init__(self, impl: Callable[..., Any], names: Sequence[str], differentiable: Sequence[Key]) -> None:
        self.impl, self.names, self.differentiable = impl, tuple(names), tuple(differentiable)


_IMPLS: dict[Callable[..., Any], _Entry] = {}


def register(public: Callable[..., Any], impl: Callable[..., Any], names: Sequence[str],
             differentiable: Sequence[Key] = (0,)) -> None:
    """``public(*arrays, **options)`` is computed by ``impl``; ``names`` are its array arguments."""
    _IMPLS[public] = _Entry(impl, names, differentiable)


def _keys(entry: _Entry, fn: Callable[..., Any], wrt: Key | Sequence[Key]) -> tuple[tuple[Key, ...], bool]:
    single = not isinstance(wrt, (tuple, list))
    keys = tuple(wrt) if isinstance(wrt, (tuple, list)) else (wrt,)
    if not keys:
        raise InvalidOptionError("wrt must name at least one argument")
    out = []
    for k in keys:
        if isinstance(k, str) and k in entry.names:
            k = entry.names.index(k)  # an array argument named by its name
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer, str)):
            raise InvalidOptionError(f"wrt must be an int position or an argument name (or a tuple of them); got {k!r}")
        if isinstance(k, (int, np.integer)):
            if not 0 <= int(k) < len(entry.names):
                raise InvalidOptionError(
                    f"wrt={int(k)} is out of range: {fn.__name__} takes {len(entry.names)} array argument(s) "
                    f"({', '.join(entry.names)})")
            k = int(k)
        if k not in entry.differentiable:
            name = entry.names[k] if isinstance(k, int) else k
            can = ", ".join(repr(entry.names[d]) if isinstance(d, int) else repr(d) for d in entry.differentiable)
            raise InvalidOptionError(f"{fn.__name__} has no gradient with respect to {name!r}; it has one for {can}")
        out.append(k)
    return tuple(out), single


def value_and_grad(fn: Callable[..., Any], /, *arrays: ArrayLike, wrt: Union[Key, Sequence[Key]] = 0,
                   grad_output: ArrayLike | None = None, **options: Any) -> tuple[Array, Any]:
    r"""The value of ``fn(*arrays, **options)`` and its gradient.

    ``wrt`` names what to differentiate with respect to: the position of an
    array argument (``0``, the input, by default), an argument's name
    (``"target"``, or a keyword array such as ``"bias"`` where the function
    has one), or a tuple of these — then a tuple of gradients comes back, in
    that order.  For a reduced (scalar) loss the gradient is :math:`∂L/∂a`;
    for ``reduction='none'`` or an activation it is the vector-Jacobian
    product :math:`\sum_i g_i ∂L_i/∂a` with ``g = grad_output`` (ones by
    default).  A scalar ``grad_output`` scales a reduced loss's gradient.

    Shapes: each gradient has the shape and dtype of its argument.

    >>> import numpy as np
    >>> from crossentropy import cross_entropy, value_and_grad
    >>> loss, g = value_and_grad(cross_entropy, np.array([[2.0, 1.0, -1.0]]), np.array([0]))
    >>> round(float(loss), 6), g.round(4).tolist()  # g = softmax - onehot
    (0.349012, [[-0.2946, 0.2595, 0.0351]])

    Soft targets have a gradient too (:math:`-\log p` per class here):

    >>> x, t = np.array([[0.0, 0.0]]), np.array([[0.5, 0.5]])
    >>> _, (gx, gt) = value_and_grad(cross_entropy, x, t, wrt=(0, 1))
    >>> gx.tolist(), gt.round(4).tolist()
    ([[0.0, 0.0]], [[0.6931, 0.6931]])
    """
    try:
        entry = _IMPLS[fn]
    except (KeyError, TypeError):
        raise InvalidOptionError(
            f"fn must be a loss or activation of crossentropy; got {getattr(fn, '__name__', fn)!r}"
        ) from None
    if len(arrays) != len(entry.names):
        raise InvalidOptionError(f"{fn.__name__} takes {len(entry.names)} array argument(s); got {len(arrays)}")
    keys, single = _keys(entry, fn, wrt)
    value, grads = entry.impl(*arrays, wrt=keys, grad_output=grad_output, **options)
    if single:
        return value, grads[keys[0]]
    return value, tuple(grads[k] for k in keys)


def grad(fn: Callable[..., Any], /, *arrays: ArrayLike, wrt: Union[Key, Sequence[Key]] = 0,
         grad_output: ArrayLike | None = None, **options: Any) -> Any:
    """Only the gradient part of :func:`value_and_grad`.

    >>> import numpy as np
    >>> from crossentropy import binary_cross_entropy_with_logits, grad
    >>> grad(binary_cross_entropy_with_logits, np.array([0.0, 0.0]), np.array([1.0, 0.0]), reduction="sum").tolist()
    [-0.5, 0.5]
    """
    return value_and_grad(fn, *arrays, wrt=wrt, grad_output=grad_output, **options)[1]


def quiet(impl: _F) -> _F:
    """Silence NumPy's floating-point warnings inside a loss implementation.

    ``log(0) = -inf`` and ``0·inf`` guarded by ``where`` are intended results
    here (exact mode), not accidents worth a warning; NaN still propagates.
    """

    @functools.wraps(impl)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Only NumPy has floating-point warnings; other libraries (and torch.compile's
        # tracer, which cannot trace np.errstate) run the implementation directly.
        if any(type(a) is np.ndarray for a in args):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
                return impl(*args, **kwargs)
        return impl(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps impl's signature
