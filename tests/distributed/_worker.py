"""One rank of the tests' gloo group: runs every case of :func:`cases` and writes what it measured as JSON.

``python _worker.py RANK WORLD STORE OUT [CASE ...]``.  Every rank builds
the same full problem from fixed seeds (logits ``(N, V)`` or hidden /
weight / bias of an LM head, V = 37), takes its slice of the vocabulary
(:data:`SPLITS`: uneven, and with 4 ranks one rank holds no column at all),
runs the distributed loss forward and backward, and compares with the
single-process library on the full problem, in float64:

* ``crossentropy.value_and_grad(crossentropy.cross_entropy, X, y, ...)``
  for :func:`vocab_parallel_cross_entropy`;
* ``crossentropy.linear._reference(H, W, y, ...)`` (the unfused semantics of
  ``crossentropy.linear_cross_entropy``) for the fused loss.

The cases are defined here once, with what the test expects of them
(``Case.expect``); ``test_vocab_parallel.py`` parametrises over the same
list and checks each rank's report against the expectation.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field

import torch

N, D, V = 13, 6, 37
SPLITS = {1: (37,), 2: (20, 17), 3: (5, 17, 15), 4: (9, 0, 17, 11)}
IGNORED = (2, 7, 8)
NUM_ITEMS = 17.0
TOL = {"float64": 1e-12, "float32": 64 * 2.0 ** -23}  # tests/conftest.py::tol(float32)

OPTIONS = {
    "plain": {},
    "weight": {"weight": "full"},
    "weight_slice": {"weight": "slice"},
    "ignore_index": {"ignore": True},
    "no_ignore_index": {"ignore_index": None},
    "label_smoothing": {"label_smoothing": 0.15},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 4.0},
    "sample_weight": {"sample_weight": True},
    "num_items_in_batch": {"num_items": True},
    "weight+label_smoothing": {"weight": "full", "label_smoothing": 0.2},
    "ignore+label_smoothing+z_loss": {"ignore": True, "label_smoothing": 0.1, "z_loss": 1e-3},
    "softcap+weight_slice+ignore": {"softcap": 3.0, "weight": "slice", "ignore": True},
    "label_smoothing+sample_weight+num_items": {"label_smoothing": 0.3, "sample_weight": True, "num_items": True},
    "all": {"weight": "full", "ignore": True, "label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 3.0,
            "sample_weight": True},
    "all+weight_slice+num_items": {"weight": "slice", "ignore": True, "label_smoothing": 0.25, "z_loss": 1e-3,
                                   "softcap": 5.0, "sample_weight": True, "num_items": True},
}
CHUNKED = ("plain", "weight+label_smoothing", "softcap+weight_slice+ignore", "all", "all+weight_slice+num_items")


@dataclass
class Case:
    name: str
    group: str  # agreement | edge | error | collectives | autodiff
    expect: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def cases(world: int) -> list[Case]:
    out = []
    for kind in ("logits", "linear"):
        for dtype in ("float64", "float32"):
            for oname, o in OPTIONS.items():
                for red in (("mean",) if o.get("num_items") else ("none", "sum", "mean")):
                    out.append(Case(f"{kind}-{dtype}-{oname}-{red}", "agreement", {"tol": TOL[dtype]},
                                    dict(kind=kind, dtype=dtype, opts=o, reduction=red)))
        # chunks of 4 rows (4 chunks of N = 13): the fused loss's collectives per chunk, the logits loss's passes
        for dtype, onames in (("float64", CHUNKED), ("float32", ("plain", "all"))):
            for oname in onames:
                for red in (("mean",) if OPTIONS[oname].get("num_items") else ("none", "mean")):
                    out.append(Case(f"{kind}-{dtype}-{oname}-{red}-chunked", "agreement", {"tol": TOL[dtype]},
                                    dict(kind=kind, dtype=dtype, opts=OPTIONS[oname], reduction=red, chunked=True)))
        for dtype, eps in (("float16", 2.0 ** -10), ("bfloat16", 2.0 ** -7)):
            # computed in float32 and rounded once to the half type: within about an ulp of the half type
            for oname in ("plain", "all"):
                out.append(Case(f"{kind}-{dtype}-{oname}-sum", "agreement", {"tol": 2 * eps},
                                dict(kind=kind, dtype=dtype, opts=OPTIONS[oname], reduction="sum")))
        out.append(Case(f"{kind}-float64-lead_shape-none", "agreement", {"tol": TOL["float64"]},
                        dict(kind=kind, dtype="float64", opts={"ignore": True}, reduction="none", lead=(N,))))
        for dtype, ulps in (("float32", 8), ("float64", 8)):
            out.append(Case(f"{kind}-{dtype}-confident_rows", "edge",
                            {"ulps": ulps, "eps": 2.0 ** (-23 if dtype == "float32" else -52)},
                            dict(kind=kind, dtype=dtype)))
        for red in ("none", "sum", "mean"):
            out.append(Case(f"{kind}-all_ignored-{red}", "edge", {}, dict(kind=kind, reduction=red)))
        out.append(Case(f"{kind}-validate_false", "edge", {}, dict(kind=kind)))
        out.append(Case(f"{kind}-no_grad", "edge", {"tol": TOL["float64"]}, dict(kind=kind)))
    for oname in ("plain", "label_smoothing", "z_loss", "softcap", "weight+label_smoothing", "all"):
        out.append(Case(f"logits-nonfinite-{oname}", "edge", {}, dict(opts=OPTIONS[oname])))
    out.append(Case("gather_vocab_sizes", "edge", {}, {}))
    for name, cls, text, multi in ERRORS:
        if multi and world == 1:
            continue
        out.append(Case(f"error-{name}", "error", {"cls": cls, "text": text}, {}))
    for name in ("logits-plain", "logits-weight+smoothing", "logits-validate_false", "linear-4chunks",
                 "linear-none-4chunks", "linear-local_hidden_grad"):
        out.append(Case(f"collectives-{name}", "collectives", {}, {}))
    if world == 1:  # torch.compile: a graph break around the loss, eager inside (compiling costs seconds per rank)
        for kind in ("logits", "linear"):
            out.append(Case(f"autodiff-{kind}-compile", "autodiff", {"cls": None}, dict(kind=kind, what="compile")))
    for name, cls in (("double_backward", "InvalidOptionError"), ("create_graph_first_order", None),
                      ("forward_mode", "InvalidOptionError"), ("torch_func", "InvalidOptionError"),
                      ("weight_requires_grad", "InvalidOptionError"),
                      ("retain_graph_twice", None)):
        for kind in ("logits", "linear"):
            out.append(Case(f"autodiff-{kind}-{name}", "autodiff", {"cls": cls}, dict(kind=kind, what=name)))
    return out


# (name, expected class, text in the message, needs two ranks or more)
ERRORS = [
    ("target_out_of_range", "TargetOutOfRangeError", "target[5] = 37 is outside [0, 37) classes", False),
    ("target_negative", "TargetOutOfRangeError", "target[3] = -5 is outside [0, 37) classes", False),
    ("softcap_zero", "InvalidOptionError", "softcap must be a positive finite number", False),
    ("softcap_negative", "InvalidOptionError", "softcap must be a positive finite number", False),
    ("label_smoothing_range", "InvalidOptionError", "label_smoothing must be in [0, 1]", False),
    ("reduction", "InvalidOptionError", "reduction must be one of", False),
    ("num_items_with_sum", "InvalidOptionError", "needs reduction='mean'", False),
    ("budget_too_small", "InvalidOptionError", "memory_budget=8 bytes is too small", False),
    ("validate_false_without_sizes", "InvalidOptionError", "validate=False needs vocab_sizes", False),
    ("target_float", "InvalidDTypeError", "target must hold integer class indices", False),
    ("logits_int", "InvalidDTypeError", "logits_shard must be a floating-point tensor", False),
    ("logits_not_tensor", "InvalidDTypeError", "logits_shard must be a torch.Tensor", False),
    ("target_shape", "ShapeMismatchError", "target must have the shape of logits_shard without its last", False),
    ("weight_dtype", "InvalidDTypeError", "weight must have the dtype of the logits", False),
    ("weight_length", "ShapeMismatchError", "expected the full (37,) class weights or", False),
    ("sample_weight_shape", "ShapeMismatchError", "sample_weight of shape (5,) does not broadcast", False),
    ("vocab_sizes_wrong", "ShapeMismatchError", "vocab_sizes", False),
    ("vocab_sizes_length", "ShapeMismatchError", "vocab_sizes has", False),
    ("linear_dim", "ShapeMismatchError", "hidden's last dimension must equal weight_shard's second", False),
    ("linear_bias_shape", "ShapeMismatchError", "bias_shard must have shape", False),
    ("linear_dtype", "InvalidDTypeError", "hidden and weight_shard must have one dtype", False),
    ("target_shape_one_rank", "ShapeMismatchError", "target must have the shape of logits_shard", True),
    ("logits_dtype_differs", "InvalidDTypeError", "different dtypes", True),
    ("rows_differ", "ShapeMismatchError", "every rank must hold the same rows", True),
    ("target_differs", "ShapeMismatchError", "target must be the same on every rank", True),
    ("sample_weight_differs", "ShapeMismatchError", "sample_weight must be the same on every rank", True),
    ("hidden_differs", "ShapeMismatchError", "hidden must be the same on every rank", True),
    ("options_differ", "InvalidOptionError", "the options differ between ranks", True),
    ("functions_differ", "InvalidOptionError", "called different functions", True),
]


# ------------------------------------------------------------------------------------------------
# the problem (the same on every rank)
# ------------------------------------------------------------------------------------------------

def _problem():
    g = torch.Generator().manual_seed(1234)
    P = {"X": torch.randn(N, V, generator=g, dtype=torch.float64) * 3,
         "y": torch.randint(0, V, (N,), generator=g),
         "cw": torch.rand(V, generator=g, dtype=torch.float64) * 1.7 + 0.3,
         "sw": torch.rand(N, generator=g, dtype=torch.float64) * 1.3 + 0.2,
         "go": torch.randn(N, generator=g, dtype=torch.float64),
         "H": torch.randn(N, D, generator=g, dtype=torch.float64),
         "W": torch.randn(V, D, generator=g, dtype=torch.float64) * 0.9,
         "B": torch.randn(V, generator=g, dtype=torch.float64)}
    y_ign = P["y"].clone()
    y_ign[list(IGNORED)] = -100
    P["y_ign"] = y_ign
    return P


PROBLEM = _problem()
DT = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _digest(t):
    return hashlib.sha1(t.detach().double().contiguous().numpy().tobytes()).hexdigest()[:16]


class Rank:
    def __init__(self, rank, world):
        self.rank, self.world = rank, world
        self.sizes = SPLITS[world]
        self.o = sum(self.sizes[:rank])
        self.w = self.sizes[rank]

    def cols(self, t):
        return t[..., self.o:self.o + self.w]


def _options(R: Rank, o, dtype, *, linear):
    """(distributed kwargs, single-process kwargs, target)."""
    P = PROBLEM
    y = P["y_ign"] if o.get("ignore") else P["y"]
    dk, rk = {}, {}
    if "ignore_index" in o:
        dk["ignore_index"] = o["ignore_index"]
    elif o.get("ignore"):
        rk["ignore_index"] = -100  # the core's default is None, torch's (and ours here) -100
    else:
        rk["ignore_index"] = -100
    if o.get("weight"):
        cw = P["cw"].to(dtype)
        dk["class_weight" if linear else "weight"] = cw if o["weight"] == "full" else R.cols(cw)
        rk["class_weight" if linear else "weight"] = cw.double()
    for k in ("label_smoothing", "z_loss", "softcap"):
        if k in o:
            dk[k] = rk[k] = o[k]
    if o.get("sample_weight"):
        dk["sample_weight"] = P["sw"].to(dtype)
        rk["sample_weight"] = P["sw"].to(dtype).double()
    if o.get("num_items"):
        dk["num_items_in_batch"] = NUM_ITEMS
        rk["num_items_in_batch"] = NUM_ITEMS
    return dk, rk, y


def _ref_logits(X, y, go, reduction, rk):
    import crossentropy as ce

    rk = dict(rk)
    num = rk.pop("num_items_in_batch", None)
    red = "sum" if num is not None else reduction
    v, g = ce.value_and_grad(ce.cross_entropy, X, y, reduction=red, grad_output=go, **rk)
    if num is not None:
        v, g = v / num, g / num
    return v, g


def _ref_linear(H, W, B, y, go, reduction, rk):
    from crossentropy.linear import _reference

    return _reference(H, W, y, wrt=(0, 1, "bias"), grad_output=go, bias=B, reduction=reduction, **rk)


def _run_logits(R, X, y, dk, reduction, go, **extra):
    from crossentropy.torch.distributed import vocab_parallel_cross_entropy

    xs = R.cols(X).clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(xs, y, reduction=reduction, **dk, **extra)
    loss.backward(go)
    return loss, {"d_logits": xs.grad}


def _run_linear(R, H, W, B, y, dk, reduction, go, **extra):
    from crossentropy.torch.distributed import vocab_parallel_linear_cross_entropy

    h = H.clone().requires_grad_()
    Wr = R.cols(W.T).T.clone().requires_grad_()
    br = R.cols(B).clone().requires_grad_()
    loss = vocab_parallel_linear_cross_entropy(h, Wr, y, bias_shard=br, reduction=reduction, **dk, **extra)
    loss.backward(go)
    return loss, {"d_hidden": h.grad, "d_weight": Wr.grad, "d_bias": br.grad}


def agreement(R: Rank, c: Case):
    prm = c.params
    dtype = DT[prm["dtype"]]
    red = prm["reduction"]
    linear = prm["kind"] == "linear"
    dk, rk, y = _options(R, prm["opts"], dtype, linear=linear)
    P = PROBLEM
    go = P["go"].to(dtype) if red == "none" else None
    go64 = None if go is None else go.double()
    extra = {}
    if prm.get("chunked"):
        item = 8 if dtype == torch.float64 else 4
        extra["memory_budget"] = 4 * max(R.sizes) * item  # 4 rows a chunk: 4 chunks of N = 13 rows
    if not linear:
        X = P["X"].to(dtype)
        if prm.get("lead"):
            X, y = X[:12].reshape(3, 4, V), y[:12].reshape(3, 4)
            go, go64 = go[:12].reshape(3, 4), go64[:12].reshape(3, 4)
        loss, grads = _run_logits(R, X, y, dk, red, go, **extra)
        rv, rg = _ref_logits(X.double(), y, go64, red, rk)
        ref = {"d_logits": R.cols(rg)}
    else:
        H, W, B = (P[k].to(dtype) for k in "HWB")
        if prm.get("lead"):
            H, y = H[:12].reshape(3, 4, D), y[:12].reshape(3, 4)
            go, go64 = go[:12].reshape(3, 4), go64[:12].reshape(3, 4)
        loss, grads = _run_linear(R, H, W, B, y, dk, red, go, **extra)
        rv, (rdh, rdW, rdb) = _ref_linear(H.double(), W.double(), B.double(), y, go64, red, rk)
        ref = {"d_hidden": rdh, "d_weight": R.cols(rdW.T).T, "d_bias": R.cols(rdb)}
    out = {"loss": _rel(loss, rv), "loss_digest": _digest(loss), "loss_dtype": str(loss.dtype),
           "shape_ok": tuple(loss.shape) == tuple(rv.shape)}
    for k, g in grads.items():
        out[k] = _rel(g, ref[k])
        out[k + "_dtype_ok"] = g.dtype == dtype
    return out


# ------------------------------------------------------------------------------------------------
# edge cases
# ------------------------------------------------------------------------------------------------

def _confident(dtype):
    """Logits where each row's target leads by T: losses log1p(36·e^{−T}) from ~1e-25 down to ~1e-31 (float32)
    or to ~1e-300 (float64)."""
    g = torch.Generator().manual_seed(7)
    X = torch.rand(N, V, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.randint(0, V, (N,), generator=g)
    top = torch.linspace(60, 75, N) if dtype == torch.float32 else torch.linspace(60, 690, N)
    X[torch.arange(N), y] = top.double()
    return X.to(dtype), y


def confident_rows(R: Rank, c: Case):
    dtype = DT[c.params["dtype"]]
    X, y = _confident(dtype)
    if c.params["kind"] == "logits":
        loss, grads = _run_logits(R, X, y, {}, "none", torch.ones(N, dtype=dtype))
        g, lo, hi = grads["d_logits"], R.o, R.o + R.w  # this rank's columns
    else:
        # the fused loss with an identity LM head: its logits are X itself, exactly, and ∂hidden (summed over
        # the ranks, each adding its own columns) is the whole logits gradient
        eye = torch.eye(V, dtype=dtype)
        loss, grads = _run_linear(R, X, eye, torch.zeros(V, dtype=dtype), y, {}, "none",
                                  torch.ones(N, dtype=dtype))
        g, lo, hi = grads["d_hidden"], 0, V
    ref, rg = _ref_logits(X.double(), y, None, "none", {"ignore_index": -100})
    rel = ((loss.double() - ref).abs() / ref.abs()).max().item()
    out = {"min_loss": float(loss.min()), "max_rel_ulps": rel / c.expect["eps"], "ref_min": float(ref.min())}
    held = (y >= lo) & (y < hi)
    out["held_rows"] = int(held.sum())
    if held.any():
        rows = torch.nonzero(held).reshape(-1)
        gy = g[rows, y[rows] - lo].double()
        ry = rg[rows, y[rows]]
        out["target_grad_rel_ulps"] = ((gy - ry).abs() / ry.abs()).max().item() / c.expect["eps"]
        out["target_grad_nonzero"] = bool((gy != 0).all())
    return out


def all_ignored(R: Rank, c: Case):
    P = PROBLEM
    y = torch.full((N,), -100)
    red = c.params["reduction"]
    go = torch.ones(N, dtype=torch.float64) if red == "none" else None
    if c.params["kind"] == "logits":
        loss, grads = _run_logits(R, P["X"], y, {}, red, go)
    else:
        loss, grads = _run_linear(R, P["H"], P["W"], P["B"], y, {}, red, go)
    return {"loss_nan": bool(torch.isnan(loss).all()), "loss_zero": bool((loss == 0).all()),
            "grads_zero": all(bool((g == 0).all()) for g in grads.values())}


def validate_false(R: Rank, c: Case):
    from crossentropy.torch._dist_comm import recording

    P = PROBLEM
    y = P["y"]
    bad = y.clone()
    bad[0] = V
    out = {}
    for validate in (True, False):
        with recording() as log:
            if c.params["kind"] == "logits":
                loss, grads = _run_logits(R, P["X"], y, {"label_smoothing": 0.1}, "sum", None,
                                          validate=validate, vocab_sizes=R.sizes)
                lb, gb = _run_logits(R, P["X"], bad, {}, "none", torch.ones(N, dtype=torch.float64),
                                     validate=False, vocab_sizes=R.sizes) if not validate else (None, None)
            else:
                loss, grads = _run_linear(R, P["H"], P["W"], P["B"], y, {"label_smoothing": 0.1}, "sum", None,
                                          validate=validate, vocab_sizes=R.sizes)
                lb, gb = _run_linear(R, P["H"], P["W"], P["B"], bad, {}, "none", torch.ones(N, dtype=torch.float64),
                                     validate=False, vocab_sizes=R.sizes) if not validate else (None, None)
        out[f"digest_{validate}"] = _digest(loss) + "".join(_digest(g) for g in grads.values())
        out[f"gathers_{validate}"] = sum(1 for op in log if op[0] == "all_gather")
        if lb is not None:
            out["bad_row_nan"] = bool(torch.isnan(lb[0])) and bool(torch.isfinite(lb[1:]).all())
            g0 = next(iter(gb.values()))
            out["bad_row_grad_nan"] = bool(torch.isnan(g0).any()) or g0.numel() == 0
    return out


def no_grad(R: Rank, c: Case):
    P = PROBLEM
    from crossentropy.torch.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    with torch.no_grad():
        if c.params["kind"] == "logits":
            loss = vocab_parallel_cross_entropy(R.cols(P["X"]), P["y"], z_loss=1e-3)
        else:
            loss = vocab_parallel_linear_cross_entropy(P["H"], R.cols(P["W"].T).T, P["y"], bias_shard=R.cols(P["B"]),
                                                       z_loss=1e-3, memory_budget=4 * 8 * max(R.sizes))
    if c.params["kind"] == "logits":
        rv, _ = _ref_logits(P["X"], P["y"], None, "mean", {"z_loss": 1e-3})
    else:
        rv, _ = _ref_linear(P["H"], P["W"], P["B"], P["y"], None, "mean", {"z_loss": 1e-3})
    return {"loss": _rel(loss, rv), "no_history": loss.grad_fn is None}


def nonfinite(R: Rank, c: Case):
    P = PROBLEM
    X, y = P["X"].clone(), P["y"]
    X[0, 3] = math.nan
    X[1, 20] = math.inf
    X[2, 5] = -math.inf
    X[3, :] = -math.inf
    X[4, y[4]] = -math.inf
    X[5, 30] = X[5, 2] = math.inf
    X[6, y[6]] = math.inf
    dk, rk, _ = _options(R, c.params["opts"], torch.float64, linear=False)
    loss, grads = _run_logits(R, X, y, dk, "none", torch.ones(N, dtype=torch.float64))
    rv, rg = _ref_logits(X, y, None, "none", {**rk, "ignore_index": None})

    def agree(a, b):
        a, b = a.detach(), b.detach()
        same = (a == b) | (torch.isnan(a) & torch.isnan(b)) | ((a - b).abs() <= 1e-12 * b.abs())
        return bool(same.all())

    return {"loss_agrees": agree(loss, rv), "grad_agrees": agree(grads["d_logits"], R.cols(rg)),
            "has_nan": bool(torch.isnan(loss).any())}


def gather_sizes(R: Rank, c: Case):
    from crossentropy.torch.distributed import gather_vocab_sizes

    return {"sizes": list(gather_vocab_sizes(R.w)), "expected": list(R.sizes)}


# ------------------------------------------------------------------------------------------------
# errors: every rank must raise, before any all-reduce
# ------------------------------------------------------------------------------------------------

def _bad_call(R: Rank, name):
    from crossentropy.torch.distributed import vocab_parallel_cross_entropy as f
    from crossentropy.torch.distributed import vocab_parallel_linear_cross_entropy as fl

    P = PROBLEM
    X, y = R.cols(P["X"]), P["y"].clone()
    last = R.rank == R.world - 1
    if name == "target_out_of_range":
        y[5] = V
        return f(X, y)
    if name == "target_negative":
        y[3] = -5
        return f(X, y)
    if name == "softcap_zero":
        return f(X, y, softcap=0.0)
    if name == "softcap_negative":
        return f(X, y, softcap=-1.0)
    if name == "label_smoothing_range":
        return f(X, y, label_smoothing=1.5)
    if name == "reduction":
        return f(X, y, reduction="batchmean")
    if name == "num_items_with_sum":
        return f(X, y, reduction="sum", num_items_in_batch=4)
    if name == "budget_too_small":
        return f(X, y, memory_budget=8)
    if name == "validate_false_without_sizes":
        return f(X, y, validate=False)
    if name == "target_float":
        return f(X, y.double())
    if name == "logits_int":
        return f(X.long(), y)
    if name == "logits_not_tensor":
        return f(X.tolist(), y)
    if name == "target_shape":
        return f(X, y[:-1])
    if name == "weight_dtype":
        return f(X, y, weight=P["cw"].float())
    if name == "weight_length":
        return f(X, y, weight=torch.ones(V + 1, dtype=torch.float64))
    if name == "sample_weight_shape":
        return f(X, y, sample_weight=P["sw"][:5])
    if name == "vocab_sizes_wrong":
        return f(X, y, vocab_sizes=tuple(reversed(R.sizes)) if R.world > 1 else (V - 1,))
    if name == "vocab_sizes_length":
        return f(X, y, vocab_sizes=R.sizes + (1,))
    if name == "linear_dim":
        return fl(P["H"], torch.zeros(R.w, D + 1, dtype=torch.float64), y)
    if name == "linear_bias_shape":
        return fl(P["H"], torch.zeros(R.w, D, dtype=torch.float64), y,
                  bias_shard=torch.zeros(R.w + 1, dtype=torch.float64))
    if name == "linear_dtype":
        return fl(P["H"].float(), torch.zeros(R.w, D, dtype=torch.float64), y)
    if name == "target_shape_one_rank":
        return f(X, y[:-1] if last else y)
    if name == "logits_dtype_differs":
        return f(X.float() if R.rank == 0 else X, y)
    if name == "rows_differ":
        return f(X[:-1], y[:-1]) if R.rank == 0 else f(X, y)
    if name == "target_differs":
        if last:
            y[4] = (y[4] + 1) % V
        return f(X, y)
    if name == "sample_weight_differs":
        sw = P["sw"].clone()
        if last:
            sw[2] += 1e-9
        return f(X, y, sample_weight=sw)
    if name == "hidden_differs":
        H = P["H"].clone()
        if last:
            H[3, 1] = math.nextafter(float(H[3, 1]), math.inf)
        return fl(H, R.cols(P["W"].T).T, y)
    if name == "options_differ":
        return f(X, y, label_smoothing=0.1 if R.rank == 0 else 0.0)
    if name == "functions_differ":
        if R.rank == 0:
            return fl(P["H"], R.cols(P["W"].T).T, y)
        return f(X, y)
    raise AssertionError(name)


def error(R: Rank, c: Case):
    from crossentropy.torch._dist_comm import recording

    name = c.name[len("error-"):]
    with recording() as log:
        try:
            _bad_call(R, name)
            raised, msg = None, ""
        except Exception as e:  # noqa: BLE001 - the test checks the class
            raised, msg = type(e).__name__, str(e)
    return {"raised": raised, "msg": msg, "ops": sorted({op[0] for op in log})}


# ------------------------------------------------------------------------------------------------
# collectives: what each call makes, against docs/distributed.md
# ------------------------------------------------------------------------------------------------

def collectives(R: Rank, c: Case):
    from crossentropy.torch._dist_comm import recording

    P = PROBLEM
    name = c.name[len("collectives-"):]
    with recording() as fwd:
        if name.startswith("logits"):
            xs = R.cols(P["X"]).float().clone().requires_grad_()
            kw = {"weight": R.cols(P["cw"]).float(), "label_smoothing": 0.1} if "smoothing" in name else {}
            if "validate_false" in name:
                kw = {"validate": False, "vocab_sizes": R.sizes}
            loss = __import__("crossentropy.torch.distributed", fromlist=["x"]).vocab_parallel_cross_entropy(
                xs, P["y"], **kw)
        else:
            from crossentropy.torch.distributed import vocab_parallel_linear_cross_entropy

            h = P["H"].float().clone().requires_grad_()
            Wr = R.cols(P["W"].T).T.float().clone().requires_grad_()
            red = "none" if "none" in name else "mean"
            loss = vocab_parallel_linear_cross_entropy(h, Wr, P["y"], reduction=red,
                                                       memory_budget=4 * 4 * max(R.sizes),
                                                       reduce_hidden_grad="local" not in name)
    with recording() as bwd:
        loss.backward(torch.ones_like(loss))
    return {"forward": fwd, "backward": bwd}


# ------------------------------------------------------------------------------------------------
# autodiff modes
# ------------------------------------------------------------------------------------------------

def autodiff(R: Rank, c: Case):
    from crossentropy.torch.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    P = PROBLEM
    linear = c.params["kind"] == "linear"
    what = c.params["what"]

    def call(x, **kw):
        if linear:
            return vocab_parallel_linear_cross_entropy(P["H"], x, P["y"], **kw)
        return vocab_parallel_cross_entropy(x, P["y"], **kw)

    x0 = R.cols(P["W"].T).T.clone() if linear else R.cols(P["X"]).clone()
    try:
        if what == "double_backward":
            x = x0.clone().requires_grad_()
            (g,) = torch.autograd.grad(call(x), x, create_graph=True)
            g.sum().backward()
        elif what == "create_graph_first_order":
            x = x0.clone().requires_grad_()
            (g,) = torch.autograd.grad(call(x), x, create_graph=True)
            x2 = x0.clone().requires_grad_()
            (g2,) = torch.autograd.grad(call(x2), x2)
            if not torch.equal(g.detach(), g2):
                return {"raised": "MISMATCH", "msg": "create_graph=True changed the first derivative"}
        elif what == "forward_mode":
            import torch.autograd.forward_ad as fwAD

            with fwAD.dual_level():
                call(fwAD.make_dual(x0, torch.ones_like(x0)))
        elif what == "torch_func":
            torch.func.grad(lambda z: call(z))(x0)
        elif what == "retain_graph_twice":
            x = x0.clone().requires_grad_()
            loss = call(x, reduction="sum", memory_budget=4 * 8 * max(R.sizes))
            loss.backward(retain_graph=True)
            g1 = x.grad.clone()
            loss.backward()
            if not torch.allclose(x.grad, 2 * g1, rtol=1e-14, atol=0):
                return {"raised": "MISMATCH", "msg": "a second backward (retain_graph=True) gave another gradient"}
        elif what == "compile":
            for backend in ("eager", "aot_eager"):
                x1, x2 = x0.clone().requires_grad_(), x0.clone().requires_grad_()
                l1 = torch.compile(lambda z: call(z * 2.0, label_smoothing=0.1) * 3.0, backend=backend)(x1)
                l1.backward()
                l2 = call(x2 * 2.0, label_smoothing=0.1) * 3.0
                l2.backward()
                if not (torch.equal(l1, l2) and torch.allclose(x1.grad, x2.grad, rtol=1e-14, atol=0)):
                    return {"raised": "MISMATCH", "msg": f"torch.compile(backend={backend!r}) changed the result"}
        elif what == "weight_requires_grad":
            w = torch.ones(R.w, dtype=torch.float64, requires_grad=True)
            call(x0, **({"class_weight": w} if linear else {"weight": w}))
        return {"raised": None, "msg": ""}
    except Exception as e:  # noqa: BLE001
        return {"raised": type(e).__name__, "msg": str(e)}


RUNNERS = {"agreement": agreement, "collectives": collectives, "autodiff": autodiff, "error": error}
EDGE = {"confident_rows": confident_rows, "all_ignored": all_ignored, "validate_false": validate_false,
        "no_grad": no_grad, "nonfinite": nonfinite, "gather_vocab_sizes": gather_sizes}


def run_case(R, c):
    if c.group != "edge":
        return RUNNERS[c.group](R, c)
    for key, fn in EDGE.items():
        if key in c.name:
            return fn(R, c)
    raise AssertionError(c.name)


def main(argv):
    import torch.distributed as dist

    rank, world, store, out = int(argv[0]), int(argv[1]), argv[2], argv[3]
    only = set(argv[4:])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    R = Rank(rank, world)
    results = {}
    for c in cases(world):
        if only and c.name not in only:
            continue
        try:
            results[c.name] = run_case(R, c)
        except Exception as e:  # noqa: BLE001 - reported per case; the test fails it
            results[c.name] = {"crash": f"{type(e).__name__}: {e}"}
    # the group still works after every error case
    results["__alive__"] = gather_sizes(R, None)
    dist.barrier()
    dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1:])
