"""Dispatch to the fast CPU kernels (issue: CPU speed near the memory limit).

Each hook returns ``NotImplemented`` when no kernel applies (numba missing or
disabled, a torch/JAX array, an axis other than the last, a non-contiguous
input, mixed dtypes, …); the caller then runs the reference implementation.
A kernel agrees with the reference within dtype tolerance (tests/kernels hold
it to that) and raises the same errors, because validation is either the
caller's (``_prepare``) or, on the direct path, the kernel reports a bad
target and the reference path runs and raises.

What a hook returns is the finished ``(value, grad)``: the kernels fold the
gradient's scale (sample weight × 1/ln(base) × 1/denominator × grad_output)
into the one sweep that writes the gradient, so no N×C pass follows; the
value goes through :func:`~crossentropy._reduction.finish` as usual.

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
from ._validation import REDUCTIONS

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_DUMMY = {d: np.zeros(1, d) for d in _FLOATS}
_DUMMY2 = {d: np.zeros((1, 1), d) for d in _FLOATS}


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
        return _DUMMY[x.dtype], False
    if grad_into is None:
        return np.empty_like(x), False
    same = check_grad_into(grad_into, x)
    if not (isinstance(grad_into, np.ndarray) and grad_into.flags.c_contiguous):
        return None, False
    return grad_into, same


# ---------------------------------------------------------------------------------------------
# gradient scale: what finish() would multiply the gradient by, per sample
# ---------------------------------------------------------------------------------------------

def _grad_scale(dtype, shape, *, reduction, sample_weight, log_base, grad_output, norm, valid):
    """``(gs, stride)``: the per-sample factor folded into the kernel's gradient, or None."""
    g = 1.0
    arr = None
    if sample_weight is not None:
        arr = np.asarray(_broadcast_weight(np, np.asarray(sample_weight).astype(dtype), shape, "sample_weight"),
                         dtype=np.float64)
    if log_base is not None:
        g = g / log_base
    if reduction == "none":
        if grad_output is not None:
            go = np.asarray(grad_output).astype(dtype)
            if tuple(go.shape) != tuple(shape):
                go = _broadcast_weight(np, go, shape, "grad_output")
            arr = go.astype(np.float64) if arr is None else arr * go
    else:
        if reduction in ("mean", "sum_over_batch_size"):
            nw = None
            if norm is not None or arr is not None:
                w = norm if norm is not None else 1.0
                nw = w * arr if arr is not None else np.broadcast_to(np.asarray(w, np.float64), shape)
            # the divisor finish() would use (one definition, in _reduction)
            _, div = denominators(namespace(), np.broadcast_to(np.float64(0.0), shape), reduction=reduction, norm=nw,
                                  valid=valid)
            g = float(np.float64(g) / np.float64(div))  # a true 0 divisor gives inf, as finish()
        if grad_output is not None:
            go = np.asarray(grad_output)
            if go.size != 1:
                return None
            g = g * float(go.reshape(()))
    if arr is None:
        return np.array([g], dtype=dtype), 0
    return np.ascontiguousarray((arr * g).reshape(-1), dtype=dtype), 1


# ---------------------------------------------------------------------------------------------
# cross-entropy from logits
# ---------------------------------------------------------------------------------------------

def _wsum(w, C, dtype, ntile, tile):
    """Per-tile class-weight sums and their total (label smoothing's Σ_c w_c terms)."""
    out = np.empty(ntile + 1, dtype)
    if w is None:
        out[:ntile] = [min(tile, C - t * tile) for t in range(ntile)]
        out[ntile] = C
    else:
        out[:ntile] = np.add.reduceat(w, np.arange(0, C, tile))
        out[ntile] = np.sum(w)
    return out


_I64_0 = np.int64(0)
_ZERO = {d: d.type(0) for d in _FLOATS}


def _run_ce(x2, kind, tgt, w, ii, eps, z, need_grad, gs, gstride, grad2, inplace=False):
    """Call the index/prob kernel on (N, C) views; returns (loss, bad_row, Σ loss in float64)."""
    numba, kce, _ = _kernels.get()
    N, C = x2.shape
    dtype = x2.dtype
    loss = np.empty(N, dtype)
    if N == 0:
        return loss, -1, 0.0
    if N * C < _kernels.SMALL_WORK or N == 1:
        serial, block = True, N  # small work: no thread wake-up, no scheduling
    else:
        nthreads = _kernels.threads(numba)
        serial, block = nthreads == 1, _kernels.row_block(N, nthreads)
    has_w = w is not None
    wv = w if has_w else _DUMMY[dtype]
    ceps = dtype.type(eps) if eps else _ZERO[dtype]
    cz = dtype.type(z) if z else _ZERO[dtype]
    if kind == "index":
        wsum = _wsum(w, C, dtype, -(-C // kce.TILE), kce.TILE) if eps else _DUMMY[dtype]
        f = kce.ce_index_serial if serial else kce.ce_index_parallel
        bad, total = f(x2, tgt, wv, has_w, wsum, _I64_0 if ii is None else np.int64(ii), ii is not None, ceps, cz,
                       need_grad, gs, gstride, grad2, loss, block, inplace)
    else:
        f = kce.ce_prob_serial if serial else kce.ce_prob_parallel
        bad, total = -1, 0.0
        f(x2, tgt, wv, has_w, ceps, cz, need_grad, gs, gstride, grad2, loss, block, inplace)
    return loss, bad, total


def _ce_eligible(x):
    return (isinstance(x, np.ndarray) and x.dtype in _FLOATS and x.ndim >= 1 and x.shape[-1] > 0
            and x.flags.c_contiguous)


def _index_target(target):
    # always int64: one compiled specialisation (other integer dtypes are cast,
    # O(N); uint64 beyond int64 wraps negative and fails the range check as it should)
    if target.dtype == np.int64 and target.flags.c_contiguous:
        return target.reshape(-1)
    return np.ascontiguousarray(target, dtype=np.int64).reshape(-1)


def cross_entropy(xp, x, target, *, kind, axis, weight, ignore_index, label_smoothing, z_loss, need_grad,
                  valid=None, sample_weight=None, reduction="mean", base=None, grad_output=None, grad_into=None):
    """Finished ``(value, grad)`` of softmax CE from validated inputs, or NotImplemented.

    ``target`` holds the class indices (ignored entries may hold anything;
    ``valid`` marks the counted ones) or the probabilities (input's dtype).
    """
    if xp.name != "numpy" or _kernels.get() is None or not _ce_eligible(x) or axis != x.ndim - 1:
        return NotImplemented
    if kind == "prob" and (target.dtype != x.dtype or not isinstance(target, np.ndarray)):
        return NotImplemented
    if weight is not None and (weight.dtype != x.dtype or not isinstance(weight, np.ndarray)):
        return NotImplemented
    grad, inplace = _grad_buffer(x, grad_into, need_grad)
    if grad is None:
        return NotImplemented
    from ._backend import log_of_base

    C = x.shape[-1]
    shape = tuple(x.shape[:-1])
    log_base = log_of_base(base)
    norm = None
    if kind == "index":
        tgt = _index_target(target)
        if ignore_index is not None and valid is not None:
            tgt = np.where(valid.reshape(-1), tgt, np.int64(ignore_index))
        if weight is not None:
            norm = weight[tgt.clip(0, C - 1)].reshape(shape)
            if valid is not None:
                norm = np.where(valid, norm, np.zeros_like(norm))
        w = weight
    else:
        tgt = np.ascontiguousarray(target).reshape(-1, C)
        w = weight
    gsc = (_grad_scale(x.dtype, shape, reduction=reduction, sample_weight=sample_weight, log_base=log_base,
                       grad_output=grad_output, norm=norm, valid=valid) if need_grad else (_DUMMY[x.dtype], 0))
    if gsc is None:
        return NotImplemented
    gs, gstride = gsc
    x2 = x.reshape(-1, C)
    g2 = grad.reshape(-1, C) if need_grad else grad.reshape(1, 1)
    loss, bad, _ = _run_ce(x2, kind, tgt, w, ignore_index, label_smoothing, z_loss, need_grad, gs, gstride, g2,
                           inplace)
    if bad >= 0:  # cannot happen after _prepare's validation; kept for safety
        return NotImplemented
    value, _ = finish(namespace(), Terms(loss.reshape(shape), None, norm, valid, x.ndim - 1), reduction=reduction,
                      sample_weight=sample_weight, log_base=log_base, need_grad=False)
    return value, (grad if need_grad else None)


def cross_entropy_direct(input, target, need_grad, grad_output, axis, weight, sample_weight, ignore_index,
                         label_smoothing, reduction, z_loss, base, grad_into):
    """The common case without ``_prepare``: NumPy logits, integer targets, plain options.

    Anything unusual returns NotImplemented, and the full path (validation
    included) runs; so does a target out of range, which the kernel detects
    before writing anything, so that the reference path raises its error.
    Every check here is O(1) or O(N) on the targets: small batches are
    dominated by call overhead (the (8, 1000) benchmark row).
    """
    if (type(input) is not np.ndarray or type(target) is not np.ndarray or weight is not None
            or sample_weight is not None or base is not None or input.dtype not in _FLOATS
            or target.dtype.kind not in "iu" or target.shape != input.shape[:-1] or input.ndim < 1
            or reduction not in REDUCTIONS or (axis != -1 and axis != input.ndim - 1) or type(axis) is not int
            or not input.flags.c_contiguous or input.shape[-1] == 0):
        return NotImplemented
    if (label_smoothing or z_loss) and (label_smoothing.__class__ not in (int, float) or z_loss.__class__ not in (
            int, float) or not (0.0 <= label_smoothing <= 1.0 and z_loss >= 0.0)):
        return NotImplemented
    if ignore_index is not None and type(ignore_index) is not int:
        return NotImplemented
    if need_grad and grad_output is not None and (reduction == "none" or type(grad_output) not in (int, float)):
        return NotImplemented
    if _kernels.get() is None:
        return NotImplemented
    x = input
    C = x.shape[-1]
    tgt = _index_target(target)
    n = tgt.shape[0]
    cnt = n if ignore_index is None else n - int(np.count_nonzero(tgt == ignore_index))
    grad, inplace = _grad_buffer(x, grad_into, need_grad)
    if grad is None:
        return NotImplemented
    if need_grad:
        # what finish() multiplies the gradient by; nothing counted: the zero gradient stays 0
        g = 1.0 if reduction in ("none", "sum") else 1.0 / (cnt if cnt > 0 else 1)
        if grad_output is not None:
            g = g * float(grad_output)
        gs, g2 = np.full(1, g, dtype=x.dtype), grad.reshape(-1, C)
    else:
        gs, g2 = _DUMMY[x.dtype], _DUMMY2[x.dtype]
    loss, bad, total = _run_ce(x.reshape(-1, C), "index", tgt, None, ignore_index, label_smoothing, z_loss,
                               need_grad, gs, 0, g2, inplace)
    if bad >= 0:
        return NotImplemented
    dt = x.dtype.type
    if reduction == "none":
        value = loss.reshape(x.shape[:-1])
    elif reduction == "sum":
        value = dt(total)
    elif reduction == "mean":
        value = dt(total) / dt(cnt)  # 0/0 = NaN, as finish()
    else:
        valid = None if ignore_index is None else (target != ignore_index)
        value, _ = finish(namespace(), Terms(loss.reshape(x.shape[:-1]), None, None, valid, x.ndim - 1),
                          reduction=reduction, need_grad=False)
    return value, (grad if need_grad else None)


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
    if (xp.name != "numpy" or _kernels.get() is None or not isinstance(x, np.ndarray) or x.dtype not in _FLOATS
            or not isinstance(t, np.ndarray) or t.dtype != x.dtype or t.shape != x.shape
            or not x.flags.c_contiguous):
        return NotImplemented
    numba, _, kb = _kernels.get()
    from ._backend import log_of_base

    log_base = log_of_base(base)
    pw, has_pw, P = _DUMMY[x.dtype], False, 1
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
        # Tile a short period up to ≥ 1024 elements: the kernel walks aligned
        # segments of length P, and long segments keep its inner loop vectorised.
        core = np.ascontiguousarray(core).reshape(-1)
        pw, has_pw = np.tile(core, max(1, -(-1024 // core.size))), True
        P = pw.size
    grad, _ = _grad_buffer(x, grad_into, need_grad)
    if grad is None:
        return NotImplemented
    shape = tuple(x.shape)
    if need_grad:
        gsc = _grad_scale(x.dtype, shape, reduction=reduction, sample_weight=sample_weight, log_base=log_base,
                          grad_output=grad_output, norm=None, valid=None)
        if gsc is None:
            return NotImplemented
        gs, gstride = gsc
    else:
        gs, gstride = _DUMMY[x.dtype], 0
    n = x.size
    reduce = reduction != "none" and sample_weight is None
    loss = _DUMMY[x.dtype] if reduce else np.empty(n, x.dtype)
    nchunk = max(1, -(-n // kb.CHUNK))
    partial = np.empty(nchunk, x.dtype)
    nbad = np.zeros(nchunk, np.int64)
    if n:
        nthreads = _kernels.threads(numba)
        f = kb.bce_serial if (nthreads == 1 or n < _kernels.SMALL_WORK) else kb.bce_parallel
        f(x.reshape(-1), t.reshape(-1), pw, has_pw, P, gs, gstride, need_grad,
          grad.reshape(-1) if need_grad else grad, loss, reduce, partial, check_target, nbad)
        if check_target and nbad.any():
            return NotImplemented
    g_out = grad if need_grad else None
    if not reduce:
        value, _ = finish(namespace(), Terms(loss.reshape(shape), None), reduction=reduction,
                          sample_weight=sample_weight, log_base=log_base, need_grad=False)
        return value, g_out
    # finish() on the chunk partials: the same operations, with the count of elements
    total = np.sum(partial) if n else x.dtype.type(0)
    if log_base is not None:
        total = total / log_base
    total = x.dtype.type(total)
    cnt = np.asarray(float(n), dtype=x.dtype)
    if reduction == "mean":
        value = total / cnt
    elif reduction == "sum_over_batch_size":
        safe = np.where(cnt > 0, cnt, np.ones_like(cnt))
        value = np.where(cnt > 0, total / safe, np.zeros_like(total))
    else:
        value = total
    return value, g_out


def bce_direct(input, target, need_grad, grad_output, sample_weight, pos_weight, label_smoothing, reduction, base,
               grad_into):
    """BCE-with-logits without ``_prepare`` for plain calls: NumPy arrays of one float dtype,
    no weights, smoothing, base or ``grad_into``; the target range check runs in the kernel."""
    if (type(input) is not np.ndarray or type(target) is not np.ndarray or input.dtype not in _FLOATS
            or target.dtype != input.dtype or target.shape != input.shape or sample_weight is not None
            or pos_weight is not None or base is not None or grad_into is not None
            or type(label_smoothing) not in (int, float) or label_smoothing != 0 or reduction not in REDUCTIONS):
        return NotImplemented
    if need_grad and grad_output is not None and (reduction == "none" or type(grad_output) not in (int, float)):
        return NotImplemented
    return bce_with_logits(namespace(), input, target, None, need_grad, reduction=reduction, grad_output=grad_output,
                           check_target=True)
