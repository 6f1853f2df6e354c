"""Triton kernels: softmax cross-entropy over a (rows × V) logits block, exact for confident rows.

Importing this module imports neither :mod:`triton` nor :mod:`torch`;
:func:`build` (called by :mod:`.ce` at the first launch) imports triton and
defines the kernels.  Whether they are compiled for the GPU or run by
Triton's CPU interpreter is fixed when triton is first imported, by
``TRITON_INTERPRET=1`` being set then.

One program handles ``BLOCK_R`` rows and walks the columns in tiles of
``BLOCK_V``:

* pass 1 (:func:`_pass1`) reads each tile once and updates, per row, the
  online state ``(m, K, S_off)`` and the sums that smoothing and the
  non-finite rules need (the layout of ``_layout``);
* :func:`_finalize` turns that state into the loss, the log-sum-exp and the
  per-row coefficients of the gradient;
* pass 2 (:func:`_pass2`) reads each tile again and writes the gradient,
  possibly over the logits themselves (every value a row needs from its
  logits is read in pass 1, before pass 2 writes any of them).

The vocabulary-split kernels run pass 1 on a column slice and store the
state (:func:`ce_partial_kernel`), and run finalize + pass 2 from a merged
state (:func:`ce_finish_kernel`); :func:`ce_fused_kernel` does all three at
once.  Because a single slice merges to itself unchanged, the fused and
the split computations are the same formulas.

Transcendentals: on the GPU, libdevice's ``expf``, ``logf``, ``log1pf``,
``tanhf`` (CUDA documents at most 2, 1, 1 and 2 ulp), launched with
``enable_reflect_ftz=False`` so that subnormals are not flushed; under the
interpreter, NumPy's float32 functions.  Divisions that matter use
``div_rn`` (IEEE round-to-nearest), not the approximate ``div.full``.
"""

from __future__ import annotations

import numpy as np

from . import _layout as L

__all__ = ["build", "INTERPRET", "ce_fused_kernel", "ce_partial_kernel", "ce_finish_kernel"]

INTERPRET = None  # set by build(): True when Triton's CPU interpreter runs the kernels
_BUILT = False


def build():
    """Import triton and define the kernels (once); return this module.

    Nothing imports triton before this runs: importing this module is safe
    in any process (a TensorFlow loaded first makes importing triton abort
    the process: both register the same LLVM options).  Every kernel and
    helper is bound as a module global here (``global``), which is where
    Triton's compiler and interpreter look names up.
    """
    import sys

    global INTERPRET, triton, tl, _exp, _log, _log1p, _tanh, BIG, NSTAT, _M, _S_OFF, _XY, _HIT, _WY, _NNAN
    global _NPINF, _NPINFW, _D, _WOFF, _WK, _W, _WPOS, _WNEG, _WKP, _softcap, _pass1, _finalize, _pass2
    global _row_block, _validity, _scale, ce_fused_kernel, ce_partial_kernel, ce_finish_kernel, libdevice
    global _BUILT
    if _BUILT:
        return sys.modules[__name__]
    import triton
    import triton.language as tl

    @triton.jit
    def _probe(x):
        return x

    try:
        from triton.runtime.interpreter import InterpretedFunction as _Interpreted
    except ImportError:  # pragma: no cover - every Triton 3.x has the interpreter
        _Interpreted = ()
    # True when Triton's CPU interpreter runs these kernels (TRITON_INTERPRET=1 when triton was imported)
    INTERPRET = isinstance(_probe, _Interpreted)

    if INTERPRET:
        from triton.runtime.interpreter import TensorHandle as _Handle

        def _numpy_op(f):
            # The interpreter has no libdevice; its tensors hold NumPy arrays, so
            # the same function is applied by NumPy, in the tensor's own dtype.
            def op(x):
                h = x.handle
                with np.errstate(all="ignore"):
                    out = f(h.data).astype(h.data.dtype, copy=False)
                return tl.tensor(_Handle(out, h.dtype), x.type)

            return op

        _exp = _numpy_op(np.exp)
        _log = _numpy_op(np.log)
        _log1p = _numpy_op(np.log1p)
        _tanh = _numpy_op(np.tanh)
    else:
        from triton.language.extra import libdevice

        @triton.jit
        def _exp(x):
            return libdevice.exp(x)

        @triton.jit
        def _log(x):
            return libdevice.log(x)

        @triton.jit
        def _log1p(x):
            return libdevice.log1p(x)

        @triton.jit
        def _tanh(x):
            return libdevice.tanh(x)

    BIG = tl.constexpr(L.BIG)
    NSTAT = tl.constexpr(L.NSTAT)
    _M = tl.constexpr(L.M)
    _S_OFF = tl.constexpr(L.S_OFF)
    _XY = tl.constexpr(L.XY)
    _HIT = tl.constexpr(L.HIT)
    _WY = tl.constexpr(L.WY)
    _NNAN = tl.constexpr(L.NNAN)
    _NPINF = tl.constexpr(L.NPINF)
    _NPINFW = tl.constexpr(L.NPINFW)
    _D = tl.constexpr(L.D)
    _WOFF = tl.constexpr(L.WOFF)
    _WK = tl.constexpr(L.WK)
    _W = tl.constexpr(L.W)
    _WPOS = tl.constexpr(L.WPOS)
    _WNEG = tl.constexpr(L.WNEG)
    _WKP = tl.constexpr(L.WKP)

    @triton.jit
    def _softcap(x, cap):
        # s·tanh(x/s); pass 1 and pass 2 call this same sequence, so the argmax
        # entry gets e^{x_K − m} = 1 exactly in both.
        return cap * _tanh(tl.math.div_rn(x, cap))

    @triton.jit
    def _pass1(X, stride_x, W, Y, rows, rmask, width, v0, cap,
               BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, HAS_W: tl.constexpr, SMOOTH: tl.constexpr,
               SOFTCAP: tl.constexpr):
        """Online state of rows ``rows`` over columns ``[0, width)`` of X (global columns ``v0 + j``)."""
        NEG = float("-inf")
        INF = float("inf")
        rows64 = rows.to(tl.int64)
        zero = tl.zeros([BLOCK_R], tl.float32)

        # The target's own logit and weight, read before anything is written (pass 2 may overwrite X).
        y = tl.load(Y + rows, mask=rmask, other=0).to(tl.int64)
        yl = y - v0
        hit = rmask & (yl >= 0) & (yl < width)
        xy = tl.load(X + rows64 * stride_x + yl, mask=hit, other=0.0).to(tl.float32)
        if SOFTCAP:
            xy = _softcap(xy, cap)
        xy = tl.where(hit, xy, 0.0)
        if HAS_W:
            wy = tl.load(W + yl, mask=hit, other=0.0).to(tl.float32)
        else:
            wy = tl.where(hit, 1.0, 0.0)

        m = zero + NEG
        k = tl.zeros([BLOCK_R], tl.int32) + v0
        s_off = zero
        nnan = zero
        npinf = zero
        npinfw = zero
        kpinf = tl.zeros([BLOCK_R], tl.int32) + BIG
        wkp = zero
        d = zero
        woff = zero
        wk = zero
        wsum = zero
        wpos = zero
        wneg = zero
        for start in range(0, width, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            cmask = cols < width
            mask = rmask[:, None] & cmask[None, :]
            x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=mask, other=NEG).to(tl.float32)
            if SOFTCAP:
                x = tl.where(mask, _softcap(x, cap), NEG)
            colg = cols[None, :] + v0
            # NaN and +inf are kept out of (m, K, S_off); they are counted below and
            # decide the row's result through the non-finite rules of _finalize.
            xm = tl.where(x < INF, x, NEG)
            mt, kt = tl.max(xm, axis=1, return_indices=True, return_indices_tie_break_left=True)
            kt = kt + start + v0
            changed = mt > m  # strictly greater: among ties the first column stays the argmax
            m_new = tl.maximum(m, mt)
            sh_old = tl.where(m > NEG, m, 0.0)
            sh_new = tl.where(m_new > NEG, m_new, 0.0)
            # When the maximum moves up, the old sum is rescaled by r = e^{m_old − m_new}
            # and the old maximum's own term (1 before rescaling, so r after) joins S_off.
            r = tl.where(changed, tl.where(m > NEG, _exp(m - m_new), 0.0), 1.0)
            e = _exp(xm - sh_new[:, None])
            is_kt = changed[:, None] & (colg == kt[:, None])
            s_off = s_off * r + tl.where(changed, r, 0.0) + tl.sum(tl.where(is_kt, 0.0, e), axis=1)
            m = m_new
            k = tl.where(changed, kt, k)
            if SMOOTH:
                if HAS_W:
                    wt = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
                else:
                    wt = tl.where(cmask, 1.0, 0.0)
                w2 = wt[None, :] + tl.zeros([BLOCK_R, BLOCK_V], tl.float32)
                # D = Σ w_c (sh − x_c) over F with w_c ≠ 0 (0·(−inf) never enters: the
                # cross-entropy's 0·log 0 = 0); a moved shift adds (sh_new − sh_old)·Σw.
                dd = tl.where(mask & (x < INF) & (w2 != 0.0), w2 * (sh_new[:, None] - x), 0.0)
                tw = tl.sum(wt, axis=0)
                d = d + tl.where(changed, (sh_new - sh_old) * wsum, 0.0) + tl.sum(dd, axis=1)
                wsum = wsum + tw
                at_kt = colg == kt[:, None]
                wot = tl.sum(tl.where(at_kt, 0.0, w2), axis=1)
                wkt = tl.sum(tl.where(at_kt, w2, 0.0), axis=1)
                # Σ_{c≠K} w_c summed directly (not Σw − w_K, which cancels)
                woff = tl.where(changed, woff + wk + wot, woff + tw)
                wk = tl.where(changed, wkt, wk)
                if HAS_W:
                    wpos = wpos + tl.sum(tl.where(wt > 0.0, 1.0, 0.0), axis=0)
                    wneg = wneg + tl.sum(tl.where(wt < 0.0, 1.0, 0.0), axis=0)
            # x·0 is NaN exactly for NaN and ±inf: only tiles holding one count them.
            sent = tl.sum(tl.where(mask, x * 0.0, 0.0), axis=1)
            if tl.max(tl.where(sent != sent, 1, 0), axis=0) > 0:
                isp = mask & (x == INF)
                nnan = nnan + tl.sum(tl.where(mask & (x != x), 1.0, 0.0), axis=1)
                npinf = npinf + tl.sum(tl.where(isp, 1.0, 0.0), axis=1)
                kp_t = tl.min(tl.where(isp, colg, BIG), axis=1)
                first = (kpinf == BIG) & (kp_t < BIG)
                if SMOOTH:
                    at_kp = colg == kp_t[:, None]
                    wkp = tl.where(first, tl.sum(tl.where(at_kp, w2, 0.0), axis=1), wkp)
                    npinfw = npinfw + tl.sum(tl.where(isp & (w2 != 0.0), 1.0, 0.0), axis=1)
                kpinf = tl.minimum(kpinf, kp_t)
        return (m, k, s_off, xy, tl.where(hit, 1.0, 0.0), wy, nnan, npinf, npinfw, d, woff, wk, wsum, wpos, wneg,
                wkp, kpinf)

    @triton.jit
    def _finalize(m, k, s_off, xy, hit, wy, nnan, npinf, npinfw, d, woff, wk, wsum, wpos, wneg, wkp, kpinf,
                  y, valid, keep, eps_v, z,
                  HAS_W: tl.constexpr, SMOOTH: tl.constexpr, HAS_Z: tl.constexpr):
        """Loss, lse and the gradient's per-row coefficients from a (merged) row state.

        Finite maximum: ``log S = log1p(S_off)``, ``−log p_y = (m − x_y) + log1p(S_off)``.
        Otherwise the reference's plain formula (shift 0, ``log Σ e^x``): a NaN
        anywhere makes everything NaN; a ``+inf`` gives ``S = inf``; an all ``−inf``
        row gives ``S = 0``; their consequences (NaN/±inf) follow from IEEE
        arithmetic on those values, except the smoothed sum of ``0·log 0`` terms,
        which is decided from the counts.
        """
        NEG = float("-inf")
        INF = float("inf")
        NAN = float("nan")
        isnan = nnan > 0.0
        pinf = (nnan == 0.0) & (npinf > 0.0)
        finite = (nnan == 0.0) & (npinf == 0.0) & (m > NEG)
        shift = tl.where(finite, m, 0.0)
        # Σ_{j∈F} e^{x_j} for a +inf row, which overflows when the plain sum would
        e_f = tl.where(m > NEG, _exp(tl.where(m > NEG, m, 0.0)) * (1.0 + s_off), 0.0)
        S = tl.where(finite, 1.0 + s_off, tl.where(pinf, INF, tl.where(isnan, NAN, 0.0)))
        SOFF = tl.where(finite, s_off, tl.where(pinf, tl.where(npinf > 1.5, INF, e_f), tl.where(isnan, NAN, 0.0)))
        logs = tl.where(finite, _log1p(s_off), _log(S))
        lse = shift + logs
        # The exact form at the maximum applies to finite rows only; a row with a +inf, a NaN or no
        # finite entry takes the plain formula everywhere (p = e/S: NaN at the +inf entries), as
        # the reference does: no column is K there.
        K = tl.where(finite, k, -1)
        # −log p_y = (m − x_y) + log1p(S_off): two non-negative terms, no cancellation
        nll = (shift - xy) + logs
        vf = tl.where(valid, 1.0, 0.0)
        if SMOOTH:
            # −Σ_c a_c log p_c, a_c = w_c((1−ε)[c=y] + ε/V), as (1−ε)w_y·nll + (ε/V)·Σ_c w_c(m − x_c + log S)
            ay = keep * wy
            ls = tl.where(ay == 0.0, 0.0, ay * nll) + eps_v * (d + wsum * logs)
            if HAS_W:
                anynz = (wpos + wneg) > 0.0
                pinf_nan = npinfw > 0.0
            else:
                anynz = wsum == wsum
                pinf_nan = npinf > 0.0
            pos = wpos > 0.0
            neg = wneg > 0.0
            # +inf row: log p = −inf on F (a_c·(−inf) sums to ±inf by the signs of a_c), NaN on the +inf entries
            ls_pinf = tl.where(pinf_nan | (pos & neg), NAN, tl.where(pos, INF, tl.where(neg, NEG, 0.0)))
            # NaN or all −inf row: log p = NaN everywhere, and 0·log p = 0 only where a_c = 0
            ls_bad = tl.where(anynz, NAN, 0.0)
            loss = tl.where(finite, ls, tl.where(pinf, ls_pinf, ls_bad))
            hv = vf * keep
            sm = vf * eps_v
            total = hv * wy + sm * wsum
            woff_k = tl.where(pinf, wsum - wkp, woff)
            off = tl.where(y == K, 0.0, hv * wy) + sm * woff_k
        else:
            loss = nll * wy
            hv = vf
            sm = vf * 0.0
            total = vf * wy
            off = tl.where(y == K, 0.0, total)
        if HAS_Z:
            # z-loss (PaLM): z·lse²
            loss = loss + z * lse * lse
            zc = 2.0 * z * lse * vf
        else:
            zc = vf * 0.0
        # A counted row whose target no slice held (outside [0, V), unvalidated): NaN, never a number.
        bad = valid & (hit == 0.0)
        loss = tl.where(bad, NAN, loss)
        total = tl.where(bad, NAN, total)
        loss = tl.where(valid, loss, 0.0)
        inv_s = tl.math.div_rn(tl.zeros_like(S) + 1.0, S)
        qk = tl.math.div_rn(SOFF, S)  # 1 − p_K = S_off/S, not p_K − 1
        return loss, lse, shift, inv_s, qk, total, off, zc, sm, hv, K

    @triton.jit
    def _pass2(X, stride_x, G, stride_g, W, rows, rmask, width, v0, cap, y, K, shift, inv_s, qk, total, off, zc, sm,
               hv, scale, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, HAS_W: tl.constexpr, HAS_Z: tl.constexpr,
               SOFTCAP: tl.constexpr):
        """g_c = scale·[(Σa)·p_c − a_c + zc·p_c], at K: scale·[Σ_{c≠K} a_c − (Σa)(1 − p_K) + zc·p_K]; × sech² if softcapped."""
        rows64 = rows.to(tl.int64)
        for start in range(0, width, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            cmask = cols < width
            mask = rmask[:, None] & cmask[None, :]
            x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            if SOFTCAP:
                u = tl.math.div_rn(x, cap)
                xc = cap * _tanh(u)
            else:
                xc = x
            # p = e/S as e·(1/S); for a +inf or all −inf row this is inf/inf or 0/0 = NaN, as in the reference
            p = _exp(xc - shift[:, None]) * inv_s[:, None]
            colg = cols[None, :] + v0
            a = sm[:, None] + tl.where(colg == y[:, None], hv[:, None], 0.0)
            if HAS_W:
                a = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)[None, :] * a
            g = total[:, None] * p - a
            g = tl.where(colg == K[:, None], (off - total * qk)[:, None], g)
            if HAS_Z:
                g = g + zc[:, None] * p
            g = g * scale[:, None]
            if SOFTCAP:
                # d/dx s·tanh(x/s) = sech²(x/s) = 4e^{−2|u|}/(1 + e^{−2|u|})², exact where 1 − tanh² cancels
                en = _exp(-2.0 * tl.abs(u))
                g = g * tl.math.div_rn(4.0 * en, (1.0 + en) * (1.0 + en))
            tl.store(G + rows64[:, None] * stride_g + cols[None, :], g.to(G.dtype.element_ty), mask=mask)

    @triton.jit
    def _row_block(n_rows, BLOCK_R: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        return rows, rows < n_rows

    @triton.jit
    def _validity(Y, rows, rmask, ignore_index, HAS_IGNORE: tl.constexpr):
        y = tl.load(Y + rows, mask=rmask, other=0).to(tl.int64)
        if HAS_IGNORE:
            return y, rmask & (y != ignore_index)
        return y, rmask

    @triton.jit
    def _scale(SCALE, rows, rmask, scale, SCALE_VEC: tl.constexpr, BLOCK_R: tl.constexpr):
        if SCALE_VEC:
            return tl.load(SCALE + rows, mask=rmask, other=0.0).to(tl.float32)
        return tl.zeros([BLOCK_R], tl.float32) + scale

    @triton.jit
    def ce_fused_kernel(X, stride_x, G, stride_g, Y, W, SCALE, LOSS, LSE, n_rows, V, ignore_index, keep, eps_v, z,
                        cap, scale, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, HAS_W: tl.constexpr,
                        HAS_IGNORE: tl.constexpr, SMOOTH: tl.constexpr, HAS_Z: tl.constexpr, SOFTCAP: tl.constexpr,
                        GRAD: tl.constexpr, SCALE_VEC: tl.constexpr):
        """Loss and lse of rows × V logits, and (GRAD) their gradient into G (which may be X)."""
        rows, rmask = _row_block(n_rows, BLOCK_R)
        y, valid = _validity(Y, rows, rmask, ignore_index, HAS_IGNORE)
        (m, k, s_off, xy, hit, wy, nnan, npinf, npinfw, d, woff, wk, wsum, wpos, wneg, wkp,
         kpinf) = _pass1(X, stride_x, W, Y, rows, rmask, V, 0, cap, BLOCK_R, BLOCK_V, HAS_W, SMOOTH, SOFTCAP)
        loss, lse, shift, inv_s, qk, total, off, zc, sm, hv, K = _finalize(
            m, k, s_off, xy, hit, wy, nnan, npinf, npinfw, d, woff, wk, wsum, wpos, wneg, wkp, kpinf,
            y, valid, keep, eps_v, z, HAS_W, SMOOTH, HAS_Z)
        tl.store(LOSS + rows, loss, mask=rmask)
        tl.store(LSE + rows, lse, mask=rmask)
        if GRAD:
            # every read of this row's logits in pass 1 happens before any write of pass 2
            tl.debug_barrier()
            sc = _scale(SCALE, rows, rmask, scale, SCALE_VEC, BLOCK_R)
            _pass2(X, stride_x, G, stride_g, W, rows, rmask, V, 0, cap, y, K, shift, inv_s, qk, total, off, zc, sm, hv,
                   sc, BLOCK_R, BLOCK_V, HAS_W, HAS_Z, SOFTCAP)

    @triton.jit
    def ce_partial_kernel(X, stride_x, Y, W, STATS, INDEX, n_rows, width, v0, cap, BLOCK_R: tl.constexpr,
                          BLOCK_V: tl.constexpr, HAS_W: tl.constexpr, SMOOTH: tl.constexpr, SOFTCAP: tl.constexpr):
        """Pass 1 over the column slice [v0, v0 + width): the row states, stored in the _layout order."""
        rows, rmask = _row_block(n_rows, BLOCK_R)
        (m, k, s_off, xy, hit, wy, nnan, npinf, npinfw, d, woff, wk, wsum, wpos, wneg, wkp,
         kpinf) = _pass1(X, stride_x, W, Y, rows, rmask, width, v0, cap, BLOCK_R, BLOCK_V, HAS_W, SMOOTH, SOFTCAP)
        base = STATS + rows.to(tl.int64) * NSTAT
        tl.store(base + _M, m, mask=rmask)
        tl.store(base + _S_OFF, s_off, mask=rmask)
        tl.store(base + _XY, xy, mask=rmask)
        tl.store(base + _HIT, hit, mask=rmask)
        tl.store(base + _WY, wy, mask=rmask)
        tl.store(base + _NNAN, nnan, mask=rmask)
        tl.store(base + _NPINF, npinf, mask=rmask)
        tl.store(base + _NPINFW, npinfw, mask=rmask)
        tl.store(base + _D, d, mask=rmask)
        tl.store(base + _WOFF, woff, mask=rmask)
        tl.store(base + _WK, wk, mask=rmask)
        tl.store(base + _W, wsum, mask=rmask)
        tl.store(base + _WPOS, wpos, mask=rmask)
        tl.store(base + _WNEG, wneg, mask=rmask)
        tl.store(base + _WKP, wkp, mask=rmask)
        ibase = INDEX + rows.to(tl.int64) * 2
        tl.store(ibase, k.to(tl.int64), mask=rmask)
        tl.store(ibase + 1, kpinf.to(tl.int64), mask=rmask)

    @triton.jit
    def ce_finish_kernel(X, stride_x, G, stride_g, Y, W, STATS, INDEX, SCALE, LOSS, LSE, n_rows, width, v0,
                         ignore_index, keep, eps_v, z, cap, scale, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
                         HAS_W: tl.constexpr, HAS_IGNORE: tl.constexpr, SMOOTH: tl.constexpr, HAS_Z: tl.constexpr,
                         SOFTCAP: tl.constexpr, GRAD: tl.constexpr, SCALE_VEC: tl.constexpr, WRITE_LOSS: tl.constexpr):
        """From merged row states: loss and lse (WRITE_LOSS), and the gradient of the slice [v0, v0 + width) (GRAD)."""
        rows, rmask = _row_block(n_rows, BLOCK_R)
        y, valid = _validity(Y, rows, rmask, ignore_index, HAS_IGNORE)
        base = STATS + rows.to(tl.int64) * NSTAT
        ibase = INDEX + rows.to(tl.int64) * 2
        NEG = float("-inf")
        loss, lse, shift, inv_s, qk, total, off, zc, sm, hv, K = _finalize(
            tl.load(base + _M, mask=rmask, other=NEG), tl.load(ibase, mask=rmask, other=0).to(tl.int32),
            tl.load(base + _S_OFF, mask=rmask, other=0.0), tl.load(base + _XY, mask=rmask, other=0.0),
            tl.load(base + _HIT, mask=rmask, other=0.0), tl.load(base + _WY, mask=rmask, other=0.0),
            tl.load(base + _NNAN, mask=rmask, other=0.0), tl.load(base + _NPINF, mask=rmask, other=0.0),
            tl.load(base + _NPINFW, mask=rmask, other=0.0), tl.load(base + _D, mask=rmask, other=0.0),
            tl.load(base + _WOFF, mask=rmask, other=0.0), tl.load(base + _WK, mask=rmask, other=0.0),
            tl.load(base + _W, mask=rmask, other=0.0), tl.load(base + _WPOS, mask=rmask, other=0.0),
            tl.load(base + _WNEG, mask=rmask, other=0.0), tl.load(base + _WKP, mask=rmask, other=0.0),
            tl.load(ibase + 1, mask=rmask, other=BIG).to(tl.int32),
            y, valid, keep, eps_v, z, HAS_W, SMOOTH, HAS_Z)
        if WRITE_LOSS:
            tl.store(LOSS + rows, loss, mask=rmask)
            tl.store(LSE + rows, lse, mask=rmask)
        if GRAD:
            sc = _scale(SCALE, rows, rmask, scale, SCALE_VEC, BLOCK_R)
            _pass2(X, stride_x, G, stride_g, W, rows, rmask, width, v0, cap, y, K, shift, inv_s, qk, total, off, zc,
                   sm, hv, sc, BLOCK_R, BLOCK_V, HAS_W, HAS_Z, SOFTCAP)
    _BUILT = True
    return sys.modules[__name__]
