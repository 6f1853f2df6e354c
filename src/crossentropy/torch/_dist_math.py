"""Vocabulary-parallel cross-entropy: the arithmetic of one rank (no communication here).

Rank ``r`` holds the columns ``[o_r, o_r + V_r)`` of every row's logits.  The
computation is :class:`crossentropy.activations.SoftmaxParts` with its row
reductions split over the ranks, in two rounds:

1. :func:`local_max` — each rank's row maximum (after the softcap); an
   all-reduce MAX gives the global maximum ``m``;
2. :func:`packet` — with ``m`` known, each rank sums its columns into a
   packet of ``k`` numbers per row (:class:`Layout` says which); an
   all-reduce SUM gives the global sums;
3. :class:`RowStats` — every rank derives the same row statistics and losses
   from the summed packet;
4. :func:`grad_rows` — each rank's gradient columns, from the statistics (no
   communication).

Because ``m`` is known before any exponential is taken, every ``e^{x_c − m}``
is the single-process value (no rescaling of partial sums, no extra
rounding): only the order of the row sums differs from one process.  The
maxima contribute ``e − 1 = 0`` exactly to ``D = Σ (e_c − [x_c = m])``, so
``log S = log1p(D + (n − 1))`` and a confident correct prediction keeps its
loss ``log1p(D)`` to the last bit, as in one process.

The module is plain torch on plain tensors, so the tests can run the
arithmetic of several ranks in one process.
"""

from __future__ import annotations

import math

import torch

from .._backend import namespace

__all__ = ["Layout", "capped", "local_max", "target_columns", "packet", "RowStats", "grad_rows", "reduce_rows"]


class Layout:
    """The options that shape the packet, and the packet's columns.

    ``D`` Σ_c (e_c − [c is a maximum]); ``NMAX`` the number of maxima;
    ``XY`` the target's (capped) logit, 0 on the ranks that do not hold it;
    ``WY`` the target's class weight, likewise (class weights only);
    ``SWX`` Σ_c w_c (x_c − shift), terms with w_c = 0 left out (smoothing);
    ``SWNM`` Σ_c w_c over the classes that are not maxima, and ``W`` Σ_c w_c
    (smoothing with class weights: the gradient at the argmax sums the other
    classes' coefficients directly, as ``SoftmaxParts.dual_grad`` does).
    """

    __slots__ = ("V", "offset", "width", "eps", "z", "softcap", "weighted", "ignore_index", "k",
                 "D", "NMAX", "XY", "WY", "SWX", "SWNM", "W")

    def __init__(self, *, V, offset, width, eps, z, softcap, weighted, ignore_index):
        self.V, self.offset, self.width = int(V), int(offset), int(width)
        self.eps, self.z, self.softcap = float(eps), float(z), softcap
        self.weighted, self.ignore_index = bool(weighted), ignore_index
        cols = ["D", "NMAX", "XY"]
        if self.weighted:
            cols.append("WY")
        if self.eps:
            cols.append("SWX")
            if self.weighted:
                cols += ["SWNM", "W"]
        for name in ("WY", "SWX", "SWNM", "W"):
            setattr(self, name, None)
        for i, name in enumerate(cols):
            setattr(self, name, i)
        self.k = len(cols)


def capped(x, softcap):
    """``(x', tanh(x/s))``: Gemma's soft-capping ``x' = s·tanh(x/s)`` (the same operations as the core's)."""
    if softcap is None:
        return x, None
    th = torch.tanh(x / softcap)
    return softcap * th, th


def local_max(xc):
    """Row maxima of this rank's (capped) columns, for the all-reduce MAX.

    NaN becomes +inf: what MAX does with NaN differs between backends, and a
    row with a NaN needs only a non-finite maximum (shift 0, the plain
    formula, which gives NaN).  No columns: −inf (the empty maximum).
    """
    if xc.shape[-1] == 0:
        return torch.full(xc.shape[:-1], -math.inf, dtype=xc.dtype, device=xc.device)
    m = torch.amax(xc, dim=-1)
    return torch.where(torch.isnan(m), torch.full_like(m, math.inf), m)


def target_columns(y, valid, lay: Layout):
    """``(local column, held here)``: where each row's target is among this rank's columns."""
    yl = y - lay.offset
    hit = (yl >= 0) & (yl < lay.width)
    if valid is not None:
        hit = hit & valid
    return torch.where(hit, yl, torch.zeros_like(yl)), hit


def _shift(m):
    finite = torch.isfinite(m)
    # A row whose maximum is not finite (all −inf, a +inf, a NaN) is shifted by 0 and takes
    # log Σ e^x directly, as SoftmaxParts does: −inf / inf / NaN come out as the plain formula gives.
    return torch.where(finite, m, torch.zeros_like(m)), finite


def packet(xc, m, yl, hit, wl, lay: Layout):
    """This rank's ``(rows, k)`` sums (see :class:`Layout`), given the global row maxima ``m``."""
    rows = int(xc.shape[0])
    out = torch.zeros((rows, lay.k), dtype=xc.dtype, device=xc.device)
    if lay.weighted and lay.eps:
        out[:, lay.W] = wl.sum()
    if lay.width == 0 or rows == 0:
        return out
    shift, finite = _shift(m)
    is_max = (xc == m[:, None]) & finite[:, None]
    xs = xc - shift[:, None]
    e = torch.exp(xs)
    # the maxima's e − 1 is exactly 0: D keeps only the small terms
    out[:, lay.D] = torch.where(is_max, e - 1.0, e).sum(-1)
    out[:, lay.NMAX] = is_max.sum(-1, dtype=xc.dtype)
    xy = xc.gather(1, yl[:, None]).squeeze(1)
    out[:, lay.XY] = torch.where(hit, xy, torch.zeros_like(xy))
    if lay.weighted:
        wy = wl[yl]
        out[:, lay.WY] = torch.where(hit, wy, torch.zeros_like(wy))
    if lay.eps:
        if lay.weighted:
            # 0·log 0 = 0: a class of weight 0 adds nothing even where its logit is −inf
            out[:, lay.SWX] = torch.where(wl == 0, torch.zeros_like(xs), wl * xs).sum(-1)
            out[:, lay.SWNM] = torch.where(is_max, torch.zeros_like(xs), wl.expand_as(xs)).sum(-1)
        else:
            out[:, lay.SWX] = xs.sum(-1)
    return out


class RowStats:
    """Per-row statistics from the global maxima and the summed packet; the same on every rank.

    ``loss`` is the per-row loss before sample weights and the reduction (0 on
    ignored rows, NaN on a counted row whose target is outside ``[0, V)``,
    which only ``validate=False`` lets through).
    """

    __slots__ = ("m", "shift", "finite", "n", "s", "s_m1", "lse", "wy", "wsum", "swnm", "valid", "bad", "loss")

    def __init__(self, m, P, y, valid, lay: Layout):
        self.m = m
        self.shift, self.finite = _shift(m)
        n, d = P[:, lay.NMAX], P[:, lay.D]
        self.n = n
        self.s = n + d
        self.s_m1 = d + (n - 1.0)  # S − 1: n − 1 is an exact small integer, d keeps the small terms
        log_s = torch.where(self.finite, torch.log1p(self.s_m1), torch.log(d))
        self.lse = self.shift + log_s
        self.valid = valid
        self.wy = P[:, lay.WY] if lay.weighted else None
        self.wsum = P[:, lay.W] if (lay.weighted and lay.eps) else None
        self.swnm = P[:, lay.SWNM] if (lay.weighted and lay.eps) else None
        logp_y = (P[:, lay.XY] - self.shift) - log_s  # the core's (x − shift) − log S at y, same operations
        if not lay.eps:
            nll = -logp_y
            if self.wy is not None:
                nll = nll * self.wy
        else:
            # −Σ_c a_c log p_c with a_c = w_c((1−ε)[c = y] + ε/V), split as
            # (1−ε) w_y (−log p_y) + (ε/V)(W·log S − Σ_c w_c (x_c − shift)): two terms of one sign
            # (for w ≥ 0), no cancellation.
            c1 = (1.0 - lay.eps) * (self.wy if self.wy is not None else torch.ones_like(logp_y))
            t1 = c1 * torch.where((c1 == 0) & ~torch.isfinite(logp_y), torch.zeros_like(logp_y), logp_y)
            W = self.wsum if self.wsum is not None else torch.full_like(logp_y, float(lay.V))
            wlog = torch.where(W == 0, torch.zeros_like(log_s), W * log_s)
            nll = -(t1 + (lay.eps / lay.V) * (P[:, lay.SWX] - wlog))
        if lay.z:
            nll = nll + lay.z * self.lse * self.lse  # z-loss (PaLM): z·lse², as the core
        zero = torch.zeros_like(nll)
        self.loss = nll if valid is None else torch.where(valid, nll, zero)
        # A counted target outside [0, V) (possible only with validate=False): NaN, never a number.
        bad = (y < 0) | (y >= lay.V)
        if valid is not None:
            bad = bad & valid
        self.bad = bad
        self.loss = torch.where(bad, torch.full_like(nll, math.nan), self.loss)

    def rows(self, i0, i1):
        """The statistics of rows ``[i0, i1)`` (views)."""
        r = RowStats.__new__(RowStats)
        for name in RowStats.__slots__:
            v = getattr(self, name)
            setattr(r, name, None if v is None else v[i0:i1])
        return r


def grad_rows(xc, th, st: RowStats, yl, hit, wl, lay: Layout, scale):
    """∂loss/∂logits for this rank's columns of some rows (``scale``: the per-row factor, or None).

    The core's formulas (``categorical._ce_terms``, ``SoftmaxParts.dual_grad``)
    with the global statistics: ``p = e/S``; at the row's unique maximum
    ``1 − p = (S − 1 − (e − 1))/S`` exactly, so the target gradient
    ``−(1 − p_y)`` of a confident row is not the cancelling ``p_y − 1``.
    """
    finite = st.finite[:, None]
    is_max = (xc == st.m[:, None]) & finite
    e = torch.exp(xc - st.shift[:, None])
    s = st.s[:, None]
    p = e / s
    unique = is_max & (st.n == 1.0)[:, None]
    one_minus_p = (st.s_m1[:, None] - (e - 1.0)) / s
    cols = torch.arange(lay.width, device=xc.device)
    is_y = (cols[None, :] == yl[:, None]) & hit[:, None]
    valid = None if st.valid is None else st.valid.to(xc.dtype)[:, None]
    if not lay.eps:
        g = torch.where(is_y, torch.where(unique, -one_minus_p, p - 1.0), p)
        if st.wy is not None:
            g = g * st.wy[:, None]
        if valid is not None:
            g = g * valid
    else:
        eps, V = lay.eps, lay.V
        wy = st.wy[:, None] if st.wy is not None else torch.ones_like(s)
        W = st.wsum[:, None] if st.wsum is not None else torch.full_like(s, float(V))
        swnm = st.swnm[:, None] if st.swnm is not None else (float(V) - st.n)[:, None]
        c1 = (1.0 - eps) * wy
        wcol = wl[None, :] if lay.weighted else torch.ones_like(xc[:1])
        total = c1 + (eps / V) * W  # Σ_c a_c
        a = (eps / V) * wcol + c1 * is_y.to(xc.dtype)
        off = c1 * (~is_y).to(xc.dtype) + (eps / V) * swnm  # Σ_{c ≠ argmax} a_c, summed directly
        if valid is not None:
            total, a, off = total * valid, a * valid, off * valid
        g = torch.where(unique, off - total * one_minus_p, total * p - a)
    if lay.z:
        zt = (2.0 * lay.z * st.lse)[:, None] * p
        g = g + (zt if valid is None else zt * valid)
    if th is not None:
        g = g * (1.0 - th * th)  # d/dx s·tanh(x/s)
    if scale is not None:
        g = g * (scale[:, None] if getattr(scale, "ndim", 0) else scale)
    if bool(st.bad.any()):
        g = torch.where(st.bad[:, None], torch.full_like(g, math.nan), g)
    return g


def reduce_rows(loss, *, reduction, sw, valid, wy, num_items):
    """``(value, per-row gradient factor or None, divisor)`` by the core's reduction rules.

    ``'mean'`` divides by ``Σ valid·w_y·sw`` (PyTorch's weighted mean; 0/0 =
    NaN), or by ``num_items`` when given; the gradient's divisor is 1 where
    nothing is counted (an all-ignored batch has a zero gradient), as
    :func:`crossentropy._reduction.denominators`.
    """
    xp = namespace(loss)
    if sw is not None:
        loss = loss * sw
    if reduction == "none":
        return loss, sw, None
    total = xp.accurate_sum(loss)
    if reduction == "sum":
        return total, sw, None
    if num_items is not None:
        return total / num_items, sw, num_items
    w = torch.ones_like(loss) if wy is None else wy
    if sw is not None:
        w = w * sw
    if valid is not None:
        w = torch.where(valid, w, torch.zeros_like(w))
    denom = xp.accurate_sum(w)
    counted = (w != 0).sum()
    div = torch.where((denom == 0) & (counted == 0), torch.ones_like(denom), denom)
    return total / denom, sw, div
