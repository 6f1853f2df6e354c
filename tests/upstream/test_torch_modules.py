"""PyTorch's ModuleInfo checks (test_modules.TestModule) on the four loss modules, torch vs ours.

Inputs, reference functions, dtypes, tolerance overrides and error inputs are
the ModuleInfos' own (``common_modules.module_db``); the module class under test
is ``torch.nn.<X>`` or ``crossentropy.torch.<X>``.
"""

from __future__ import annotations

import copy
import io
import pathlib
import pickle
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import _torch_harness as H  # noqa: E402
from _torch_harness import seeded  # noqa: E402,F401 - autouse fixture

MODULES = sorted(H.MODULEINFOS)
DEVICE = "cpu"

CASES = [(m, d) for m in MODULES for d in H.MODULEINFOS[m].dtypes]


def _inputs(name, dtype, requires_grad=False):
    info = H.MODULEINFOS[name]
    return info.module_inputs_func(info, device=DEVICE, dtype=dtype, requires_grad=requires_grad, training=True)


def _build(impl, name, module_input):
    c = module_input.constructor_input
    return H.module_class(impl, name)(*c.args, **c.kwargs)


def _forward(m, module_input):
    f = module_input.forward_input
    return m(*f.args, **f.kwargs)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{m}-{d}" for m, d in CASES])
def test_forward(name, dtype, impl):
    """TestModule.test_forward: each input against the ModuleInfo's reference function."""
    tol = H.tolerance_override(H.MODULEINFOS[name], "test_forward", dtype)
    kw = {} if tol is None else {"atol": tol[0], "rtol": tol[1]}
    n = 0
    for mi in _inputs(name, dtype):
        m = _build(impl, name, mi)
        out = _forward(m, mi)
        if mi.reference_fn is not None:
            f = mi.forward_input
            expected = mi.reference_fn(m, *f.args, **f.kwargs)
            if impl == "ours" and dtype in (torch.float16, torch.bfloat16):
                # H.DIFFERENCES["half precision rounding"]: never further from the exact
                # (float64) value than PyTorch's own module, plus one half-type rounding
                theirs = _forward(_build("torch", name, mi), mi)
                H.assert_not_less_accurate(out, theirs, _exact(name, mi, m), dtype)
                H.note("half precision rounding")
            else:
                torch.testing.assert_close(out, expected, equal_nan=True, **kw)
            n += 1
    assert n > 0


def _exact(name, mi, m):
    """PyTorch's module in float64 on the same (upcast) buffers and inputs: exact for half-precision data."""
    up = lambda a: a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a  # noqa: E731
    c = mi.constructor_input
    m64 = H.module_class("torch", name)(*[up(a) for a in c.args], **{k: up(v) for k, v in c.kwargs.items()})
    f = mi.forward_input
    return m64(*[up(a) for a in f.args], **{k: up(v) for k, v in f.kwargs.items()})


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", MODULES)
def test_repr_pickle_save_load_state_dict(name, impl):
    """test_repr, test_pickle, test_save_load: the module survives every round trip with its outputs."""
    for mi in _inputs(name, torch.float64):
        m = _build(impl, name, mi)
        ref = H.module_class("torch", name)(*mi.constructor_input.args, **mi.constructor_input.kwargs)
        assert repr(m) == repr(ref) and str(m) == str(ref)
        out = _forward(m, mi)
        m2 = pickle.loads(pickle.dumps(m))
        assert type(m2) is type(m)
        torch.testing.assert_close(_forward(m2, mi), out, equal_nan=True)
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        torch.testing.assert_close(_forward(torch.load(buf, weights_only=False), mi), out, equal_nan=True)
        sd = m.state_dict()
        assert sd.keys() == ref.state_dict().keys()
        m3 = _build(impl, name, mi)
        m3.load_state_dict(sd)
        torch.testing.assert_close(_forward(m3, mi), out, equal_nan=True)
        torch.testing.assert_close(_forward(copy.deepcopy(m), mi), out, equal_nan=True)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", MODULES)
def test_if_train_and_eval_modes_differ(name, impl):
    info = H.MODULEINFOS[name]
    assert not info.train_and_eval_differ
    for mi in _inputs(name, torch.float64):
        m = _build(impl, name, mi)
        a = _forward(m.train(), mi)
        torch.testing.assert_close(_forward(m.eval(), mi), a, equal_nan=True)


def _noncontiguous(t):
    if not isinstance(t, torch.Tensor) or t.numel() <= 1:
        return t
    nc = torch.repeat_interleave(t.detach(), 2, dim=-1)[..., ::2]
    return nc.requires_grad_(t.requires_grad)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", MODULES)
def test_non_contiguous_tensors(name, impl):
    """TestModule.test_non_contiguous_tensors: same outputs and input gradients on non-contiguous inputs."""
    for mi in _inputs(name, torch.float64, requires_grad=True):
        m = _build(impl, name, mi)
        f = mi.forward_input
        out = m(*f.args, **f.kwargs)
        g = torch.randn_like(out)
        leaves = [a for a in f.args if isinstance(a, torch.Tensor) and a.requires_grad]
        grads = torch.autograd.grad(out, leaves, g)
        args_nc = [_noncontiguous(a) for a in f.args]
        assert any(isinstance(a, torch.Tensor) and a.numel() > 1 and not a.is_contiguous() for a in args_nc) or \
            all(not isinstance(a, torch.Tensor) or a.numel() <= 1 for a in f.args)
        out_nc = m(*args_nc, **f.kwargs)
        leaves_nc = [a for a in args_nc if isinstance(a, torch.Tensor) and a.requires_grad]
        torch.testing.assert_close(out_nc, out, equal_nan=True)
        for a, b in zip(torch.autograd.grad(out_nc, leaves_nc, g), grads):
            torch.testing.assert_close(a, b, equal_nan=True)


def _gradients(name, impl, check):
    info = H.MODULEINFOS[name]
    for mi in _inputs(name, torch.float64, requires_grad=True):
        m = _build(impl, name, mi)
        f = mi.forward_input
        args = list(f.args)
        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
        params = list(m.parameters())
        kw = dict(nondet_tol=info.gradcheck_nondet_tol, check_batched_grad=True,
                  fast_mode=info.gradcheck_fast_mode if info.gradcheck_fast_mode is not None else True)

        def make(pos):
            def fn(*xs):
                full = list(args)
                for i, x in zip(pos, xs[:len(pos)]):
                    full[i] = x
                return m(*full, **f.kwargs)
            return fn

        def leaves(pos):  # fresh copies: gradcheck perturbs in place and an error leaves them perturbed
            return tuple(args[i].detach().clone().requires_grad_(True) for i in pos) + tuple(params)

        try:
            assert check(make(positions), leaves(positions), **kw)
        except H.ProbabilityRangeError as e:
            # By design (H.DIFFERENCES["probability range"]): finite differences step a
            # probability target that lies within gradcheck's eps of 0 or 1 outside [0, 1],
            # which ours rejects.  Check that this is what happened, then check the rest.
            assert impl == "ours" and H.stepped_outside(e, args, positions), e
            H.note("probability range")
            inside = [i for i in positions if i == 0]
            assert check(make(inside), leaves(inside), **kw)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", MODULES)
def test_grad(name, impl):
    """TestModule.test_grad: gradcheck of the forward w.r.t. inputs and parameters, float64."""
    _gradients(name, impl, torch.autograd.gradcheck)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", MODULES)
def test_gradgrad(name, impl):
    """TestModule.test_gradgrad: gradgradcheck, float64."""
    assert H.MODULEINFOS[name].supports_gradgrad
    _gradients(name, impl, torch.autograd.gradgradcheck)


ERROR_CASES = [(m, i) for m in MODULES if H.MODULEINFOS[m].module_error_inputs_func is not None
               for i in range(len(H.MODULEINFOS[m].module_error_inputs_func(
                   H.MODULEINFOS[m], device=DEVICE, dtype=torch.float32, requires_grad=False, training=True)))]


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name, index", ERROR_CASES, ids=[f"{m}-{i}" for m, i in ERROR_CASES])
def test_errors(name, index, impl):
    """TestModule.test_errors: every error input raises (ours: the library's error class, H.DIFFERENCES)."""
    info = H.MODULEINFOS[name]
    for dtype in info.dtypes:
        err = info.module_error_inputs_func(info, device=DEVICE, dtype=dtype, requires_grad=False,
                                            training=True)[index]
        mi = err.module_error_input
        if err.error_on == H.CM.ModuleErrorEnum.CONSTRUCTION_ERROR:
            H.expect_error(impl, lambda: _build(impl, name, mi), err.error_type, err.error_regex)
        else:
            m = _build(impl, name, mi)
            H.expect_error(impl, lambda: _forward(m, mi), err.error_type, err.error_regex)
