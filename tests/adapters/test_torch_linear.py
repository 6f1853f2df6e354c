"""crossentropy.torch linear_cross_entropy / LinearCrossEntropyLoss: fused vs PyTorch's own and vs unfused torch.

The fused path (CPU: the tiled engine, MKL products and the compiled chunk kernels) against
``torch.nn.functional.linear_cross_entropy`` (both its reference and its chunked path) and against the
unfused composition for the options PyTorch lacks, in every autodiff mode.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import crossentropy as ce
from crossentropy import _kernels
from crossentropy import _linear_engine as engine
from crossentropy.linear import _reference
from crossentropy.torch import LinearCrossEntropyLoss
from crossentropy.torch import linear as tl
from crossentropy.torch.functional import linear_cross_entropy as lce

N, D, V = 19, 5, 37
G = torch.Generator().manual_seed(11)
H64 = torch.randn(N, D, generator=G, dtype=torch.float64)
W64 = torch.randn(V, D, generator=G, dtype=torch.float64) * 0.8
B64 = torch.randn(V, generator=G, dtype=torch.float64)
Y = torch.randint(0, V, (N,), generator=G)
Y_IGN = Y.clone()
Y_IGN[[1, 5, 6]] = -100
CW = torch.rand(V, generator=G, dtype=torch.float64) * 1.5 + 0.3

# small tiles: V = 37 in 5 tiles of 8 classes, blocks of 4 rows (budgets pick one or two passes)
SMALL = dict(TILE_CLASSES=8, ROW_BLOCK_BYTES=4 * V * 8, ROW_MULTIPLE=1, MIN_ROWS=1)
TILE = 4 * 8 * 8
LAYOUTS = {"default": (None, None), "one_pass": (SMALL, None), "two_pass": (SMALL, TILE),
           "two_pass_2": (SMALL, 2 * TILE)}


@pytest.fixture
def budget(request, monkeypatch):
    tiles, b = LAYOUTS[request.param]
    for k, v in (tiles or {}).items():
        monkeypatch.setattr(engine, k, v)
    return b


def _leaves(*ts):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in ts]


def _run(fn, h, w, y, b=None, go=None, **kw):
    h, w, b = _leaves(h, w, b)
    loss = fn(h, w, y, linear_bias=b, **kw)
    loss.backward(go if go is not None else None) if loss.dim() == 0 else loss.backward(go)
    return loss.detach(), h.grad, w.grad, (None if b is None else b.grad)


def _torch_ref(h, w, y, *, linear_bias=None, **kw):
    return F.linear_cross_entropy(h, w, y, linear_bias=linear_bias, **kw)


def _unfused(h, w, y, *, linear_bias=None, weight=None, reduction="mean", ignore_index=None, label_smoothing=0.0,
             z_loss=0.0, softcap=None, num_items_in_batch=None):
    """Unfused torch (materialised logits) for our extras: the composition the docs define."""
    z = F.linear(h, w, linear_bias)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    ii = -100 if ignore_index is None else ignore_index
    per = F.cross_entropy(z, y, weight=weight, ignore_index=ii, reduction="none", label_smoothing=label_smoothing)
    valid = y != ii
    per = per + torch.where(valid, z_loss * torch.logsumexp(z, -1) ** 2, 0.0)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if num_items_in_batch is not None:
        return per.sum() / num_items_in_batch
    wy = valid.to(per.dtype) if weight is None else torch.where(valid, weight[y.clamp(0)], 0.0)
    return per.sum() / wy.sum()


def _rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300)) if b.numel() else 0.0


def _close(got, want, rtol):
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and a.dtype == b.dtype
            assert _rel(a, b) <= rtol, (_rel(a, b), rtol)


TORCH_OPTIONS = {
    "plain": {},
    "ignore": dict(ignore_index=-100),
    "class_weight": dict(weight=CW),
    "smoothing": dict(label_smoothing=0.2),
    "all": dict(weight=CW, ignore_index=-100, label_smoothing=0.1),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(TORCH_OPTIONS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("budget", list(LAYOUTS), indirect=True)
def test_equals_torch_linear_cross_entropy_float64(reduction, name, bias, budget):
    kw = dict(TORCH_OPTIONS[name], reduction=reduction)
    y = Y_IGN if "ignore_index" in kw else Y
    b = B64 if bias else None
    go = torch.linspace(0.5, 2.0, N, dtype=torch.float64) if reduction == "none" else None
    got = _run(lce, H64, W64, y, b, go=go, memory_budget=budget, **kw)
    want = _run(_torch_ref, H64, W64, y, b, go=go, **kw)
    _close(got, want, 1e-12)


def test_equals_torch_chunked_path():
    opts = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=4)
    for reduction in ("mean", "sum", "none"):
        go = torch.linspace(0.5, 2.0, N, dtype=torch.float64) if reduction == "none" else None
        got = _run(lce, H64, W64, Y_IGN, B64, go=go, weight=CW, reduction=reduction, options=opts)
        want = _run(_torch_ref, H64, W64, Y_IGN, B64, go=go, weight=CW, reduction=reduction, options=opts)
        _close(got, want, 1e-12)


EXTRAS = {
    "z_loss": dict(z_loss=1e-2),
    "softcap": dict(softcap=3.0),
    "num_items": dict(num_items_in_batch=41),
    "z_softcap_smooth_weight_ignore": dict(z_loss=5e-3, softcap=2.5, label_smoothing=0.1, weight=CW, ignore_index=-100),
}


# num_items_in_batch goes with reduction='mean' only (another reduction is an error, tested below)
EXTRA_CASES = [(r, n) for n in EXTRAS for r in ("mean", "sum", "none") if n != "num_items" or r == "mean"]


@pytest.mark.parametrize("reduction,name", EXTRA_CASES)
@pytest.mark.parametrize("budget", ["default", "two_pass"], indirect=True)
def test_extras_equal_unfused_float64(reduction, name, budget):
    kw = dict(EXTRAS[name], reduction=reduction)
    y = Y_IGN if "ignore_index" in kw else Y
    go = torch.linspace(0.5, 2.0, N, dtype=torch.float64) if reduction == "none" else None
    got = _run(lce, H64, W64, y, B64, go=go, memory_budget=budget, **kw)
    want = _run(_unfused, H64, W64, y, B64, go=go, **kw)
    _close(got, want, 1e-12)
    # and the library's own unfused NumPy reference
    np_kw = {("class_weight" if k == "weight" else k): (v.numpy() if isinstance(v, torch.Tensor) else v)
             for k, v in kw.items()}
    if np_kw.get("ignore_index") is None:
        np_kw.pop("ignore_index", None)
    rv, rg = _reference(H64.numpy(), W64.numpy(), y.numpy(), bias=B64.numpy(),
                        grad_output=None if go is None else go.numpy(), **np_kw)
    assert _rel(got[0], torch.as_tensor(np.asarray(rv))) <= 1e-12
    for a, r in zip(got[1:], rg):
        assert _rel(a, torch.as_tensor(r)) <= 1e-12


def test_every_pair_of_extras_and_options():
    opts = dict(z_loss=1e-2, softcap=3.0, label_smoothing=0.15, weight=CW, ignore_index=-100,
                num_items_in_batch=30)
    for a, b in itertools.combinations(opts, 2):
        kw = {a: opts[a], b: opts[b]}
        y = Y_IGN if "ignore_index" in kw else Y
        _close(_run(lce, H64, W64, y, B64, **kw), _run(_unfused, H64, W64, y, B64, **kw), 1e-12)


def test_plain_backward_is_fused_and_never_builds_the_logits(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the unfused composition ran")

    monkeypatch.setattr(tl, "_unfused", boom)
    h, w, b = _leaves(H64, W64, B64)
    loss = lce(h, w, Y_IGN, linear_bias=b, z_loss=1e-3, softcap=4.0, label_smoothing=0.1)
    assert type(loss.grad_fn).__name__ == "_FusedBackward"
    loss.backward()
    assert h.grad is not None and w.grad is not None and b.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_error_no_larger_than_unfused(dtype):
    """Against a float64 reference, the fused result in `dtype` is no less accurate than unfused torch in `dtype`."""
    kw = dict(weight=CW, ignore_index=-100, label_smoothing=0.1, z_loss=1e-3, softcap=5.0)
    ref = _run(_unfused, H64, W64, Y_IGN, B64, **kw)
    low = [t.to(dtype) for t in (H64, W64, B64)]
    kwl = dict(kw, weight=CW.to(dtype))
    fused = _run(lce, *low[:2], Y_IGN, low[2], **kwl)
    unfused = _run(_unfused, *low[:2], Y_IGN, low[2], **kwl)
    eps = torch.finfo(dtype).eps
    for f, u, r in zip(fused, unfused, ref):
        assert f.dtype == dtype
        err_f = (f.double() - r).abs().max()
        err_u = (u.double() - r).abs().max()
        assert err_f <= max(err_u, 2 * eps * r.abs().max()), (dtype, float(err_f), float(err_u))


def test_bitwise_identical_across_threads_and_budgets(monkeypatch):
    g = torch.Generator().manual_seed(3)
    n, d, v = 70, 24, 300
    monkeypatch.setattr(engine, "TILE_CLASSES", 64)
    monkeypatch.setattr(engine, "MIN_ROWS", 16)
    monkeypatch.setattr(engine, "ROW_BLOCK_BYTES", 16 * v * 4)
    h, w, b = (torch.randn(*s, generator=g) for s in ((n, d), (v, d), (v,)))
    y = torch.randint(0, v, (n,), generator=g)
    tile = 16 * 64 * 4
    kw = dict(label_smoothing=0.05, z_loss=1e-3, softcap=20.0)
    runs = []
    threads = torch.get_num_threads()
    prev = _kernels.configure(threads=1)
    try:
        for kt, tt, bud in [(1, 1, None), (2, 2, None), (2, 1, tile), (1, 2, 3 * tile), (2, 2, 1 << 30)]:
            _kernels.configure(threads=kt)
            torch.set_num_threads(tt)
            runs.append(_run(lce, h, w, y, b, memory_budget=bud, **kw))
    finally:
        torch.set_num_threads(threads)
        _kernels.configure(threads=prev["threads"] or 0)
    for r in runs[1:]:
        assert all(torch.equal(a, c) for a, c in zip(runs[0], r))


def test_micro_batches_with_num_items_add_up_to_the_full_batch():
    n_items = int((Y_IGN != -100).sum())
    full = _run(lce, H64, W64, Y_IGN, B64, ignore_index=-100)
    h, w, b = _leaves(H64, W64, B64)
    total = 0.0
    for sl in (slice(0, 7), slice(7, 13), slice(13, N)):
        loss = lce(h[sl], w, Y_IGN[sl], linear_bias=b, num_items_in_batch=torch.tensor(n_items))
        loss.backward()
        total += float(loss.detach())
    assert abs(total - float(full[0])) <= 1e-13 * abs(float(full[0]))
    _close((h.grad, w.grad, b.grad), full[1:], 1e-12)


def test_gradcheck_and_gradgradcheck():
    g = torch.Generator().manual_seed(5)
    h, w, b = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in ((4, 3), (6, 3), (6,)))
    y = torch.tensor([0, 5, -100, 2])
    kw = dict(ignore_index=-100, label_smoothing=0.1, z_loss=0.05, softcap=2.0, weight=torch.rand(6, generator=g,
                                                                                                  dtype=torch.float64))
    for red in ("mean", "sum", "none"):
        def f(h, w, b):
            return lce(h, w, y, linear_bias=b, reduction=red, **kw)

        assert torch.autograd.gradcheck(f, (h, w, b))
        if red == "mean":  # second order runs the unfused composition, whatever the reduction
            assert torch.autograd.gradgradcheck(f, (h, w, b))


def test_double_backward_forward_mode_and_torch_func_equal_unfused():
    kw = dict(z_loss=1e-2, softcap=3.0, label_smoothing=0.1, weight=CW, ignore_index=-100)

    def ours(h, w, b):
        return lce(h, w, Y_IGN, linear_bias=b, **kw)

    def theirs(h, w, b):
        return _unfused(h, w, Y_IGN, linear_bias=b, **kw)

    # double backward: a gradient penalty
    res = []
    for fn in (ours, theirs):
        h, w, b = _leaves(H64, W64, B64)
        (gh,) = torch.autograd.grad(fn(h, w, b), h, create_graph=True)
        (gh ** 2).sum().backward()
        res.append((w.grad, b.grad, h.grad))
    _close(res[0], res[1], 1e-12)
    # hessian-vector product
    v = torch.randn(V, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hv = [torch.autograd.functional.hvp(lambda w: fn(H64, w, B64), W64, v)[1] for fn in (ours, theirs)]
    _close(hv[:1], hv[1:], 1e-12)
    # forward mode and torch.func
    t = torch.randn(N, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    jv = [torch.func.jvp(lambda h: fn(h, W64, B64), (H64,), (t,))[1] for fn in (ours, theirs)]
    _close(jv[:1], jv[1:], 1e-12)
    gr = [torch.func.grad(fn, argnums=(0, 1, 2))(H64, W64, B64) for fn in (ours, theirs)]
    _close(gr[0], gr[1], 1e-12)
    rows = [torch.func.vmap(torch.func.grad(lambda h, y: lce(h[None], W64, y[None], linear_bias=B64, z_loss=1e-2,
                                                             softcap=3.0)))(H64, Y)]
    rows.append(torch.func.vmap(torch.func.grad(lambda h, y: _unfused(h[None], W64, y[None], linear_bias=B64,
                                                                      z_loss=1e-2, softcap=3.0)))(H64, Y))
    _close(rows[:1], rows[1:], 1e-12)
    jr = [torch.func.jacrev(lambda w: fn(H64, w, B64))(W64) for fn in (ours, theirs)]
    _close(jr[:1], jr[1:], 1e-12)


def test_torch_compile():
    f = torch.compile(lambda h, w, b: lce(h, w, Y_IGN, linear_bias=b, z_loss=1e-3), backend="eager")
    got = _run(lambda h, w, y, linear_bias=None: f(h, w, linear_bias), H64, W64, Y_IGN, B64)
    _close(got, _run(_unfused, H64, W64, Y_IGN, B64, z_loss=1e-3), 1e-12)


def test_retain_graph_second_backward():
    h, w, b = _leaves(H64, W64, B64)
    loss = lce(h, w, Y, linear_bias=b)
    loss.backward(retain_graph=True)
    first = w.grad.clone()
    loss.backward()
    assert torch.allclose(w.grad, 2 * first, rtol=1e-14, atol=0)
    h2, w2, b2 = _leaves(H64, W64, B64)
    (lce(h2, w2, Y, linear_bias=b2) * 3.0).backward()
    assert _rel(w2.grad, 3 * first) <= 1e-15


def test_shapes_torch_supports_beyond_the_fused_case():
    """Unbatched input, class probabilities and a K-dimensional weight follow torch (unfused route)."""
    g = torch.Generator().manual_seed(8)
    cases = [
        (H64[0], W64, Y[0], dict()),
        (H64[0], W64, Y[0], dict(reduction="none")),
        (H64, W64, torch.softmax(torch.randn(N, V, generator=g, dtype=torch.float64), 1), dict(label_smoothing=0.1)),
        (H64[:4], torch.randn(V, 3, D, generator=g, dtype=torch.float64), torch.randint(0, V, (4, 3), generator=g),
         dict(weight=CW)),
    ]
    for h, w, y, kw in cases:
        got = _run(lce, h, w, y, **kw)
        want = _run(_torch_ref, h, w, y, **kw)
        _close(got, want, 1e-12)


def test_every_row_ignored_gives_nan_mean_as_torch():
    y = torch.full((N,), -100)
    got = _run(lce, H64, W64, y)
    want = _run(_torch_ref, H64, W64, y)
    assert torch.isnan(got[0]) and torch.isnan(want[0])
    for a, b in zip(got[1:3], want[1:3]):  # PyTorch's gradients are zeros there
        assert torch.equal(a, b) and not a.abs().sum()


def test_module_mirrors_torch_module():
    torch.manual_seed(0)
    ours = LinearCrossEntropyLoss(D, V, bias=True, dtype=torch.float64, weight=CW, label_smoothing=0.1)
    theirs = torch.nn.LinearCrossEntropyLoss(D, V, bias=True, dtype=torch.float64, weight=CW, label_smoothing=0.1)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, torch.nn.LinearCrossEntropyLoss)
    lo, lt = ours(H64, Y), theirs(H64, Y)
    lo.backward()
    lt.backward()
    assert _rel(lo.detach(), lt.detach()) <= 1e-12
    assert _rel(ours.linear.weight.grad, theirs.linear.weight.grad) <= 1e-12
    assert _rel(ours.linear.bias.grad, theirs.linear.bias.grad) <= 1e-12
    assert "z_loss=0.0" in repr(ours)


BAD = [
    (lambda: lce(H64, W64[:, :3], Y), ce.ShapeMismatchError, "input's last dimension must equal linear_weight's"),
    (lambda: lce(H64[None], W64, Y), ce.ShapeMismatchError, r"input must have shape \(in_features,\)"),
    (lambda: lce(H64, W64, Y, linear_bias=B64[:3]), ce.ShapeMismatchError, r"linear_bias must have shape \(37,\)"),
    (lambda: lce(H64, W64, Y[:4]), ce.ShapeMismatchError, r"target with class indices must have shape \(19,\)"),
    (lambda: lce(H64.float(), W64, Y), ce.InvalidDTypeError, "linear_weight must have the dtype of input"),
    (lambda: lce(H64, W64, Y, linear_bias=B64.float()), ce.InvalidDTypeError, "linear_bias must have the dtype"),
    (lambda: lce(H64, W64, Y, weight=CW.float()), ce.InvalidDTypeError, "weight must have the dtype of input"),
    (lambda: lce(H64, W64, torch.where(Y == Y[3], 40, Y)), ce.TargetOutOfRangeError,
     r"target\[3\] = 40 is outside \[0, 37\)"),
    (lambda: lce(H64, W64, Y, softcap=0.0), ce.InvalidOptionError, "softcap must be a positive"),
    (lambda: lce(H64, W64, Y, z_loss=-1.0), ce.InvalidOptionError, "z_loss must be"),
    (lambda: lce(H64, W64, Y, memory_budget=64), ce.InvalidOptionError, "memory_budget=64 bytes is too small"),
    (lambda: lce(H64, W64, Y, num_items_in_batch=0), ce.InvalidOptionError, "num_items_in_batch must be a positive"),
    (lambda: lce(H64, W64, Y, reduction="sum", num_items_in_batch=3), ce.InvalidOptionError, "needs reduction='mean'"),
    (lambda: lce(H64, W64, Y, reduction="avg"), ce.InvalidOptionError, "reduction"),
    (lambda: lce(H64, W64, Y, options=3), ce.InvalidOptionError, "options must be"),
    (lambda: lce(H64, W64, torch.softmax(H64 @ W64.T, 1), ignore_index=-100), ce.InvalidOptionError,
     "ignore_index cannot be given"),
]


@pytest.mark.parametrize("call,err,msg", BAD, ids=[b[2][:28] for b in BAD])
def test_bad_input_is_a_clear_error_before_any_work(call, err, msg, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("the chunks ran before the input was checked")

    monkeypatch.setattr(tl, "run_engine", no_work)
    with pytest.raises(err, match=msg):
        call()


def test_cuda_paths_under_the_triton_interpreter():
    """The CUDA routes on CPU tensors under TRITON_INTERPRET=1, in a fresh process: the fused linear CE
    (torch.mm + the Triton in-chunk kernel, float32 and bfloat16) and plain cross_entropy through the
    device kernel; their speed on a GPU is not measured here (no GPU)."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    here = pathlib.Path(__file__).parent
    src = str(pathlib.Path(ce.__file__).parent.parent)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([src] + [p for p in sys.path if p]))
    out = subprocess.run([sys.executable, "-W", "ignore", str(here / "_triton_torch_cases.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == 14
    for case, (errs, tol) in results.items():
        assert max(errs) <= tol, (case, errs)
