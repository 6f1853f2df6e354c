"""The autograd wiring of the torch adapter.

``_Loss`` computes ``(loss, input gradient)`` in one call of the library (the
fast CPU kernels for float32/float64); its backward is ``gradient × incoming
gradient`` when autograd does not need the backward's own derivative (the
common training step), and otherwise an ``_Lifted`` call, a Function that
evaluates a derivative *spec* (see :mod:`crossentropy.torch._compute`) and is
itself differentiable: its backward and its ``jvp`` are again ``_Lifted``
calls of the derived specs, so every order of derivative, in reverse and
forward mode, is available.

Why this works under every transform: ``torch.func`` (``grad``, ``jvp``,
``jacrev``, ``jacfwd``, ``hessian``) runs an ``autograd.Function``'s forward on
the unwrapped tensors of the level below, so the forward always sees plain
tensors whose values the library can read and validate; ``vmap`` calls the
Functions' ``vmap`` rules, which work on plain tensors too (one batched kernel
call where that applies, else one call per example); forward-mode AD calls
``jvp``; the legacy ``torch._vmap_internals.vmap`` of gradcheck's batched checks
is handled by linearity (below).

``torch.compile``: Dynamo cannot trace a Function that defines ``jvp``, nor the
library's value-reading code.  While it traces, the loss is therefore the
opaque custom operator ``crossentropy::evaluate`` (shape-only fake
implementation, so ``fullgraph=True`` works) with the same backward formulas
registered as its autograd; under a ``torch.func`` transform the eager
Functions run (see :func:`_compiling`).
"""

from __future__ import annotations

import math

import torch

from .._errors import InvalidOptionError
from ._compute import (_leaf, batched_value, class_dim, decode, graph, loss_value, n_in, out_meta, shares_memory,
                       value)

__all__ = ["apply_loss", "apply_lifted"]


def _compiling() -> bool:
    """Dynamo is tracing, outside any functorch transform.

    Under a transform the eager Functions are used even while compiling: an
    operator's registered autograd does not support ``torch.func``, and Dynamo
    would inline a Function's forward there without its backward.  Asking for
    the functorch level makes Dynamo break the graph at this point when a
    transform is active (it cannot trace the level), so the transform runs
    eagerly (correct values; ``fullgraph=True`` raises instead).
    """
    return torch.compiler.is_compiling() and torch._C._functorch.maybe_current_level() is None


def apply_loss(spec: str, x, t, w, pw):
    """The loss of ``spec = ('loss', ...)`` (a tensor with an autograd history)."""
    if _compiling():
        return _op(spec, (x, t, w, pw))[0]
    return _Loss.apply(spec, x, t, w, pw)[0]


def apply_lifted(spec: str, *args):
    """The outputs of a derived spec, as a differentiable tuple."""
    if _compiling():
        return _op(spec, args)
    if _legacy_vmap():
        batched = [i for i, a in enumerate(args) if _legacy_batched(a)]
        if batched:
            return _linear_in_batched(spec, args, batched)
    return _Lifted.apply(spec, *args)


# The legacy vmap (torch._vmap_internals, which gradcheck's check_batched_grad and
# check_batched_forward_grad use) does not know autograd.Function's vmap rule: it
# hands the Function batched tensors whose values cannot be read.  It only ever
# batches cotangents / tangents, in which a derivative is linear, and PyTorch's
# own operations (autograd included) batch: evaluate the spec's graph with the
# batched arguments left as they are (nothing reads their values) and the other
# arguments as plain leaves.

def _legacy_vmap() -> bool:
    return "VmapMode" in str(torch._C._dispatch_tls_local_include_set())


def _legacy_batched(a) -> bool:
    return a is not None and "Batched" in str(torch._C._dispatch_keys(a)).replace("FuncTorchBatched", "")


def _linear_in_batched(spec, args, batched):
    s = decode(spec)
    first = n_in(s[1]) if s[0] != "loss" else len(args)  # vjp: cotangents after the inputs; jvp: tangents
    if any(i < first for i in batched):
        raise InvalidOptionError(
            "the legacy torch._vmap_internals.vmap can batch only the cotangents / tangents of "
            "crossentropy.torch's losses; use torch.func.vmap, which supports every argument"
        )
    if torch.is_grad_enabled() and any(a is not None and a.requires_grad for i, a in enumerate(args)
                                       if i not in batched):
        raise InvalidOptionError(
            "a derivative of a derivative computed under the legacy torch._vmap_internals.vmap is not "
            "supported by crossentropy.torch; use torch.func.vmap"
        )
    if s[0] == "vjp":
        # autograd.grad batches its grad_outputs under the legacy vmap
        with torch.enable_grad():
            leaves = tuple(a if i in batched else _leaf(a) for i, a in enumerate(args))
            return tuple(graph(s, leaves, create=False))
    # jvp: J·v, row by row of J (each row a plain VJP with a one-hot cotangent),
    # contracted with the batched tangents (autograd.grad of a batched output is
    # not supported under the legacy vmap)
    inner, tmask = s[1], s[2]
    q, tangents = args[:first], args[first:]
    meta = out_meta(inner, q)
    vjp = repr(("vjp", inner, tmask))
    outs = []
    for k, (shape, dtype) in enumerate(meta):
        rows = []
        for j in range(math.prod(shape)):
            cts = [torch.zeros(sh, dtype=dt, device=q[0].device) for sh, dt in meta]
            cts[k].view(-1)[j] = 1
            row = value(decode(vjp), (*q, *cts))
            rows.append(sum((r * tg.to(r.dtype)).sum() for r, tg in zip(row, tangents)).to(dtype))
        outs.append(torch.stack(rows).reshape(shape) if rows else torch.zeros(shape, dtype=dtype))
    return tuple(outs)


def _float_mask(flags, args):
    return tuple(bool(f) and a is not None and a.is_floating_point() for f, a in zip(flags, args))


def _scatter(values, mask):
    it = iter(values)
    return tuple(next(it) if m else None for m in mask)


def _vjp_spec(spec: str, mask) -> str:
    return f"('vjp', {spec}, {mask!r})"


def _jvp_spec(spec: str, tmask) -> str:
    return f"('jvp', {spec}, {tmask!r})"


def _base_spec(spec: str) -> str:
    # Derivatives of the loss do not depend on whether the forward kept its gradient.
    s = decode(spec)
    return repr(s[:7] + (False,)) if s[7] else spec


def _batched(apply, info, in_dims, spec, args, empty):
    """vmap rule: one call per batch entry on plain tensors, stacked along dim 0."""
    dims = in_dims[1:]
    if info.batch_size == 0:
        outs = empty(spec, args, dims)
        return outs, (0,) * len(outs)
    if not _tracked(args):
        outs = batched_value(decode(spec), args, dims, info.batch_size)
        if outs is not None:
            return outs, (0,) * len(outs)
    results = []
    for b in range(info.batch_size):
        results.append(apply(spec, *[a if d is None or a is None else a.select(d, b) for a, d in zip(args, dims)]))
    outs = tuple(torch.stack(col) for col in zip(*results))
    return outs, (0,) * len(outs)


def _tracked(args) -> bool:
    """Whether autograd (reverse or forward mode) at this level follows any argument:
    then the per-example calls of the Function keep the history; the batched
    evaluation does not."""
    if torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in args):
        return True
    # inside a forward_ad.dual_level() any argument may carry a tangent
    return torch.autograd.forward_ad._current_level >= 0


def _example(args, dims):
    return [a if d is None or a is None else a.new_empty(a.shape[:d % a.dim()] + a.shape[d % a.dim() + 1:])
            for a, d in zip(args, dims)]


def _empty_loss(spec, args, dims):
    s = decode(spec)
    ex = _example(args, dims)
    (shape, dtype), = out_meta(s, ex)
    x = ex[0]
    outs = (x.new_empty((0, *shape), dtype=dtype), x.new_empty((0, *(x.shape if s[7] else (0,)))))
    return outs


def _empty_lifted(spec, args, dims):
    ex = _example(args, dims)
    return tuple(ex[0].new_empty((0, *shape), dtype=dtype) for shape, dtype in out_meta(decode(spec), ex))


# ---------------------------------------------------------------------------------------------
# backward formulas, shared by the Functions (eager) and the operator (compiled)
# ---------------------------------------------------------------------------------------------

def _loss_backward(spec, x, t, w, pw, grad, mask, g):
    """Gradients for ``(x, t, w, pw)`` of ``('loss', ...)`` given the cotangent ``g``."""
    if g is None or not any(mask):
        return None, None, None, None
    s = decode(spec)
    if mask == (True, False, False, False) and s[7] and not torch.is_grad_enabled():
        # The plain training step: nothing differentiates this backward, so the
        # gradient that the forward computed (in the same kernel pass) is scaled.
        if s[2] == "none" and s[1] in ("ce", "nll"):
            g = g.unsqueeze(class_dim(x))
        return (grad * g).to(x.dtype), None, None, None
    outs = apply_lifted(_vjp_spec(_base_spec(spec), mask), x, t, w, pw, g)
    return _scatter(outs, mask)


def _lifted_backward(spec, args, mask, cts):
    if not any(mask) or all(c is None for c in cts):
        return (None,) * len(args)
    return _scatter(apply_lifted(_vjp_spec(spec, mask), *args, *cts), mask)


def _tangent_mask(tangents, args):
    return _float_mask([tg is not None for tg in tangents], args)


# ---------------------------------------------------------------------------------------------
# eager: the Functions
# ---------------------------------------------------------------------------------------------

class _Fast(torch.autograd.Function):
    """``Function.apply`` without its per-call ``inspect.signature`` (about 30 µs).

    PyTorch binds default arguments with ``inspect`` on every call of a Function
    that defines ``setup_context``; ours have no defaults, so outside functorch
    transforms the C implementation is called directly, as ``Function.apply``
    itself does after binding (dead functorch wrappers unwrapped first, as there).
    """

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        if any(a is not None and not isinstance(a, str) and _is_wrapped(a) for a in args):
            args = _unwrap_dead(args)
        return super(torch.autograd.Function, cls).apply(*args)


_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _unwrap_dead(args):
    from torch._functorch.utils import unwrap_dead_wrappers

    return unwrap_dead_wrappers(args)

class _Loss(_Fast):
    """``(loss, input gradient)``; the gradient output is non-differentiable."""

    @staticmethod
    def forward(spec, x, t, w, pw):
        return _loss_forward(spec, x, t, w, pw)

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, x, t, w, pw = inputs
        ctx.spec = spec
        # Inputs without a tangent / outputs without a cotangent arrive as None
        # (not zeros): a zero tangent for a weight is not a request for its derivative.
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, t, w, pw, output[1])
        ctx.save_for_forward(x, t, w, pw)

    @staticmethod
    def backward(ctx, g, _g_grad):
        x, t, w, pw, grad = ctx.saved_tensors
        mask = _float_mask(ctx.needs_input_grad[1:], (x, t, w, pw))
        return (None, *_loss_backward(ctx.spec, x, t, w, pw, grad, mask, g))

    @staticmethod
    def jvp(ctx, _spec_t, *tangents):
        args = ctx.saved_tensors
        tmask = _tangent_mask(tangents, args)
        if not any(tmask):
            return None, None
        (out,) = apply_lifted(_jvp_spec(_base_spec(ctx.spec), tmask), *args,
                              *[tg for tg, m in zip(tangents, tmask) if m])
        return out, None

    @staticmethod
    def vmap(info, in_dims, spec, x, t, w, pw):
        return _batched(_apply_loss_pair, info, in_dims, spec, (x, t, w, pw), _empty_loss)


# The Functions run while compiling only under a functorch transform, where
# Dynamo falls back to eager; it would still trace into the library's
# value-reading code frame by frame (slowly, with a graph break at each read),
# so there the forwards are hidden from it with torch.compiler.disable.  The
# wrappers are made on first use: creating one imports torch._dynamo (and with
# it triton, when installed), which importing this module must not do.
_HIDDEN: dict = {}


def _hidden(fn):
    h = _HIDDEN.get(fn)
    if h is None:
        h = _HIDDEN[fn] = torch.compiler.disable(fn)
    return h


def _loss_forward_impl(spec, x, t, w, pw):
    return loss_value(decode(spec), x, t, w, pw)


def _lifted_forward_impl(spec, args):
    return value(decode(spec), args)


def _loss_forward(spec, x, t, w, pw):
    if torch.compiler.is_compiling():
        return _hidden(_loss_forward_impl)(spec, x, t, w, pw)
    return _loss_forward_impl(spec, x, t, w, pw)


def _lifted_forward(spec, args):
    if torch.compiler.is_compiling():
        return _hidden(_lifted_forward_impl)(spec, args)
    return _lifted_forward_impl(spec, args)


def _apply_loss_pair(spec, x, t, w, pw):
    if _compiling():
        return _op(spec, (x, t, w, pw))
    return _Loss.apply(spec, x, t, w, pw)


class _Lifted(_Fast):
    """The outputs of a derivative spec; differentiable again (backward, jvp, vmap)."""

    @staticmethod
    def forward(spec, *args):
        return _lifted_forward(spec, args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.spec = inputs[0]
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*inputs[1:])
        ctx.save_for_forward(*inputs[1:])

    @staticmethod
    def backward(ctx, *cts):
        args = ctx.saved_tensors
        return (None, *_lifted_backward(ctx.spec, args, _float_mask(ctx.needs_input_grad[1:], args), cts))

    @staticmethod
    def jvp(ctx, _spec_t, *tangents):
        args = ctx.saved_tensors
        tmask = _tangent_mask(tangents, args)
        if not any(tmask):
            return tuple(torch.zeros(shape, dtype=dtype, device=args[0].device)
                         for shape, dtype in out_meta(decode(ctx.spec), args))
        return apply_lifted(_jvp_spec(ctx.spec, tmask), *args, *[tg for tg, m in zip(tangents, tmask) if m])

    @staticmethod
    def vmap(info, in_dims, spec, *args):
        return _batched(apply_lifted, info, in_dims, spec, args, _empty_lifted)


# ---------------------------------------------------------------------------------------------
# compiled: the custom operator, with the same backward formulas registered
# ---------------------------------------------------------------------------------------------

def _pack(args):
    """``(present, tensors)``: the operator takes a list of tensors (autograd does
    not look into a list of optional ones), with the positions of the Nones aside."""
    return "".join("0" if a is None else "1" for a in args), [a for a in args if a is not None]


def _unpack(present, tensors):
    it = iter(tensors)
    return tuple(next(it) if p == "1" else None for p in present)


def _op(spec, args):
    present, tensors = _pack(args)
    return tuple(_OP(spec, present, tensors))


def _register_op():
    # The module may be imported twice in one process (pytest's importlib mode
    # imports it as a file too); an operator can be defined only once, and the
    # spec strings mean the same to every copy.
    try:
        return torch.ops.crossentropy.evaluate.default
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op("crossentropy::evaluate", mutates_args=())
    def evaluate(spec: str, present: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        s = decode(spec)
        args = _unpack(present, tensors)
        outs = loss_value(s, *args) if s[0] == "loss" else value(s, args)
        # an operator's outputs may not alias its inputs
        return [o.clone() if shares_memory(o, tensors) else o for o in outs]

    @evaluate.register_fake
    def _(spec, present, tensors):
        s = decode(spec)
        args = _unpack(present, tensors)
        like = args[0]
        outs = [like.new_empty(shape, dtype=dtype) for shape, dtype in out_meta(s, args)]
        if s[0] == "loss":
            outs.append(like.new_empty(tuple(like.shape) if s[7] else (0,)))
        return outs

    def setup_context(ctx, inputs, output):
        spec, present, tensors = inputs
        args = _unpack(present, tensors)
        ctx.spec, ctx.present = spec, present
        ctx.mask = _float_mask([a is not None and a.requires_grad for a in args], args)
        if decode(spec)[0] == "loss":
            ctx.mark_non_differentiable(output[1])
            ctx.save_for_backward(*tensors, output[1])
        else:
            ctx.save_for_backward(*tensors)

    def backward(ctx, grads):
        saved = ctx.saved_tensors
        if decode(ctx.spec)[0] == "loss":
            x, t, w, pw = _unpack(ctx.present, saved[:-1])
            res = _loss_backward(ctx.spec, x, t, w, pw, saved[-1], ctx.mask, grads[0])
        else:
            res = _lifted_backward(ctx.spec, _unpack(ctx.present, saved), ctx.mask, grads)
        return None, None, [r for r, p in zip(res, ctx.present) if p == "1"]

    evaluate.register_autograd(backward, setup_context=setup_context)
    return torch.ops.crossentropy.evaluate.default


_OP = _register_op()
