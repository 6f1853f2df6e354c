r"""In-place chunk kernels for very large vocabularies, on the CPU.

The CPU building blocks of the fused linear cross-entropy (a chunk of logits
comes from a BLAS matmul ``hidden[rows] @ weight.T`` and becomes its loss and
its gradient in place, so no N×V array ever exists) and of the
vocabulary-parallel cross-entropy (each process holds a column slice of the
logits).  They run the compiled row code of :func:`crossentropy.cross_entropy`
(:mod:`crossentropy._kernels`, needs :func:`~crossentropy._kernels.available`),
and mirror :mod:`crossentropy._kernels.triton` (the CUDA kernels): the same
functions, options, semantics and partial-state layout, so that a caller (and a
``torch.distributed`` merge) treats both alike.  Differences: NumPy arrays,
float32/float64 logits (computed in double), float64 loss/lse and state.

Logits are a 2-D float32/float64 array ``(rows, V)`` with contiguous columns
(rows may be strided: a column slice of a wider array is fine), index targets.
With ``z = s·tanh(x/s)`` when ``softcap=s`` (else ``z = x``),
``q = (1 − ε)·onehot(y) + ε/V`` and class weights ``w``::

    loss_i = −Σ_c w_c q_ic log softmax(z_i)_c + ζ·lse(z_i)²      (0 if y_i is ignore_index)
    grad_i = grad_scale_i · ∂loss_i/∂x_i                           (w.r.t. the pre-cap logits)

``grad_scale`` (a number or one per row) is where the caller folds the
reduction, a global normaliser (Hugging Face's ``num_items_in_batch``), sample
weights and ``grad_output``; the gradient is written into ``grad_into``, which
may be the logits themselves (then no second ``rows × V`` buffer exists).  Both
must be given together.  The soft cap's derivative is ``sech²(x/s) =
4e/(1+e)²``, ``e = e^{−2|x/s|}``, exact where ``1 − tanh²`` would round to 0.

Exactness: ``−log p_c = (M − z_c) + log1p(S_off)`` with ``S_off = Σ_{c≠K}
e^{z_c − M}`` (``K`` the first argmax, whose term is never added), so a
confident prediction's loss and gradient keep full relative precision down to
1e-30 and into the subnormals; the argmax's gradient is ``Σ_{c≠K} a_c −
(Σa)·S_off/(1 + S_off)``, not the cancelling ``p_K − 1``.  Non-finite rows
follow the reference's plain formula (``docs/triton.md``, "Non-finite rows").

**Vocabulary split.**  :func:`vocab_partials` reduces each row of a column slice
``[class_offset, class_offset + width)`` to a :class:`Partials` state: ``stats``
``(rows, 15)`` float64 and ``index`` ``(rows, 2)`` int64 (``K``, ``KPINF``), in
the column layout of :data:`STATE_FIELDS` (= ``triton._layout.FIELDS``; ``F``
the entries that are neither NaN nor ``+inf``, ``sh = M`` if finite else 0):

====  =========  ===============================================================
col   name       per row, over the slice
====  =========  ===============================================================
0     M          max over F (−inf when F is empty)
1     S_OFF      ``Σ_{c∈F, c≠K} e^{z_c − sh}`` (the argmax term never added)
2     XY         ``z_y`` when the target is in the slice, else 0
3     HIT        1 when the target is in the slice, else 0
4     WY         ``w_y`` when the target is in the slice, else 0
5-7   NNAN, NPINF, NPINFW   NaN entries, ``+inf`` entries, ``+inf`` with ``w ≠ 0``
8     D          ``Σ_{c∈F, w_c≠0} w_c (sh − z_c)`` (smoothing)
9-10  WOFF, WK   ``Σ_{c≠K} w_c`` and ``w_K`` (smoothing)
11    W          ``Σ_c w_c`` (smoothing)
12-13 WPOS, WNEG classes with ``w > 0`` / ``w < 0`` (smoothing, weights)
14    WKP        ``w`` at ``KPINF`` (smoothing)
====  =========  ===============================================================

``K`` is the global column of the first max over F (the slice's first column
when F holds only −inf), ``KPINF`` the first ``+inf`` (``BIG = 2³¹ − 1`` if none).

**Merge rule** (:func:`merge_partials`; the same across ranks): ``m = max_r M_r``,
``k = min{K_r : M_r = m}``, ``kpinf = min_r KPINF_r``; each slice lifts its state
to ``(m, k, kpinf)`` (:func:`lift_partials`: ``S_OFF ← S_OFF·r + [K_r ≠ k]·r``
with ``r = e^{M_r − m}``, ``D ← D + (sh − sh_r)·W``, ``WOFF ← WOFF + [K_r ≠
k]·WK``, ``WK ← [K_r = k]·WK``, ``WKP ← [KPINF_r = kpinf]·WKP``), and the merged
state is the column-wise sum, with ``M = m``.  Across processes: a MAX
all-reduce of ``M``, MIN all-reduces of ``K`` (over ranks attaining ``m``) and
``KPINF``, then a SUM all-reduce of the lifted states (see ``docs/triton.md``).
:func:`vocab_finish` then computes the loss, the lse and the slice's gradient.

>>> import numpy as np
>>> from crossentropy._kernels import _chunk
>>> x = np.array([[2.0, 1.0, -1.0, 0.5]]); y = np.array([0])
>>> g = x.copy()
>>> loss, lse = _chunk.chunk_cross_entropy(g, y, grad_scale=1.0, grad_into=g)   # g: the gradient, in place
>>> round(float(loss[0]), 6), np.round(g, 4).tolist()
(0.495182, [[-0.3905, 0.2242, 0.0303, 0.136]])
>>> parts = [_chunk.vocab_partials(x[:, a:b], y, class_offset=a, num_classes=4) for a, b in ((0, 2), (2, 4))]
>>> merged = _chunk.merge_partials(parts)
>>> round(float(_chunk.vocab_finish(x[:, 2:], y, merged, class_offset=2, num_classes=4)[0][0]), 6)
0.495182
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._backend import namespace
from .._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from .._validation import (check_ignore_index, check_index_target, check_nonnegative_option, check_softcap,
                           check_unit_interval_option)
from . import _ck

__all__ = ["Partials", "STATE_FIELDS", "BIG", "chunk_cross_entropy", "vocab_partials", "lift_partials",
           "merge_partials", "vocab_finish"]

STATE_FIELDS = ("M", "S_OFF", "XY", "HIT", "WY", "NNAN", "NPINF", "NPINFW", "D", "WOFF", "WK", "W", "WPOS", "WNEG",
                "WKP")
(M, S_OFF, XY, HIT, WY, NNAN, NPINF, NPINFW, D, WOFF, WK, W, WPOS, WNEG, WKP) = range(15)
NSTAT = 15
K, KPINF = 0, 1
BIG = 2**31 - 1  # "no index"
_FULL, _PARTIALS, _GRAD_SLICE = 0, 1, 2
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Partials(NamedTuple):
    """Per-row partial state of a vocabulary slice (columns: :data:`STATE_FIELDS`).

    ``stats``: ``(rows, 15)`` float64; ``index``: ``(rows, 2)`` int64 (K, KPINF);
    ``options``: ``(smoothing, weighted, softcap, num_classes)``, the options the
    state was computed for (checked when states are merged or finished).
    """

    stats: np.ndarray
    index: np.ndarray  # type: ignore[assignment]  # the field shadows tuple.index (a public name)
    options: tuple


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------

def _need_kernels():
    if _ck is None:
        raise InvalidOptionError("the chunk kernels need the compiled extension (crossentropy._kernels._ckernels), "
                                 "which is not built; reinstall with a C compiler")


def _check_logits(x, name="logits"):
    if not isinstance(x, np.ndarray):
        raise InvalidDTypeError(f"{name} must be a NumPy array; got {type(x).__name__}")
    if x.dtype not in _FLOATS or not x.dtype.isnative:
        raise InvalidDTypeError(f"{name} must be float32 or float64; got dtype {x.dtype}")
    if x.ndim != 2:
        raise ShapeMismatchError(f"{name} must be 2-D (rows, classes); got shape {x.shape}")
    if x.shape[1] > 1 and x.strides[1] != x.itemsize:
        raise InvalidOptionError(f"{name} must be contiguous along its class axis; got strides {x.strides}")
    return x


def _check_target(target, rows):
    if not isinstance(target, np.ndarray):
        raise InvalidDTypeError(f"target must be a NumPy array of class indices; got {type(target).__name__}")
    if target.dtype.kind not in "iu":
        raise InvalidDTypeError(f"target must hold integer class indices; got dtype {target.dtype}")
    if target.shape != (rows,):
        raise ShapeMismatchError(f"target must have shape ({rows},), one class index per row; got {target.shape}")
    if target.dtype not in (np.int64, np.int32) or not target.flags.c_contiguous or not target.dtype.isnative:
        target = np.ascontiguousarray(target, dtype=np.int64)
    return target


def _check_weight(weight, x, n, what):
    if weight is None:
        return None
    if not isinstance(weight, np.ndarray):
        raise InvalidDTypeError(f"weight must be a NumPy array; got {type(weight).__name__}")
    if weight.shape != (n,):
        raise ShapeMismatchError(f"weight must have shape ({n},), one entry per {what}; got {weight.shape}")
    if weight.dtype.kind != "f":
        raise InvalidDTypeError(f"weight must be a floating array; got dtype {weight.dtype}")
    return np.ascontiguousarray(weight, dtype=x.dtype)


def _options(label_smoothing, z_loss, softcap, ignore_index):
    eps = float(check_unit_interval_option(label_smoothing, "label_smoothing"))
    z = float(check_nonnegative_option(z_loss, "z_loss"))
    return eps, z, check_softcap(softcap), check_ignore_index(ignore_index)


def _grad_args(logits, grad_scale, grad_into, rows):
    """``(scale array or None, grad_into)``; None means no gradient."""
    if grad_scale is None:
        if grad_into is not None:
            raise InvalidOptionError("grad_into was given without grad_scale; pass grad_scale=1.0 for the plain gradient")
        return None, None
    if grad_into is None:
        raise InvalidOptionError(
            "grad_scale was given without grad_into; pass grad_into=logits to write the gradient over the logits")
    if not isinstance(grad_into, np.ndarray) or grad_into.shape != logits.shape:
        raise ShapeMismatchError(
            f"grad_into must have the logits' shape {logits.shape}; got {getattr(grad_into, 'shape', None)}")
    if grad_into.dtype != logits.dtype:
        raise InvalidDTypeError(f"grad_into must have the logits' dtype {logits.dtype}; got {grad_into.dtype}")
    if grad_into.shape[1] > 1 and grad_into.strides[1] != grad_into.itemsize:
        raise InvalidOptionError(f"grad_into must be contiguous along its class axis; got strides {grad_into.strides}")
    if not grad_into.flags.writeable:
        raise InvalidOptionError("grad_into must be writeable; got a read-only array")
    same = (grad_into.__array_interface__["data"][0] == logits.__array_interface__["data"][0]
            and grad_into.strides == logits.strides)
    if not same and np.may_share_memory(grad_into, logits):
        raise InvalidOptionError("grad_into overlaps logits without being the logits themselves")
    g = np.asarray(grad_scale, dtype=np.float64)
    if g.size == 1:
        g = g.reshape(1)
    elif g.shape != (rows,):
        raise ShapeMismatchError(f"grad_scale must be a number or have shape ({rows},); got {g.shape}")
    return np.ascontiguousarray(g), grad_into


def _range_check(bad, target, num_classes, ignore_index):
    if bad >= 0:  # the core's check raises the canonical message (target[i] = v is outside [0, C) classes)
        check_index_target(namespace(target), target, num_classes, ignore_index, tuple(target.shape))


# ---------------------------------------------------------------------------------------------
# the whole vocabulary in one block
# ---------------------------------------------------------------------------------------------

def chunk_cross_entropy(logits, target, /, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
                        softcap=None, grad_scale=None, grad_into=None, validate=True):
    """Per-row loss and lse of a ``(rows, V)`` logits block, and optionally its gradient.

    Shapes: ``logits`` ``(rows, V)``; ``target`` ``(rows,)``; ``weight`` ``(V,)``;
    ``grad_scale`` a number or ``(rows,)``; ``grad_into`` like ``logits`` (or the
    logits themselves).  Returns ``(loss, lse)``, float64 ``(rows,)``.  The target
    range is always checked (it costs no synchronisation on the CPU), so
    ``validate`` is accepted for the CUDA signature's sake.
    """
    _need_kernels()
    x = _check_logits(logits)
    rows, V = x.shape
    t = _check_target(target, rows)
    w = _check_weight(weight, x, V, "class")
    eps, z, cap, ii = _options(label_smoothing, z_loss, softcap, ignore_index)
    gs, g = _grad_args(x, grad_scale, grad_into, rows)
    loss = np.empty(rows, np.float64)
    lse = np.empty(rows, np.float64)
    if rows == 0:
        return loss, lse
    if V == 0:
        raise ShapeMismatchError("logits must have at least one class; got shape (rows, 0)")
    bad = _ck.ce_kernel(x, 0, t, None, w, ii, eps, z, gs, g, loss, True, cap or 0.0, lse, 0, V, None, None, _FULL)
    _range_check(bad, t, V, ii)
    return loss, lse


# ---------------------------------------------------------------------------------------------
# vocabulary split
# ---------------------------------------------------------------------------------------------

def _split_checks(logits, class_offset, num_classes):
    _check_logits(logits)
    width = logits.shape[1]
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise InvalidOptionError(f"num_classes must be a positive int; got {num_classes!r}")
    if (isinstance(class_offset, bool) or not isinstance(class_offset, (int, np.integer)) or class_offset < 0
            or class_offset + width > num_classes):
        raise InvalidOptionError(
            f"class_offset must be an int with 0 <= class_offset and class_offset + {width} (the slice's width) "
            f"<= num_classes={num_classes}; got {class_offset!r}")
    return logits.shape[0], width


def vocab_partials(logits, target, /, *, class_offset, num_classes, weight=None, label_smoothing=0.0, softcap=None):
    """Pass 1 over a column slice: the partial state of classes ``[class_offset, class_offset + width)``.

    ``logits`` is the slice ``(rows, width)``; ``weight``, when given, the slice of
    the class weights ``(width,)``; ``target`` the *global* class indices (any
    value: only whether it falls in the slice matters here).  ``label_smoothing``
    only says whether the smoothing sums are needed.  Returns :class:`Partials`.
    """
    _need_kernels()
    rows, width = _split_checks(logits, class_offset, num_classes)
    t = _check_target(target, rows)
    w = _check_weight(weight, logits, width, "class of the slice")
    eps = float(check_unit_interval_option(label_smoothing, "label_smoothing"))
    cap = check_softcap(softcap)
    options = (eps > 0.0, w is not None, cap, int(num_classes))
    stats = np.zeros((rows, NSTAT), np.float64)
    index = np.full((rows, 2), BIG, np.int64)
    if rows == 0 or width == 0:
        stats[:, M] = -math.inf  # the empty slice: the merge's neutral element
        return Partials(stats, index, options)
    _ck.ce_kernel(logits, 0, t, None, w, None, eps, 0.0, None, None, None, False, cap or 0.0, None,
                  int(class_offset), int(num_classes), stats, index, _PARTIALS)
    return Partials(stats, index, options)


def lift_partials(part, m, k, kpinf):
    """A slice's state re-expressed against the global ``(m, k, kpinf)``: summing lifted states is the merge.

    Shapes: ``m`` ``(rows,)`` float; ``k``, ``kpinf`` ``(rows,)`` int.  Returns
    ``(rows, 15)`` float64 with ``M`` = 0 (the caller sets the merged ``M = m``).
    """
    s = np.array(part.stats, dtype=np.float64, copy=True)
    m = np.asarray(m, np.float64)
    mr = s[:, M]
    kr, kpr = part.index[:, K], part.index[:, KPINF]
    neg = mr == -math.inf
    sh = np.where(m > -math.inf, m, 0.0)
    shr = np.where(neg, 0.0, mr)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.where(neg, 0.0, np.exp(np.where(neg, sh, mr) - sh))
    is_k = kr == np.asarray(k)
    s[:, S_OFF] = s[:, S_OFF] * r + np.where(is_k, 0.0, r)
    s[:, D] = s[:, D] + (sh - shr) * s[:, W]
    s[:, WOFF] = s[:, WOFF] + np.where(is_k, 0.0, s[:, WK])
    s[:, WK] = np.where(is_k, s[:, WK], 0.0)
    s[:, WKP] = np.where(kpr == np.asarray(kpinf), s[:, WKP], 0.0)
    s[:, M] = 0.0
    return s


def merge_partials(parts):
    """Combine the states of disjoint column slices (summed in list order) into one :class:`Partials`."""
    parts = list(parts)
    if not parts:
        raise InvalidOptionError("merge_partials needs at least one Partials; got none")
    opts = parts[0].options
    for i, p in enumerate(parts):
        if not isinstance(p, Partials):
            raise InvalidDTypeError(f"parts[{i}] must be a Partials; got {type(p).__name__}")
        if p.options != opts:
            raise InvalidOptionError(f"parts[{i}] was computed with options {p.options}; parts[0] with {opts}")
        if p.stats.shape != parts[0].stats.shape:
            raise ShapeMismatchError(f"parts[{i}] has {p.stats.shape[0]} rows; parts[0] has {parts[0].stats.shape[0]}")
    ms = np.stack([p.stats[:, M] for p in parts])
    m = ms.max(0)
    ks = np.stack([p.index[:, K] for p in parts])
    k = np.where(ms == m, ks, BIG).min(0)
    kpinf = np.stack([p.index[:, KPINF] for p in parts]).min(0)
    total = lift_partials(parts[0], m, k, kpinf)
    for p in parts[1:]:
        total = total + lift_partials(p, m, k, kpinf)
    total[:, M] = m
    return Partials(total, np.stack([k, kpinf], 1).astype(np.int64), opts)


def vocab_finish(logits, target, merged, /, *, class_offset, num_classes, weight=None, ignore_index=None,
                 label_smoothing=0.0, z_loss=0.0, softcap=None, grad_scale=None, grad_into=None, write_loss=True,
                 validate=True):
    """Pass 2 over a column slice, from the merged state: loss, lse and the slice's gradient.

    The options must be those the states were computed with (checked).  Returns
    ``(loss, lse)`` (float64 ``(rows,)``, the same for every slice; ``None, None``
    with ``write_loss=False``) and, with ``grad_scale``, writes the slice's
    gradient into ``grad_into`` (the slice's logits themselves for in place).
    """
    _need_kernels()
    rows, width = _split_checks(logits, class_offset, num_classes)
    t = _check_target(target, rows)
    w = _check_weight(weight, logits, width, "class of the slice")
    eps, z, cap, ii = _options(label_smoothing, z_loss, softcap, ignore_index)
    if not isinstance(merged, Partials):
        raise InvalidDTypeError(f"merged must be a Partials; got {type(merged).__name__}")
    want = (eps > 0.0, w is not None, cap, int(num_classes))
    if tuple(merged.options) != want:
        names = ("smoothing", "weighted", "softcap", "num_classes")
        fmt = lambda o: ", ".join(f"{n}={v}" for n, v in zip(names, o))  # noqa: E731
        raise InvalidOptionError(f"merged was computed with options ({fmt(merged.options)}); this call has ({fmt(want)})")
    if merged.stats.shape != (rows, NSTAT) or merged.index.shape != (rows, 2):
        raise ShapeMismatchError(f"merged must hold {rows} rows; got stats {merged.stats.shape}")
    gs, g = _grad_args(logits, grad_scale, grad_into, rows)
    loss = np.empty(rows, np.float64) if write_loss else None
    lse = np.empty(rows, np.float64) if write_loss else None
    if rows and (write_loss or g is not None):
        stats = np.ascontiguousarray(merged.stats, dtype=np.float64)
        index = np.ascontiguousarray(merged.index, dtype=np.int64)
        bad = _ck.ce_kernel(logits, 0, t, None, w, ii, eps, z, gs, g, loss, False, cap or 0.0, lse,
                            int(class_offset), int(num_classes), stats, index, _GRAD_SLICE)
        _range_check(bad, t, num_classes, ii)
    return (loss, lse) if write_loss else (None, None)
