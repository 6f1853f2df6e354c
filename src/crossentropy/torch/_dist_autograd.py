"""The autograd Functions of the vocabulary-parallel losses.

``LogitsCE``: forward = one pass for the row maxima, all-reduce MAX, one pass
for the packet, all-reduce SUM, the row statistics (O(N), kept for the
backward); backward = one pass writing the shard's gradient, no collective.
The passes go over chunks of rows, so that the temporaries stay within
``memory_budget`` whatever the batch.

``LinearCE``: for each chunk of rows, ``z = h Wᵣᵀ + bᵣ`` (never more than one
chunk of logits), then the same two collectives on the chunk's rows.  With
``reduction='sum'``/``'mean'`` the chunk's gradient is formed right there
and pushed through the two gradient matmuls (the backward only scales them by
the incoming gradient and the mean's divisor: three matmuls in all, as
:mod:`crossentropy.linear`); with ``'none'`` the incoming gradient is per row
and only known in the backward, which recomputes each chunk's logits from the
saved row statistics (no collective) — four matmuls.

First derivatives only: the backward's result, differentiated again
(``create_graph=True`` then a second ``backward``), raises
:class:`~crossentropy._errors.InvalidOptionError`, and so does forward-mode
AD; a second derivative would need its own collectives.
"""

from __future__ import annotations

import torch

from .._errors import InvalidOptionError
from ._dist_math import RowStats, Scratch, capped, grad_rows, local_max, packet, reduce_rows, target_columns

__all__ = ["LogitsCE", "LinearCE", "first_order_only"]


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on ``g`` whose derivative raises: marks a gradient that must not be differentiated again.

    The anchors (the loss's differentiable inputs) make the result require
    grad, so that any use of it in a second backward reaches this node
    instead of treating the gradient as a constant (a silently wrong second
    derivative).
    """

    @staticmethod
    def forward(ctx, fname, g, *anchors):
        ctx.fname = fname
        return g.view_as(g)

    @staticmethod
    def backward(ctx, _):
        raise InvalidOptionError(
            f"{ctx.fname}: second derivatives are not supported (the gradient was differentiated again after "
            "backward(create_graph=True)); a second derivative of a vocabulary-parallel loss needs collectives "
            "of its own, which this function does not make")


def first_order_only(g, fname, anchors):
    """``g``, or (under ``create_graph=True``) ``g`` behind a node that refuses a second derivative."""
    if g is None or not torch.is_grad_enabled():
        return g
    anchors = [a for a in anchors if a is not None and a.requires_grad]
    return _FirstOrderOnly.apply(fname, g, *anchors) if anchors else g


def _no_forward_mode(fname):
    raise InvalidOptionError(f"{fname}: forward-mode AD (torch.autograd.forward_ad, torch.func.jvp) is not "
                             "supported; use reverse mode (backward)")


def _finish_value(p, loss):
    value = loss.reshape(p.shape) if p.reduction == "none" else loss
    return value.to(p.dtype)


def _row_scale(p, scale, div, go):
    """Per-row (or scalar) factor of the gradient: sample weight / divisor × incoming gradient."""
    if p.reduction == "none":
        go = go.reshape(-1).to(p.cdtype)
        return go if scale is None else scale * go
    f = go.to(p.cdtype)
    if div is not None:
        f = f / div
    return f if scale is None else scale * f


class LogitsCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        lay, comm = p.layout, p.comm
        x2 = x.reshape(p.N, p.width)
        chunks = p.chunks()
        m = torch.empty(p.N, dtype=p.cdtype, device=x.device)
        for i0, i1 in chunks:
            m[i0:i1] = local_max(capped(x2[i0:i1].to(p.cdtype), p.softcap)[0])
        comm.max_(m)  # collective 1: N numbers
        yl, hit = target_columns(p.y, p.valid, lay)
        P = torch.empty((p.N, lay.k), dtype=p.cdtype, device=x.device)
        kl = torch.empty(p.N, dtype=torch.long, device=x.device)  # each row's first maximum here (for the backward)
        scratch = Scratch()
        for i0, i1 in chunks:
            xc = capped(x2[i0:i1].to(p.cdtype), p.softcap)[0]
            P[i0:i1], kl[i0:i1] = packet(xc, m[i0:i1], yl[i0:i1], hit[i0:i1], p.w_local, lay, scratch)
        del scratch
        comm.sum_(P)  # collective 2: N × k numbers
        st = RowStats(m, P, p.y, p.valid, lay)
        value, scale, div = reduce_rows(st.loss, reduction=p.reduction, sw=p.sw, valid=p.valid, wy=st.wy,
                                        num_items=p.num_items)
        ctx.p, ctx.st, ctx.scale, ctx.div, ctx.yl, ctx.hit, ctx.kl = p, st, scale, div, yl, hit, kl
        ctx.save_for_backward(x)
        return _finish_value(p, value)

    @staticmethod
    def backward(ctx, go):
        (x,) = ctx.saved_tensors
        p, st, lay = ctx.p, ctx.st, ctx.p.layout
        with torch.no_grad():
            scale = _row_scale(p, ctx.scale, ctx.div, go)
            x2 = x.reshape(p.N, p.width)
            grad = torch.empty((p.N, p.width), dtype=x.dtype, device=x.device)
            direct = grad.dtype == p.cdtype  # half precision computes in float32: one copy per chunk
            for i0, i1 in p.chunks():
                xc, th = capped(x2[i0:i1].to(p.cdtype), p.softcap)
                s = scale[i0:i1] if scale.ndim else scale
                g = grad_rows(xc, th, st.rows(i0, i1), ctx.yl[i0:i1], ctx.hit[i0:i1], ctx.kl[i0:i1], p.w_local, lay,
                              s, out=grad[i0:i1] if direct else None)
                if not direct:
                    grad[i0:i1] = g
        return first_order_only(grad.reshape(x.shape), p.fname, (x,)), None

    @staticmethod
    def jvp(ctx, *tangents):
        _no_forward_mode("vocab_parallel_cross_entropy")


def _logits_chunk(h2, W, b, i0, i1, p):
    """This rank's (capped) logits of rows [i0, i1) in the compute dtype, and tanh(z/s)."""
    hc = h2[i0:i1]
    z = torch.addmm(b, hc, W.t()) if b is not None else hc @ W.t()
    return capped(z.to(p.cdtype), p.softcap)


class _Grads:
    """∂hidden, ∂weight_shard, ∂bias_shard, accumulated chunk by chunk (unscaled by the reduction)."""

    def __init__(self, h2, W, need_h, need_w, need_b, cdtype):
        N, D = h2.shape
        V = W.shape[0]
        self.dh = torch.zeros((N, D), dtype=h2.dtype, device=h2.device) if need_h else None
        # ∂W sums over every chunk: kept in the compute dtype (float32 for half precision)
        self.dW = torch.zeros((V, D), dtype=cdtype, device=W.device) if need_w else None
        self.db = torch.zeros((V,), dtype=cdtype, device=W.device) if need_b else None

    def add(self, g, h2, W, i0, i1):
        gd = g.to(W.dtype)
        if self.dh is not None:
            torch.mm(gd, W, out=self.dh[i0:i1])
        if self.dW is not None:
            if self.dW.dtype == W.dtype:
                self.dW.addmm_(gd.t(), h2[i0:i1])  # in place: no (V_r × D) temporary
            else:
                self.dW.add_(gd.t() @ h2[i0:i1])  # half precision: the matmul's speed, a float32 sum
        if self.db is not None:
            self.db.add_(g.sum(0))


class LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, b, p):
        lay, comm = p.layout, p.comm
        h2 = h.reshape(p.N, p.D)
        need = ctx.needs_input_grad[:3]
        need = (need[0], need[1], need[2] and b is not None)
        eager = any(need) and p.reduction != "none"
        grads = _Grads(h2, W, *need, p.cdtype) if eager else None
        yl, hit = target_columns(p.y, p.valid, lay)
        m = torch.empty(p.N, dtype=p.cdtype, device=h.device)
        P = torch.empty((p.N, lay.k), dtype=p.cdtype, device=h.device)
        kl = torch.empty(p.N, dtype=torch.long, device=h.device)
        scratch = Scratch()
        for i0, i1 in p.chunks():
            xc, th = _logits_chunk(h2, W, b, i0, i1, p)
            mc = comm.max_(local_max(xc))  # collective: rows numbers
            Pc, kc = packet(xc, mc, yl[i0:i1], hit[i0:i1], p.w_local, lay, scratch)
            comm.sum_(Pc)  # collective: rows × k numbers
            m[i0:i1], P[i0:i1], kl[i0:i1] = mc, Pc, kc
            if eager:
                st = RowStats(mc, Pc, p.y[i0:i1], None if p.valid is None else p.valid[i0:i1], lay)
                sw = None if p.sw is None else p.sw[i0:i1]
                # written over the chunk's logits (our own buffer): no second rows × V_r buffer
                g = grad_rows(xc, th, st, yl[i0:i1], hit[i0:i1], kc, p.w_local, lay, sw, out=xc)
                del xc, th
                grads.add(g, h2, W, i0, i1)
                del g
        del scratch
        st = RowStats(m, P, p.y, p.valid, lay)
        value, scale, div = reduce_rows(st.loss, reduction=p.reduction, sw=p.sw, valid=p.valid, wy=st.wy,
                                        num_items=p.num_items)
        ctx.p, ctx.need, ctx.eager, ctx.grads = p, need, eager, grads
        ctx.st, ctx.scale, ctx.div, ctx.yl, ctx.hit, ctx.kl = st, scale, div, yl, hit, kl
        ctx.save_for_backward(h, W, b)  # references, not copies (the eager path keeps them as anchors)
        return _finish_value(p, value)

    @staticmethod
    def backward(ctx, go):
        p, need = ctx.p, ctx.need
        h, W, b = ctx.saved_tensors
        with torch.no_grad():
            if ctx.eager and ctx.grads is not None:
                # in place; a second backward (retain_graph=True) recomputes, as the 'none' path does
                grads = ctx.grads
                ctx.grads = None
                f = _row_scale(p, None, ctx.div, go)  # a scalar: the chunks' gradients were formed with it = 1
                for name in ("dh", "dW", "db"):
                    t = getattr(grads, name)
                    if t is not None:
                        t.mul_(f.to(t.dtype))
                dh, dW, db = grads.dh, grads.dW, grads.db
            else:
                h2 = h.reshape(p.N, p.D)
                scale = _row_scale(p, ctx.scale, ctx.div, go)
                grads = _Grads(h2, W, *need, p.cdtype)
                for i0, i1 in p.chunks():
                    xc, th = _logits_chunk(h2, W, b, i0, i1, p)
                    g = grad_rows(xc, th, ctx.st.rows(i0, i1), ctx.yl[i0:i1], ctx.hit[i0:i1], ctx.kl[i0:i1],
                                  p.w_local, p.layout, scale[i0:i1] if scale.ndim else scale, out=xc)
                    del xc, th
                    grads.add(g, h2, W, i0, i1)
                    del g
                dh, dW, db = grads.dh, grads.dW, grads.db
            if dh is not None and p.reduce_hidden_grad:
                p.comm.sum_(dh)  # backward collective: N × D numbers (hidden is replicated: Σ over ranks)
            out = (None if dh is None else dh.reshape(h.shape),
                   None if dW is None else dW.to(W.dtype),
                   None if db is None else db.to(W.dtype))
        return (*(first_order_only(t, p.fname, (h, W, b)) for t in out), None)

    @staticmethod
    def jvp(ctx, *tangents):
        _no_forward_mode("vocab_parallel_linear_cross_entropy")
