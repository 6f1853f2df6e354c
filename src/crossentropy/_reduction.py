"""Reductions, sample weights and units, defined once for every loss.

Each loss computes *terms*: the per-sample loss ``l_i`` (before sample weights),
optionally its gradient ``∂l_i/∂x`` with the input's shape, the per-sample
normaliser weight used by ``reduction='mean'`` and the mask of counted
(non-ignored) samples.  :func:`finish` then applies, in this order:

1. sample weights ``s_i``:  ``l_i ← s_i l_i`` (and the gradient alike);
2. units: divide by ``ln(base)`` when a base other than *e* is asked for;
3. the reduction:

   ============================  =============================================
   ``'none'``                    ``l_i``
   ``'sum'``                     ``Σ l_i``
   ``'mean'``                    ``Σ l_i / Σ W_i``  (weighted mean, PyTorch:
                                 ``W_i = s_i·weight[y_i]`` for index targets,
                                 ``W_i = s_i`` otherwise; 0/0 = NaN)
   ``'sum_over_batch_size'``     ``Σ l_i / #counted``  (Keras; 0 when nothing
                                 is counted)
   ============================  =============================================

Ignored samples (``ignore_index``) have ``l_i = 0`` and ``W_i = 0`` and are
not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import ShapeMismatchError

__all__ = ["Terms", "finish", "denominators"]


@dataclass
class Terms:
    loss: Any
    grad: Any = None  # ∂loss_i/∂(argument), per sample (class axis kept); None, an array, or {key: array}
    norm_weight: Any = None  # W_i for 'mean' (before sample weights); None → 1
    valid: Any = None  # bool mask of counted samples; None → all
    class_axis: int | None = None  # axis of the input that the loss reduced over


def _broadcast_weight(xp, w, shape, name):
    try:
        return xp.broadcast_to(w, shape)
    except (ValueError, RuntimeError) as e:
        raise ShapeMismatchError(
            f"{name} of shape {tuple(w.shape)} does not broadcast to the per-sample loss shape {tuple(shape)}"
        ) from e


def finish(xp, t: Terms, *, reduction, sample_weight=None, log_base=None, grad_output=None, need_grad=False):
    """Apply sample weights, units and the reduction; return ``(loss, grad)``.

    ``grad`` mirrors ``t.grad`` (None, one array or a dict of arrays); every
    gradient is per sample, so each is multiplied by the same per-sample
    factor: sample weight × 1/ln(base) × 1/divisor × grad_output.
    """
    loss = t.loss
    shape = tuple(loss.shape)
    norm = t.norm_weight
    factor = None  # per-sample gradient factor (array of the loss's shape) or None
    scalar = 1.0  # and a scalar one
    if sample_weight is not None:
        sw = _broadcast_weight(xp, xp.astype(sample_weight, loss), shape, "sample_weight")
        loss = loss * sw
        norm = sw if norm is None else norm * sw
        factor = sw
    if log_base is not None:
        # log_b(p) = ln(p) / ln(b): rescaling the sum is exact up to one rounding.
        loss = loss / log_base
        scalar = 1.0 / log_base

    if reduction == "none":
        out = loss
        if need_grad and t.grad is not None:
            g = xp.ones_like(loss) if grad_output is None else xp.astype(xp.asarray(grad_output, like=loss), loss)
            if tuple(g.shape) != shape:
                g = _broadcast_weight(xp, g, shape, "grad_output")
            factor = g if factor is None else factor * g
        return out, _scale_grads(xp, t.grad, factor, scalar, t.class_axis)

    # Compensated: within about one rounding of the exact sum (see Ops.accurate_sum).
    total = xp.accurate_sum(loss)
    denom, div = denominators(xp, loss, reduction=reduction, norm=norm, valid=t.valid)
    if reduction == "mean":
        # 0/0 → NaN on purpose: the mean of nothing is undefined (PyTorch agrees).
        total = total / denom
    elif reduction == "sum_over_batch_size":
        # Keras uses divide_no_nan: an empty or all-ignored batch gives 0, not NaN.
        total = xp.where(denom > 0, total / div, xp.zeros_like(total))
    if not need_grad or t.grad is None:
        return total, t.grad
    if div is not None:
        factor = (1.0 / div) if factor is None else factor / div
    if grad_output is not None:
        go = xp.astype(xp.asarray(grad_output, like=loss), loss)
        factor = go if factor is None else factor * go
    return total, _scale_grads(xp, t.grad, factor, scalar, t.class_axis)


def _scale_grads(xp, grad, factor, scalar, class_axis):
    def one(g):
        if factor is not None:
            g = g * (_expand(xp, factor, class_axis) if getattr(factor, "ndim", 0) else factor)
        return g * scalar if scalar != 1.0 else g

    if grad is None:
        return None
    if isinstance(grad, dict):
        return {k: (None if g is None else one(g)) for k, g in grad.items()}
    return one(grad)


def denominators(xp, loss, *, reduction, norm, valid):
    """``(denominator of the value, divisor of the gradient)`` for a reduction.

    The one definition of what ``'mean'`` and ``'sum_over_batch_size'``
    divide by, shared by :func:`finish` and the fast kernels (which fold the
    gradient's divisor into the sweep that writes it).  ``norm`` is the
    per-sample normaliser weight *including* sample weights (None → 1) and
    ``valid`` the mask of counted samples (None → all).  ``(None, None)`` for
    ``'none'`` and ``'sum'``.

    The gradient's divisor is 1 where nothing is counted: an empty /
    all-ignored / all-zero-weight batch has an all-zero gradient, and it stays
    0 (PyTorch agrees) instead of becoming 0/0.  Non-zero weights that sum to
    0 divide by 0, in the value and the gradient alike.
    """
    if reduction == "mean":
        if norm is None:
            denom = _count(xp, valid, loss)
            counted = denom
        else:
            w = xp.broadcast_to(norm, tuple(loss.shape)) if tuple(norm.shape) != tuple(loss.shape) else norm
            w = w if valid is None else xp.where(valid, w, xp.zeros_like(w))
            denom = xp.accurate_sum(w)
            # Weights may be negative: Σw = 0 with non-zero weights is a true 0 divisor
            # (the loss is ±inf/NaN and so is its gradient, as PyTorch's), not "nothing counted".
            counted = xp.sum(xp.astype(w != 0, loss))
    elif reduction == "sum_over_batch_size":
        denom = counted = _count(xp, valid, loss)
    else:
        return None, None
    return denom, xp.where((denom == 0) & (counted == 0), xp.ones_like(denom), denom)


def _count(xp, valid, loss):
    if valid is None:
        n = 1
        for s in loss.shape:
            n *= int(s)
        return xp.asarray(float(n), like=loss)
    return xp.sum(xp.astype(valid, loss))


def _expand(xp, w, class_axis):
    return w if class_axis is None else xp.expand_dims(w, class_axis)
