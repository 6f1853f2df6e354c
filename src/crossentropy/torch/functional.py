"""Drop-in replacements for four functions of ``torch.nn.functional``.

``cross_entropy``, ``nll_loss``, ``binary_cross_entropy`` and
``binary_cross_entropy_with_logits`` take exactly the arguments of their
PyTorch namesakes (same names, order and defaults, legacy ``size_average`` /
``reduce`` included) and return the same values and input gradients.

How it works
------------
The loss and its analytic input gradient come from one call to
:func:`crossentropy.value_and_grad` (so the library's fast NumPy kernels are
used for CPU float32/float64 tensors, which are passed to NumPy without a
copy; other devices run the library's reference code on the tensors
themselves).  That call is wrapped in a PyTorch *custom operator*
(``torch.ops.crossentropy.loss_and_grad``) with an autograd formula attached
by :func:`torch.library.register_autograd` — PyTorch implements that as an
``autograd.Function`` whose backward multiplies the saved gradient by the
incoming one — and a shape-only "fake" implementation, so ``torch.compile``
keeps the loss in its graph as one opaque node (``fullgraph=True`` works).

Half precision (float16, bfloat16) is computed in float32 and returned in the
input's dtype, as PyTorch's own kernels accumulate in float32.

When the target, ``weight`` or ``pos_weight`` itself requires a gradient (soft
labels being learnt, say), the call runs the library's reference code on the
tensors directly, so autograd differentiates every argument; the same happens
for double backward, which the custom operator does not provide.

Differences from PyTorch, deliberate and documented in ``docs/adapters.md``:
errors are the library's classes (``ValueError``/``TypeError`` subclasses,
where PyTorch raises ``RuntimeError``/``IndexError``), any integer dtype is
accepted for class indices (PyTorch wants int64 or uint8), and
``binary_cross_entropy_with_logits`` rejects targets outside [0, 1].
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch

from .. import (
    binary_cross_entropy as _ce_bce,
    binary_cross_entropy_with_logits as _ce_bcel,
    cross_entropy as _ce_ce,
    nll_loss as _ce_nll,
    value_and_grad,
)
from .._errors import InvalidOptionError, ShapeMismatchError

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]

_HALF = (torch.float16, torch.bfloat16)
_FNS = {"ce": _ce_ce, "nll": _ce_nll, "bce": _ce_bce, "bcel": _ce_bcel}


def _legacy_reduction(size_average, reduce, reduction):
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


def _class_dim(x) -> int:
    return 0 if x.dim() == 1 else 1


def _options(kind, x, target, weight, pos_weight, ignore_index, label_smoothing, reduction):
    """Library options equivalent to PyTorch's arguments."""
    if kind in ("ce", "nll"):
        index = not (target.is_floating_point() or target.is_complex())
        opts = {"axis": _class_dim(x), "weight": weight, "reduction": reduction,
                "ignore_index": ignore_index if index else None}
        if kind == "ce":
            opts["label_smoothing"] = label_smoothing
        return opts
    # PyTorch's BCE weight is elementwise and its 'mean' divides by numel: the
    # library's sample_weight with Keras's 'sum_over_batch_size' (the plain
    # 'mean' on an empty input, where PyTorch gives 0/0 = NaN).
    if reduction == "mean" and weight is not None and x.numel() > 0:
        reduction = "sum_over_batch_size"
    opts = {"sample_weight": weight, "reduction": reduction}
    if kind == "bce":
        opts["compat"] = "torch"  # each log clamped at -100, as PyTorch does
    else:
        opts["pos_weight"] = pos_weight
    return opts


def _to_numpy(t, dtype):
    if t is None:
        return None
    t = t.detach()
    if t.is_floating_point():
        t = t.to(dtype)
    return t.numpy()


def _to_torch(a, like_dtype, device):
    a = np.asarray(a)
    if not a.flags.writeable or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a).copy()
    return torch.from_numpy(a).to(device=device, dtype=like_dtype)


def _compute(kind, x, target, weight, pos_weight, ignore_index, label_smoothing, reduction, need_grad):
    """Loss (and input gradient) as tensors of ``x``'s dtype and device."""
    loss, g = _compute_raw(kind, x, target, weight, pos_weight, ignore_index, label_smoothing, reduction, need_grad)
    if (need_grad and reduction == "mean" and kind in ("ce", "nll") and not target.is_floating_point()
            and target.numel() > 0 and not bool((target != ignore_index).any())):
        # Every target ignored: the mean is 0/0 = NaN, and PyTorch's gradient is 0 (not NaN).
        g = torch.zeros_like(g)
    return loss, g


def _compute_raw(kind, x, target, weight, pos_weight, ignore_index, label_smoothing, reduction, need_grad):
    cdtype = torch.float32 if x.dtype in _HALF else x.dtype
    opts = _options(kind, x, target, weight, pos_weight, ignore_index, label_smoothing, reduction)
    fn = _FNS[kind]
    if x.device.type == "cpu" and cdtype in (torch.float32, torch.float64):
        # NumPy path: zero-copy views, picks up the library's fast CPU kernels.
        args = (_to_numpy(x, cdtype), _to_numpy(target, cdtype))
        for k in ("weight", "sample_weight", "pos_weight"):
            if opts.get(k) is not None:
                opts[k] = _to_numpy(opts[k], cdtype)
        if need_grad:
            loss, g = value_and_grad(fn, *args, **opts)
            return _to_torch(loss, x.dtype, x.device), _to_torch(g, x.dtype, x.device)
        return _to_torch(fn(*args, **opts), x.dtype, x.device), x.new_empty((0,))
    # Tensor path (CUDA and other devices): the library's reference code on the tensors.
    xc = x.detach().to(cdtype)
    tc = target.detach().to(cdtype) if target.is_floating_point() else target.detach()
    for k in ("weight", "sample_weight", "pos_weight"):
        if opts.get(k) is not None:
            opts[k] = opts[k].detach().to(cdtype)
    if need_grad:
        loss, g = value_and_grad(fn, xc, tc, **opts)
        return loss.to(x.dtype).clone(), g.to(x.dtype).clone()
    return fn(xc, tc, **opts).to(x.dtype).clone(), x.new_empty((0,))


# ---------------------------------------------------------------------------------------------
# The custom operator: one opaque node for torch.compile, with an analytic backward.
# ---------------------------------------------------------------------------------------------

_OP_NAME = "crossentropy::loss_and_grad"


def _register_op():
    # Guard: the module may be imported twice in one process (e.g. pytest's
    # importlib mode); an operator can be defined only once.
    try:
        return torch.ops.crossentropy.loss_and_grad.default
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op(_OP_NAME, mutates_args=())
    def loss_and_grad(kind: str, input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                      pos_weight: Optional[torch.Tensor], ignore_index: int, label_smoothing: float,
                      reduction: str, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return _compute(kind, input, target, weight, pos_weight, ignore_index, label_smoothing, reduction,
                        need_grad)

    @loss_and_grad.register_fake
    def _(kind, input, target, weight, pos_weight, ignore_index, label_smoothing, reduction, need_grad):
        if reduction != "none":
            shape = ()
        elif kind in ("ce", "nll"):
            d = _class_dim(input)
            shape = tuple(s for i, s in enumerate(input.shape) if i != d)
        else:
            shape = tuple(input.shape)
        return input.new_empty(shape), input.new_empty(tuple(input.shape) if need_grad else (0,))

    def setup_context(ctx, inputs, output):
        kind, inp = inputs[0], inputs[1]
        ctx.kind, ctx.reduction, ctx.class_dim = kind, inputs[7], _class_dim(inp)
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])

    def backward(ctx, g_loss, _g_grad):
        (g,) = ctx.saved_tensors
        if ctx.reduction == "none" and ctx.kind in ("ce", "nll"):
            g_loss = g_loss.unsqueeze(ctx.class_dim)
        return None, g * g_loss, None, None, None, None, None, None, None

    loss_and_grad.register_autograd(backward, setup_context=setup_context)
    return torch.ops.crossentropy.loss_and_grad.default


_OP = _register_op()


def _dispatch(kind, input, target, weight, pos_weight, ignore_index, label_smoothing, reduction):
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
    grad_on = torch.is_grad_enabled()
    others = [t for t in (target, weight, pos_weight) if isinstance(t, torch.Tensor)]
    if grad_on and any(t.requires_grad for t in others):
        return _autograd_path(kind, input, target, weight, pos_weight, ignore_index, label_smoothing, reduction)
    need_grad = grad_on and input.requires_grad
    return _OP(kind, input, target, weight, pos_weight, int(ignore_index), float(label_smoothing), reduction,
               need_grad)[0]


def _autograd_path(kind, input, target, weight, pos_weight, ignore_index, label_smoothing, reduction):
    """Reference code on the tensors: autograd sees every operation (any argument, any order)."""
    cdtype = torch.float32 if input.dtype in _HALF else input.dtype
    opts = _options(kind, input, target, weight, pos_weight, ignore_index, label_smoothing, reduction)
    for k in ("weight", "sample_weight", "pos_weight"):
        if opts.get(k) is not None:
            opts[k] = opts[k].to(cdtype)
    t = target.to(cdtype) if target.is_floating_point() else target
    return _FNS[kind](input.to(cdtype), t, **opts).to(input.dtype)


# ---------------------------------------------------------------------------------------------
# Public functions: torch.nn.functional's signatures.
# ---------------------------------------------------------------------------------------------

def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
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


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
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


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
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


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
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
