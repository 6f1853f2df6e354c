"""Dispatch to the compiled CPU kernels (crossentropy._kernels._ckernels).

Each hook returns ``NotImplemented`` when no kernel applies (kernels not built
or disabled, a torch/JAX array, an axis other than the last, a non-contiguous
input, mixed dtypes, …); the caller then runs the reference implementation.
A kernel agrees with the reference within dtype tolerance (tests/kernels hold
it to that) and raises the same errors, because validation is either the
caller's (``_prepare``) or, on the direct path, the kernel reports a bad
target and the reference path runs and raises.

What a hook returns is the finished ``(value, grad)``: the kernels fold the
gradient's scale (sample weight × 1/ln(base) × 1/denominator × grad_output)
into the one sweep that writes the gradient, so no N×C pass follows; the
value goes through :func:`~crossentropy._reduction.finish` as usual, except on
the direct paths, which reduce in C (compensated, fixed order).

``cross_entropy_direct`` and ``bce_direct`` are the C functions themselves
when the kernels are built: the checks, the kernel, the reduction and the
result objects of a plain ``cross_entropy(x, y)`` cost one C call.

``grad_into`` (a keyword of :func:`~crossentropy.value_and_grad` for
``cross_entropy`` and ``binary_cross_entropy_with_logits``): an array with
the input's shape and dtype that receives the gradient, which is then
returned.  Passing the input itself computes the gradient in place, with no
N×C allocation at all; the input's values are lost.
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from ._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from ._backend import namespace
from ._reduction import Terms, _broadcast_weight, denominators, finish

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_CK_IDX, _CK_PROB = 0, 1


# ---------------------------------------------------------------------------------------------
# grad_into
# ---------------------------------------------------------------------------------------------

def check_grad_into(grad_into, x):
    """Validate ``grad_into`` against the input; return True when it *is* the input (in place)."""
    if tuple(getattr(grad_into, "shape", ())) != tuple(x.shape) or not hasattr(grad_into, "dtype"):
        raise ShapeMismatchError(
            f"grad_into must have the shape of input {tuple(x.shape)}; got {tuple(getattr(grad_into, 'shape', ()))}"
        )
    if str(grad_into.dtype) != str(x.dtype):
        raise InvalidDTypeError(f"grad_into must have the dtype of input ({x.dtype}); got dtype {grad_into.dtype}")
    if isinstance(grad_into, np.ndarray) and isinstance(x, np.ndarray):
        if not grad_into.flags.writeable:
            raise InvalidOptionError("grad_into must be writeable; got a read-only array")
        same = grad_into.ctypes.data == x.ctypes.data and grad_into.strides == x.strides
        if not same and np.may_share_memory(grad_into, x):
            raise InvalidOptionError("grad_into overlaps input without being the input itself")
        return same
    return grad_into is x


def deliver(result, grad_into, x=None):
    """Reference path: copy the gradient into ``grad_into`` when one was given."""
    value, grad = result
    if grad_into is None or grad is None:
        return result
    if x is not None:
        check_grad_into(grad_into, x)
    grad_into[...] = grad
    return value, grad_into


def _grad_buffer(x, grad_into, need_grad):
    """``(buffer, in_place)`` for the kernel's gradient, or ``(None, False)`` if unusable."""
    if not need_grad:
        return None, False
    if grad_into is None:
        return np.empty_like(x), False
    same = check_grad_into(grad_into, x)
    if not (isinstance(grad_into, np.ndarray) and grad_into.flags.c_contiguous):
        return None, False
    return grad_into, same


# ---------------------------------------------------------------------------------------------
# gradient scale: what finish() would multiply the gradient by, per sample
# ---------------------------------------------------------------------------------------------

def _grad_scale(shape, *, reduction, sample_weight, log_base, grad_output, norm, valid):
    """The per-sample factor (float64, 1 or N entries) folded into the kernel's gradient, or None."""
    g = 1.0
    arr = None
    if sample_weight is not None:
        arr = np.asarray(_broadcast_weight(np, np.asarray(sample_weight), shape, "sample_weight"), dtype=np.float64)
    if log_base is not None:
        g = g / log_base
    if reduction == "none":
        if grad_output is not None:
            go = np.asarray(grad_output)
            if tuple(go.shape) != tuple(shape):
                go = _broadcast_weight(np, go, shape, "grad_output")
            go = go.astype(np.float64)
            arr = go if arr is None else arr * go
    else:
        if reduction in ("mean", "sum_over_batch_size"):
            nw = None
            if norm is not None or arr is not None:
                w = norm if norm is not None else 1.0
                nw = w * arr if arr is not None else np.broadcast_to(np.asarray(w, np.float64), shape)
            # the divisor finish() would use (one definition, in _reduction)
            _, div = denominators(namespace(), np.broadcast_to(np.float64(0.0), shape), reduction=reduction, norm=nw,
                                  valid=valid)
            # non-zero weights summing to 0 divide by 0: ±inf/NaN, as the reference and PyTorch
            with np.errstate(divide="ignore", invalid="ignore"):
                g = float(np.float64(g) / np.float64(div))
        if grad_output is not None:
            go = np.asarray(grad_output)
            if go.size != 1:
                return None
            g = g * float(go.reshape(()))
    if arr is None:
        return np.array([g], dtype=np.float64)
    return np.ascontiguousarray((arr * g).reshape(-1), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# cross-entropy from logits
# ---------------------------------------------------------------------------------------------

def _ce_eligible(x):
    return (isinstance(x, np.ndarray) and x.dtype in _FLOATS and x.ndim >= 1 and x.shape[-1] > 0
            and x.flags.c_contiguous and x.dtype.isnative)


def _index_target(target):
    if target.dtype in (np.int64, np.int32) and target.flags.c_contiguous and target.dtype.isnative:
        return target.reshape(-1)
    # other integer dtypes are cast (O(N)); uint64 beyond int64 wraps negative and
    # fails the range check as it should
    return np.ascontiguousarray(target, dtype=np.int64).reshape(-1)


def cross_entropy(xp, x, target, *, kind, axis, weight, ignore_index, label_smoothing, z_loss, need_grad,
                  valid=None, sample_weight=None, reduction="mean", base=None, grad_output=None, grad_into=None):
    """Finished ``(value, grad)`` of softmax CE from validated inputs, or NotImplemented.

    ``target`` holds the class indices (ignored entries may hold anything;
    ``valid`` marks the counted ones) or the probabilities (input's dtype).
    """
    ck = _kernels.get()
    if xp.name != "numpy" or ck is None or not _ce_eligible(x) or axis != x.ndim - 1:
        return NotImplemented
    if kind == "prob" and (not isinstance(target, np.ndarray) or target.dtype != x.dtype):
        return NotImplemented
    if weight is not None and (not isinstance(weight, np.ndarray) or weight.dtype != x.dtype):
        return NotImplemented
    grad, _ = _grad_buffer(x, grad_into, need_grad)
    if need_grad and grad is None:
        return NotImplemented
    from ._backend import log_of_base

    C = x.shape[-1]
    shape = tuple(x.shape[:-1])
    log_base = log_of_base(base)
    norm = None
    tgt = None
    prob = None
    ii = ignore_index
    if kind == "index":
        tgt = _index_target(target)
        if ignore_index is not None and valid is not None:
            # ignored entries may hold anything (the caller maps them to 0): mark them
            tgt = np.where(valid.reshape(-1), tgt, np.int64(ignore_index))
        if weight is not None:
            norm = weight[tgt.clip(0, C - 1)].reshape(shape)
            if valid is not None:
                norm = np.where(valid, norm, np.zeros_like(norm))
    else:
        prob = np.ascontiguousarray(target).reshape(-1, C)
        ii = None
    gs = None
    if need_grad:
        gs = _grad_scale(shape, reduction=reduction, sample_weight=sample_weight, log_base=log_base,
                         grad_output=grad_output, norm=norm, valid=valid)
        if gs is None:
            return NotImplemented
    x2 = x.reshape(-1, C)
    loss = np.empty(x2.shape[0], x.dtype)
    w = None if weight is None else np.ascontiguousarray(weight)
    bad = ck.ce_kernel(x2, _CK_IDX if kind == "index" else _CK_PROB, tgt, prob, w, ii, float(label_smoothing or 0.0),
                       float(z_loss or 0.0), gs, grad.reshape(-1, C) if need_grad else None, loss, True, 0.0, None,
                       0, C, None, None, 0)
    if bad >= 0:  # cannot happen after _prepare's validation; kept for safety
        return NotImplemented
    value, _ = finish(namespace(), Terms(loss.reshape(shape), None, norm, valid, x.ndim - 1), reduction=reduction,
                      sample_weight=sample_weight, log_base=log_base, need_grad=False)
    return value, (grad if need_grad else None)


_CK = _kernels._ck  # the compiled module, or None when it was not built


def cross_entropy_direct(input, target, need_grad, grad_output, axis, weight, sample_weight, ignore_index,
                         label_smoothing, reduction, z_loss, base, grad_into):
    """The common case without ``_prepare``: NumPy logits, integer targets, plain options
    (no class/sample weights, no base, reduction none/sum/mean) → ``(value, grad)``.

    Anything unusual returns NotImplemented and the full path (validation
    included) runs; so does a target out of range, which the kernel detects
    before writing anything, so that the reference path raises its error.
    The work is one C call (``_ckernels.ce_direct``); the type test stays in
    Python so that tracers (``torch.compile``, JAX) see a plain function that
    returns NotImplemented for their arrays, never a C builtin.
    """
    if type(input) is not np.ndarray or _CK is None:
        return NotImplemented
    return _CK.ce_direct(input, target, need_grad, grad_output, axis, weight, sample_weight, ignore_index,
                         label_smoothing, reduction, z_loss, base, grad_into)


def _ce_value(fallback, input, target, axis, weight, sample_weight, ignore_index, label_smoothing, reduction,
              z_loss, base, softcap=None):
    kw = {} if softcap is None else {"softcap": softcap}
    return fallback(input, target, axis=axis, weight=weight, sample_weight=sample_weight, ignore_index=ignore_index,
                    label_smoothing=label_smoothing, reduction=reduction, z_loss=z_loss, base=base, **kw)[0]


def ce_value(fallback, input, target, axis, weight, sample_weight, ignore_index, label_smoothing, reduction, z_loss,
             base, softcap=None):
    """What the public ``cross_entropy`` returns: for NumPy logits one C call
    (``_ckernels.ce_value``: the direct path, no wrapper, no NumPy error-state
    context, since the C code raises no NumPy warnings), falling back to
    ``fallback(input, target, **options)[0]``; for anything else, and with a
    soft cap, the fallback.  This is the per-call overhead of a small
    ``cross_entropy(x, y)``."""
    if type(input) is np.ndarray and softcap is None and _CK is not None:
        return _CK.ce_value(fallback, input, target, axis, weight, sample_weight, ignore_index, label_smoothing,
                            reduction, z_loss, base)
    return _ce_value(fallback, input, target, axis, weight, sample_weight, ignore_index, label_smoothing, reduction,
                     z_loss, base, softcap)


# ---------------------------------------------------------------------------------------------
# binary cross-entropy with logits
# ---------------------------------------------------------------------------------------------

def bce_with_logits(xp, x, t, pos_weight, need_grad, *, sample_weight=None, reduction="mean", base=None,
                    grad_output=None, grad_into=None, check_target=False):
    """Finished ``(value, grad)`` of elementwise BCE-with-logits, or NotImplemented.

    ``check_target``: the caller has not validated ``t``; a target outside
    [0, 1] found by the kernel returns NotImplemented (nothing the caller
    owns has been written: the direct path never writes into ``grad_into``).
    """
    ck = _kernels.get()
    if (xp.name != "numpy" or ck is None or not isinstance(x, np.ndarray) or x.dtype not in _FLOATS
            or not isinstance(t, np.ndarray) or t.dtype != x.dtype or t.shape != x.shape
            or not x.flags.c_contiguous or not x.dtype.isnative):
        return NotImplemented
    from ._backend import log_of_base

    log_base = log_of_base(base)
    pw = None
    if pos_weight is not None:
        pwa = np.asarray(pos_weight)
        if pwa.dtype != x.dtype:
            return NotImplemented
        if pwa.size == 1:
            core = pwa.reshape(1)
        else:
            core = pwa.reshape(pwa.shape[next((i for i, s in enumerate(pwa.shape) if s != 1), pwa.ndim):])
            if core.ndim > x.ndim or tuple(x.shape[x.ndim - core.ndim:]) != tuple(core.shape):
                return NotImplemented
        # the kernel walks the flat input in segments of pos_weight's period P
        pw = np.ascontiguousarray(core).reshape(-1)
    grad, _ = _grad_buffer(x, grad_into, need_grad)
    if need_grad and grad is None:
        return NotImplemented
    shape = tuple(x.shape)
    gs = np.ones(1)
    if need_grad:
        gs = _grad_scale(shape, reduction=reduction, sample_weight=sample_weight, log_base=log_base,
                         grad_output=grad_output, norm=None, valid=None)
        if gs is None:
            return NotImplemented
    reduce = reduction != "none" and sample_weight is None
    loss = None if reduce else np.empty(shape, x.dtype)
    tt = np.ascontiguousarray(t)
    hi, lo, nbad = ck.bce_kernel(x, tt, pw, gs, grad if need_grad else None, loss, bool(check_target))
    if check_target and nbad:
        return NotImplemented
    g_out = grad if need_grad else None
    if not reduce:
        value, _ = finish(namespace(), Terms(loss, None), reduction=reduction, sample_weight=sample_weight,
                          log_base=log_base, need_grad=False)
        return value, g_out
    # finish() on the compensated total (the mean rounded as bce_direct rounds it)
    n = x.size
    dt = x.dtype.type
    if reduction == "sum":
        total = hi + lo
    else:
        total = ck.div_hl(hi, lo, float(n)) if n else (np.nan if reduction == "mean" else 0.0)
    if log_base is not None:
        total = total / log_base
    value = dt(total)
    if reduction == "sum_over_batch_size":
        value = np.asarray(value)
    return value, g_out


def bce_direct(input, target, need_grad, grad_output, sample_weight, pos_weight, label_smoothing, reduction, base,
               grad_into):
    """BCE-with-logits without ``_prepare`` for plain calls: NumPy arrays of one float
    dtype, no weights, smoothing, base or ``grad_into``; the target range check
    runs in the kernel.  One C call (``_ckernels.bce_direct``), as ``cross_entropy_direct``."""
    if type(input) is not np.ndarray or _CK is None:
        return NotImplemented
    return _CK.bce_direct(input, target, need_grad, grad_output, sample_weight, pos_weight, label_smoothing,
                          reduction, base, grad_into)


def _bce_value(fallback, input, target, sample_weight, pos_weight, label_smoothing, reduction, base):
    return fallback(input, target, sample_weight=sample_weight, pos_weight=pos_weight,
                    label_smoothing=label_smoothing, reduction=reduction, base=base)[0]


def bce_value(fallback, input, target, sample_weight, pos_weight, label_smoothing, reduction, base):
    """``binary_cross_entropy_with_logits``'s value, as :func:`ce_value`."""
    if type(input) is np.ndarray and _CK is not None:
        return _CK.bce_value(fallback, input, target, sample_weight, pos_weight, label_smoothing, reduction, base)
    return _bce_value(fallback, input, target, sample_weight, pos_weight, label_smoothing, reduction, base)
