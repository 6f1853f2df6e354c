r"""Fused linear + cross-entropy for PyTorch: the LM head and its loss without the N×V logits.

:func:`linear_cross_entropy` takes exactly the arguments of
``torch.nn.functional.linear_cross_entropy`` (PyTorch 2.13) plus keyword-only
extras, and :class:`LinearCrossEntropyLoss` is ``torch.nn.LinearCrossEntropyLoss``
with its ``forward`` computed here.

How it works
------------
With class-index targets and a 2-D ``linear_weight`` (the language-model
case) one :class:`torch.autograd.Function` computes, in its forward, the loss
*and* the gradients for ``input``, ``linear_weight`` and ``linear_bias``, tile
by tile (:mod:`crossentropy._linear_engine`):

* **CPU:** the logits tile ``h_r W_tᵀ (+ b_t)`` from ``torch.mm``/``addmm`` (MKL)
  into a preallocated buffer; its cross-entropy and gradient in place by the
  library's compiled chunk kernels (on a NumPy view of the same memory); then
  ``∂h_r += g_t W_t`` and ``∂W_t += g_tᵀ h_r`` by ``mm``/``addmm_`` into the
  gradient buffers.  bfloat16/float16 are computed in float32 and the
  gradients returned in the input's dtype.
* **CUDA:** the same with cuBLAS and the Triton in-chunk kernel
  (:mod:`crossentropy._kernels.triton`), a block of rows at a time over the whole
  vocabulary; half-precision logits and gradients in the input's dtype (as an
  unfused computation has them), the kernel's arithmetic and the sums over row
  blocks (``∂W``, ``∂b``) in float32.

No N×V buffer ever exists; the logits held at once are bounded by
``memory_budget``.  The Function keeps only the gradients (and references to
its inputs), and the plain backward multiplies them by the incoming gradient.
With ``reduction='none'`` the incoming gradient differs per row, so the
forward computes the loss alone and the backward runs the chunks again with it
(as PyTorch's chunked path does).

Every other autodiff mode goes through the **unfused** differentiable
composition (``F.linear`` then the cross-entropy in torch operations), which
materialises the logits: ``create_graph=True`` (double backward, gradient
penalties, ``torch.autograd.functional.hessian``) in the Function's backward;
forward-mode AD and every ``torch.func`` transform from the start.  The same
route serves what the fused kernels do not cover: class-probability targets,
K-dimensional ``linear_weight``, float64 on CUDA, CUDA without Triton,
a class ``weight`` that requires grad.  ``torch.compile`` calls the fused
function eagerly (a graph break: ``fullgraph=True`` raises).

Semantics are PyTorch's (``ignore_index=None`` means -100 with class indices;
the weighted mean divides by ``Σ weight[target]``), with our keyword-only
extras: ``z_loss`` (``z_loss · lse²`` per counted row), ``softcap``
(``softcap · tanh(logits / softcap)`` before everything else, as Gemma),
``num_items_in_batch`` (the mean's denominator, as Hugging Face passes it) and
``memory_budget`` (bytes of logits at once).  ``options``
(``torch.nn.LinearCrossEntropyOptions``) is accepted and has no effect: the
computation is always chunked and never needs it.

>>> import torch
>>> from crossentropy.torch.linear import linear_cross_entropy
>>> g = torch.Generator().manual_seed(0)
>>> h = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
>>> W = torch.randn(50, 4, generator=g, dtype=torch.float64, requires_grad=True)
>>> y = torch.randint(0, 50, (8,), generator=g)
>>> loss = linear_cross_entropy(h, W, y)
>>> loss.backward()
>>> ref = torch.nn.functional.linear_cross_entropy(h.detach(), W.detach(), y)
>>> bool(torch.allclose(loss, ref)), tuple(W.grad.shape)
(True, (50, 4))
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from .. import _kernels
from .._backend import namespace
from .._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from .._kernels import _chunk
from .._linear_backend import ChunkBackend, TorchMM
from .._linear_engine import Layout, cpu_layout, single_tile_layout
from .._linear_engine import run as run_engine
from .._validation import check_index_target
from ..linear import check_options

__all__ = ["linear_cross_entropy", "LinearCrossEntropyLoss", "CUDA_MEMORY_BUDGET"]

#: Default bound on the logits held at once on CUDA (bytes): rows × V of the input's dtype.
CUDA_MEMORY_BUDGET = 256 << 20
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)
#: run the CUDA (Triton) path on CPU tensors: for the tests, under TRITON_INTERPRET=1 only
_TRITON_ON_CPU = False


class _Cfg:
    """The validated call: options, shapes and the route."""

    __slots__ = ("reduction", "ii", "eps", "z", "cap", "num_items", "budget", "N", "D", "V", "unbatched",
                 "dtype", "device", "triton", "layout")

    reduction: str
    ii: int | None
    eps: float
    z: float
    cap: float | None
    num_items: float | None
    budget: int | None
    N: int
    D: int
    V: int
    unbatched: bool
    dtype: torch.dtype
    device: torch.device
    triton: bool
    layout: Layout | None


# ---------------------------------------------------------------------------------------------
# validation (everything before any heavy work)
# ---------------------------------------------------------------------------------------------

def _tensor(x: object, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InvalidDTypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")


def _floating(x: torch.Tensor, name: str, dtype: torch.dtype | None = None) -> None:
    if x.dtype not in _FLOATS:
        raise InvalidDTypeError(f"{name} must be a floating tensor (float16, bfloat16, float32, float64); "
                                f"got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise InvalidDTypeError(f"{name} must have the dtype of input ({dtype}); got {x.dtype}")


def _shapes(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
            linear_bias: torch.Tensor | None) -> tuple[tuple[int, ...], bool]:
    """PyTorch's shape rules; returns (logits shape, whether target holds probabilities)."""
    if input.dim() < 1 or input.dim() > 2:
        raise ShapeMismatchError(f"input must have shape (in_features,) or (N, in_features); got {tuple(input.shape)}")
    if linear_weight.dim() < 2:
        raise ShapeMismatchError(f"linear_weight must have shape (C, [d_1, ..., d_K,] in_features); "
                                 f"got {tuple(linear_weight.shape)}")
    if input.shape[-1] != linear_weight.shape[-1]:
        raise ShapeMismatchError(
            f"input's last dimension must equal linear_weight's (in_features); got input {tuple(input.shape)} and "
            f"linear_weight {tuple(linear_weight.shape)}")
    C, out = int(linear_weight.shape[0]), tuple(linear_weight.shape[1:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != (C, *out):
        raise ShapeMismatchError(f"linear_bias must have shape {(C, *out)}, one entry per class; "
                                 f"got {tuple(linear_bias.shape)}")
    if out and input.dim() == 1:
        raise ShapeMismatchError(f"a K-dimensional linear_weight {tuple(linear_weight.shape)} needs batched input "
                                 f"(N, {input.shape[-1]}); got input {tuple(input.shape)}")
    logits_shape = (*input.shape[:-1], C, *out)
    return logits_shape, tuple(target.shape) == logits_shape and target.is_floating_point()


def _check(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor, linear_bias: torch.Tensor | None,
           weight: torch.Tensor | None, reduction: str, ignore_index: int | None, label_smoothing: float,
           options: Any, z_loss: float, softcap: float | None, num_items_in_batch: float | torch.Tensor | None,
           memory_budget: int | None) -> tuple[_Cfg, bool]:
    for x, name in ((input, "input"), (linear_weight, "linear_weight"), (target, "target")):
        _tensor(x, name)
    for xo, name in ((linear_bias, "linear_bias"), (weight, "weight")):
        if xo is not None:
            _tensor(xo, name)
    logits_shape, prob = _shapes(input, linear_weight, target, linear_bias)
    _floating(input, "input")
    _floating(linear_weight, "linear_weight", input.dtype)
    if linear_bias is not None:
        _floating(linear_bias, "linear_bias", input.dtype)
    C = int(linear_weight.shape[0])
    if weight is not None:
        if tuple(weight.shape) != (C,):
            raise ShapeMismatchError(f"weight must have shape ({C},), one entry per class; got {tuple(weight.shape)}")
        if not prob:
            _floating(weight, "weight", input.dtype)
    if options is not None and type(options).__name__ != "LinearCrossEntropyOptions":
        raise InvalidOptionError(f"options must be a torch.nn.LinearCrossEntropyOptions or None; got {options!r}")
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = float(num_items_in_batch)  # Hugging Face passes a tensor
    eps, z, cap, num_items = check_options(reduction, label_smoothing, z_loss, softcap, num_items_in_batch)
    if prob:
        if ignore_index is not None:
            raise InvalidOptionError("ignore_index cannot be given when target holds class probabilities "
                                     f"(target shape {tuple(target.shape)} equals the logits' shape)")
        ii = None
    else:
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise InvalidDTypeError(
                f"target must hold integer class indices (shape {logits_shape[:1] if input.dim() == 2 else ()}"
                f"{'' if len(logits_shape) <= 2 else ' + ' + str(logits_shape[2:])}) or class probabilities "
                f"(shape {logits_shape}); got dtype {target.dtype} and shape {tuple(target.shape)}")
        ii = -100 if ignore_index is None else ignore_index
        if isinstance(ii, bool) or not isinstance(ii, int):
            raise InvalidOptionError(f"ignore_index must be an int or None; got {ignore_index!r}")
        want = (*input.shape[:-1], *linear_weight.shape[1:-1])
        check_index_target(namespace(target), target, C, ii, want)
    cfg = _Cfg()
    cfg.reduction, cfg.ii, cfg.eps, cfg.z, cfg.cap, cfg.num_items = reduction, ii, eps, z, cap, num_items
    cfg.budget = memory_budget
    cfg.N = int(input.shape[0]) if input.dim() == 2 else 1
    cfg.D, cfg.V = int(input.shape[-1]), C
    cfg.unbatched = input.dim() == 1
    cfg.dtype, cfg.device = input.dtype, input.device
    cfg.triton, cfg.layout = False, None
    fusable = not prob and linear_weight.dim() == 2 and not (weight is not None and weight.requires_grad)
    return cfg, fusable


def _fused_route(cfg: _Cfg, fusable: bool) -> bool:
    """Pick the kernels and the layout (raises on a budget below the smallest working set)."""
    if not fusable:
        return False
    item = torch.empty((), dtype=cfg.dtype).element_size()
    dev = cfg.device.type
    if dev == "cpu" and not _TRITON_ON_CPU:
        if _kernels.get() is None:
            return False
        cfg.layout = cpu_layout(cfg.N, cfg.V, 4 if cfg.dtype in _HALF else item, cfg.budget)
        return True
    if dev == "cuda" or (dev == "cpu" and _TRITON_ON_CPU):
        from .._kernels import triton as kt

        if cfg.dtype == torch.float64 or not (kt.available() or _TRITON_ON_CPU):
            return False
        cfg.triton = True
        cfg.layout = single_tile_layout(cfg.N, cfg.V, item, cfg.budget, default=CUDA_MEMORY_BUDGET)
        return True
    return False


def _plain_autograd(*tensors: torch.Tensor | None) -> bool:
    """No forward-mode tangent and no ``torch.func`` transform: the fused Function applies."""
    if torch._C._functorch.maybe_current_level() is not None:
        return False
    fwd = torch.autograd.forward_ad
    if getattr(fwd, "_current_level", -1) >= 0:
        for t in tensors:
            if t is not None and t.is_floating_point() and fwd.unpack_dual(t).tangent is not None:
                return False
    return True


# ---------------------------------------------------------------------------------------------
# the unfused composition (materialises the logits): every autodiff mode of torch
# ---------------------------------------------------------------------------------------------

def _unfused(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
             linear_bias: torch.Tensor | None, weight: torch.Tensor | None, cfg: _Cfg) -> torch.Tensor:
    D, C = int(linear_weight.shape[-1]), int(linear_weight.shape[0])
    out = tuple(linear_weight.shape[1:-1])
    logits = F.linear(input, linear_weight.reshape(-1, D),
                      None if linear_bias is None else linear_bias.reshape(-1))
    logits = logits.reshape(*input.shape[:-1], C, *out)
    if cfg.cap is not None:
        logits = cfg.cap * torch.tanh(logits / cfg.cap)
    ii = -100 if cfg.ii is None else cfg.ii
    if not cfg.z and cfg.num_items is None:
        return F.cross_entropy(logits, target, weight=weight, ignore_index=ii, reduction=cfg.reduction,
                               label_smoothing=cfg.eps)
    per = F.cross_entropy(logits, target, weight=weight, ignore_index=ii, reduction="none", label_smoothing=cfg.eps)
    valid = None if cfg.ii is None else target != cfg.ii
    if cfg.z:
        lse = torch.logsumexp(logits, dim=1 if input.dim() == 2 else 0)
        zl = cfg.z * lse * lse
        per = per + (zl if valid is None else torch.where(valid, zl, torch.zeros_like(zl)))
    if cfg.reduction == "none":
        return per
    total = per.sum()
    if cfg.reduction == "sum":
        return total
    if cfg.num_items is not None:
        return total / cfg.num_items
    if valid is None:  # class probabilities: PyTorch's mean divides by the number of samples
        return total / per.numel()
    w = valid.to(per.dtype) if weight is None else torch.where(valid, weight[target.clamp(0, C - 1)],
                                                                torch.zeros((), dtype=per.dtype))
    return total / w.sum()


# ---------------------------------------------------------------------------------------------
# the fused computation
# ---------------------------------------------------------------------------------------------

def _denominator(y: torch.Tensor, cw: torch.Tensor | None, cfg: _Cfg) -> float | torch.Tensor | None:
    """The mean's denominator (a Python float on the CPU, a float32 tensor on CUDA), or None."""
    if cfg.reduction != "mean":
        return None
    if cfg.num_items is not None:
        return cfg.num_items
    valid = cast(torch.Tensor, y != cfg.ii)
    if cw is None:
        d = valid.sum(dtype=torch.float64)
    else:
        d = torch.where(valid, cw.to(torch.float64)[y.clamp(0, cfg.V - 1)], 0.0).sum()
    return float(d) if not cfg.triton else d.to(torch.float32)


def _scale(cfg: _Cfg, denom: float | torch.Tensor | None,
           grad_output: torch.Tensor | None) -> float | np.ndarray | torch.Tensor:
    """The kernels' grad_scale: the reduction's factor times the incoming gradient."""
    if cfg.reduction == "none":
        go = cast(torch.Tensor, grad_output).reshape(-1)  # reduction='none': always given
        if cfg.triton:
            return go.to(torch.float32).contiguous()
        return np.ascontiguousarray(go.detach().to(torch.float64).numpy())
    if denom is None:
        return 1.0
    if isinstance(denom, torch.Tensor):
        return torch.where(denom == 0, 1.0, 1.0 / denom).to(torch.float32)
    return 1.0 / denom if denom != 0 else 1.0


def _compute(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, cw: torch.Tensor | None, y: torch.Tensor,
             cfg: _Cfg, want: tuple[bool, ...], scale: Any
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Per-row losses (float64 on the CPU, float32 with Triton) and the wanted gradients (input dtypes)."""
    kern: Any
    yk: Any
    cwk: Any
    if cfg.triton:
        from .._kernels import triton as kern

        cdt = cfg.dtype
        mm = TorchMM(cdt, h.device, acc_dtype=torch.float32, kernel_numpy=False)
        yk, cwk = y, (None if cw is None else cw.contiguous())
    else:
        kern = _chunk
        cdt = torch.float32 if cfg.dtype in _HALF else cfg.dtype
        mm = TorchMM(cdt, h.device)
        yk = y.to(torch.int64).numpy()
        cwk = None if cw is None else cw.detach().to(cdt).contiguous().numpy()
    hc, Wc = h.detach().to(cdt).contiguous(), W.detach().to(cdt).contiguous()
    bc = None if b is None else b.detach().to(cdt).contiguous()
    opts = dict(ignore_index=cfg.ii, label_smoothing=cfg.eps, z_loss=cfg.z, softcap=cfg.cap)
    bk = ChunkBackend(mm, kern, hc, Wc, bc, yk, cwk, opts, want=want)
    with torch.no_grad():
        rows = run_engine(bk, cast(Layout, cfg.layout), scale=scale if any(want) else None)
    rows = torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows

    def back(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        return None if g is None else g.to(like.dtype)

    return rows, back(bk.dh, h), back(bk.dw, W), (None if b is None else back(bk.db, b))


def _reduce(rows: torch.Tensor, denom: float | torch.Tensor | None, cfg: _Cfg) -> torch.Tensor:
    """The loss in the input's dtype from the per-row losses."""
    if cfg.reduction == "none":
        out = rows.to(cfg.dtype)
        return out.reshape(()) if cfg.unbatched else out
    total = rows.sum()
    if cfg.reduction == "mean":
        total = total / cast("float | torch.Tensor", denom)  # 0/0 = NaN when every row is ignored, as PyTorch
    return total.to(cfg.dtype)


class _Fused(torch.autograd.Function):
    """Loss and gradients in one chunked forward; the plain backward scales the kept gradients."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, cw: torch.Tensor | None,
                y: torch.Tensor, cfg: _Cfg) -> torch.Tensor:
        want = tuple(bool(n) for n in ctx.needs_input_grad[:3])
        denom = _denominator(y, cw, cfg)
        if cfg.reduction == "none" or not any(want):
            rows = _compute(h, W, b, cw, y, cfg, (False, False, False), None)[0]
            ctx.grads = None
        else:
            rows, *grads = _compute(h, W, b, cw, y, cfg, want, _scale(cfg, denom, None))
            ctx.grads = grads
        ctx.cfg, ctx.denom = cfg, denom
        ctx.save_for_backward(h, W, b, cw, y)
        return _reduce(rows, denom, cfg)

    @staticmethod
    def backward(ctx: Any, go: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, W, b, cw, y = ctx.saved_tensors
        cfg = ctx.cfg
        want = tuple(bool(n) for n in ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():
            # create_graph=True: gradients with a history, from the unfused composition
            # (this materialises the logits; see the module docstring)
            with torch.enable_grad():
                loss = _unfused(h, W, y, b, cw, cfg)
                ins = [t for t, w in zip((h, W, b), want) if w]
                gs = list(torch.autograd.grad(loss, ins, go.reshape(loss.shape), create_graph=True,
                                              allow_unused=True))
            grads = [gs.pop(0) if w else None for w in want]
        elif cfg.reduction == "none":
            grads = list(_compute(h, W, b, cw, y, cfg, want, _scale(cfg, ctx.denom, go))[1:])
        else:
            grads, ctx.grads = ctx.grads, None  # handed to autograd (it may keep them as .grad)
            if grads is None:  # a second backward (retain_graph=True): run the chunks again
                grads = list(_compute(h, W, b, cw, y, cfg, want, _scale(cfg, ctx.denom, None))[1:])
            if not (go.device.type == "cpu" and float(go) == 1.0):
                grads = [None if g is None else g * go.to(g.dtype) for g in grads]
        return grads[0], grads[1], grads[2], None, None, None


@torch.compiler.disable
def _fused_apply(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, cw: torch.Tensor | None, y: torch.Tensor,
                 cfg: _Cfg) -> torch.Tensor:
    return _Fused.apply(h, W, b, cw, y, cfg)


def linear_cross_entropy(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor, *,
                         linear_bias: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                         reduction: str = "mean", ignore_index: int | None = None, label_smoothing: float = 0.0,
                         options: Any = None, z_loss: float = 0.0, softcap: float | None = None,
                         num_items_in_batch: float | torch.Tensor | None = None,
                         memory_budget: int | None = None) -> torch.Tensor:
    r"""``torch.nn.functional.linear_cross_entropy``, fused: the N×V logits never exist on the fused path.

    .. math:: \ell_i = \mathrm{CE}\big(\mathrm{cap}(x_i W^\top + b),\ y_i\big)
              + \zeta\,\mathrm{lse}_i^2,\qquad \mathrm{cap}(z) = s\tanh(z/s)

    Arguments as PyTorch's (``input`` ``(N, D)`` or ``(D,)``, ``linear_weight``
    ``(C, D)`` or ``(C, d_1, …, d_K, D)``, ``target`` class indices ``(N,)`` /
    ``()`` / ``(N, d_1, …)`` or class probabilities of the logits' shape,
    ``linear_bias`` ``(C, d_1, …)``, class ``weight`` ``(C,)``); extras
    (keyword-only): ``z_loss`` (ζ, per counted row), ``softcap`` (s > 0),
    ``num_items_in_batch`` (the mean's denominator: micro-batch gradients then
    add up to the full batch's), ``memory_budget`` (bytes of logits held at
    once; default on the CPU 64 MiB or one block of rows, whichever is
    larger, :data:`CUDA_MEMORY_BUDGET` on CUDA; too small for one tile is an
    error).  ``options`` is accepted and ignored.
    Returns the loss in the input's dtype (``(N,)`` / ``()`` with
    ``reduction='none'``).

    >>> import torch
    >>> from crossentropy.torch.functional import linear_cross_entropy
    >>> h, W = torch.ones(2, 3), torch.zeros(5, 3)
    >>> print(linear_cross_entropy(h, W, torch.tensor([0, 4]), z_loss=0.1))  # ln 5 + 0.1 ln² 5
    tensor(1.8685)
    """
    cfg, fusable = _check(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
                          label_smoothing, options, z_loss, softcap, num_items_in_batch, memory_budget)
    fused = _fused_route(cfg, fusable) and _plain_autograd(input, linear_weight, linear_bias, weight)
    if not fused:
        return _unfused(input, linear_weight, target, linear_bias, weight, cfg)
    h = input.reshape(cfg.N, cfg.D)
    y = target.reshape(cfg.N)
    return _fused_apply(h, linear_weight, linear_bias, weight, y, cfg)


class LinearCrossEntropyLoss(torch.nn.LinearCrossEntropyLoss):
    r"""``torch.nn.LinearCrossEntropyLoss`` computed by :func:`linear_cross_entropy` (fused).

    Constructor: PyTorch's ``(in_features, num_classes, *, out_features=(), bias=False, device=None,
    dtype=None, reduction='mean', weight=None, ignore_index=None, label_smoothing=0.0, options=None)``
    plus keyword-only ``z_loss``, ``softcap`` and ``memory_budget``; call ``(input, target)``,
    optionally with ``num_items_in_batch=``.

    >>> import torch
    >>> from crossentropy.torch import LinearCrossEntropyLoss
    >>> loss_fn = LinearCrossEntropyLoss(4, 10, bias=True, z_loss=1e-4)
    >>> loss = loss_fn(torch.randn(6, 4), torch.randint(0, 10, (6,)))
    >>> loss.backward()
    >>> tuple(loss_fn.linear.weight.grad.shape)
    (10, 4)
    """

    def __init__(self, in_features: int, num_classes: int, *, out_features: tuple[int, ...] = (), bias: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 reduction: str = "mean", weight: torch.Tensor | None = None, ignore_index: int | None = None,
                 label_smoothing: float = 0.0, options: Any = None, z_loss: float = 0.0,
                 softcap: float | None = None, memory_budget: int | None = None) -> None:
        super().__init__(in_features, num_classes, out_features=out_features, bias=bias, device=device,
                         dtype=dtype, reduction=reduction, weight=weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, options=options)
        check_options(reduction, label_smoothing, z_loss, softcap, None)
        self.z_loss, self.softcap, self.memory_budget = z_loss, softcap, memory_budget

    def forward(self, input: torch.Tensor, target: torch.Tensor, *,
                num_items_in_batch: float | torch.Tensor | None = None) -> torch.Tensor:
        lin = self.linear
        w = lin.weight.reshape((self.num_classes, *self.out_features, lin.in_features))
        b = None if lin.bias is None else lin.bias.reshape((self.num_classes, *self.out_features))
        return linear_cross_entropy(input, w, target, linear_bias=b, weight=self.weight, reduction=self.reduction,
                                    ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                                    options=self.options, z_loss=self.z_loss, softcap=self.softcap,
                                    num_items_in_batch=num_items_in_batch, memory_budget=self.memory_budget)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", z_loss={self.z_loss}, softcap={self.softcap}"
