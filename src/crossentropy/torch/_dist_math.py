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
rounding): only the order of the row sums differs from one process.  Each
rank that holds the maximum leaves its first maximum's term (exactly 1) out
of its sum ``D_r``; with ``h`` such ranks, ``S = D + h`` and
``log S = log1p(D + (h − 1))``, so a confident correct prediction keeps its
loss ``log1p(D)`` to the last bit, as in one process (``SoftmaxParts`` leaves
out every maximum instead; tied maxima are exact 1s inside ``D`` here, which
changes no value: ``S − 1`` is the same number).

The module is plain torch on plain tensors, so the tests can run the
arithmetic of several ranks in one process.
"""

from __future__ import annotations

import math

import torch

from .._backend import namespace

__all__ = ["Layout", "Scratch", "capped", "local_max", "target_columns", "packet", "RowStats", "grad_rows", "reduce_rows"]


class Layout:
    """The options that shape the packet, and the packet's columns.

    With ``k`` the rank's first column equal to the global maximum ``m`` (when
    it holds one): ``D`` Σ_{c≠k} e^{x_c−m}; ``HOLD`` 1 if the rank holds a
    maximum, else 0; ``XY`` the target's (capped) logit, 0 on the ranks that
    do not hold it; ``WY`` the target's class weight, likewise (class weights
    only); ``SWX`` Σ_c w_c (x_c − shift), terms with w_c = 0 left out
    (smoothing); ``SWNM`` Σ_{c≠k} w_c and ``W`` Σ_c w_c (smoothing with class
    weights: the gradient at the argmax sums the other classes' coefficients
    directly, as ``SoftmaxParts.dual_grad`` does).
    """

    __slots__ = ("V", "offset", "width", "eps", "z", "softcap", "weighted", "ignore_index", "k",
                 "D", "HOLD", "XY", "WY", "SWX", "SWNM", "W")

    V: int
    offset: int
    width: int
    eps: float
    z: float
    softcap: float | None
    weighted: bool
    ignore_index: int | None
    k: int
    # packet columns (set by name below); None where the options need no such column
    D: int
    HOLD: int
    XY: int
    WY: int | None
    SWX: int | None
    SWNM: int | None
    W: int | None

    def __init__(self, *, V, offset, width, eps, z, softcap, weighted, ignore_index):
        self.V, self.offset, self.width = int(V), int(offset), int(width)
        self.eps, self.z, self.softcap = float(eps), float(z), softcap
        self.weighted, self.ignore_index = bool(weighted), ignore_index
        cols = ["D", "HOLD", "XY"]
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


def _max_mask(xc, m, finite, out=None):
    """``x_c = m`` on finite rows: compared with NaN elsewhere (never equal), so no second mask is needed."""
    return torch.eq(xc, torch.where(finite, m, torch.full_like(m, math.nan))[:, None], out=out)


class Scratch:
    """Chunk-sized work buffers reused from one chunk to the next (fresh memory costs page faults each time)."""

    __slots__ = ("f", "b")

    def __init__(self):
        self.f = self.b = None

    def _get(self, name, like, dtype):
        buf = getattr(self, name)
        rows, width = like.shape
        if buf is None or buf.shape[0] < rows or buf.shape[1] != width or buf.dtype != dtype:
            buf = torch.empty((rows, width), dtype=dtype, device=like.device)
            setattr(self, name, buf)
        return buf[:rows]

    def floats(self, like):
        return self._get("f", like, like.dtype)

    def bools(self, like):
        return self._get("b", like, torch.bool)


def _excl_sums(wl):
    """``(Σ_{c<k} w_c, Σ_{c>k} w_c)`` for every column ``k``, each a direct sum (no ``W − w_k`` cancellation)."""
    zero = wl.new_zeros(1)
    before = torch.cat([zero, torch.cumsum(wl, 0)[:-1]])
    after = torch.cat([torch.cumsum(wl.flip(0), 0).flip(0)[1:], zero])
    return before, after


def packet(xc, m, yl, hit, wl, lay: Layout, scratch: Scratch | None = None):
    """This rank's ``(rows, k)`` sums (see :class:`Layout`) given the global row maxima ``m``, and per row
    its first column equal to ``m`` (0 where it holds none)."""
    rows = int(xc.shape[0])
    out = torch.zeros((rows, lay.k), dtype=xc.dtype, device=xc.device)
    if lay.weighted and lay.eps:
        out[:, lay.W] = wl.sum()
    if lay.width == 0 or rows == 0:
        return out, torch.zeros(rows, dtype=torch.long, device=xc.device)
    scratch = Scratch() if scratch is None else scratch
    shift, finite = _shift(m)
    is_max = _max_mask(xc, m, finite, out=scratch.bools(xc))
    holds = is_max.any(-1)
    kl = is_max.view(torch.uint8).argmax(-1)  # the first maximum (argmax returns the first of ties)
    del is_max
    xy = xc.gather(1, yl[:, None]).squeeze(1)
    out[:, lay.XY] = torch.where(hit, xy, torch.zeros_like(xy))
    if lay.weighted:
        wy = wl[yl]
        out[:, lay.WY] = torch.where(hit, wy, torch.zeros_like(wy))
    e = torch.sub(xc, shift[:, None], out=scratch.floats(xc))
    if lay.eps:
        if lay.weighted:
            # 0·log 0 = 0: a class of weight 0 adds nothing even where its logit is −inf
            out[:, lay.SWX] = torch.where(wl == 0, torch.zeros_like(e), wl * e).sum(-1)
            before, after = _excl_sums(wl)
            out[:, lay.SWNM] = torch.where(holds, before[kl] + after[kl], wl.sum())
        else:
            out[:, lay.SWX] = e.sum(-1)
    e.exp_()
    out[:, lay.HOLD] = holds.to(xc.dtype)
    # D leaves out the first maximum's term, which is e^0 = 1 exactly: only the small terms (and the exact 1s of
    # tied maxima) are summed, with no rounding against that 1
    e.scatter_(1, kl[:, None], torch.where(holds, torch.zeros_like(xy), e.gather(1, kl[:, None]).squeeze(1))[:, None])
    out[:, lay.D] = e.sum(-1)
    return out, kl


class RowStats:
    """Per-row statistics from the global maxima and the summed packet; the same on every rank.

    ``loss`` is the per-row loss before sample weights and the reduction (0 on
    ignored rows, NaN on a counted row whose target is outside ``[0, V)``,
    which only ``validate=False`` lets through).
    """

    __slots__ = ("m", "shift", "finite", "h", "s", "s_m1", "lse", "wy", "wsum", "swnm", "valid", "bad", "loss")

    def __init__(self, m, P, y, valid, lay: Layout):
        self.m = m
        self.shift, self.finite = _shift(m)
        h, d = P[:, lay.HOLD], P[:, lay.D]
        self.h = h  # ranks holding a maximum (0 on a row whose maximum is not finite)
        self.s = d + h
        self.s_m1 = d + (h - 1.0)  # S − 1: h − 1 is an exact small integer, d keeps the small terms
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


def grad_rows(xc, th, st: RowStats, yl, hit, kl, wl, lay: Layout, scale, out=None):
    """∂loss/∂logits for this rank's columns of some rows (``scale``: the per-row factor, a scalar, or None).

    The core's formulas (``categorical._ce_terms``, ``SoftmaxParts.dual_grad``)
    with the global statistics, in two sweeps over the columns: every column
    gets ``(T + 2z·lse)·p_c − (ε/V)·w_c`` (``T = Σ_c a_c``, ``p = e/S``); then
    at most two columns per row are overwritten with their exact forms,
    computed per row: the target's and, with smoothing, the first maximum
    ``k`` (``kl``, from :func:`packet`) when one rank alone holds maxima.  At a
    maximum ``e = 1`` exactly, so ``1 − p = (S − 1)/S``: the target gradient
    ``−(1 − p_y)`` of a confident row is not the cancelling ``p_y − 1``, and
    with smoothing ``Σ_{c≠k} a_c`` is summed directly.  Elsewhere ``p ≤ 1/2``
    (or the row has no single maximum), where the plain form is exact enough.
    ``out`` (the rows' slice of the gradient, in the compute dtype) receives
    the result without a copy; it may be ``xc`` itself.
    """
    rows, width = (int(d) for d in xc.shape)
    dt = xc.dtype
    if width == 0 or rows == 0:
        return xc.new_zeros((rows, width)) if out is None else out
    one = torch.ones((), dtype=dt, device=xc.device)
    # per-row factor: ignored rows × 0 (0·NaN stays NaN, as the core's mask), the reduction's scale,
    # NaN for a counted target outside [0, V) (validate=False): never a number
    if scale is None:
        vs = torch.ones(rows, dtype=dt, device=xc.device)
    elif isinstance(scale, torch.Tensor):
        vs = scale.to(dt).expand(rows) if scale.ndim == 0 else scale.to(dt)
    else:
        vs = torch.full((rows,), float(scale), dtype=dt, device=xc.device)
    if st.valid is not None:
        vs = vs * st.valid.to(dt)
    vs = torch.where(st.bad, torch.full_like(vs, math.nan), vs)
    eps, V = lay.eps, lay.V
    wy = st.wy if st.wy is not None else one
    c1 = (1.0 - eps) * wy
    if eps:
        W = st.wsum if st.wsum is not None else torch.full_like(st.s, float(V))
        total = c1 + (eps / V) * W  # T = Σ_c a_c
    else:
        total = wy * one
    zl = 2.0 * lay.z * st.lse if lay.z else None
    s = st.s

    def chain_at(idx):  # d/dx s·tanh(x/s) at one column per row
        t = th.gather(1, idx[:, None]).squeeze(1)
        return 1.0 - t * t

    # -- the exact columns, per row (read before the sweep: ``out`` may be ``xc`` itself) ---------
    finite, m = st.finite, st.m
    xy = xc.gather(1, yl[:, None]).squeeze(1)
    y_max = hit & finite & (xy == m)  # the target is a maximum
    py = torch.exp(xy - st.shift) / s
    one_minus_pmax = st.s_m1 / s  # 1 − p at a maximum (its e is exactly 1)
    zy = 0.0 if zl is None else zl * py
    if not eps:
        vy = torch.where(y_max, wy * -one_minus_pmax, wy * (py - 1.0)) + zy
    else:
        # the first maximum k, when this rank alone holds the row's maxima: Σ_{c≠k} a_c − T·(1 − p_k)
        k_here = finite & (st.h == 1.0) & (xc.gather(1, kl[:, None]).squeeze(1) == m)
        y_is_k = hit & k_here & (yl == kl)
        swnm = st.swnm if st.swnm is not None else float(V) - st.h  # Σ_{c≠k} w_c
        off = (eps / V) * swnm  # Σ_{c≠k} a_c when k = y; plus c1 when k ≠ y
        wyc = (eps / V) * (wl[yl] if lay.weighted else one)
        vy = torch.where(y_is_k, off - total * one_minus_pmax, total * py - wyc - c1) + zy
        k_fix = k_here & ~y_is_k
        vk = (c1 + off) - total * one_minus_pmax
        if zl is not None:
            vk = vk + zl / s
        vk = vk * vs
        if th is not None:
            vk = vk * chain_at(kl)
    vy = vy * vs
    if th is not None:
        vy = vy * chain_at(yl)
    # -- the sweep: (T + 2z·lse)·p_c − (ε/V)·w_c, scaled, on every column -------------------------
    coef = total if zl is None else total + zl
    g = torch.sub(xc, st.shift[:, None], out=out).exp_()
    g.mul_(((coef / s) * vs)[:, None])
    if eps:
        gamma = (eps / V) * vs  # a_c = (ε/V)·w_c off the target
        if lay.weighted:
            g.addr_(gamma, wl, alpha=-1.0)
        else:
            g.sub_(gamma[:, None])
    if th is not None:
        g.mul_(th.mul_(th).neg_().add_(1.0))  # 1 − tanh², in th's buffer
    g.scatter_(1, yl[:, None], torch.where(hit, vy, g.gather(1, yl[:, None]).squeeze(1))[:, None])
    if eps:
        g.scatter_(1, kl[:, None], torch.where(k_fix, vk, g.gather(1, kl[:, None]).squeeze(1))[:, None])
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
