"""What the torch adapter computes, at the *plain* level: no autograd node, no functorch wrapper.

Everything here runs on ordinary tensors whose values can be read (the
library validates by reading values), inside ``autograd.Function.forward``
(see :mod:`crossentropy.torch._autograd`, which makes sure of that under
every transform).

Specs
-----
A computation is named by a *spec*, a string holding a Python literal (a
string so that it is hashable, a constant for ``torch.compile`` and the same
in every copy of this module; decoded once and cached):

``('loss', kind, reduction, ignore_index, label_smoothing, cdtype, out_dtype, need_grad)``
    inputs ``(x, target, weight, pos_weight)``; outputs ``(loss,)``.  ``kind`` is
    ``'ce' | 'nll' | 'bce' | 'bcel'``; ``cdtype`` the dtype computed in,
    ``out_dtype`` the loss's dtype (both PyTorch's rules, see ``functional``).
``('vjp', inner, mask)``
    inputs ``(*inputs(inner), *cotangents of outputs(inner))``; outputs the
    vector-Jacobian products w.r.t. the inputs where ``mask`` is true.
``('jvp', inner, tmask)``
    inputs ``(*inputs(inner), *tangents of the inputs where tmask)``; outputs
    the Jacobian-vector products, one per output of ``inner``.

:func:`value` computes a spec's outputs; :func:`graph` computes them as a
torch autograd graph of its inputs, which is what makes every derivative
order available: the VJP of a spec is ``autograd.grad`` of its graph, the JVP
the derivative of that VJP w.r.t. a dummy cotangent (the "double-VJP" trick).

First derivatives come from the library: the input gradient is the core's
analytic gradient (:func:`crossentropy.value_and_grad`, the fast kernels on
CPU float32/float64), itself written in torch ops and differentiable, so
second derivatives are its autograd derivative; target and class-weight
gradients are the autograd derivatives of the core's reference loss.
"""

from __future__ import annotations

import ast
import functools
import math
from typing import Any, Callable

import numpy as np
import torch

from .. import (
    binary_cross_entropy as _ce_bce,
    binary_cross_entropy_with_logits as _ce_bcel,
    cross_entropy as _ce_ce,
    nll_loss as _ce_nll,
    value_and_grad,
)
from .._errors import InvalidOptionError

__all__ = ["value", "graph", "decode", "out_meta", "n_in", "n_out", "register_device_kernel"]

_FNS: dict[str, Callable[..., Any]] = {"ce": _ce_ce, "nll": _ce_nll, "bce": _ce_bce, "bcel": _ce_bcel}
_DTYPES = {str(d).split(".")[-1]: d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
_HALF = (torch.float16, torch.bfloat16)
_NUMPY_DTYPES = (torch.float32, torch.float64)

# Per-device kernels (issue 11 adds a Triton one for "cuda"): device type ->
# fn(kind, x, target, weight, pos_weight, options, need_grad, grad_output) -> (loss, grad) or NotImplemented.
# Inputs are already in the compute dtype; options are the library's keyword options.
_DEVICE_KERNELS: dict = {}


def register_device_kernel(device_type: str, fn) -> None:
    """Use ``fn`` for the loss and its input gradient on ``device_type`` tensors.

    ``fn(kind, x, target, weight, pos_weight, options, need_grad, grad_output)``
    returns ``(loss, grad)`` (``grad`` ``None`` unless ``need_grad``) or
    ``NotImplemented`` to fall back to the library's reference code on the
    tensors.  ``kind`` is ``'ce' | 'nll' | 'bce' | 'bcel'``; ``options`` are
    :func:`crossentropy.cross_entropy`'s (etc.) keyword options; inputs are in
    the compute dtype.  Higher-order derivatives never use the kernel.
    """
    if fn is None:
        _DEVICE_KERNELS.pop(device_type, None)
    else:
        _DEVICE_KERNELS[device_type] = fn


# ---------------------------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def decode(spec: str):
    return ast.literal_eval(spec)


def n_in(s) -> int:
    if s[0] == "loss":
        return 4
    if s[0] == "vjp":
        return n_in(s[1]) + n_out(s[1])
    return n_in(s[1]) + sum(s[2])


def n_out(s) -> int:
    if s[0] == "loss":
        return 1
    if s[0] == "vjp":
        return sum(s[2])
    return n_out(s[1])


def class_dim(x) -> int:
    """PyTorch's class dimension: 1, or 0 for an unbatched ``(C,)`` input."""
    return class_dim_of(x.dim())


def out_meta(s, args):
    """``(shape, dtype)`` of each output of spec ``s`` (decoded) on ``args``."""
    if s[0] == "loss":
        kind, reduction, out_dtype = s[1], s[2], _DTYPES[s[6]]
        x = args[0]
        if reduction != "none":
            return [((), out_dtype)]
        if kind in ("ce", "nll"):
            d = class_dim(x)
            return [(tuple(n for i, n in enumerate(x.shape) if i != d), out_dtype)]
        return [(tuple(x.shape), out_dtype)]
    if s[0] == "vjp":
        k = n_in(s[1])
        return [(tuple(a.shape), a.dtype) for a, m in zip(args[:k], s[2]) if m]
    return out_meta(s[1], args[: n_in(s[1])])


# ---------------------------------------------------------------------------------------------
# the loss: library options from PyTorch's arguments
# ---------------------------------------------------------------------------------------------

def _is_prob(t) -> bool:
    return t.is_floating_point()


def options(kind, x, t, w, pw, ignore_index, label_smoothing, reduction) -> dict:
    """The library's keyword options equivalent to PyTorch's arguments."""
    if kind in ("ce", "nll"):
        index = not _is_prob(t)
        opts = {"axis": class_dim(x), "weight": w, "reduction": reduction,
                "ignore_index": ignore_index if index else None}
        if kind == "ce":
            opts["label_smoothing"] = label_smoothing
        return opts
    # PyTorch's BCE weight is elementwise and its 'mean' divides by numel: the
    # library's sample_weight with Keras's 'sum_over_batch_size' (the plain
    # 'mean' on an empty input, where PyTorch gives 0/0 = NaN).
    if reduction == "mean" and w is not None and x.numel() > 0:
        reduction = "sum_over_batch_size"
    opts = {"sample_weight": w, "reduction": reduction}
    if kind == "bce":
        opts["compat"] = "torch"  # each log clamped at -100, as PyTorch does
    else:
        opts["pos_weight"] = pw
    return opts


def _cast(a, dtype):
    """A floating tensor in the compute dtype (a differentiable cast); others as they are."""
    if a is None or not a.is_floating_point() or a.dtype == dtype:
        return a
    return a.to(dtype)


def _numeric_weight(a, dtype):
    # BCE's elementwise weight may be of any numeric dtype (PyTorch multiplies by it).
    if a is None or a.dtype == dtype:
        return a
    return a.to(dtype)


def _prepared(s, x, t, w, pw):
    """Inputs in the compute dtype and the library options, for spec ``s = ('loss', ...)``."""
    kind, reduction, ignore_index, label_smoothing, cdtype = s[1], s[2], s[3], s[4], _DTYPES[s[5]]
    xc, tc = _cast(x, cdtype), _cast(t, cdtype)
    wc, pwc = _numeric_weight(w, cdtype), _numeric_weight(pw, cdtype)
    return kind, xc, tc, options(kind, x, t, wc, pwc, ignore_index, label_smoothing, reduction)


def _loss_graph(s, xc, tc, opts):
    return _FNS[s[1]](xc, tc, **opts)


# ---------------------------------------------------------------------------------------------
# values (no autograd graph): the fast kernels where they apply
# ---------------------------------------------------------------------------------------------

def _np(a):
    return None if a is None else a.detach().contiguous().numpy()


def _from_np(a, dtype, device):
    a = np.asarray(a)
    if not a.flags.writeable or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a).copy()
    t = torch.from_numpy(a)
    if t.dtype != dtype or t.device != device:
        t = t.to(device=device, dtype=dtype)
    return t


def numpy_path(xc) -> bool:
    """Whether the NumPy route (the library's fast CPU kernels) applies to ``xc``."""
    return xc.device.type == "cpu" and xc.dtype in _NUMPY_DTYPES


def _loss_and_grad(s, x, t, w, pw, need_grad, grad_output):
    """Loss (out dtype) and input gradient (x's dtype, ``None`` unless asked) without a graph."""
    kind, xc, tc, opts = _prepared(s, x, t, w, pw)
    out_dtype = _DTYPES[s[6]]
    fn = _FNS[kind]
    go = grad_output
    if numpy_path(xc):
        # NumPy views without a copy: the library's fast CPU kernels.
        channels_first = kind == "ce" and xc.dim() > 2
        if channels_first:
            # (N, C, d1, ...): the kernels want the classes last and contiguous;
            # one transposing copy beats the reference path by about 2× (the
            # per-sample losses keep their (N, d1, ...) order).
            xc = xc.movedim(1, -1)
            tc = tc.movedim(1, -1) if _is_prob(tc) else tc
            opts["axis"] = -1
        args = (_np(xc), _np(tc))
        for k in ("weight", "sample_weight", "pos_weight"):
            if opts.get(k) is not None:
                opts[k] = _np(opts[k])
        if go is not None:
            go = float(go) if go.dim() == 0 else _np(_cast(go, xc.dtype))
        if need_grad:
            loss, g = value_and_grad(fn, *args, grad_output=go, **opts)
            g = _from_np(g, x.dtype, x.device)
            return _from_np(loss, out_dtype, x.device), (_unviewed(g.movedim(-1, 1)) if channels_first else g)
        return _from_np(fn(*args, **opts), out_dtype, x.device), None
    kernel = _DEVICE_KERNELS.get(xc.device.type)
    if kernel is not None:
        res = kernel(kind, xc, tc, opts.get("weight", opts.get("sample_weight")), opts.get("pos_weight"), opts,
                     need_grad, go)
        if res is not NotImplemented:
            loss, g = res
            return loss.to(out_dtype), (g.to(x.dtype) if need_grad else None)
    # Any other device or dtype: the library's reference code on the tensors.
    if go is not None:
        go = _cast(go, xc.dtype)
    if need_grad:
        loss, g = value_and_grad(fn, xc, tc, grad_output=go, **opts)
        return loss.to(out_dtype), g.to(x.dtype)
    return fn(xc, tc, **opts).to(out_dtype), None


def _unviewed(v):
    """The same memory and strides as the view ``v``, as a tensor of its own (a Function's
    output that is a view of a temporary confuses forward-mode AD)."""
    return v.new_empty(0).set_(v.untyped_storage(), v.storage_offset(), v.shape, v.stride())


def loss_value(s, x, t, w, pw):
    """``(loss, grad)`` for ``s = ('loss', ...)``: ``grad`` is the input gradient when
    ``need_grad`` (kept by the plain backward), else an empty tensor."""
    loss, g = _loss_and_grad(s, x, t, w, pw, s[7], None)
    return loss, (x.new_empty((0,)) if g is None else g)


def shares_memory(a, others) -> bool:
    """Whether ``a`` shares storage with any of ``others`` (an operator's outputs may not)."""
    if a.numel() == 0:
        return False
    ptr = a.untyped_storage().data_ptr()
    return any(o is not None and o.numel() and o.untyped_storage().data_ptr() == ptr for o in others)


def _fast_value(s, args):
    """Outputs of ``s`` from the kernels, or ``None`` where only a graph gives them."""
    if s[0] == "vjp" and s[1][0] == "loss" and s[2] == (True, False, False, False):
        x, t, w, pw, c = args
        return (_loss_and_grad(s[1], x, t, w, pw, True, c)[1],)
    if s[0] == "jvp" and s[1][0] == "loss" and s[2] == (True, False, False, False):
        # J·dx: every per-sample loss depends on its own sample only, so the
        # per-sample gradients (grad_output = 1) contracted with dx per sample.
        x, t, w, pw, dx = args
        inner = s[1]
        reduction = inner[2]
        ones = None if reduction != "none" else torch.ones(out_meta(inner, args)[0][0], dtype=x.dtype, device=x.device)
        g = _loss_and_grad(inner, x, t, w, pw, True, ones)[1]
        prod = g * dx.to(g.dtype)
        if reduction != "none":
            tan = prod.sum()
        elif inner[1] in ("ce", "nll"):
            tan = prod.sum(dim=class_dim(x))
        else:
            tan = prod
        return (_mean_of_nothing(inner, x, t, w, tan).to(_DTYPES[inner[6]]),)
    return None


def mean_denominator(kind, x, t, w, ignore_index, batch_dims=0):
    """PyTorch's 'mean' denominator, per example when the first ``batch_dims`` dims are a batch:
    Σ weight[target] (or the count) over non-ignored samples for class indices, the
    number of per-sample losses for probabilities, the element count for the BCEs."""
    keep = tuple(range(batch_dims, t.dim()))
    if kind in ("ce", "nll") and not _is_prob(t):
        valid = t != ignore_index
        if w is None:
            return valid.sum(dim=keep, dtype=torch.float64) if keep else valid.double()
        wy = torch.where(valid, w[torch.where(valid, t, torch.zeros_like(t))], torch.zeros((), dtype=w.dtype))
        return wy.sum(dim=keep, dtype=torch.float64) if keep else wy.double()
    ex = x.shape[batch_dims:]
    n = math.prod(ex) // (ex[class_dim_of(len(ex))] if kind == "ce" else 1)
    return torch.full(x.shape[:batch_dims], float(n), dtype=torch.float64)


def class_dim_of(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def _mean_of_nothing(base, x, t, w, tangent):
    """PyTorch's forward AD divides the tangent by the 'mean' denominator even
    when that is 0 (all targets ignored, zero total weight, empty input): the
    tangent of a 0/0 loss is then NaN (±inf), although its backward gives 0.
    The library's gradient keeps 0 there; mirror PyTorch's tangent."""
    if base[2] != "mean":
        return tangent
    total = mean_denominator(base[1], x, t, w, base[3])
    return tangent / 0.0 if bool(total == 0) else tangent


# ---------------------------------------------------------------------------------------------
# vmap: a whole batch of examples in one kernel call
# ---------------------------------------------------------------------------------------------

_X_ONLY = (True, False, False, False)


def batched_value(s, args, dims, batch_size):
    """Outputs of spec ``s`` for every example of a vmap batch, stacked on dim 0, or
    ``None`` where only the per-example loop applies.

    Handles the loss and its input VJP (vmap of the loss, per-example gradients)
    with the weights shared: the examples' samples are folded into one batch of
    per-sample losses (``reduction='none'``, one kernel call), then reduced per
    example as PyTorch reduces (sum, or divided by :func:`mean_denominator`).
    """
    if s[0] == "loss":
        base, ct = s, None
    elif s[0] == "vjp" and s[1][0] == "loss" and s[2] == _X_ONLY:
        base = s[1]
        ct = args[4] if dims[4] is None else args[4].movedim(dims[4], 0)
        if dims[4] is None:
            ct = ct.expand(batch_size, *ct.shape)
    else:
        return None
    x, t, w, pw = args[:4]
    if dims[2] is not None or dims[3] is not None:
        return None
    kind, reduction, ignore_index = base[1], base[2], base[3]
    X = x.movedim(dims[0], 0) if dims[0] is not None else x.expand(batch_size, *x.shape)
    T = t.movedim(dims[1], 0) if dims[1] is not None else t.expand(batch_size, *t.shape)
    ex = tuple(X.shape[1:])
    if kind in ("ce", "nll") and len(ex) > 1:
        # (B, N, C, d...) -> (B·N, C, d...): the examples' samples side by side
        Xf, Tf = X.reshape(-1, *ex[1:]), T.reshape(-1, *T.shape[2:])
    else:
        Xf, Tf = X, T  # (B, C) with class dim 1 for unbatched examples; elementwise for the BCEs
    per_sample = (batch_size, *(ex[:class_dim_of(len(ex))] + ex[class_dim_of(len(ex)) + 1:])) \
        if kind in ("ce", "nll") else (batch_size, *ex)
    need_grad = base[7] or ct is not None
    cdtype = _DTYPES[base[5]]
    if need_grad:
        if reduction == "none":
            go = torch.ones(per_sample, dtype=cdtype, device=x.device) if ct is None else ct.to(cdtype)
        else:
            scale = torch.ones(batch_size, dtype=torch.float64) if ct is None else ct.double().reshape(batch_size)
            if reduction == "mean":
                den = mean_denominator(kind, X, T, w, ignore_index, batch_dims=1)
                # the library keeps a zero divisor from turning the zero gradient into 0/0
                scale = scale / torch.where(den == 0, torch.ones_like(den), den)
            go = scale.to(cdtype).reshape(batch_size, *[1] * (len(per_sample) - 1)).expand(per_sample)
        go = go.reshape(per_sample) if Xf is X else go.reshape(-1, *per_sample[2:])
    else:
        go = None
    none = base[:2] + ("none",) + base[3:]
    loss, g = _loss_and_grad(none, Xf, Tf, w, pw, need_grad, go)
    if ct is not None:
        return (g.reshape(X.shape),)
    loss = loss.reshape(per_sample)
    if reduction != "none":
        # (an empty dim tuple would sum over everything)
        total = loss.double() if loss.dim() == 1 else loss.sum(dim=tuple(range(1, loss.dim())), dtype=torch.float64)
        if reduction == "mean":
            total = total / mean_denominator(kind, X, T, w, ignore_index, batch_dims=1)
        loss = total.to(loss.dtype)
    grad = g.reshape(X.shape) if need_grad else X.new_empty((batch_size, 0))
    return loss, grad


def _leaf(a):
    if a is None:
        return None
    a = a.detach()
    return a.requires_grad_() if a.is_floating_point() else a


def value(s, args):
    """The outputs of spec ``s`` (decoded) on plain tensors ``args``, without a graph."""
    if s[0] == "loss":
        return (loss_value(s, *args)[0],)
    fast = _fast_value(s, args)
    if fast is not None:
        return fast
    with torch.enable_grad():
        outs = graph(s, tuple(_leaf(a) for a in args), create=False)
    return tuple(o.detach() for o in outs)


# ---------------------------------------------------------------------------------------------
# graphs: the same outputs as autograd functions of the inputs
# ---------------------------------------------------------------------------------------------

def graph(s, args, create=True):
    """Outputs of spec ``s`` as a torch autograd graph of ``args`` (grad mode on).

    ``create=False`` at the outermost level only: its outputs are not differentiated.
    """
    if s[0] == "loss":
        kind, xc, tc, opts = _prepared(s, *args)
        return (_loss_graph(s, xc, tc, opts).to(_DTYPES[s[6]]),)
    if s[0] == "vjp":
        if s[1][0] == "loss":
            return _loss_vjp_graph(s[1], s[2], args, create)
        return _vjp_graph(s[1], s[2], args, create)
    return _jvp_graph(s[1], s[2], args, create)


def _zeros(shape_dtype, like):
    shape, dtype = shape_dtype
    return torch.zeros(shape, dtype=dtype, device=like.device)


def _vjp_graph(inner, mask, args, create):
    k = n_in(inner)
    q, cts = args[:k], args[k:]
    outs = graph(inner, q, create=True)
    wrt = [q[i] for i, m in enumerate(mask) if m]
    pairs = [(o, c.to(o.dtype)) for o, c in zip(outs, cts) if c is not None and o.requires_grad]
    if not pairs:
        return tuple(torch.zeros_like(a) for a in wrt)
    grads = torch.autograd.grad([o for o, _ in pairs], wrt, [c for _, c in pairs], create_graph=create,
                                allow_unused=True, materialize_grads=True)
    return tuple(grads)


def _jvp_graph(inner, tmask, args, create):
    # J·v = d/du <Jᵀu, v> for a dummy cotangent u: reverse mode twice, so any
    # spec with a graph has a JVP, and the JVP itself a graph.
    k = n_in(inner)
    q, tangents = args[:k], args[k:]
    meta = out_meta(inner, q)
    like = q[0]
    u = [_zeros(m, like).requires_grad_() for m in meta]
    vs = graph(("vjp", inner, tmask), (*q, *u), create=True)
    total = None
    for v, dv in zip(vs, tangents):
        term = (v * dv.to(v.dtype)).sum()
        total = term if total is None else total + term
    if total is None or not total.requires_grad:
        outs = tuple(_zeros(m, like) for m in meta)
    else:
        outs = torch.autograd.grad(total, u, create_graph=create, allow_unused=True, materialize_grads=True)
    if inner[0] == "loss":
        outs = (_mean_of_nothing(inner, q[0], q[1], q[2], outs[0]),)
    return tuple(outs)


_NO_WEIGHT_GRAD = {
    "ce": "cross_entropy with class-index targets",
    "nll": "nll_loss",
    "bce": "binary_cross_entropy",
    "bcel": "binary_cross_entropy_with_logits",
}


def no_derivative_error(kind, name):
    return InvalidOptionError(
        f"{_NO_WEIGHT_GRAD[kind]} is not differentiable with respect to {name} (PyTorch does not implement "
        f"that derivative either); pass {name}.detach(), or use class-probability targets with cross_entropy "
        f"for a differentiable class weight"
    )


def _loss_vjp_graph(base, mask, args, create):
    """VJPs of the loss: the analytic input gradient, and target / weight derivatives."""
    x, t, w, pw, c = args
    kind, xc, tc, opts = _prepared(base, x, t, w, pw)
    fn = _FNS[kind]
    cdtype = xc.dtype
    cc = c.to(cdtype)
    outs = []
    if mask[0]:
        g = value_and_grad(fn, xc, tc, grad_output=cc, **opts)[1]
        outs.append(g.to(x.dtype))
    if mask[1]:
        outs.append(_target_vjp(base, fn, xc, tc, opts, cc, create).to(t.dtype))
    if mask[2]:
        if kind != "ce" or not _is_prob(t):
            raise no_derivative_error(kind, "weight")
        outs.append(_weight_vjp(base, fn, xc, tc, opts, cc, create).to(w.dtype))
    if mask[3]:
        raise no_derivative_error(kind, "pos_weight")
    return tuple(outs)


# The core guards 0·log p only where log p is not finite, so autograd of the
# reference gives ∂L/∂t = −w log p and ∂L/∂w = −t log p at zero coefficients too.

def _target_vjp(base, fn, xc, tc, opts, cc, create):
    """∂L/∂target · c, by autograd of the library's reference code on the tensors."""
    t0 = tc.detach().requires_grad_()
    loss = fn(xc, t0, **opts)
    (g,) = torch.autograd.grad(loss, t0, cc.to(loss.dtype), create_graph=create)
    return g


def _weight_vjp(base, fn, xc, tc, opts, cc, create):
    """∂L/∂weight · c for probability targets, by autograd of the library's reference code."""
    w0 = opts["weight"].detach().requires_grad_()
    loss = fn(xc, tc, **dict(opts, weight=w0))
    (g,) = torch.autograd.grad(loss, w0, cc.to(loss.dtype), create_graph=create)
    return g


def triton_kernel(kind, x, t, w, pw, opts, need_grad, grad_output):
    """CUDA tensors: the Triton in-chunk kernel (:func:`crossentropy._kernels.triton.cross_entropy_cuda`,
    one launch for the loss and the input gradient) for ``cross_entropy`` with class indices and the
    classes on the last axis of a 2-D input; ``NotImplemented`` otherwise (the reference code runs)."""
    if kind != "ce" or x.dim() != 2 or t.is_floating_point() or opts.get("axis", 1) not in (1, -1):
        return NotImplemented
    from .._kernels.triton import cross_entropy_cuda

    return cross_entropy_cuda(x, t, axis=-1, weight=w, ignore_index=opts.get("ignore_index"),
                              label_smoothing=opts.get("label_smoothing", 0.0), reduction=opts["reduction"],
                              grad_output=grad_output, need_grad=need_grad)


register_device_kernel("cuda", triton_kernel)
