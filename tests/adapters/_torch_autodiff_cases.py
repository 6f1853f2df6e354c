"""Autodiff modes × losses: crossentropy.torch against torch.nn.functional (shared by the tests and report.py).

Each *case* is a loss with its options and float64 data; each *mode* is one of
PyTorch's autodiff entry points, written once as ``mode(F, case) -> tensors``
where ``F`` is either ``torch.nn.functional`` or ``crossentropy.torch.functional``.
:func:`compare` runs a mode with both and returns the largest absolute
difference (NaN in the same places counts as equal; NaN against a number is inf).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as TF

import crossentropy.torch.functional as CF

D = torch.float64


@dataclasses.dataclass(frozen=True)
class Case:
    loss: str  # cross_entropy | nll_loss | binary_cross_entropy | binary_cross_entropy_with_logits
    target: str  # index | prob | binary
    options: tuple = ()  # (name, value) pairs; tensors are built by make()
    shape: tuple = (3, 4)

    @property
    def kw(self):
        return dict(self.options)


def _g(seed):
    return torch.Generator().manual_seed(seed)


def make(case: Case):
    """``(x, target, kwargs)`` in float64 for one case (fresh tensors each call)."""
    shape = case.shape
    C = shape[1] if len(shape) > 1 else shape[0]
    x = torch.randn(*shape, generator=_g(0), dtype=D) * 1.5
    if case.loss == "nll_loss":
        x = torch.log_softmax(x, dim=1 if len(shape) > 1 else 0)
    if case.loss == "binary_cross_entropy":
        x = torch.sigmoid(x)
    if case.target == "index":
        tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        t = torch.randint(0, C, tshape, generator=_g(1))
    elif case.target == "prob":
        t = torch.softmax(torch.randn(*shape, generator=_g(1), dtype=D) * 2, dim=1 if len(shape) > 1 else 0)
        t = torch.where(t < 0.08, torch.zeros_like(t), t)  # exact zeros, as one-hot-like soft labels have
    else:
        t = torch.rand(*shape, generator=_g(1), dtype=D)
        t = torch.where(t < 0.3, torch.zeros_like(t), torch.where(t > 0.7, torch.ones_like(t), t))
    kw = {}
    for k, v in case.options:
        if k == "weight" and v == "class":
            v = torch.tensor([0.5, -1.5, 2.0, 0.0, 1.0, 3.0][:C], dtype=D)  # negative and zero weights too
        elif k == "weight" and v == "elem":
            v = torch.rand(*shape, generator=_g(2), dtype=D) * 4 - 1
        elif k == "pos_weight":
            v = torch.tensor([0.5, 2.0, -1.0, 3.0, 1.0][:C], dtype=D)
        elif k == "ignore" and v:
            t = t.clone()
            if v == "all":
                t.fill_(-100)
            else:
                t.view(-1)[:: v] = -100
            continue
        kw[k] = v
    return x, t, kw


def _c(loss, target, shape=(3, 4), **opts):
    return Case(loss, target, tuple(opts.items()), shape)


CASES = {
    "ce/mean": _c("cross_entropy", "index"),
    "ce/sum": _c("cross_entropy", "index", reduction="sum"),
    "ce/none": _c("cross_entropy", "index", reduction="none"),
    "ce/weight(neg,0)": _c("cross_entropy", "index", weight="class"),
    "ce/weight+none": _c("cross_entropy", "index", weight="class", reduction="none"),
    "ce/ignore_index": _c("cross_entropy", "index", ignore=2),
    "ce/all ignored": _c("cross_entropy", "index", ignore="all"),
    "ce/smoothing": _c("cross_entropy", "index", label_smoothing=0.2),
    "ce/smoothing+weight+ignore": _c("cross_entropy", "index", label_smoothing=0.1, weight="class", ignore=3),
    "ce/K-dim": _c("cross_entropy", "index", shape=(2, 4, 3), weight="class"),
    "ce/unbatched": _c("cross_entropy", "index", shape=(4,)),
    "ce/empty": _c("cross_entropy", "index", shape=(0, 4), reduction="sum"),
    "ce/prob": _c("cross_entropy", "prob"),
    "ce/prob+none": _c("cross_entropy", "prob", reduction="none"),
    "ce/prob+weight": _c("cross_entropy", "prob", weight="class"),
    "ce/prob+smoothing+weight": _c("cross_entropy", "prob", weight="class", label_smoothing=0.3),
    "ce/prob K-dim": _c("cross_entropy", "prob", shape=(2, 4, 3), reduction="sum"),
    "nll/mean": _c("nll_loss", "index"),
    "nll/weight+ignore": _c("nll_loss", "index", weight="class", ignore=3),
    "nll/none": _c("nll_loss", "index", reduction="none"),
    "nll/K-dim sum": _c("nll_loss", "index", shape=(2, 4, 3), reduction="sum"),
    "bce/mean": _c("binary_cross_entropy", "binary"),
    "bce/weight": _c("binary_cross_entropy", "binary", weight="elem"),
    "bce/none": _c("binary_cross_entropy", "binary", reduction="none"),
    "bce/sum": _c("binary_cross_entropy", "binary", reduction="sum"),
    "bcel/mean": _c("binary_cross_entropy_with_logits", "binary"),
    "bcel/weight+pos_weight": _c("binary_cross_entropy_with_logits", "binary", weight="elem", pos_weight=True),
    "bcel/none": _c("binary_cross_entropy_with_logits", "binary", reduction="none"),
    "bcel/pos_weight+sum": _c("binary_cross_entropy_with_logits", "binary", pos_weight=True, reduction="sum"),
}

FAMILY = {"cross_entropy": "cross_entropy", "nll_loss": "nll_loss", "binary_cross_entropy": "binary_cross_entropy",
          "binary_cross_entropy_with_logits": "bce_with_logits"}


def family(case: Case) -> str:
    if case.loss == "cross_entropy":
        return "cross_entropy (prob)" if case.target == "prob" else "cross_entropy (index)"
    return FAMILY[case.loss]


def soft_target(case: Case) -> bool:
    return case.target in ("prob", "binary")


# ---------------------------------------------------------------------------------------------
# modes: each returns a tuple of tensors
# ---------------------------------------------------------------------------------------------

def _fn(F, case):
    return getattr(F, case.loss)


def _scalarize(out):
    # a weighted sum makes every mode see every output of a 'none' loss
    if out.dim() == 0:
        return out
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    return (out * w).sum()


def _lossf(F, case, t, kw):
    f = _fn(F, case)
    return lambda x: _scalarize(f(x, t, **kw))


def _tangent(x, seed=5):
    return torch.randn(x.shape, generator=_g(seed), dtype=x.dtype)


def m_value(F, case):
    x, t, kw = make(case)
    return (_fn(F, case)(x, t, **kw),)


def m_backward(F, case):
    x, t, kw = make(case)
    x.requires_grad_(True)
    _scalarize(_fn(F, case)(x, t, **kw)).backward()
    return (x.grad,)


def m_double_backward(F, case):
    x, t, kw = make(case)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(_scalarize(_fn(F, case)(x, t, **kw)), x, create_graph=True)
    v = _tangent(x)
    (gg,) = torch.autograd.grad((g * v).sum(), x, allow_unused=True, materialize_grads=True)
    return g.detach(), gg


def m_gradient_penalty(F, case):
    """WGAN-GP style: ‖∂L/∂x_in‖ through a Linear layer; the layer's weight gradients."""
    x, t, kw = make(case)
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[-1], x.shape[-1], dtype=D)
    xin = x.detach().clone().requires_grad_(True)
    out = lin(xin)
    if case.loss == "nll_loss":
        out = torch.log_softmax(out, dim=1 if out.dim() > 1 else 0)
    if case.loss == "binary_cross_entropy":
        out = torch.sigmoid(out)
    (g,) = torch.autograd.grad(_scalarize(_fn(F, case)(out, t, **kw)), xin, create_graph=True)
    pen = ((g.flatten(1) if g.dim() > 1 else g).norm(dim=-1) - 1).pow(2).sum()
    return torch.autograd.grad(pen, list(lin.parameters()), allow_unused=True, materialize_grads=True)


def m_hessian(F, case):
    x, t, kw = make(case)
    return (torch.autograd.functional.hessian(_lossf(F, case, t, kw), x),)


def m_hvp(F, case):
    x, t, kw = make(case)
    return torch.autograd.functional.hvp(_lossf(F, case, t, kw), x, _tangent(x))


def m_jacobian(F, case):
    x, t, kw = make(case)
    f = _fn(F, case)
    return (torch.autograd.functional.jacobian(lambda z: f(z, t, **kw), x),)


def m_jacobian_create_graph(F, case):
    x, t, kw = make(case)
    f = _fn(F, case)
    x.requires_grad_(True)
    j = torch.autograd.functional.jacobian(lambda z: f(z, t, **kw), x, create_graph=True)
    (gj,) = torch.autograd.grad(j.sum(), x, allow_unused=True, materialize_grads=True)
    return j.detach(), gj


def m_forward_ad(F, case):
    x, t, kw = make(case)
    with fwAD.dual_level():
        out = _fn(F, case)(fwAD.make_dual(x, _tangent(x)), t, **kw)
        tan = fwAD.unpack_dual(out).tangent
    return (torch.zeros_like(out) if tan is None else tan,)


def m_forward_over_reverse(F, case):
    """jvp of the gradient (forward-over-reverse Hessian-vector product) with forward_ad."""
    x, t, kw = make(case)
    with fwAD.dual_level():
        x.requires_grad_(True)
        xd = fwAD.make_dual(x, _tangent(x))
        (g,) = torch.autograd.grad(_scalarize(_fn(F, case)(xd, t, **kw)), x, create_graph=True)
        tan = fwAD.unpack_dual(g).tangent
    return (torch.zeros_like(x) if tan is None else tan,)


def m_func_jvp(F, case):
    x, t, kw = make(case)
    f = _fn(F, case)
    return torch.func.jvp(lambda z: f(z, t, **kw), (x,), (_tangent(x),))


def m_func_jacfwd(F, case):
    x, t, kw = make(case)
    f = _fn(F, case)
    return (torch.func.jacfwd(lambda z: f(z, t, **kw))(x),)


def m_func_grad(F, case):
    x, t, kw = make(case)
    return (torch.func.grad(_lossf(F, case, t, kw))(x),)


def m_func_jacrev(F, case):
    x, t, kw = make(case)
    f = _fn(F, case)
    return (torch.func.jacrev(lambda z: f(z, t, **kw))(x),)


def m_func_hessian(F, case):
    x, t, kw = make(case)
    return (torch.func.hessian(_lossf(F, case, t, kw))(x),)


def _batch(case):
    """Three variants of the case's input stacked on a new leading dim (vmap'ed over)."""
    x, t, kw = make(case)
    xb = torch.stack([x, x * 0.5 + 0.1, x.flip(-1)]) if case.loss != "binary_cross_entropy" else \
        torch.stack([x, x * 0.5 + 0.25, x.flip(-1)])
    if case.loss == "nll_loss":
        xb = torch.log_softmax(xb, dim=2 if x.dim() > 1 else 1)
    return xb, t, kw


def m_vmap_loss(F, case):
    xb, t, kw = _batch(case)
    f = _fn(F, case)
    return (torch.func.vmap(lambda z: f(z, t, **kw))(xb),)


def m_vmap_grad(F, case):
    xb, t, kw = _batch(case)
    return (torch.func.vmap(torch.func.grad(_lossf(F, case, t, kw)))(xb),)


def m_vmap_target(F, case):
    """vmap over the target as well (per-example losses with their own labels)."""
    xb, t, kw = _batch(case)
    tb = torch.stack([t, t.flip(0), t])
    f = _fn(F, case)
    return torch.func.vmap(torch.func.grad_and_value(lambda z, y: _scalarize(f(z, y, **kw))))(xb, tb)


def m_target_grad(F, case):
    x, t, kw = make(case)
    x.requires_grad_(True)
    t.requires_grad_(True)
    out = _scalarize(_fn(F, case)(x, t, **kw))
    gx, gt = torch.autograd.grad(out, (x, t), create_graph=True)
    v = _tangent(x)
    second = torch.autograd.grad((gx * v).sum() + (gt * v).sum(), (x, t), allow_unused=True, materialize_grads=True)
    return (gx.detach(), gt.detach(), *second)


def m_target_func_grad(F, case):
    x, t, kw = make(case)
    f = _fn(F, case)
    return torch.func.grad(lambda z, y: _scalarize(f(z, y, **kw)), argnums=(0, 1))(x, t)


def m_target_forward_ad(F, case):
    x, t, kw = make(case)
    with fwAD.dual_level():
        out = _fn(F, case)(x, fwAD.make_dual(t, _tangent(t, 6)), **kw)
        tan = fwAD.unpack_dual(out).tangent
    return (torch.zeros_like(out) if tan is None else tan,)


def m_weight_grad(F, case):
    """Class-weight gradient (cross_entropy with probability targets: PyTorch's composite formula)."""
    x, t, kw = make(case)
    x.requires_grad_(True)
    t.requires_grad_(True)
    w = kw["weight"].clone().requires_grad_(True)
    kw = dict(kw, weight=w)
    out = _scalarize(_fn(F, case)(x, t, **kw))
    g = torch.autograd.grad(out, (x, t, w), create_graph=True)
    v = _tangent(x)
    s = (g[0] * v).sum() + (g[1] * v).sum() + (g[2] * torch.linspace(-1, 1, w.numel(), dtype=D)).sum()
    second = torch.autograd.grad(s, (x, t, w), allow_unused=True, materialize_grads=True)
    return (*[a.detach() for a in g], *second)


def m_compile_step(F, case):
    """torch.compile of a training step (Linear -> loss), then backward: parameter gradients."""
    x, t, kw = make(case)
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[-1], x.shape[-1], dtype=D)
    f = _fn(F, case)

    def step(xx):
        out = lin(xx)
        if case.loss == "nll_loss":
            out = torch.log_softmax(out, dim=1 if out.dim() > 1 else 0)
        if case.loss == "binary_cross_entropy":
            out = torch.sigmoid(out)
        return _scalarize(f(out, t, **kw))

    torch._dynamo.reset()
    loss = torch.compile(step, backend="aot_eager")(x)
    grads = torch.autograd.grad(loss, list(lin.parameters()))
    return (loss.detach(), *grads)


def m_compile_func_grad(F, case):
    x, t, kw = make(case)
    torch._dynamo.reset()
    return (torch.compile(torch.func.grad(_lossf(F, case, t, kw)), backend="aot_eager")(x),)


MODES = {
    "value": m_value,
    "backward": m_backward,
    "double backward": m_double_backward,
    "gradient penalty (Linear)": m_gradient_penalty,
    "autograd.functional.hessian": m_hessian,
    "autograd.functional.hvp": m_hvp,
    "autograd.functional.jacobian": m_jacobian,
    "jacobian(create_graph)": m_jacobian_create_graph,
    "forward_ad": m_forward_ad,
    "forward-over-reverse": m_forward_over_reverse,
    "func.jvp": m_func_jvp,
    "func.jacfwd": m_func_jacfwd,
    "func.grad": m_func_grad,
    "func.jacrev": m_func_jacrev,
    "func.hessian": m_func_hessian,
    "vmap(loss)": m_vmap_loss,
    "vmap(grad)": m_vmap_grad,
    "vmap(grad_and_value) over target": m_vmap_target,
    "target grad (+2nd order)": m_target_grad,
    "func.grad w.r.t. target": m_target_func_grad,
    "forward_ad w.r.t. target": m_target_forward_ad,
    "weight grad (+2nd order)": m_weight_grad,
    "compile(step)": m_compile_step,
    "compile(func.grad)": m_compile_func_grad,
}

# modes that only apply to some cases
TARGET_MODES = {"target grad (+2nd order)", "func.grad w.r.t. target", "forward_ad w.r.t. target"}
COMPILE_MODES = {"compile(step)", "compile(func.grad)"}
# one case per loss family is compiled (a compile costs seconds)
COMPILE_CASES = {"ce/weight+none", "ce/prob+weight", "nll/weight+ignore", "bce/weight", "bcel/weight+pos_weight"}


def applies(mode: str, name: str) -> bool:
    case = CASES[name]
    if mode in TARGET_MODES:
        return soft_target(case)
    if mode == "weight grad (+2nd order)":
        return case.target == "prob" and "weight" in case.kw
    if mode in COMPILE_MODES:
        return name in COMPILE_CASES
    if mode == "vmap(grad_and_value) over target":
        return case.shape[0] > 0 and case.shape != (4,)
    return True


def run(mode: str, name: str, impl: str):
    F = TF if impl == "torch" else CF
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(MODES[mode](F, CASES[name]))


def maxdiff(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    if (torch.isnan(a) != torch.isnan(b)).any():
        return float("inf")
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    d = torch.where(same, torch.zeros_like(a), (a - b).abs())
    return float(d.max())


def scale(outs) -> float:
    return max([1.0] + [float(o.detach().double().nan_to_num(0, 0, 0).abs().max()) for o in outs if o.numel()])


class BothRaise(Exception):
    """PyTorch's own function raises in this mode (and so does ours)."""


def compare(mode: str, name: str):
    """``(max |ours − torch|, scale)`` over every output of ``mode`` on case ``name``.

    Where PyTorch raises, ours must raise too, and :class:`BothRaise` says so.
    """
    try:
        ref = run(mode, name, "torch")
    except Exception as e:
        try:
            run(mode, name, "ours")
        except Exception as ours_e:
            raise BothRaise(f"torch: {type(e).__name__}: {e}; ours: {type(ours_e).__name__}: {ours_e}") from None
        raise AssertionError(f"torch raises {type(e).__name__}: {e}; ours returns a result") from None
    ours = run(mode, name, "ours")
    if len(ref) != len(ours):
        raise AssertionError(f"{len(ours)} outputs, torch gives {len(ref)}")
    return max([0.0] + [maxdiff(o, r) for o, r in zip(ours, ref)]), scale(ref)
