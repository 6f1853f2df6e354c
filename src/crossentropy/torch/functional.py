"""Drop-in replacements for four functions of ``torch.nn.functional``.

``cross_entropy``, ``nll_loss``, ``binary_cross_entropy`` and
``binary_cross_entropy_with_logits`` (and the fused ``linear_cross_entropy``,
:mod:`crossentropy.torch.linear`) take exactly the arguments of their
PyTorch namesakes (same names, order and defaults, legacy ``size_average`` /
``reduce`` included) and return the same values and gradients, in every
autodiff mode of PyTorch.

How it works
------------
One call of the library gives the loss and its analytic input gradient
(:func:`crossentropy.value_and_grad`: the fast CPU kernels for CPU
float32/float64 tensors, passed to NumPy without a copy; the library's
reference code on the tensors for other devices).  The autograd wiring is in
:mod:`crossentropy.torch._autograd`: the common training step multiplies that
gradient by the incoming one; ``create_graph=True``, ``torch.func``
transforms, forward-mode AD and target / weight gradients go through
differentiable derivative functions (:mod:`crossentropy.torch._compute`), so
every order of derivative exists; ``torch.compile`` sees one opaque operator.

Half precision (float16, bfloat16) is computed in float32 and returned in the
input's dtype, as PyTorch's own kernels accumulate in float32.

Dtype rules are PyTorch's: a class ``weight`` must have the input's dtype
with class-index targets; class-probability targets promote (input, target,
weight); ``binary_cross_entropy`` wants the target in the input's dtype; the
loss of ``binary_cross_entropy_with_logits`` has the target's dtype.

Differences from PyTorch, deliberate and documented in ``docs/adapters.md``:
errors are the library's classes (``ValueError``/``TypeError`` subclasses,
where PyTorch raises ``RuntimeError``/``IndexError``), any integer dtype is
accepted for class indices (PyTorch wants int64 or uint8), and
``binary_cross_entropy_with_logits`` rejects targets outside [0, 1].
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from ._autograd import apply_loss
from ._compute import no_derivative_error
from .linear import linear_cross_entropy

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "linear_cross_entropy"]

_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64"}
_HALF = (torch.float16, torch.bfloat16)
_FN_NAMES = {"ce": "cross_entropy", "nll": "nll_loss", "bce": "binary_cross_entropy",
             "bcel": "binary_cross_entropy_with_logits"}


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """PyTorch's mapping of the deprecated ``size_average``/``reduce`` flags."""
    if size_average is None and reduce is None:
        if reduction not in ("none", "mean", "sum"):
            raise InvalidOptionError(
                f"{reduction!r} is not a valid value for reduction; expected 'none', 'mean' or 'sum'"
            )
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "none" if not reduce else ("mean" if size_average else "sum")
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
                  UserWarning, stacklevel=3)
    return ret


def _dtypes(kind: str, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor | None,
            pw: torch.Tensor | None) -> tuple[str, str]:
    """``(compute dtype, loss dtype)`` by PyTorch's rules; raise where PyTorch raises."""
    name = _FN_NAMES[kind]
    if x.dtype not in _NAMES:
        raise InvalidDTypeError(f"{name}: input must be a floating-point tensor; got dtype {x.dtype}")
    prob = t.is_floating_point()
    if kind == "nll" and prob:
        raise InvalidDTypeError(f"nll_loss: target must hold integer class indices; got dtype {t.dtype}")
    if kind in ("ce", "nll") and not prob:
        if w is not None and w.dtype != x.dtype:
            raise InvalidDTypeError(
                f"{name}: weight must have the input's dtype {x.dtype} with class-index targets; got {w.dtype}"
            )
        out = compute = x.dtype
    elif kind == "ce":
        # class probabilities: PyTorch's composite formula promotes its operands
        out = torch.promote_types(x.dtype, t.dtype)
        if w is not None:
            out = torch.promote_types(out, w.dtype)
        compute = out
    elif kind == "bce":
        if t.dtype != x.dtype:
            raise InvalidDTypeError(f"binary_cross_entropy: target must have the input's dtype {x.dtype}; "
                                    f"got {t.dtype}")
        out = compute = x.dtype
    else:
        if not prob:
            raise InvalidDTypeError(f"binary_cross_entropy_with_logits: target must be a floating-point tensor; "
                                    f"got dtype {t.dtype}")
        if pw is not None and pw.dtype == torch.bool:
            raise InvalidDTypeError("binary_cross_entropy_with_logits: pos_weight must be numeric, not bool")
        # PyTorch computes (1 - target) * input - ... in place in the target's
        # dtype: the loss has the target's dtype.
        compute, out = torch.promote_types(x.dtype, t.dtype), t.dtype
    if compute in _HALF:
        compute = torch.float32
    return _NAMES[compute], _NAMES[out]


def _autocast(kind: str, *tensors: Any) -> tuple[Any, ...]:
    """Autocast's float32 policy for losses: half-precision floating operands become float32
    (PyTorch lists these losses among the ops that autocast to float32; on CUDA it refuses
    binary_cross_entropy, whose backward is not safe in half precision)."""
    if kind == "bce" and tensors[0].device.type == "cuda":
        raise InvalidDTypeError(
            "binary_cross_entropy is unsafe to autocast (as in PyTorch): use binary_cross_entropy_with_logits, "
            "or disable autocast for this loss"
        )
    return tuple(t.float() if t is not None and t.dtype in _HALF else t for t in tensors)


def _dispatch(kind: str, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
              pos_weight: torch.Tensor | None, ignore_index: int, label_smoothing: float,
              reduction: str) -> torch.Tensor:
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise InvalidOptionError(
            f"input and target must be torch.Tensor; got {type(input).__name__} and {type(target).__name__}"
        )
    if kind in ("bce", "bcel") and tuple(target.shape) != tuple(input.shape):
        raise ShapeMismatchError(
            f"Using a target size ({tuple(target.shape)}) that is different to the input size "
            f"({tuple(input.shape)}) is not supported; please ensure they have the same size"
        )
    if kind == "ce" and target.is_floating_point() and ignore_index != -100:
        raise InvalidOptionError("ignore_index is not supported for floating point (probability) targets")
    if torch.is_autocast_enabled(input.device.type):
        input, target, weight, pos_weight = _autocast(kind, input, target, weight, pos_weight)
    cdtype, out_dtype = _dtypes(kind, input, target, weight, pos_weight)
    grad_on = torch.is_grad_enabled()
    if grad_on:
        # Where PyTorch has no derivative, say so (PyTorch raises too) rather than
        # differentiate through formulas that PyTorch never promised.
        if (weight is not None and weight.requires_grad
                and not (kind == "ce" and target.is_floating_point())):
            raise no_derivative_error(kind, "weight")
        if pos_weight is not None and pos_weight.requires_grad:
            raise no_derivative_error(kind, "pos_weight")
    need_grad = grad_on and input.requires_grad
    spec = (f"('loss', '{kind}', '{reduction}', {int(ignore_index)}, {float(label_smoothing)!r}, "
            f"'{cdtype}', '{out_dtype}', {need_grad})")
    return apply_loss(spec, input, target, weight, pos_weight)


# ---------------------------------------------------------------------------------------------
# Public functions: torch.nn.functional's signatures.
# ---------------------------------------------------------------------------------------------

def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
    r"""Softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    .. math:: \ell_n = -\sum_c w_c\, q_{nc} \log \frac{e^{x_{nc}}}{\sum_k e^{x_{nk}}},
              \qquad q = (1-ε)\,y + ε/C

    Shapes: ``input`` ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (classes
    on dim 1, dim 0 when unbatched); ``target`` class indices of shape
    ``()``, ``(N)`` or ``(N, d1, ..., dK)``, or class probabilities of the
    input's shape.  ``reduction='mean'`` divides by ``Σ w_{y_n}`` over
    non-ignored samples (index targets) or by ``N·d1···dK`` (probabilities).

    The tutorial's PyTorch example:

    >>> import torch
    >>> from crossentropy.torch.functional import cross_entropy
    >>> X = torch.tensor([[-0.5698, -0.0558, -0.2550, 1.6812, 0.0238],
    ...                   [-2.1786, 1.3923, -0.2363, -0.4601, -1.4949],
    ...                   [1.3679, 1.2853, 0.4087, -0.5743, -0.2752],
    ...                   [2.1995, 0.1469, -0.1661, 0.4617, -0.4395],
    ...                   [-0.5686, -0.7453, -0.1455, -0.5304, 0.3020],
    ...                   [-0.1489, -0.9143, -1.5282, -0.5023, 1.2751],
    ...                   [-1.3830, -0.6535, 0.5392, -2.2050, -1.4138],
    ...                   [-0.5592, 1.5028, 0.0442, -1.5487, -0.1522],
    ...                   [0.7436, -1.8956, 1.0145, -0.2974, -2.0576],
    ...                   [0.1003, 0.6604, -1.3535, -0.3053, -0.4034]])
    >>> y = torch.tensor([3, 0, 1, 1, 2, 4, 0, 2, 1, 3])
    >>> print(cross_entropy(X, y))
    tensor(1.9732)
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _dispatch("ce", input, target, weight, None, ignore_index, label_smoothing, reduction)


def nll_loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
             reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    .. math:: \ell_n = -w_{y_n}\, x_{n, y_n}

    Shapes: ``input`` ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` of
    log-probabilities; integer ``target`` without the class dim.

    >>> import torch
    >>> from crossentropy.torch.functional import nll_loss
    >>> logp = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3]]))
    >>> print(nll_loss(logp, torch.tensor([0, 2]), reduction="none"))
    tensor([0.3567, 1.2040])
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _dispatch("nll", input, target, weight, None, ignore_index, 0.0, reduction)


def binary_cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> torch.Tensor:
    r"""Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    .. math:: \ell_n = -w_n\left[y_n \max(\log p_n, -100) + (1-y_n)\max(\log(1-p_n), -100)\right]

    ``weight`` is elementwise (broadcast to the input's shape); ``'mean'``
    divides by the number of elements.  Each log is clamped at −100 as
    PyTorch does.

    Shapes: ``input`` and ``target`` of one shape (any).

    ``torch.sigmoid`` of the tutorial's ten printed scores (the tutorial's own
    printed loss, 1.0966, came from other random scores than it printed):

    >>> import torch
    >>> from crossentropy.torch.functional import binary_cross_entropy
    >>> X = torch.tensor([0.0421, -0.6606, 0.6276, 1.2491, -1.1535, -1.4137, 0.8967, -1.1786, -1.3214, 0.2828])
    >>> y = torch.tensor([1., 0., 0., 1., 0., 0., 1., 0., 0., 0.])
    >>> print(binary_cross_entropy(torch.sigmoid(X), y))
    tensor(0.4580)
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _dispatch("bce", input, target, weight, None, -100, 0.0, reduction)


def binary_cross_entropy_with_logits(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean",
                                     pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    r"""Binary cross-entropy of logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    .. math:: \ell_n = -w_n\left[w_+ y_n \log σ(x_n) + (1-y_n) \log σ(-x_n)\right]

    ``weight`` is elementwise, ``pos_weight`` broadcasts against the input
    (shape ``(C,)`` for the last dim); ``'mean'`` divides by the number of
    elements.

    Shapes: ``input`` and ``target`` of one shape (any).

    >>> import torch
    >>> from crossentropy.torch.functional import binary_cross_entropy_with_logits
    >>> x = torch.tensor([0.0, 2.0]); y = torch.tensor([1.0, 0.0])
    >>> print(binary_cross_entropy_with_logits(x, y, reduction="none"))
    tensor([0.6931, 2.1269])
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _dispatch("bcel", input, target, weight, pos_weight, -100, 0.0, reduction)
