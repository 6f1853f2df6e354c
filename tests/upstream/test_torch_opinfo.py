"""PyTorch's OpInfo checks (test_ops*, functorch's test_ops) on the four losses' OpInfos, torch vs ours.

The samples, dtypes and flags (``supports_forward_ad``, ``check_batched_grad``, ...)
are the OpInfos' own; the gradient checks call PyTorch's shipped driver helper
``TestGradients._check_helper`` with the function under test as the variant.
"""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import _torch_harness as H  # noqa: E402
from _torch_harness import seeded  # noqa: E402,F401 - autouse fixture

OPS = sorted(H.OPINFOS)
DEVICE = "cpu"


# Second-order checks (gradgradcheck builds Jacobians of Jacobians; binary_cross_entropy
# asks for gradcheck's slow mode) on the samples of at most 32 input elements: every
# option combination of every OpInfo is among them; only the larger copies of the
# option-less sample (e.g. 5×5×5) are left out, to keep CI within a minute or two.
MAX_ELEMENTS_2ND_ORDER = 32


def _small_samples(info):
    return H.with_samples(info, lambda s: s.input.numel() <= MAX_ELEMENTS_2ND_ORDER)


def _call(fn, sample):
    return fn(sample.input, *sample.args, **sample.kwargs)


def _call_upcast(fn, sample):
    return fn(_upcast(sample.input), *[_upcast(a) for a in sample.args],
              **{k: _upcast(v) for k, v in sample.kwargs.items()})


def _upcast(x):
    return x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


# Values: PyTorch's OpInfo comparisons use the dtype's default tolerances
# (torch.testing.assert_close).  In half precision ours computes in float32 and
# rounds once, while PyTorch rounds intermediate results in the half type (a
# by-design difference, H.DIFFERENCES): there the check is that ours is never
# further from the exact value (float64) than PyTorch's own result plus one
# rounding of the half type.
def _assert_values(impl, actual, expected, dtype, fn_truth):
    if dtype in (torch.float16, torch.bfloat16) and impl == "ours":
        H.assert_not_less_accurate(actual, expected, fn_truth(), dtype)
        H.note("half precision rounding")
    else:
        torch.testing.assert_close(actual, expected, equal_nan=True)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op", OPS)
def test_values_on_every_sample(op, dtype, impl):
    """The op against PyTorch's own on every reference input of every listed dtype."""
    info = H.OPINFOS[op]
    assert dtype in info.dtypes
    fn = H.function(impl, op)
    n = 0
    for sample in info.reference_inputs(DEVICE, dtype, requires_grad=False):
        expected = _call(info.op, sample)
        actual = _call(fn, sample)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        _assert_values(impl, actual, expected, dtype, lambda: _call_upcast(info.op, sample))
        n += 1
    assert n > 0


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_fn_grad(op, impl):
    """test_ops_gradients.TestBwdGradients.test_fn_grad: gradcheck (batched too) of every sample, float64."""
    info = H.OPINFOS[op]
    H.gradients_driver()._grad_test_helper(DEVICE, torch.float64, info, H.function(impl, op))


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_fn_gradgrad(op, impl):
    """test_fn_gradgrad: gradgradcheck (batched, non-contiguous grad outputs too), float64."""
    info = H.OPINFOS[op]
    assert info.supports_gradgrad
    H.gradients_driver()._check_helper(DEVICE, torch.float64, _small_samples(info), H.function(impl, op),
                                       "bwgrad_bwgrad")


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_forward_mode_AD(op, impl):
    """test_ops_fwd_gradients.test_forward_mode_AD: forward-mode gradcheck (batched forward grads too)."""
    info = H.OPINFOS[op]
    assert info.supports_forward_ad
    H.gradients_driver()._grad_test_helper(DEVICE, torch.float64, info, H.function(impl, op), check_forward_ad=True,
                                           check_backward_ad=False, check_batched_grad=False,
                                           check_batched_forward_grad=info.check_batched_forward_grad)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_fn_fwgrad_bwgrad(op, impl):
    """test_fn_fwgrad_bwgrad: forward-over-reverse gradgradcheck."""
    info = H.OPINFOS[op]
    assert info.supports_fwgrad_bwgrad
    H.gradients_driver()._check_helper(DEVICE, torch.float64, _small_samples(info), H.function(impl, op),
                                       "fwgrad_bwgrad")


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_noncontiguous_samples(op, impl):
    """test_ops.TestCommon.test_noncontiguous_samples: non-contiguous samples give the same values and grads."""
    info = H.OPINFOS[op]
    fn = H.function(impl, op)
    for sample in info.sample_inputs(DEVICE, torch.float32, requires_grad=True):
        nc = sample.noncontiguous()
        out, out_nc = _call(fn, sample), _call(fn, nc)
        torch.testing.assert_close(out, out_nc, equal_nan=True)
        g = torch.randn_like(out)
        leaves = [t for t in (sample.input, *sample.args, *sample.kwargs.values())
                  if isinstance(t, torch.Tensor) and t.requires_grad]
        leaves_nc = [t for t in (nc.input, *nc.args, *nc.kwargs.values())
                     if isinstance(t, torch.Tensor) and t.requires_grad]
        grads = torch.autograd.grad(out, leaves, g)
        grads_nc = torch.autograd.grad(out_nc, leaves_nc, g)
        for a, b in zip(grads, grads_nc):
            torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_unsupported_dtypes_raise(op, impl):
    """test_ops.TestCommon.test_dtypes (the unsupported half): dtypes outside the OpInfo's list raise."""
    info = H.OPINFOS[op]
    fn = H.function(impl, op)
    for dtype in (torch.int64, torch.bool, torch.complex128):
        assert dtype not in info.dtypes
        sample = next(iter(info.sample_inputs(DEVICE, torch.float64)))
        inp = sample.input.to(dtype)
        with pytest.raises(Exception):  # noqa: B017 - PyTorch raises RuntimeError, ours InvalidDTypeError
            fn(inp, *sample.args, **sample.kwargs)


# ---------------------------------------------------------------------------------------------
# functorch's checks (test/functorch/test_ops.py): vmap against a loop, jvp against reverse mode
# ---------------------------------------------------------------------------------------------

def _batchable(t):
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _batched(sample, op, which):
    """Two variants of a sample stacked on dim 0, for the inputs named by ``which``."""
    def vary(t):
        if op == "binary_cross_entropy" or not t.requires_grad:  # probabilities stay probabilities
            return t * 0.5 + 0.25 if op == "binary_cross_entropy" and t is sample.input else t.flip(-1) \
                if t.dim() else t * 0.5
        return t * 0.5 - 0.25
    args = [sample.input, *sample.args]
    out, dims = [], []
    for i, a in enumerate(args):
        if i in which and _batchable(a):
            out.append(torch.stack([a.detach(), vary(a.detach())]))
            dims.append(0)
        else:
            out.append(a)
            dims.append(None)
    return out, tuple(dims)


def _loop(fn, args, dims, kwargs):
    B = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    return torch.stack([fn(*[a.select(d, b) if d is not None else a for a, d in zip(args, dims)], **kwargs)
                        for b in range(B)])


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_vmap_exhaustive(op, impl):
    """vmap of the op over its input, its target and both, against a loop (functorch's test_vmap_exhaustive)."""
    info = H.OPINFOS[op]
    fn = H.function(impl, op)
    for sample in info.sample_inputs(DEVICE, torch.float64):
        kwargs = {k: v for k, v in sample.kwargs.items()}
        for which in ({0}, {1}, {0, 1}):
            args, dims = _batched(sample, op, which)
            if all(d is None for d in dims):
                continue
            got = torch.func.vmap(lambda *a: fn(*a, **kwargs), in_dims=dims)(*args)
            torch.testing.assert_close(got, _loop(fn, args, dims, kwargs), equal_nan=True)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_vmapvjp(op, impl):
    """vmap over the cotangent and the input of vjp (functorch's test_vmapvjp), against a loop."""
    info = H.OPINFOS[op]
    fn = H.function(impl, op)
    for sample in info.sample_inputs(DEVICE, torch.float64):
        kwargs = dict(sample.kwargs)
        rest = sample.args

        def vjp_of(x, ct):
            _, pull = torch.func.vjp(lambda z: fn(z, *rest, **kwargs), x)
            return pull(ct)[0]

        out = fn(sample.input, *rest, **kwargs)
        x = sample.input.detach()
        xs = torch.stack([x, x * 0.5 + (0.25 if op == "binary_cross_entropy" else 0.1)])
        cts = torch.stack([torch.ones_like(out), torch.full_like(out, -0.5)])
        got = torch.func.vmap(vjp_of)(xs, cts)
        torch.testing.assert_close(got, torch.stack([vjp_of(xs[b], cts[b]) for b in range(2)]), equal_nan=True)


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_jvp(op, impl):
    """torch.func.jvp against the reverse-mode (double-vjp) JVP of the same function (functorch's test_jvp)."""
    info = H.OPINFOS[op]
    fn = H.function(impl, op)
    for sample in info.sample_inputs(DEVICE, torch.float64, requires_grad=True):
        primals = [t for t in (sample.input, *sample.args) if isinstance(t, torch.Tensor) and t.requires_grad]
        positions = [i for i, t in enumerate((sample.input, *sample.args))
                     if isinstance(t, torch.Tensor) and t.requires_grad]
        tangents = [torch.randn_like(p) for p in primals]

        def f(*ps):
            full = [sample.input, *sample.args]
            for i, p in zip(positions, ps):
                full[i] = p
            return fn(*full, **sample.kwargs)

        ps = [p.detach() for p in primals]
        out, tan = torch.func.jvp(f, tuple(ps), tuple(tangents))
        # reference: J·t = d/du <Jᵀu, t> (reverse mode twice)
        leaves = [p.clone().requires_grad_(True) for p in ps]
        y = f(*leaves)
        u = torch.zeros_like(y, requires_grad=True)
        vjps = torch.autograd.grad(y, leaves, u, create_graph=True)
        ref = torch.autograd.grad(sum((v * t).sum() for v, t in zip(vjps, tangents)), u)[0]
        torch.testing.assert_close(out, y.detach(), equal_nan=True)
        torch.testing.assert_close(tan, ref, equal_nan=True)
