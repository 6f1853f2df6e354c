"""Every array library: array-API dispatch, the caller's device, jit, vmap, torch.compile.

``array_api_strict`` is the strictest client there is: it refuses anything
outside the standard, and its ``device1`` arrays refuse conversion to NumPy,
so a loss that silently went through NumPy, or dropped the device, fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

import crossentropy as ce

RNG = np.random.default_rng(3)
N, C = 5, 4
X = RNG.standard_normal((N, C)) * 3
X[0, 2] = -np.inf  # a masked class
P = RNG.dirichlet(np.ones(C), N) * 0.9 + 0.025
Y = RNG.integers(0, C, N)
Y[0] = 1
T = RNG.dirichlet(np.ones(C), N)
T[0, 2] = 0.0
XB = RNG.standard_normal((N, 3)) * 3
PB = RNG.uniform(0.05, 0.95, (N, 3))
TB = RNG.uniform(size=(N, 3))
W = RNG.uniform(0.5, 2.0, C)

# (fn, input, target, options, differentiable w.r.t. target)
CASES = [
    (ce.cross_entropy, X, Y, dict(weight=W, label_smoothing=0.1, z_loss=1e-3), False),
    (ce.cross_entropy, X, T, dict(reduction="sum"), True),
    (ce.cross_entropy, X, np.where(Y == 3, -100, Y), dict(ignore_index=-100, reduction="none"), False),
    (ce.safe_softmax_cross_entropy, X, T, {}, True),
    (ce.nll_loss, np.log(P), Y, dict(weight=W), False),
    (ce.categorical_cross_entropy, P, T, dict(label_smoothing=0.2), True),
    (ce.categorical_cross_entropy, P, Y, dict(compat="keras"), False),
    (ce.focal_cross_entropy, X, Y, dict(gamma=2.0, alpha=0.25), False),
    (ce.categorical_focal_cross_entropy, P, T, dict(gamma=1.5), True),
    (ce.generalized_cross_entropy, P, Y, dict(q=0.4), False),
    (ce.poly1_cross_entropy, X, T, dict(epsilon=1.0), True),
    (ce.binary_cross_entropy, PB, TB, dict(pos_weight=np.array([1.0, 2.0, 0.5])), True),
    (ce.binary_cross_entropy, PB, TB, dict(compat="torch"), True),
    (ce.binary_cross_entropy_with_logits, XB, TB, dict(label_smoothing=0.1), True),
    (ce.binary_focal_cross_entropy, PB, TB, dict(gamma=2.0, alpha=0.3), True),
    (ce.binary_focal_cross_entropy_with_logits, XB, TB, dict(gamma=2.0), True),
]
IDS = [f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)]
ACTIVATIONS = [ce.sigmoid, ce.log_sigmoid, ce.softmax, ce.log_softmax, ce.logsumexp]


def _reference(fn, x, t, kw, wrt):
    from crossentropy import _kernels

    prev = _kernels.configure(enabled=False)
    try:
        return ce.value_and_grad(fn, x, t, wrt=wrt, **kw)
    finally:
        _kernels.configure(enabled=prev["enabled"])


def _close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------------------------------------
# array_api_strict, on a second device
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def strict():
    import array_api_strict as xs

    dev = xs.Device("device1")

    def arr(a):
        return None if a is None else xs.asarray(np.asarray(a), device=dev)

    return xs, dev, arr


@pytest.mark.parametrize("fn,x,t,kw,tgrad", CASES, ids=IDS)
def test_array_api_strict_second_device(strict, fn, x, t, kw, tgrad):
    xs, dev, arr = strict
    kw_x = {k: (arr(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    wrt = (0, 1) if tgrad else 0
    value, grads = ce.value_and_grad(fn, arr(x), arr(t), wrt=wrt, **kw_x)
    grads = grads if isinstance(grads, tuple) else (grads,)
    rv, rg = _reference(fn, x, t, kw, wrt)
    rg = rg if isinstance(rg, tuple) else (rg,)
    assert type(value).__module__.startswith("array_api_strict") and value.device == dev
    _close(np.from_dlpack(xs.asarray(value, device=xs.Device("CPU_DEVICE"))), rv)
    for g, r in zip(grads, rg):
        assert g.device == dev and g.shape == r.shape
        _close(np.from_dlpack(xs.asarray(g, device=xs.Device("CPU_DEVICE"))), r)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=[a.__name__ for a in ACTIVATIONS])
def test_array_api_strict_activations(strict, act):
    xs, dev, arr = strict
    x = XB
    v, g = ce.value_and_grad(act, arr(x))
    assert v.device == dev and g.device == dev
    rv, rg = ce.value_and_grad(act, x)
    cpu = xs.Device("CPU_DEVICE")
    _close(np.from_dlpack(xs.asarray(v, device=cpu)), rv)
    _close(np.from_dlpack(xs.asarray(g, device=cpu)), rg)


def test_array_api_strict_errors_locate_the_entry_on_device(strict):
    xs, dev, arr = strict
    with pytest.raises(ce.TargetOutOfRangeError, match=r"target\[1\] = 7 is outside \[0, 4\) classes"):
        ce.cross_entropy(arr(X[:2]), arr(np.array([0, 7])))
    with pytest.raises(ce.ProbabilityRangeError, match=r"input\[0, 1\] = 1.5 is outside \[0, 1\]"):
        ce.binary_cross_entropy(arr(np.array([[0.5, 1.5]])), arr(np.array([[0.0, 1.0]])))


def test_unknown_array_type_is_a_clear_error():
    class NotAnArray:
        dtype = np.float64
        shape = (2,)
        ndim = 1

        def __array_namespace__(self, api_version=None):
            raise TypeError("no namespace here")

    with pytest.raises(ce.InvalidDTypeError, match="not supported.*array API"):
        ce.sigmoid(NotAnArray())


def test_mixing_numpy_into_a_torch_call_gives_torch():
    import torch

    out = ce.cross_entropy(torch.tensor(X), Y)
    assert isinstance(out, torch.Tensor)
    _close(out.numpy(), ce.cross_entropy(X, Y))
    with pytest.raises(ce.InvalidDTypeError, match="different libraries"):
        import jax.numpy as jnp

        ce.cross_entropy(torch.tensor(X), jnp.asarray(Y))


# ---------------------------------------------------------------------------------------------
# JAX: jit (no value is read under tracing), and autodiff through the reference code
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn,x,t,kw,tgrad", CASES, ids=IDS)
def test_jax_jit_equals_eager(fn, x, t, kw, tgrad):
    import jax
    import jax.numpy as jnp

    # array options are traced like the inputs; scalar options are static (closed over)
    arrays = {k: jnp.asarray(v) for k, v in kw.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kw.items() if not isinstance(v, np.ndarray)}
    wrt = (0, 1) if tgrad else 0
    run = jax.jit(lambda a, b, opts: ce.value_and_grad(fn, a, b, wrt=wrt, **opts, **static))
    v, g = run(jnp.asarray(x), jnp.asarray(t), arrays)
    rv, rg = _reference(fn, x, t, kw, wrt)
    _close(v, rv)
    for a, b in zip(g if tgrad else (g,), rg if tgrad else (rg,)):
        _close(a, b)


# ---------------------------------------------------------------------------------------------
# torch: functorch transforms and torch.compile through the reference code
# ---------------------------------------------------------------------------------------------

TORCH_CASES = [c for c in CASES if c[0] in (ce.cross_entropy, ce.binary_cross_entropy_with_logits, ce.nll_loss)]


@pytest.mark.parametrize("fn,x,t,kw,tgrad", TORCH_CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_torch_func_transforms_and_compile(fn, x, t, kw, tgrad):
    import torch

    kw_t = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    xt, tt = torch.as_tensor(x), torch.as_tensor(t)

    def f(a):
        return fn(a, tt, **kw_t).sum()

    _, ref = _reference(fn, x, t, kw, 0)
    _close(torch.func.grad(f)(xt).numpy(), ref)
    _close(torch.compile(torch.func.grad(f), fullgraph=True)(xt).numpy(), ref)
    # vmap of grad over a batch of two copies
    batched = torch.func.vmap(torch.func.grad(f))(torch.stack([xt, xt]))
    _close(batched[1].numpy(), ref)
    # forward mode: the JVP along a direction equals <grad, direction> (finite rows only)
    d = torch.as_tensor(np.where(np.isfinite(x), RNG.standard_normal(x.shape), 0.0))
    _, jvp = torch.func.jvp(f, (xt,), (d,))
    _close(jvp.item(), float(np.sum(np.where(np.isfinite(x), ref, 0.0) * d.numpy())))
