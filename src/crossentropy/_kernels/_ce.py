"""Numba kernels: softmax cross-entropy from logits, one row per task.

Layout: ``x`` is ``(N, C)`` C-contiguous (classes last).  Each row is cut into
tiles of ``TILE`` classes; each tile is reduced into ``LANES`` independent
accumulators (lane ``k`` takes elements ``k, k+LANES, k+2·LANES, …`` in order),
the lanes are combined by a fixed pairwise tree, and the tiles are combined
sequentially in tile order.  ``TILE`` and ``LANES`` are constants, so every
row's arithmetic is the same sequence of operations whichever thread runs it
and however rows are grouped into blocks: results are bitwise identical across
thread counts and row-block sizes.  (The lanes are also what lets LLVM
vectorise the reductions without ``fastmath``: each lane is a separate
dependency chain, so no reassociation is needed.)

Streaming log-sum-exp: tile ``t`` yields its own max ``m_t`` and
``S_t = Σ exp(x − m_t)``; the row gets ``M = max m_t`` and
``S = Σ_t S_t·exp(m_t − M)``.  A tile is read from memory once and then
re-read from L1 for the second sweep, so the logits cross the memory bus once
(the gradient sweep re-reads a row from L2, where a 32k–128k-class float32
row still fits).

Rows whose maximum is not finite, or whose sum is NaN (NaN/±inf logits, all
``-inf`` rows) take ``_row_exact``, a literal transcription of the reference
formulas, so that NaN/inf propagate exactly as in the reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._math import cst, exp_le0

LANES = 64
TILE = 2048
# fastmath: only 'contract' (a·b + c may become one fused multiply-add).  No
# reassociation, no finite-math assumptions: the order of every sum is still
# the one written here, NaN/inf behave as IEEE says.  FMA makes the exp ~1.4x
# faster (and its range reduction more exact); it is the same on every thread,
# so results stay bitwise reproducible (across CPUs with and without FMA the
# last bits may differ, as NumPy's own SIMD paths do).
# error_model='numpy': x/0 gives inf instead of raising, so no exception
# branch sits in the loops (it blocks vectorisation).
FASTMATH = {"contract"}
_JIT = dict(cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")


# --------------------------------------------------------------------------------------------
# tile reductions
# --------------------------------------------------------------------------------------------

@njit(**_JIT)
def _lane_tree(lanes):
    # Fixed pairwise tree over the lanes: (0+32, 1+33, …) then (0+16, …), …
    w = LANES // 2
    while w >= 1:
        lo = lanes[:w]
        hi = lanes[w:2 * w]
        for k in range(w):
            lo[k] = lo[k] + hi[k]
        w //= 2
    return lanes[0]


@njit(**_JIT)
def _tile_max(tile, lanes, pad):
    # max is exact, so its order does not matter; lanes only make it SIMD.
    # NaN compares false and is skipped here: it is caught by the sum.
    n = tile.shape[0]
    nb = n // LANES
    r = n - nb * LANES
    m = cst(-np.inf, tile[0])
    for k in range(LANES):
        lanes[k] = m
    for b in range(nb):
        blk = tile[b * LANES:(b + 1) * LANES]
        for k in range(LANES):
            v = blk[k]
            a = lanes[k]
            lanes[k] = v if v > a else a
    if r:
        # the ragged end goes through the same SIMD block, padded with −inf
        for k in range(LANES):
            pad[k] = m
        for k in range(r):
            pad[k] = tile[nb * LANES + k]
        for k in range(LANES):
            v = pad[k]
            a = lanes[k]
            lanes[k] = v if v > a else a
    for k in range(LANES):
        m = lanes[k] if lanes[k] > m else m
    return m


@njit(**_JIT)
def _tile_sumexp(tile, shift, lanes, pad):
    """Σ exp(x − shift) over the tile (every x − shift ≤ 0 or NaN).

    Element j goes to lane j mod LANES; the ragged end is padded with −inf,
    whose exp is exactly 0 and adds nothing (lanes start at +0).
    """
    n = tile.shape[0]
    nb = n // LANES
    r = n - nb * LANES
    for k in range(LANES):
        lanes[k] = cst(0.0, shift)
    for b in range(nb):
        blk = tile[b * LANES:(b + 1) * LANES]
        for k in range(LANES):
            lanes[k] += exp_le0(blk[k] - shift)
    if r:
        for k in range(LANES):
            pad[k] = cst(-np.inf, shift)
        for k in range(r):
            pad[k] = tile[nb * LANES + k]
        for k in range(LANES):
            lanes[k] += exp_le0(pad[k] - shift)
    return _lane_tree(lanes)


@njit(**_JIT)
def _tile_wgap(tile, wt, has_w, shift, lanes):
    """Σ_c w_c·(shift − x_c), with 0·(anything) = 0 where w_c = 0 (xlogy convention)."""
    n = tile.shape[0]
    nb = n // LANES
    z = cst(0.0, shift)
    tail = z
    for j in range(nb * LANES, n):
        if has_w:
            wj = wt[j]
            tail += wj * (shift - tile[j]) if wj != z else z
        else:
            tail += shift - tile[j]
    if nb == 0:
        return tail
    for k in range(LANES):
        lanes[k] = z
    for b in range(nb):
        blk = tile[b * LANES:(b + 1) * LANES]
        if has_w:
            wb = wt[b * LANES:(b + 1) * LANES]
            for k in range(LANES):
                wk = wb[k]
                lanes[k] += wk * (shift - blk[k]) if wk != z else z
        else:
            for k in range(LANES):
                lanes[k] += shift - blk[k]
    return _lane_tree(lanes) + tail


@njit(**_JIT)
def _tile_prob(tile, tt, wt, has_w, keep, spread, shift, l1, l2, l3):
    """For a_c = w_c·(keep·t_c + spread): (Σ exp(x−shift), Σ a_c(shift−x_c) [a_c≠0], Σ a_c)."""
    n = tile.shape[0]
    nb = n // LANES
    z = cst(0.0, shift)
    s_t, d_t, a_t = z, z, z
    for j in range(nb * LANES, n):
        a = keep * tt[j] + spread
        if has_w:
            a = wt[j] * a
        s_t += exp_le0(tile[j] - shift)
        d_t += a * (shift - tile[j]) if a != z else z
        a_t += a
    if nb == 0:
        return s_t, d_t, a_t
    for k in range(LANES):
        l1[k] = z
        l2[k] = z
        l3[k] = z
    for b in range(nb):
        blk = tile[b * LANES:(b + 1) * LANES]
        tb = tt[b * LANES:(b + 1) * LANES]
        if has_w:
            wb = wt[b * LANES:(b + 1) * LANES]
            for k in range(LANES):
                a = wb[k] * (keep * tb[k] + spread)
                v = blk[k]
                l1[k] += exp_le0(v - shift)
                l2[k] += a * (shift - v) if a != z else z
                l3[k] += a
        else:
            for k in range(LANES):
                a = keep * tb[k] + spread
                v = blk[k]
                l1[k] += exp_le0(v - shift)
                l2[k] += a * (shift - v) if a != z else z
                l3[k] += a
    return _lane_tree(l1) + s_t, _lane_tree(l2) + d_t, _lane_tree(l3) + a_t


@njit(**_JIT)
def _combine(tmax, tsum, nt):
    """Row max M and S = Σ_t S_t·exp(m_t − M), tiles in order."""
    M = tmax[0]
    for t in range(1, nt):
        M = tmax[t] if tmax[t] > M else M
    S = cst(0.0, M)
    for t in range(nt):
        S += tsum[t] if tmax[t] == M else tsum[t] * exp_le0(tmax[t] - M)
    return M, S


@njit(**_JIT)
def _is_regular(M, S):
    # Finite max and 1 ≤ S < inf (the max element contributes exactly 1);
    # anything else is a NaN/inf row for _row_exact.
    return (M > -np.inf) and (M < np.inf) and (S >= cst(1.0, M)) and (S < np.inf)


# --------------------------------------------------------------------------------------------
# the reference formulas, literally, for NaN/inf rows
# --------------------------------------------------------------------------------------------

@njit(**_JIT)
def _row_exact(row, out, need_grad, g, z, valid, gather, y, tt, is_prob, wv, has_w, keep, spread):
    """One row exactly as categorical._ce_terms computes it (max shift, or 0 if not finite)."""
    C = row.shape[0]
    zero = cst(0.0, g)
    m = row[0]
    for c in range(1, C):
        v = row[c]
        if v != v or m != m:
            m = v if v != v else m
        elif v > m:
            m = v
    if not (m > -np.inf and m < np.inf):
        m = zero
    s = zero
    for c in range(C):
        s += math.exp(row[c] - m)
    ls = math.log(s)
    lse = ls + m
    asum = zero
    loss = zero
    if gather:
        # nll = −log p_y · w_y, then where(valid, nll, 0)
        if valid:
            nll = -((row[y] - m) - ls)
            if has_w:
                nll = nll * wv[y]
            loss = nll
        asum = (wv[y] if has_w else cst(1.0, g)) if valid else zero
    else:
        for c in range(C):
            if is_prob:
                a = keep * tt[c] + spread
            else:
                a = (keep * (cst(1.0, g) if c == y else zero) + spread) if valid else zero
            if has_w:
                a = a * wv[c]
            asum += a
            if a != zero:
                loss -= a * ((row[c] - m) - ls)
    if z != zero and valid:
        loss += z * lse * lse
    if need_grad:
        vf = cst(1.0, g) if valid else zero
        for c in range(C):
            p = math.exp((row[c] - m) - ls)
            if gather:
                a = (wv[c] if has_w else cst(1.0, g)) if (valid and c == y) else zero
            elif is_prob:
                a = keep * tt[c] + spread
                if has_w:
                    a = a * wv[c]
            else:
                a = (keep * (cst(1.0, g) if c == y else zero) + spread) if valid else zero
                if has_w:
                    a = a * wv[c]
            gc = asum * p - a
            if z != zero:
                gc = gc + (cst(2.0, g) * z * lse * p) * vf
            out[c] = gc * g
    return loss


# --------------------------------------------------------------------------------------------
# gradient sweeps.  In place (dst is the logits row) the loops read dst itself:
# with two pointers to the same memory LLVM's runtime overlap check would send
# the loop to its scalar fallback (3x slower).
# --------------------------------------------------------------------------------------------

@njit(**_JIT)
def _grad_tile(src, dst, inplace, wt, mode, M, logS, ag, sg):
    """dst_j = ag·p_j − [sg·w_j | sg | 0] with p_j = exp((x_j − M) − log S)."""
    n = dst.shape[0]
    if inplace:
        if mode == 2:
            for j in range(n):
                dst[j] = ag * exp_le0((dst[j] - M) - logS) - sg * wt[j]
        elif mode == 1:
            for j in range(n):
                dst[j] = ag * exp_le0((dst[j] - M) - logS) - sg
        else:
            for j in range(n):
                dst[j] = ag * exp_le0((dst[j] - M) - logS)
    else:
        if mode == 2:
            for j in range(n):
                dst[j] = ag * exp_le0((src[j] - M) - logS) - sg * wt[j]
        elif mode == 1:
            for j in range(n):
                dst[j] = ag * exp_le0((src[j] - M) - logS) - sg
        else:
            for j in range(n):
                dst[j] = ag * exp_le0((src[j] - M) - logS)


@njit(**_JIT)
def _grad_tile_prob(src, dst, inplace, tb, wb, has_w, keep, spread, M, logS, ag, g):
    """dst_j = ag·p_j − a_j·g with a_j = w_j·(keep·t_j + spread)."""
    n = dst.shape[0]
    if inplace:
        if has_w:
            for j in range(n):
                dst[j] = ag * exp_le0((dst[j] - M) - logS) - (wb[j] * (keep * tb[j] + spread)) * g
        else:
            for j in range(n):
                dst[j] = ag * exp_le0((dst[j] - M) - logS) - (keep * tb[j] + spread) * g
    else:
        if has_w:
            for j in range(n):
                dst[j] = ag * exp_le0((src[j] - M) - logS) - (wb[j] * (keep * tb[j] + spread)) * g
        else:
            for j in range(n):
                dst[j] = ag * exp_le0((src[j] - M) - logS) - (keep * tb[j] + spread) * g


# --------------------------------------------------------------------------------------------
# index targets
# --------------------------------------------------------------------------------------------

@njit(**_JIT)
def _total(loss):
    # Σ_i loss_i for the direct path's 'sum'/'mean': sequential in row order, in
    # float64 (so a long batch loses nothing), after all rows are done: the
    # same value for any thread count or row block.
    t = 0.0
    for i in range(loss.shape[0]):
        t += np.float64(loss[i])
    return t


@njit(**_JIT)
def _first_bad_target(y, C, ii, has_ii):
    for i in range(y.shape[0]):
        v = y[i]
        if (v < 0 or v >= C) and not (has_ii and v == ii):
            return i
    return -1


@njit(**_JIT)
def _rows_index(x, y, w, has_w, wsum, ii, has_ii, eps, z, need_grad, gs, gstride, grad, loss, i0, i1, inplace):
    N, C = x.shape
    nt = (C + TILE - 1) // TILE
    lanes = np.empty(LANES, x.dtype)
    pad = np.empty(LANES, x.dtype)
    tmax = np.empty(nt, x.dtype)
    tsum = np.empty(nt, x.dtype)
    tgap = np.empty(nt, x.dtype)
    one = cst(1.0, x[0, 0])
    zero = cst(0.0, x[0, 0])
    keep = one - eps
    spread = eps / cst(C, eps)
    smooth = eps != zero
    for i in range(i0, i1):
        row = x[i]
        out = grad[i]
        yi = y[i]
        valid = not (has_ii and yi == ii)
        yc = yi if valid else 0
        g = gs[i * gstride]
        if C < LANES:
            # Short rows (e.g. 10 classes): the same sequential arithmetic as the
            # tile functions' scalar tail, without their call overhead.
            mt = cst(-np.inf, zero)
            for j in range(C):
                v = row[j]
                mt = v if v > mt else mt
            sh = mt if mt > -np.inf else zero
            st = zero
            for j in range(C):
                st += exp_le0(row[j] - sh)
            tmax[0] = mt
            tsum[0] = st
            if smooth:
                tgap[0] = _tile_wgap(row, w, has_w, sh, lanes)
            M, S = mt, st
        else:
            for t in range(nt):
                tile = row[t * TILE:min(C, (t + 1) * TILE)]
                mt = _tile_max(tile, lanes, pad)
                sh = mt if mt > -np.inf else zero  # all −inf tile: shift 0, sum is 0 (or NaN)
                tmax[t] = mt
                tsum[t] = _tile_sumexp(tile, sh, lanes, pad)
                if smooth:
                    tgap[t] = _tile_wgap(tile, w[t * TILE:min(C, (t + 1) * TILE)], has_w, sh, lanes)
            M, S = _combine(tmax, tsum, nt)
        if not _is_regular(M, S):
            loss[i] = _row_exact(row, out, need_grad, g, z, valid, not smooth, yc, row, False, w, has_w,
                                 keep, spread)
            continue
        logS = math.log(S)
        lse = M + logS
        wy = w[yc] if has_w else one
        xy = row[yc]
        li = zero
        alpha = zero
        if valid:
            # −(1−ε)w_y log p_y = (1−ε)w_y·((M − x_y) + log S): differences first, so
            # logits of ±1e4 lose nothing (the same order as the reference).
            hard = keep * wy
            if not smooth:
                li = ((M - xy) + logS) * wy  # the reference's gather: −log p_y · w_y
            elif hard != zero:
                li = hard * ((M - xy) + logS)  # xlogy: a zero coefficient contributes 0
            alpha = hard
            if smooth:
                # (ε/C)·Σ_c w_c (lse − x_c) = (ε/C)·(Σ_t [gap_t + (M − shift_t)·W_t] + W·log S)
                gap = zero
                for t in range(nt):
                    sh = tmax[t] if tmax[t] > -np.inf else zero
                    wt_ = wsum[t]
                    gap += tgap[t] + ((M - sh) * wt_ if wt_ != zero else zero)
                W = wsum[nt]
                li += spread * (gap + W * logS)
                alpha = alpha + spread * W
            if z != zero:
                li += z * lse * lse
                alpha = alpha + cst(2.0, z) * z * lse
        loss[i] = li
        if need_grad:
            # grad_j = (α·p_j − a_j)·g with p_j = exp((x_j − M) − log S) ≤ 1; the
            # caller's scale g (sample weight, 1/ln base, 1/denominator,
            # grad_output) is folded in here so no second pass over N×C is needed.
            ag = alpha * g
            sg = spread * g
            mode = (2 if has_w else 1) if (smooth and valid) else 0
            if C < LANES and mode == 0:  # short rows: the same formula, inline
                if inplace:
                    for j in range(C):
                        out[j] = ag * exp_le0((out[j] - M) - logS)
                else:
                    for j in range(C):
                        out[j] = ag * exp_le0((row[j] - M) - logS)
            for t in range(nt if (C >= LANES or mode != 0) else 0):
                a0 = t * TILE
                a1 = min(C, a0 + TILE)
                _grad_tile(row[a0:a1], out[a0:a1], inplace, w[a0:a1] if mode == 2 else w, mode, M, logS, ag, sg)
            if valid:
                # the target entry, from the saved x_y (the row may be the output buffer)
                ay = (keep + spread) * wy if smooth else keep * wy
                out[yc] = ag * exp_le0((xy - M) - logS) - ay * g


@njit(parallel=True, **_JIT)
def ce_index_parallel(x, y, w, has_w, wsum, ii, has_ii, eps, z, need_grad, gs, gstride, grad, loss, block, inplace):
    N, C = x.shape
    bad = _first_bad_target(y, C, ii, has_ii)
    if bad >= 0:
        return bad, 0.0
    nblk = (N + block - 1) // block
    for b in prange(nblk):
        _rows_index(x, y, w, has_w, wsum, ii, has_ii, eps, z, need_grad, gs, gstride, grad, loss,
                    b * block, min(N, (b + 1) * block), inplace)
    return -1, _total(loss)


@njit(**_JIT)
def ce_index_serial(x, y, w, has_w, wsum, ii, has_ii, eps, z, need_grad, gs, gstride, grad, loss, block, inplace):
    N, C = x.shape
    bad = _first_bad_target(y, C, ii, has_ii)
    if bad >= 0:
        return bad, 0.0
    _rows_index(x, y, w, has_w, wsum, ii, has_ii, eps, z, need_grad, gs, gstride, grad, loss, 0, N, inplace)
    return -1, _total(loss)


# --------------------------------------------------------------------------------------------
# probability targets
# --------------------------------------------------------------------------------------------

@njit(**_JIT)
def _rows_prob(x, tg, w, has_w, eps, z, need_grad, gs, gstride, grad, loss, i0, i1, inplace):
    N, C = x.shape
    nt = (C + TILE - 1) // TILE
    l1 = np.empty(LANES, x.dtype)
    pad = np.empty(LANES, x.dtype)
    l2 = np.empty(LANES, x.dtype)
    l3 = np.empty(LANES, x.dtype)
    tmax = np.empty(nt, x.dtype)
    tsum = np.empty(nt, x.dtype)
    tgap = np.empty(nt, x.dtype)
    tacc = np.empty(nt, x.dtype)
    one = cst(1.0, x[0, 0])
    zero = cst(0.0, x[0, 0])
    keep = one - eps
    spread = eps / cst(C, eps)
    for i in range(i0, i1):
        row = x[i]
        trow = tg[i]
        out = grad[i]
        g = gs[i * gstride]
        for t in range(nt):
            a0 = t * TILE
            a1 = min(C, a0 + TILE)
            tile = row[a0:a1]
            mt = _tile_max(tile, l1, pad)
            sh = mt if mt > -np.inf else zero
            tmax[t] = mt
            tsum[t], tgap[t], tacc[t] = _tile_prob(tile, trow[a0:a1], w[a0:a1] if has_w else w, has_w, keep, spread,
                                                   sh, l1, l2, l3)
        M, S = _combine(tmax, tsum, nt)
        if not _is_regular(M, S):
            loss[i] = _row_exact(row, out, need_grad, g, z, True, False, 0, trow, True, w, has_w, keep, spread)
            continue
        logS = math.log(S)
        lse = M + logS
        gap = zero
        A = zero
        for t in range(nt):
            sh = tmax[t] if tmax[t] > -np.inf else zero
            at = tacc[t]
            gap += tgap[t] + ((M - sh) * at if at != zero else zero)
            A += at
        # −Σ a_c log p_c = Σ a_c (shift_t − x_c) + Σ_t (M − shift_t) A_t + A·log S
        li = gap + (A * logS if A != zero else zero)
        alpha = A
        if z != zero:
            li += z * lse * lse
            alpha = alpha + cst(2.0, z) * z * lse
        loss[i] = li
        if need_grad:
            ag = alpha * g
            for t in range(nt):
                a0 = t * TILE
                a1 = min(C, a0 + TILE)
                _grad_tile_prob(row[a0:a1], out[a0:a1], inplace, trow[a0:a1], w[a0:a1] if has_w else w, has_w,
                                keep, spread, M, logS, ag, g)


@njit(parallel=True, **_JIT)
def ce_prob_parallel(x, tg, w, has_w, eps, z, need_grad, gs, gstride, grad, loss, block, inplace):
    N, C = x.shape
    nblk = (N + block - 1) // block
    for b in prange(nblk):
        _rows_prob(x, tg, w, has_w, eps, z, need_grad, gs, gstride, grad, loss, b * block, min(N, (b + 1) * block),
                   inplace)
    return -1


@njit(**_JIT)
def ce_prob_serial(x, tg, w, has_w, eps, z, need_grad, gs, gstride, grad, loss, block, inplace):
    _rows_prob(x, tg, w, has_w, eps, z, need_grad, gs, gstride, grad, loss, 0, x.shape[0], inplace)
    return -1
