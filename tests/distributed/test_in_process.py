"""The vocabulary-parallel losses in this process: ranks as threads (``_threads.ThreadComm``), many random problems.

The real process groups (``test_vocab_parallel.py``) cost seconds each; here
hypothesis draws hundreds of problems — vocabulary sizes, uneven splits with
empty shards, 1 to 5 ranks, every option, non-finite logits — and holds the
full stack (validation, chunking, autograd, the collectives' arithmetic) to
the single-process library.
"""

from __future__ import annotations

import math
import pathlib
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import crossentropy as ce
from crossentropy._errors import InvalidOptionError, ShapeMismatchError, TargetOutOfRangeError
from crossentropy.linear import _reference as linear_reference
from crossentropy.torch import _dist_math as dm
from crossentropy.torch._dist_check import _checksum
from crossentropy.torch._dist_comm import recording
from crossentropy.torch.distributed import _linear_loss, _logits_loss

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _threads import run_ranks  # noqa: E402

F64 = torch.float64


def _split(V, cuts):
    """Shard widths from sorted cut points (empty shards allowed)."""
    edges = [0, *sorted(min(V, c) for c in cuts), V]
    return [b - a for a, b in zip(edges, edges[1:])]


def _offsets(sizes):
    return [sum(sizes[:r]) for r in range(len(sizes))]


def _same(a, b, tol):
    """Equal within ``tol`` of the largest reference magnitude, NaN where NaN, ±inf where ±inf."""
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape
    fin = torch.isfinite(b)
    assert torch.equal(torch.isnan(a), torch.isnan(b)), (a, b)
    assert torch.equal(a[~fin & ~torch.isnan(b)], b[~fin & ~torch.isnan(b)]), (a, b)
    if fin.any():
        scale = b[fin].abs().max().clamp_min(1e-300)
        err = (a[fin] - b[fin]).abs().max()
        assert err <= tol * scale, f"max difference {float(err):.3g} > {tol:.1e} × {float(scale):.3g}"


@st.composite
def problems(draw, *, nonfinite=False):
    V = draw(st.integers(1, 12))
    R = draw(st.integers(1, 5))
    sizes = _split(V, draw(st.lists(st.integers(0, V), min_size=R - 1, max_size=R - 1)))
    N = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1.0, 5.0, 30.0, 1e4]))
    X = torch.randn(N, V, generator=g, dtype=F64) * scale
    if draw(st.booleans()):  # ties at the maximum
        X[:, -1] = X.max(dim=1).values
    if nonfinite:
        for _ in range(draw(st.integers(1, 4))):
            X[draw(st.integers(0, N - 1)), draw(st.integers(0, V - 1))] = draw(
                st.sampled_from([math.nan, math.inf, -math.inf]))
    y = torch.randint(0, V, (N,), generator=g)
    opts = {}
    ignore = draw(st.booleans())
    if ignore:
        y[torch.rand(N, generator=g) < 0.3] = -100
    if draw(st.booleans()):
        w = torch.rand(V, generator=g, dtype=F64) * 2
        w[torch.rand(V, generator=g) < 0.2] = 0.0  # zero weights: 0·log 0 = 0
        opts["weight"] = w
    if draw(st.booleans()):
        opts["label_smoothing"] = draw(st.sampled_from([0.05, 0.3, 1.0]))
    if draw(st.booleans()):
        opts["z_loss"] = draw(st.sampled_from([1e-4, 0.1]))
    if draw(st.booleans()):
        opts["softcap"] = draw(st.sampled_from([0.5, 3.0, 30.0]))
    if draw(st.booleans()):
        opts["sample_weight"] = torch.rand(N, generator=g, dtype=F64) + 0.1
    red = draw(st.sampled_from(["none", "sum", "mean"]))
    if red == "mean" and draw(st.booleans()):
        opts["num_items_in_batch"] = float(draw(st.integers(1, 20)))
    slice_weight = draw(st.booleans())
    return dict(X=X, y=y, sizes=sizes, opts=opts, reduction=red, slice_weight=slice_weight,
                go=torch.randn(N, generator=g, dtype=F64), D=draw(st.integers(1, 5)), seed=seed,
                budget_rows=draw(st.integers(1, N + 1)))


def _reference_logits(pb):
    o = dict(pb["opts"])
    num = o.pop("num_items_in_batch", None)
    red = "sum" if num is not None else pb["reduction"]
    go = pb["go"] if red == "none" else None
    v, g = ce.value_and_grad(ce.cross_entropy, pb["X"], pb["y"], reduction=red, grad_output=go,
                             ignore_index=-100, **o)
    return (v / num, g / num) if num is not None else (v, g)


def _shard_opts(pb, r, o0, w):
    o = dict(pb["opts"])
    if "weight" in o and pb["slice_weight"]:
        o["weight"] = o["weight"][o0:o0 + w]
    return o


def _run_logits(pb, **extra):
    sizes, offs = pb["sizes"], _offsets(pb["sizes"])

    def rank(comm):
        o0, w = offs[comm.rank], sizes[comm.rank]
        x = pb["X"][:, o0:o0 + w].clone().requires_grad_()
        opts = _shard_opts(pb, comm.rank, o0, w)
        loss = _logits_loss(comm, x, pb["y"], weight=opts.pop("weight", None),
                            sample_weight=opts.pop("sample_weight", None), reduction=pb["reduction"],
                            **{"ignore_index": -100, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None,
                               "num_items_in_batch": None, "memory_budget": None, "vocab_sizes": None,
                               "validate": True, **opts, **extra})
        loss.backward(pb["go"] if pb["reduction"] == "none" else None)
        return loss.detach(), x.grad

    return run_ranks(len(sizes), rank)


def _raise_any(outs):
    for o in outs:
        if isinstance(o, BaseException):
            raise o


def _check_logits(pb):
    """Every rank's loss and shard gradient against one process; the loss the same bits on every rank."""
    outs = _run_logits(pb)
    _raise_any(outs)
    rv, rg = _reference_logits(pb)
    for r, (loss, grad) in enumerate(outs):
        o0, w = _offsets(pb["sizes"])[r], pb["sizes"][r]
        _same(loss, rv, 1e-12)
        _same(grad, rg[:, o0:o0 + w], 1e-12)
        assert torch.equal(loss.view(torch.int64), outs[0][0].view(torch.int64))


@settings(max_examples=150, deadline=None)
@given(problems())
def test_logits_loss_equals_one_process(pb):
    _check_logits(pb)


@settings(max_examples=100, deadline=None)
@given(problems(nonfinite=True))
def test_non_finite_logits_give_what_one_process_gives(pb):
    pb["reduction"] = "none"
    pb["opts"].pop("num_items_in_batch", None)
    _check_logits(pb)


@settings(max_examples=80, deadline=None)
@given(problems())
def test_fused_loss_equals_one_process(pb):
    g = torch.Generator().manual_seed(pb["seed"])
    N, V, D = pb["X"].shape[0], pb["X"].shape[1], pb["D"]
    H = torch.randn(N, D, generator=g, dtype=F64) * 2
    W = torch.randn(V, D, generator=g, dtype=F64)
    B = torch.randn(V, generator=g, dtype=F64)
    sizes, offs = pb["sizes"], _offsets(pb["sizes"])
    budget = pb["budget_rows"] * max(sizes) * 8

    def rank(comm):
        o0, w = offs[comm.rank], sizes[comm.rank]
        h = H.clone().requires_grad_()
        Wr = W[o0:o0 + w].clone().requires_grad_()
        br = B[o0:o0 + w].clone().requires_grad_()
        opts = _shard_opts(pb, comm.rank, o0, w)
        loss = _linear_loss(comm, h, Wr, pb["y"], bias_shard=br, class_weight=opts.pop("weight", None),
                            sample_weight=opts.pop("sample_weight", None), reduce_hidden_grad=True,
                            reduction=pb["reduction"],
                            **{"ignore_index": -100, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None,
                               "num_items_in_batch": None, "memory_budget": budget, "vocab_sizes": None,
                               "validate": True, **opts})
        loss.backward(pb["go"] if pb["reduction"] == "none" else None)
        return loss.detach(), h.grad, Wr.grad, br.grad

    outs = run_ranks(len(sizes), rank)
    _raise_any(outs)
    o = dict(pb["opts"])
    cw = o.pop("weight", None)
    rv, (rdh, rdW, rdb) = linear_reference(H, W, pb["y"], wrt=(0, 1, "bias"), bias=B, class_weight=cw,
                                           reduction=pb["reduction"], ignore_index=-100,
                                           grad_output=pb["go"] if pb["reduction"] == "none" else None, **o)
    # The matmul gradients are sums over rows or classes, which may cancel: each entry is held to 1e-12 of the
    # magnitude of its terms (|G| the logits gradient of one process, G = ∂loss/∂(h Wᵀ + b)).
    _, G = _reference_logits({**pb, "X": H @ W.T + B})
    G = G.abs()
    for r, (loss, dh, dW, db) in enumerate(outs):
        o0, w = offs[r], sizes[r]
        _same(loss, rv, 1e-12)
        _within_terms(dh, rdh, G @ W.abs())
        _within_terms(dW, rdW[o0:o0 + w], (G.T @ H.abs())[o0:o0 + w])
        _within_terms(db, rdb[o0:o0 + w], G.sum(0)[o0:o0 + w])


def _within_terms(a, b, terms, tol=1e-12):
    assert a.shape == b.shape
    err = (a - b).abs()
    assert (err <= tol * terms + 1e-300).all(), f"max error / terms {float((err / terms).max()):.3g} > {tol}"


def test_negative_class_weights_with_smoothing():
    """PyTorch computes with negative class weights; the split sums may then cancel, as the single-process sum does:
    the difference stays within a few roundings of the terms' magnitude Σ_c |a_c log p_c|."""
    g = torch.Generator().manual_seed(3)
    N, V = 9, 23
    X = torch.randn(N, V, generator=g, dtype=F64) * 4
    y = torch.randint(0, V, (N,), generator=g)
    w = torch.rand(V, generator=g, dtype=F64) * 18 - 9  # PyTorch's own test range
    pb = dict(X=X, y=y, sizes=[7, 0, 9, 7], opts={"weight": w, "label_smoothing": 0.2, "z_loss": 1e-3},
              reduction="none", slice_weight=True, go=torch.ones(N, dtype=F64))
    outs = _run_logits(pb)
    _raise_any(outs)
    rv, _ = _reference_logits(pb)
    logp = torch.log_softmax(X, dim=1)
    a = w * (0.2 / V + 0.8 * torch.nn.functional.one_hot(y, V))
    scale = (a * logp).abs().sum(1) + 1e-3 * torch.logsumexp(X, 1) ** 2
    for loss, _ in outs:
        assert ((loss - rv).abs() <= 64 * 2.0 ** -52 * scale).all()


def test_confident_rows_in_float32_keep_losses_near_1e_minus_30():
    N, V = 6, 40
    g = torch.Generator().manual_seed(5)
    X = torch.rand(N, V, generator=g, dtype=F64) * 2 - 1
    y = torch.arange(N) * 7 % V
    X[torch.arange(N), y] = torch.linspace(66, 76, N, dtype=F64)
    X32 = X.float()
    pb = dict(X=X32, y=y, sizes=[13, 14, 13], opts={}, reduction="none", slice_weight=False,
              go=torch.ones(N))
    outs = _run_logits(pb)
    _raise_any(outs)
    exact, rg = _reference_logits({**pb, "X": X32.double(), "go": torch.ones(N, dtype=F64)})
    assert exact.max() < 1e-27 and exact.min() > 1e-34
    for r, (loss, grad) in enumerate(outs):
        assert (loss > 0).all()
        assert ((loss.double() - exact).abs() <= 8 * 2.0 ** -23 * exact).all()
        o0 = _offsets(pb["sizes"])[r]
        held = (y >= o0) & (y < o0 + pb["sizes"][r])
        gy = grad[held, y[held] - o0].double()
        ry = rg[held, y[held]]
        assert ((gy - ry).abs() <= 8 * 2.0 ** -23 * ry.abs()).all() and (gy != 0).all()


def test_a_local_error_on_one_rank_is_raised_on_every_rank():
    X = torch.randn(5, 9, dtype=F64)
    y = torch.tensor([0, 3, 8, 2, 1])

    def rank(comm):
        x = X[:, comm.rank * 3:comm.rank * 3 + 3]
        t = y[:4] if comm.rank == 1 else y
        with recording() as log:
            try:
                _logits_loss(comm, x, t, weight=None, sample_weight=None, reduction="mean", ignore_index=-100,
                             label_smoothing=0.0, z_loss=0.0, softcap=None, num_items_in_batch=None,
                             memory_budget=None, vocab_sizes=None, validate=True)
            except ShapeMismatchError as e:
                return str(e), [op[0] for op in log]
        return None, []

    outs = run_ranks(3, rank)
    _raise_any(outs)
    assert "got (4,)" in outs[1][0] and "raised by" not in outs[1][0]
    for r in (0, 2):
        assert "got (4,)" in outs[r][0] and "(raised by rank 1; every rank of the group raises)" in outs[r][0]
    assert all(ops == ["all_gather", "all_gather"] for _, ops in outs)  # the handshake, then the messages


def test_target_range_is_checked_against_the_global_vocabulary():
    X = torch.randn(4, 10, dtype=F64)

    def rank(comm, y):
        x = X[:, :4] if comm.rank == 0 else X[:, 4:]
        return _logits_loss(comm, x, y, weight=None, sample_weight=None, reduction="sum", ignore_index=-100,
                            label_smoothing=0.0, z_loss=0.0, softcap=None, num_items_in_batch=None,
                            memory_budget=None, vocab_sizes=None, validate=True)

    ok = run_ranks(2, lambda c: rank(c, torch.tensor([9, 0, 5, -100])))  # 9 is past rank 0's 4 columns: fine
    _raise_any(ok)
    bad = run_ranks(2, lambda c: rank(c, torch.tensor([9, 0, 10, -100])))
    assert all(isinstance(e, TargetOutOfRangeError) and "target[2] = 10 is outside [0, 10) classes" in str(e)
               for e in bad)


def test_options_are_refused_before_any_collective():
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    w = torch.ones(4, dtype=F64, requires_grad=True)

    def rank(comm):
        with recording() as log:
            with pytest.raises(InvalidOptionError, match="no derivative with respect to weight"):
                _logits_loss(comm, x, torch.tensor([0, 1, 2]), weight=w, sample_weight=None, reduction="mean",
                             ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
                             num_items_in_batch=None, memory_budget=None, vocab_sizes=None, validate=True)
        return log

    assert run_ranks(2, rank) == [[], []]


# -- the per-rank arithmetic ------------------------------------------------------------------------

def test_local_max_treats_nan_as_inf_and_an_empty_shard_as_minus_inf():
    x = torch.tensor([[1.0, math.nan, 0.0], [2.0, -math.inf, 3.0]])
    assert dm.local_max(x).tolist() == [math.inf, 3.0]
    assert dm.local_max(torch.zeros(2, 0)).tolist() == [-math.inf, -math.inf]


def test_checksum_is_exact_and_order_independent():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(257, 33, generator=g)
    b = a.t().contiguous().t()  # the same values, another memory layout
    assert _checksum(a) == _checksum(b)
    c = a.clone()
    c[100, 7] = torch.nextafter(c[100, 7], torch.tensor(math.inf))  # one float32 ulp
    assert _checksum(c) != _checksum(a)
    d = a.clone()
    d[[3, 4]] = d[[4, 3]]  # two rows swapped
    assert _checksum(d) != _checksum(a)
    torch.set_num_threads(1)
    one = _checksum(a)
    torch.set_num_threads(2)
    assert _checksum(a) == one
