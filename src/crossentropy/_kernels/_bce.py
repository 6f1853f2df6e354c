"""Numba kernel: binary cross-entropy with logits, elementwise, one pass.

Per element, with ``e = exp(−|x|) ∈ (0, 1]`` computed once::

    softplus(±x) = max(±x, 0) + log1p(e)        (= −log σ(∓x), never overflows)
    loss = w₊·y·softplus(−x) + (1−y)·softplus(x)  (a zero coefficient contributes 0)
    σ(x) = 1/(1+e) if x ≥ 0 else e/(1+e),  σ(−x) likewise
    grad = (1−y)·σ(x) − w₊·y·σ(−x)

which is the reference's algebra (binary._bce_logits_terms) in one sweep.

Reduced losses without sample weights never materialise the elementwise loss:
each fixed ``CHUNK`` of the flat input is summed in ``LANES`` lanes + a fixed
pairwise tree, and the caller sums the per-chunk partials in order, so the
value is bitwise independent of the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._ce import FASTMATH, LANES, _lane_tree
from ._math import cst, exp_le0, log1p_01

CHUNK = 1 << 16
_JIT = dict(cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")  # see _ce.py


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bce_loss(v, y, pw, has_pw):
    zero = cst(0.0, v)
    e = exp_le0(-abs(v))
    l1p = log1p_01(e)
    sp_pos = (v if v > zero else zero) + l1p
    sp_neg = (-v if v < zero else zero) + l1p
    wt = pw * y if has_pw else y
    q = cst(1.0, v) - y
    return (wt * sp_neg if wt != zero else zero) + (q * sp_pos if q != zero else zero)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bce_loss_grad(v, y, pw, has_pw):
    zero = cst(0.0, v)
    one = cst(1.0, v)
    e = exp_le0(-abs(v))
    l1p = log1p_01(e)
    sp_pos = (v if v > zero else zero) + l1p
    sp_neg = (-v if v < zero else zero) + l1p
    wt = pw * y if has_pw else y
    q = one - y
    loss = (wt * sp_neg if wt != zero else zero) + (q * sp_pos if q != zero else zero)
    d = one + e
    # σ(x) and σ(−x) from the same e, never 1 − σ: for x = 30, 1 − σ(x) keeps
    # 3 digits of 9.4e-14 (the reference computes the same two sigmoids).
    s = one / d if v >= zero else e / d
    sn = e / d if v >= zero else one / d
    return loss, q * s - wt * sn


# The four (gradient?, reduce?) variants are separate loops on purpose: with the
# flags tested inside one loop, LLVM vectorised only some of the unswitched
# versions (measured 10x slower for the others).

@njit(**_JIT)
def _block_sum(xb, tb, pb, has_pw, lanes):
    for k in range(LANES):
        lanes[k] += _bce_loss(xb[k], tb[k], pb[k] if has_pw else pb[0], has_pw)


@njit(**_JIT)
def _block_sum_grad(xb, tb, pb, has_pw, lanes, gb, gstride, db):
    for k in range(LANES):
        lv, gv = _bce_loss_grad(xb[k], tb[k], pb[k] if has_pw else pb[0], has_pw)
        lanes[k] += lv
        db[k] = gv * (gb[k] if gstride else gb[0])


@njit(**_JIT)
def _seg_loss(xs, ts, ps, has_pw, ls):
    for k in range(xs.shape[0]):
        ls[k] = _bce_loss(xs[k], ts[k], ps[k] if has_pw else ps[0], has_pw)


@njit(**_JIT)
def _seg_loss_grad(xs, ts, ps, has_pw, ls, gs, gstride, gd):
    for k in range(xs.shape[0]):
        lv, gv = _bce_loss_grad(xs[k], ts[k], ps[k] if has_pw else ps[0], has_pw)
        ls[k] = lv
        gd[k] = gv * (gs[k] if gstride else gs[0])


@njit(**_JIT)
def _count_outside_01(ts):
    # target range check fused into the sweep (the segment is then read from
    # cache by the loss loop): NaN compares false and passes, as in _validation.
    c = 0
    for k in range(ts.shape[0]):
        v = ts[k]
        c += (v < cst(0.0, v)) | (v > cst(1.0, v))
    return c


@njit(**_JIT)
def _span(x, t, pw, has_pw, P, g, gstride, need_grad, grad, loss, reduce, lanes, j0, j1, check, nbad):
    """Elements [j0, j1): write grad (× g) and either the loss or its lane-summed total.

    Lane of an element = its position in the chunk mod LANES, each lane summed in
    element order, whatever the segmenting below: the total is a fixed function
    of the chunk.
    """
    zero = cst(0.0, x[j0])
    if reduce:
        for k in range(LANES):
            lanes[k] = zero
    j = j0
    while j < j1:
        # Segments aligned to pos_weight's period P keep the inner loop free of
        # modulo arithmetic (and vectorisable); without pos_weight one segment.
        col = (j % P) if has_pw else 0
        end = min(j1, j - col + P) if has_pw else j1
        n = end - j
        base = j - j0
        xs = x[j:end]
        ts = t[j:end]
        ps = pw[col:col + n] if has_pw else pw
        gs = g[j:end] if gstride else g
        gd = grad[j:end] if need_grad else grad
        if check:
            nbad[0] += _count_outside_01(ts)
        if not reduce:
            if need_grad:
                _seg_loss_grad(xs, ts, ps, has_pw, loss[j:end], gs, gstride, gd)
            else:
                _seg_loss(xs, ts, ps, has_pw, loss[j:end])
            j = end
            continue
        start = 0
        if base % LANES == 0:
            nb = n // LANES
            for b in range(nb):
                o = b * LANES
                pb = ps[o:o + LANES] if has_pw else ps
                if need_grad:
                    _block_sum_grad(xs[o:o + LANES], ts[o:o + LANES], pb, has_pw, lanes,
                                    gs[o:o + LANES] if gstride else gs, gstride, gd[o:o + LANES])
                else:
                    _block_sum(xs[o:o + LANES], ts[o:o + LANES], pb, has_pw, lanes)
            start = nb * LANES
        for k in range(start, n):
            lane = (base + k) % LANES
            if need_grad:
                lv, gv = _bce_loss_grad(xs[k], ts[k], ps[k] if has_pw else ps[0], has_pw)
                gd[k] = gv * (gs[k] if gstride else gs[0])
            else:
                lv = _bce_loss(xs[k], ts[k], ps[k] if has_pw else ps[0], has_pw)
            lanes[lane] += lv
        j = end
    if reduce:
        return _lane_tree(lanes)
    return zero


@njit(parallel=True, **_JIT)
def bce_parallel(x, t, pw, has_pw, P, g, gstride, need_grad, grad, loss, reduce, partial, check, nbad):
    """Returns the number of targets outside [0, 1] when ``check`` (else 0)."""
    n = x.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunk):
        lanes = np.empty(LANES, x.dtype)
        partial[c] = _span(x, t, pw, has_pw, P, g, gstride, need_grad, grad, loss, reduce, lanes,
                           c * CHUNK, min(n, (c + 1) * CHUNK), check, nbad[c:c + 1])


@njit(**_JIT)
def bce_serial(x, t, pw, has_pw, P, g, gstride, need_grad, grad, loss, reduce, partial, check, nbad):
    n = x.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    lanes = np.empty(LANES, x.dtype)
    for c in range(nchunk):
        partial[c] = _span(x, t, pw, has_pw, P, g, gstride, need_grad, grad, loss, reduce, lanes,
                           c * CHUNK, min(n, (c + 1) * CHUNK), check, nbad[c:c + 1])
