r"""In-place chunk kernels for very large vocabularies.

These are the CPU building blocks of the fused linear cross-entropy (a chunk of
logits comes from a BLAS matmul ``hidden[rows] @ weight.T`` and is turned into
its loss and its gradient in place, so no N×V array ever exists) and of the
vocabulary-parallel cross-entropy (each process holds a column slice of the
logits).  They run the same compiled row code as :func:`crossentropy.cross_entropy`
and need the compiled kernels (:func:`crossentropy._kernels.available`).

A block is a 2-D float32/float64 array ``(rows, V)`` whose columns are
contiguous (rows may be strided, e.g. a column slice of a larger array).  Index
targets only.  Options, per row ``i`` with target ``y`` and logits ``z`` (after
the soft cap):

* ``softcap=s``: ``z = s·tanh(x/s)`` is applied in the kernel (Gemma); the
  gradient returned is w.r.t. the pre-cap logits ``x`` (chain factor
  ``1 − tanh²``).  The block is overwritten with ``z`` by the first pass.
* ``weight`` (``(num_classes,)``, the block's dtype), ``ignore_index``,
  ``label_smoothing=ε`` over ``num_classes`` classes (the global vocabulary),
  ``z_loss=ζ``, and ``grad_scale`` (one value or one per row, float64: the
  caller folds the reduction, a global normaliser such as Hugging Face's
  ``num_items_in_batch`` and ``grad_output`` into it).

With ``lse = log Σ_c e^{z_c}`` and ``a_c = w_c·((1 − ε)[c = y] + ε/C)``::

    loss_i = −Σ_c a_c log softmax(z)_c + ζ·lse²        (0 for an ignored row)
    grad_i = grad_scale_i · ∂loss_i/∂x                  (0 for an ignored row)

computed as in ``categorical.cross_entropy``'s kernel: ``−log p_c = (M − z_c) +
log1p(S_off)`` with ``S_off = Σ_{c≠k} e^{z_c − M}`` (``k`` the first argmax),
sums of non-negative terms only, so a confident prediction's loss (down to
1e-30 and into the subnormals) keeps full relative precision.  Rows with a NaN
or ``+inf`` logit, or no finite one, give a NaN loss and gradient.

Unsplit: :func:`ce_chunk` does it all in one call.

Vocabulary split (columns ``[v0, v1)`` of ``num_classes``): pass 1,
:func:`ce_partials`, reduces each row of a slice to a small **partial state**
(float64, 8 numbers per row, :data:`STATE_FIELDS`):

==========  =====================================================================
``m``       max of the slice's (capped) logits; ``-inf`` if none is finite
``k``       global class index of the slice's first maximum (as a float)
``s``       ``Σ_{c ≠ k} exp(z_c − m)`` over the slice (the max itself excluded)
``xy``      the target's logit if the target is in the slice, else 0
``has_y``   1.0 if the target is in the slice, else 0.0
``aoff``    ``Σ_{c ≠ k} a'_c`` with ``a'_c = w_c·ε/C`` (the smoothing mass)
``ak``      ``a'_k``
``g``       ``Σ_c a'_c·(sh − z_c)``, ``sh = m`` (or 0 when ``m = -inf``)
==========  =====================================================================

**Merge rule** (:func:`merge_partials`, the online log-sum-exp; exact up to
rounding, associative in exact arithmetic): of two states ``A`` (lower columns)
and ``B``, the one with the larger ``m`` wins (``A`` on ties, so ``k`` stays the
first argmax); with ``W`` the winner and ``L`` the other,
``f = exp(m_L − m_W)`` (0 if ``m_L = -inf``)::

    m = m_W, k = k_W, ak = ak_W
    s    = s_W + f·(1 + s_L)                 (the loser's max element enters as f·1)
    aoff = aoff_W + (aoff_L + ak_L)
    g    = g_W + g_L + (sh_W − sh_L)·(aoff_L + ak_L)
    xy, has_y from whichever has has_y

For an all-reduce across processes (issue 12) the same merge is two
collectives: gather ``(m, k)`` of every rank (or all-reduce ``max`` of ``m``,
then ``min`` of ``k`` over the ranks whose ``m`` is the max) to get the global
``M, K``; then :func:`rescale_partials` gives each rank's contribution, and a
``sum`` all-reduce of the contributions is the merged state (columns ``s``,
``xy``, ``has_y``, ``aoff``, ``ak``, ``g``; ``m``, ``k`` are already ``M, K``).

Pass 2, :func:`ce_chunk_grad`, writes the gradient of a slice in place, given
the merged state; :func:`finish_partials` gives the per-row loss and lse from
it.  The split result equals the unsplit one up to rounding (not bit for bit:
the order of the sums differs).

>>> import numpy as np
>>> from crossentropy._kernels import _chunk
>>> x = np.array([[2.0, 1.0, -1.0, 0.5]]); y = np.array([0])
>>> block = x.copy()
>>> loss, lse = _chunk.ce_chunk(block, y)       # block now holds the gradient
>>> round(float(loss[0]), 6), np.round(block, 4).tolist()
(0.495182, [[-0.3905, 0.2242, 0.0303, 0.136]])
>>> parts = [_chunk.ce_partials(x[:, a:b].copy(), y, class_offset=a, num_classes=4) for a, b in ((0, 2), (2, 4))]
>>> state = _chunk.merge_partials(parts)
>>> round(float(_chunk.finish_partials(state, y)[0][0]), 6)
0.495182
"""

from __future__ import annotations

import numpy as np

from .._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError, TargetOutOfRangeError
from . import _ck

__all__ = ["STATE_FIELDS", "ce_chunk", "ce_partials", "merge_partials", "rescale_partials", "finish_partials",
           "ce_chunk_grad"]

STATE_FIELDS = ("m", "k", "s", "xy", "has_y", "aoff", "ak", "g")
_FULL, _PARTIALS, _GRAD_SLICE = 0, 1, 2
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _need_kernels():
    if _ck is None:
        raise InvalidOptionError("the chunk kernels need the compiled extension (crossentropy._kernels._ckernels), "
                                 "which is not built; reinstall with a C compiler")


def _block(x, name="logits"):
    if not isinstance(x, np.ndarray):
        raise InvalidDTypeError(f"{name} must be a NumPy array; got {type(x).__name__}")
    if x.dtype not in _FLOATS or not x.dtype.isnative:
        raise InvalidDTypeError(f"{name} must be float32 or float64; got dtype {x.dtype}")
    if x.ndim != 2:
        raise ShapeMismatchError(f"{name} must be 2-D (rows, classes); got shape {x.shape}")
    if x.shape[1] > 1 and x.strides[1] != x.itemsize:
        raise ShapeMismatchError(f"{name} must have contiguous columns (a row-strided block is fine)")
    if not x.flags.writeable:
        raise InvalidOptionError(f"{name} must be writeable: the kernels work in place")
    return x


def _targets(target, n):
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise InvalidDTypeError(f"target must hold integer class indices; got dtype {t.dtype}")
    if t.shape != (n,):
        raise ShapeMismatchError(f"target must have shape ({n},), one index per row; got {t.shape}")
    if t.dtype not in (np.int64, np.int32) or not t.flags.c_contiguous or not t.dtype.isnative:
        t = np.ascontiguousarray(t, dtype=np.int64)
    return t


def _options(x, weight, ignore_index, label_smoothing, z_loss, softcap, num_classes):
    C = int(num_classes)
    if weight is not None:
        weight = np.asarray(weight)
        if weight.shape != (C,):
            raise ShapeMismatchError(f"weight must have shape ({C},), one entry per class; got {weight.shape}")
        if weight.dtype != x.dtype:
            raise InvalidDTypeError(f"weight must have the logits' dtype ({x.dtype}); got {weight.dtype}")
        weight = np.ascontiguousarray(weight)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise InvalidOptionError(f"label_smoothing must be in [0, 1]; got {label_smoothing}")
    z = float(z_loss)
    if not z >= 0.0:
        raise InvalidOptionError(f"z_loss must be ≥ 0; got {z_loss}")
    cap = 0.0
    if softcap is not None:
        cap = float(softcap)
        if not (cap > 0.0 and np.isfinite(cap)):
            raise InvalidOptionError(f"softcap must be a positive finite number; got {softcap}")
    if ignore_index is not None and not isinstance(ignore_index, (int, np.integer)):
        raise InvalidOptionError(f"ignore_index must be an integer or None; got {ignore_index!r}")
    return weight, (None if ignore_index is None else int(ignore_index)), eps, z, cap


def _grad_scale(grad_scale, n):
    if grad_scale is None:
        return None
    g = np.ascontiguousarray(grad_scale, dtype=np.float64).reshape(-1)
    if g.size not in (1, n):
        raise ShapeMismatchError(f"grad_scale must be one value or one per row ({n}); got {g.size} values")
    return g


def _out(out, n, name):
    if out is None:
        return np.empty(n, np.float64)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (n,) and out.flags.c_contiguous):
        raise ShapeMismatchError(f"{name} must be a contiguous float64 array of shape ({n},)")
    return out


def _raise_bad(t, i, C):
    raise TargetOutOfRangeError(f"target[{i}] = {int(t[i])} is outside [0, {C}) classes")


def ce_chunk(logits, target, /, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None,
             grad_scale=None, need_grad=True, loss=None, lse=None):
    """Per-row loss and lse of a whole-vocabulary block; the gradient overwrites ``logits``.

    Shapes: ``logits`` ``(N, C)``; ``target`` ``(N,)``; returns ``(loss, lse)``,
    float64 ``(N,)`` (or the ``loss=`` / ``lse=`` arrays given).  With
    ``need_grad`` the block holds ``grad_scale·∂loss/∂logits`` afterwards;
    without it the block is left as is (or holds the capped logits with a soft cap).
    """
    _need_kernels()
    x = _block(logits)
    n, C = x.shape
    t = _targets(target, n)
    w, ii, eps, z, cap = _options(x, weight, ignore_index, label_smoothing, z_loss, softcap, C)
    loss, lse = _out(loss, n, "loss"), _out(lse, n, "lse")
    bad = _ck.ce_kernel(x, 0, t, None, w, ii, eps, z, _grad_scale(grad_scale, n), x if need_grad else None, loss,
                        False, cap, lse, 0, C, None, _FULL)
    if bad >= 0:
        _raise_bad(t, bad, C)
    return loss, lse


def ce_partials(logits, target, /, *, class_offset, num_classes, weight=None, ignore_index=None,
                label_smoothing=0.0, softcap=None, out=None):
    """Pass 1 of the vocabulary split: the partial state ``(N, 8)`` of columns
    ``[class_offset, class_offset + V)`` (see the module docstring).  With a soft
    cap the block is overwritten with the capped logits, which pass 2 expects."""
    _need_kernels()
    x = _block(logits)
    n, V = x.shape
    C = int(num_classes)
    off = int(class_offset)
    if off < 0 or off + V > C:
        raise ShapeMismatchError(f"columns [{off}, {off + V}) do not fit in num_classes={C}")
    t = _targets(target, n)
    w, ii, eps, _, cap = _options(x, weight, ignore_index, label_smoothing, 0.0, softcap, C)
    if out is None:
        out = np.empty((n, len(STATE_FIELDS)), np.float64)
    elif not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (n, len(STATE_FIELDS))
              and out.flags.c_contiguous):
        raise ShapeMismatchError(f"out must be a contiguous float64 array of shape ({n}, {len(STATE_FIELDS)})")
    bad = _ck.ce_kernel(x, 0, t, None, w, ii, eps, 0.0, None, None, None, False, cap, None, off, C, out, _PARTIALS)
    if bad >= 0:
        _raise_bad(t, bad, C)
    return out


def _states(states):
    s = np.ascontiguousarray(np.stack(list(states)) if not isinstance(states, np.ndarray) else states,
                             dtype=np.float64)
    if s.ndim != 3 or s.shape[2] != len(STATE_FIELDS):
        raise ShapeMismatchError(f"states must be P partial states of shape (N, {len(STATE_FIELDS)}); got {s.shape}")
    return s


def merge_partials(states, /):
    """Merge the states of slices listed in column order into one ``(N, 8)`` state."""
    _need_kernels()
    s = _states(states)
    out = np.empty(s.shape[1:], np.float64)
    _ck.ce_merge(s, out)
    return out


def rescale_partials(state, m, k, /):
    """This slice's contribution to a ``sum`` all-reduce, given the global max ``m``
    and first argmax ``k`` of each row (both ``(N,)``)."""
    _need_kernels()
    st = np.ascontiguousarray(state, dtype=np.float64)
    n = st.shape[0]
    mm = np.ascontiguousarray(m, dtype=np.float64).reshape(-1)
    kk = np.ascontiguousarray(k, dtype=np.float64).reshape(-1)
    if st.shape != (n, len(STATE_FIELDS)) or mm.shape != (n,) or kk.shape != (n,):
        raise ShapeMismatchError("state must be (N, 8) and m, k (N,)")
    out = np.empty_like(st)
    _ck.ce_rescale(st, mm, kk, out)
    return out


def finish_partials(state, target, /, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
                    loss=None, lse=None):
    """Per-row ``(loss, lse)`` (float64) from a merged state."""
    _need_kernels()
    st = np.ascontiguousarray(state, dtype=np.float64)
    n = st.shape[0]
    t = _targets(target, n)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise InvalidOptionError(f"label_smoothing must be in [0, 1]; got {label_smoothing}")
    if not float(z_loss) >= 0.0:
        raise InvalidOptionError(f"z_loss must be ≥ 0; got {z_loss}")
    loss, lse = _out(loss, n, "loss"), _out(lse, n, "lse")
    w = None if weight is None else np.ascontiguousarray(weight)
    _ck.ce_finish(st, t, w, None if ignore_index is None else int(ignore_index), eps, float(z_loss), loss, lse)
    return loss, lse


def ce_chunk_grad(logits, state, target, /, *, class_offset, num_classes, weight=None, ignore_index=None,
                  label_smoothing=0.0, z_loss=0.0, softcap=None, grad_scale=None, loss=None, lse=None):
    """Pass 2 of the vocabulary split: the gradient of columns ``[class_offset,
    class_offset + V)`` overwrites ``logits`` (which holds the capped logits
    written by pass 1 when there is a soft cap), given the merged ``state``.
    Returns the block; ``loss=`` / ``lse=`` arrays, if given, receive the rows'
    loss and lse (the same for every slice)."""
    _need_kernels()
    x = _block(logits)
    n, V = x.shape
    C = int(num_classes)
    off = int(class_offset)
    if off < 0 or off + V > C:
        raise ShapeMismatchError(f"columns [{off}, {off + V}) do not fit in num_classes={C}")
    st = np.ascontiguousarray(state, dtype=np.float64)
    if st.shape != (n, len(STATE_FIELDS)):
        raise ShapeMismatchError(f"state must have shape ({n}, {len(STATE_FIELDS)}); got {st.shape}")
    t = _targets(target, n)
    w, ii, eps, z, cap = _options(x, weight, ignore_index, label_smoothing, z_loss, softcap, C)
    lo = None if loss is None else _out(loss, n, "loss")
    ls = None if lse is None else _out(lse, n, "lse")
    bad = _ck.ce_kernel(x, 0, t, None, w, ii, eps, z, _grad_scale(grad_scale, n), x, lo, False, cap, ls, off, C, st,
                        _GRAD_SLICE)
    if bad >= 0:
        _raise_bad(t, bad, C)
    return x
