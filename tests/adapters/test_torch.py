"""crossentropy.torch against torch.nn: values, input gradients, dtypes, errors, torch.compile."""

from __future__ import annotations

import inspect
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F

import crossentropy
import crossentropy.torch as ct
from crossentropy.torch import functional as cf

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _torch_cases import CASES, DTYPES, compare, tolerance  # noqa: E402


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("name", list(CASES))
def test_parity_value_and_grad(name, dtype):
    dv, dg, scale = compare(name, dtype)
    tol = tolerance(dtype) * scale
    assert dv <= tol, f"value differs by {dv} (tol {tol})"
    assert dg <= tol, f"input gradient differs by {dg} (tol {tol})"


@pytest.mark.parametrize("ours, ref", [(ct.CrossEntropyLoss, torch.nn.CrossEntropyLoss),
                                       (ct.NLLLoss, torch.nn.NLLLoss), (ct.BCELoss, torch.nn.BCELoss),
                                       (ct.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss),
                                       (cf.cross_entropy, F.cross_entropy), (cf.nll_loss, F.nll_loss),
                                       (cf.binary_cross_entropy, F.binary_cross_entropy),
                                       (cf.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits)])
def test_signatures_match(ours, ref):
    strip = lambda s: [(p.name, p.default, p.kind) for p in s.parameters.values()]  # noqa: E731
    assert strip(inspect.signature(ours)) == strip(inspect.signature(ref))
    if inspect.isclass(ours):
        assert issubclass(ours, ref)
        assert strip(inspect.signature(ours.forward)) == strip(inspect.signature(ref.forward))


def test_module_state_dict_and_buffers():
    w = torch.tensor([1.0, 2.0, 3.0])
    a, b = ct.CrossEntropyLoss(weight=w), torch.nn.CrossEntropyLoss(weight=w)
    assert a.state_dict().keys() == b.state_dict().keys() and repr(a) == repr(b)
    p = ct.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))
    assert "pos_weight" in p.state_dict()


def test_legacy_args_warn_like_torch():
    with pytest.warns(UserWarning, match="reduction='sum'"):
        v = cf.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), size_average=False)
    assert torch.allclose(v, torch.tensor(2 * torch.log(torch.tensor(3.0)).item()))


def test_tutorial_examples():
    X = torch.tensor([[-0.5698, -0.0558, -0.2550, 1.6812, 0.0238], [-2.1786, 1.3923, -0.2363, -0.4601, -1.4949],
                      [1.3679, 1.2853, 0.4087, -0.5743, -0.2752], [2.1995, 0.1469, -0.1661, 0.4617, -0.4395],
                      [-0.5686, -0.7453, -0.1455, -0.5304, 0.3020], [-0.1489, -0.9143, -1.5282, -0.5023, 1.2751],
                      [-1.3830, -0.6535, 0.5392, -2.2050, -1.4138], [-0.5592, 1.5028, 0.0442, -1.5487, -0.1522],
                      [0.7436, -1.8956, 1.0145, -0.2974, -2.0576], [0.1003, 0.6604, -1.3535, -0.3053, -0.4034]])
    y = torch.tensor([3, 0, 1, 1, 2, 4, 0, 2, 1, 3])
    assert str(ct.CrossEntropyLoss()(X, y)) == str(torch.nn.CrossEntropyLoss()(X, y)) == "tensor(1.9732)"


@pytest.mark.parametrize("call, exc", [
    (lambda: cf.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 7])), crossentropy.TargetOutOfRangeError),
    (lambda: cf.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1])), crossentropy.ShapeMismatchError),
    (lambda: cf.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), reduction="avg"),
     crossentropy.InvalidOptionError),
    (lambda: cf.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), reduction="sum_over_batch_size"),
     crossentropy.InvalidOptionError),
    (lambda: cf.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), label_smoothing=1.5),
     crossentropy.InvalidOptionError),
    (lambda: cf.cross_entropy(torch.randn(3, 4), torch.softmax(torch.randn(3, 4), 1), ignore_index=1),
     crossentropy.InvalidOptionError),
    (lambda: cf.binary_cross_entropy(torch.rand(3), torch.tensor([0.0, 2.0, 1.0])),
     crossentropy.ProbabilityRangeError),
    (lambda: cf.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0])),
     crossentropy.ProbabilityRangeError),
    (lambda: cf.binary_cross_entropy(torch.rand(3), torch.rand(3, 1)), crossentropy.ShapeMismatchError),
    (lambda: cf.binary_cross_entropy_with_logits(torch.rand(3), torch.rand(4)), crossentropy.ShapeMismatchError),
    (lambda: cf.cross_entropy(torch.randn(3, 4).long(), torch.tensor([0, 1, 2])), crossentropy.InvalidDTypeError),
])
def test_errors_raise_library_classes_where_torch_raises(call, exc):
    with pytest.raises(exc):
        call()


def test_soft_target_gradient_flows_through_reference_path():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.softmax(torch.randn(4, 3, dtype=torch.float64), 1).requires_grad_(True)
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    ga = torch.autograd.grad(cf.cross_entropy(x, t, weight=w, label_smoothing=0.1), (x, t, w))
    gb = torch.autograd.grad(F.cross_entropy(x, t, weight=w, label_smoothing=0.1), (x, t, w))
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-12)
    y = torch.rand(5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ga = torch.autograd.grad(cf.binary_cross_entropy_with_logits(z, y), (z, y))
    gb = torch.autograd.grad(F.binary_cross_entropy_with_logits(z, y), (z, y))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(ga, gb))


def test_gradcheck_float64():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 4, 2, 1])
    assert torch.autograd.gradcheck(lambda z: cf.cross_entropy(z, t, label_smoothing=0.1, reduction="none"), (x,))
    p = torch.rand(6, dtype=torch.float64).clamp(0.05, 0.95).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: cf.binary_cross_entropy(z, torch.ones(6, dtype=torch.float64)), (p,))


def test_no_grad_and_inference_mode():
    x = torch.randn(4, 3)
    t = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        a = cf.cross_entropy(x, t)
    with torch.inference_mode():
        b = cf.cross_entropy(x, t)
    assert not a.requires_grad and torch.allclose(a, b) and torch.allclose(a, F.cross_entropy(x, t))


def _spy_value_and_grad(monkeypatch):
    """Record the array library of every value_and_grad call the adapter makes."""
    import crossentropy.torch._compute as mod

    calls = []
    real = mod.value_and_grad

    def spy(fn, *arrays, **kw):
        calls.append(type(arrays[0]).__module__)
        return real(fn, *arrays, **kw)

    monkeypatch.setattr(mod, "value_and_grad", spy)
    return calls


def test_fast_path_goes_through_public_numpy_functions(monkeypatch):
    calls = _spy_value_and_grad(monkeypatch)
    x = torch.randn(3, 4, requires_grad=True)
    cf.cross_entropy(x, torch.tensor([0, 1, 2])).backward()
    assert calls == ["numpy"]


@pytest.mark.parametrize("fullgraph", [True, False])
def test_torch_compile_keeps_the_op_in_the_graph(fullgraph):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    x, t = torch.randn(16, 6), torch.randint(0, 4, (16,))
    loss_fn = ct.CrossEntropyLoss(label_smoothing=0.05)

    def step(xx, tt):
        return loss_fn(model(xx), tt)

    compiled = torch.compile(step, fullgraph=fullgraph, backend="eager" if not fullgraph else "inductor")
    lc = compiled(x, t)
    gc = torch.autograd.grad(lc, list(model.parameters()))
    le = torch.nn.functional.cross_entropy(model(x), t, label_smoothing=0.05)
    ge = torch.autograd.grad(le, list(model.parameters()))
    assert torch.allclose(lc, le, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gc, ge))


def test_tensor_path_as_cuda_takes_it(monkeypatch):
    # CUDA (and any non-CPU) tensors run the library's reference code on the
    # tensors, with no NumPy round trip.  No GPU here: force that branch on CPU.
    import crossentropy.torch._compute as mod

    calls = _spy_value_and_grad(monkeypatch)
    monkeypatch.setattr(mod, "numpy_path", lambda xc: False)
    for kind, x, t in [("cross_entropy", torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3])),
                       ("binary_cross_entropy_with_logits", torch.randn(4, 5), torch.rand(4, 5))]:
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = getattr(cf, kind)(xa, t), getattr(F, kind)(xb, t)
        a.backward()
        b.backward()
        assert torch.allclose(a, b, atol=1e-6) and torch.allclose(xa.grad, xb.grad, atol=1e-6)
    assert calls == ["torch", "torch"]


def test_device_kernel_hook(monkeypatch):
    """issue 11's Triton kernel plugs in per device type; it gets the library's options."""
    import crossentropy.torch._compute as mod

    seen = []

    def kernel(kind, x, t, w, pw, opts, need_grad, grad_output):
        seen.append((kind, opts["reduction"], need_grad))
        return NotImplemented if kind == "nll" else mod.value_and_grad(mod._FNS[kind], x, t, grad_output=grad_output,
                                                                         **opts)

    monkeypatch.setattr(mod, "numpy_path", lambda xc: False)
    mod.register_device_kernel("cpu", kernel)
    try:
        x = torch.randn(3, 4, requires_grad=True)
        t = torch.tensor([0, 3, 1])
        cf.cross_entropy(x, t, reduction="sum").backward()
        g = x.grad.clone()
        x.grad = None
        F.cross_entropy(x, t, reduction="sum").backward()
        assert torch.allclose(g, x.grad, atol=1e-6)
        cf.nll_loss(torch.log_softmax(x, 1), t)  # NotImplemented: the reference on the tensors
    finally:
        mod.register_device_kernel("cpu", None)
    assert seen == [("ce", "sum", True), ("nll", "mean", True)]


# ---------------------------------------------------------------------------------------------
# PyTorch's dtype rules for weight / target / pos_weight: raise where torch raises, else torch's result dtype
# ---------------------------------------------------------------------------------------------

_DT = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.bool]


def _dtype_cases():
    out = []
    for xd in (torch.float32, torch.float16, torch.float64):
        for d in _DT:
            out += [("cross_entropy", xd, "weight", d), ("cross_entropy/prob", xd, "weight", d),
                    ("nll_loss", xd, "weight", d), ("binary_cross_entropy", xd, "weight", d),
                    ("binary_cross_entropy_with_logits", xd, "weight", d),
                    ("binary_cross_entropy_with_logits", xd, "pos_weight", d),
                    ("cross_entropy/prob", xd, "target", d), ("binary_cross_entropy", xd, "target", d),
                    ("binary_cross_entropy_with_logits", xd, "target", d)]
    return out


@pytest.mark.parametrize("fn, xd, arg, d", _dtype_cases(), ids=lambda v: str(v).replace("torch.", ""))
def test_dtype_rules_follow_torch(fn, xd, arg, d):
    g = torch.Generator().manual_seed(0)
    name, _, variant = fn.partition("/")
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    if name == "binary_cross_entropy":
        x = torch.sigmoid(x)
    if name == "nll_loss":
        x = torch.log_softmax(x, 1)
    if name in ("cross_entropy", "nll_loss") and variant != "prob":
        t = torch.tensor([0, 1, 2, 0])
    elif variant == "prob":
        t = torch.softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), 1)
    else:
        t = torch.rand(4, 3, generator=g, dtype=torch.float64)
    kw = {}
    if arg == "target":
        t = (t * 2).round() / 2 if d in (torch.int64, torch.bool) else t  # exactly representable values
        t = t.to(d)
        x = x.to(xd)
    else:
        x = x.to(xd)
        if t.is_floating_point():
            t = t.to(xd)
        shape = (3,) if name in ("cross_entropy", "nll_loss") or arg == "pos_weight" else (4, 3)
        kw[arg] = (torch.rand(shape, generator=g, dtype=torch.float64) + 0.5).to(d)
    try:
        ref = getattr(F, name)(x, t, **kw)
    except Exception as e:  # noqa: BLE001
        with pytest.raises((crossentropy.CrossEntropyError, RuntimeError)) as info:
            getattr(cf, name)(x, t, **kw)
        assert isinstance(info.value, crossentropy.CrossEntropyError), (type(e), e, info.value)
        return
    ours = getattr(cf, name)(x, t, **kw)
    assert ours.dtype == ref.dtype
    # PyTorch rounds intermediate results in the narrowest operand dtype (e.g. a float16
    # log-softmax before a float32 target); ours computes in the result dtype from the
    # operands' exact values: the tolerance is that of the narrowest operand.
    widths = [a.dtype for a in (x, t, *kw.values()) if a.is_floating_point()] + [ours.dtype]
    rel = max({torch.float16: 4e-3, torch.bfloat16: 3e-2}.get(dt, 2e-6) for dt in widths)
    tol = rel * max(1.0, float(ref.abs().max()))
    assert float((ours.double() - ref.double()).abs().max()) <= tol


def test_inplace_input_change_after_loss_is_caught():
    """cross_entropy keeps its input for a possible double backward: an in-place change in between is
    PyTorch's 'modified by an inplace operation' error, never a silently wrong gradient."""
    x = torch.randn(3, 4, requires_grad=True)
    z = x * 1.0
    loss = cf.cross_entropy(z, torch.tensor([0, 1, 2]))
    z.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_losses_in_float32(dtype):
    """Under torch.autocast the losses take float32 operands, as PyTorch's autocast policy gives them."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    t, y = torch.randint(0, 3, (5,)), torch.rand(5, 3)
    cases = [("cross_entropy", lambda z: z, t), ("nll_loss", lambda z: torch.log_softmax(z, 1), t),
             ("binary_cross_entropy_with_logits", lambda z: z, y), ("binary_cross_entropy", torch.sigmoid, y)]
    for name, head, target in cases:
        grads = []
        for mod in (F, cf):
            lin.zero_grad()
            with torch.autocast("cpu", dtype=dtype):
                out = getattr(mod, name)(head(lin(x)), target)
            assert out.dtype == torch.float32, (name, mod.__name__, out.dtype)
            out.backward()
            grads.append((out.detach(), lin.weight.grad.clone()))
        (a, ga), (b, gb) = grads
        assert torch.allclose(a, b, atol=1e-6) and torch.allclose(ga, gb, atol=1e-6), name
