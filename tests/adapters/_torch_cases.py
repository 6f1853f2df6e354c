"""Parity cases for crossentropy.torch against torch.nn (shared by the tests and report.py)."""

from __future__ import annotations

import warnings

import torch

import crossentropy.torch as ct

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _data(kind, dtype, shape=(6, 5), seed=0, extreme=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * (30.0 if extreme else 2.0)
    C = shape[1] if len(shape) > 1 else shape[0]
    if kind in ("ce", "nll"):
        tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        t = torch.randint(0, C, tshape, generator=g)
    else:
        t = (torch.rand(*shape, generator=g, dtype=torch.float64) > 0.5).to(torch.float64)
    if kind == "nll":
        x = torch.log_softmax(x, dim=1 if len(shape) > 1 else 0)
    if kind == "bce":
        x = torch.sigmoid(x)
        if extreme:
            x[0, 0], x[1, 1] = 0.0, 1.0
    return x.to(dtype), t


def _prob_target(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), dim=1)


# name -> (kind, module kwargs, data kwargs, target transform)
CASES = {
    "ce/default": ("ce", {}, {}, None),
    "ce/reduction=sum": ("ce", {"reduction": "sum"}, {}, None),
    "ce/reduction=none": ("ce", {"reduction": "none"}, {}, None),
    "ce/weight": ("ce", {"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {}, None),
    "ce/ignore_index=-100": ("ce", {}, {}, "ignore"),
    "ce/ignore_index=2": ("ce", {"ignore_index": 2}, {}, None),
    "ce/all_ignored(mean=nan)": ("ce", {}, {}, "ignore_all"),
    "ce/label_smoothing=0.1": ("ce", {"label_smoothing": 0.1}, {}, None),
    "ce/smoothing+weight+ignore": ("ce", {"label_smoothing": 0.2, "weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {}, "ignore"),
    "ce/prob_target": ("ce", {}, {}, "prob"),
    "ce/prob_target+smoothing+weight": ("ce", {"label_smoothing": 0.3, "weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {},
                                        "prob"),
    "ce/K-dim (N,C,d1,d2)": ("ce", {"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {"shape": (3, 5, 4, 2)}, None),
    "ce/K-dim reduction=none": ("ce", {"reduction": "none", "label_smoothing": 0.1}, {"shape": (3, 5, 4)}, None),
    "ce/unbatched (C,)": ("ce", {}, {"shape": (5,)}, None),
    "ce/extreme logits (±60)": ("ce", {}, {"extreme": True}, None),
    "ce/legacy size_average=False": ("ce", {"size_average": False}, {}, None),
    "ce/legacy reduce=False": ("ce", {"reduce": False}, {}, None),
    "nll/default": ("nll", {}, {}, None),
    "nll/weight+ignore": ("nll", {"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {}, "ignore"),
    "nll/reduction=none": ("nll", {"reduction": "none"}, {}, None),
    "nll/reduction=sum": ("nll", {"reduction": "sum"}, {}, None),
    "nll/K-dim": ("nll", {}, {"shape": (3, 5, 4)}, None),
    "bce/default": ("bce", {}, {}, None),
    "bce/weight (elementwise)": ("bce", {"weight": "elem"}, {}, None),
    "bce/weight (per column)": ("bce", {"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {}, None),
    "bce/reduction=sum": ("bce", {"reduction": "sum"}, {}, None),
    "bce/reduction=none": ("bce", {"reduction": "none"}, {}, None),
    "bce/p in {0,1} (log clamp -100)": ("bce", {}, {"extreme": True}, None),
    "bce/soft targets": ("bce", {}, {}, "soft"),
    "bcel/default": ("bcel", {}, {}, None),
    "bcel/weight": ("bcel", {"weight": "elem"}, {}, None),
    "bcel/pos_weight": ("bcel", {"pos_weight": [0.5, 2.0, 3.0, 1.0, 4.0]}, {}, None),
    "bcel/pos_weight+weight+sum": ("bcel", {"pos_weight": [0.5, 2.0, 3.0, 1.0, 4.0], "weight": "elem",
                                            "reduction": "sum"}, {}, None),
    "bcel/reduction=none": ("bcel", {"reduction": "none"}, {}, None),
    "bcel/extreme logits (±60)": ("bcel", {}, {"extreme": True}, None),
    "bcel/soft targets": ("bcel", {}, {}, "soft"),
}

_MODULES = {"ce": ("CrossEntropyLoss",), "nll": ("NLLLoss",), "bce": ("BCELoss",), "bcel": ("BCEWithLogitsLoss",)}


def build(name, dtype):
    kind, kw, dkw, tt = CASES[name]
    x, t = _data(kind, dtype, **dkw)
    kw = dict(kw)
    if tt == "ignore":
        t = t.clone()
        t[::3] = -100
    elif tt == "ignore_all":
        t = torch.full_like(t, -100)
    elif tt == "prob":
        t = _prob_target(tuple(x.shape)).to(dtype)
    elif tt == "soft":
        t = torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    elif kind in ("bce", "bcel"):
        t = t.to(dtype)
    for k in ("weight", "pos_weight"):
        if kw.get(k) == "elem":
            kw[k] = torch.rand(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
        elif kw.get(k) is not None:
            kw[k] = torch.tensor(kw[k], dtype=dtype)
    return kind, kw, x, t


# Documented deviations: PyTorch's float16 BCE backward divides by max(p(1-p), 1e-12)
# in float16, where 1e-12 underflows to 0, so near-certain p give 0/0 = NaN; ours
# computes in float32 and gives the finite (or ±inf) gradient.  Positions where the
# reference is NaN are compared as "ours is not NaN" instead.
REF_NAN_OK = {("bce/p in {0,1} (log clamp -100)", torch.float16)}


def compare(name, dtype):
    """(max |Δ value|, max |Δ input grad|, scale) of ours against torch.nn for one case."""
    kind, kw, x, t = build(name, dtype)
    cls = _MODULES[kind][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_mod, our_mod = getattr(torch.nn, cls)(**kw), getattr(ct, cls)(**kw)
    out = {}
    for tag, mod in (("ref", ref_mod), ("ours", our_mod)):
        xi = x.detach().clone().requires_grad_(True)
        v = mod(xi, t)
        g = torch.randn(v.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(v.dtype) \
            if v.dim() else torch.tensor(1.0, dtype=v.dtype)
        (v * g).sum().backward()
        out[tag] = (v.detach().double(), xi.grad.double(), v.dtype)
    (rv, rg, rdt), (ov, og, odt) = out["ref"], out["ours"]
    assert rdt == odt, (rdt, odt)
    if (name, dtype) in REF_NAN_OK:
        bad = torch.isnan(rg)
        assert not torch.isnan(og[bad]).any()
        rg, og = rg[~bad], og[~bad]
    dv = _maxdiff(rv, ov)
    dg = _maxdiff(rg, og)
    scale = max(float(rv.nan_to_num().abs().max()) if rv.numel() else 0.0, float(rg.nan_to_num().abs().max()), 1.0)
    return dv, dg, scale


def _maxdiff(a, b):
    if a.numel() == 0:
        return 0.0
    both_nan = torch.isnan(a) & torch.isnan(b)
    if (torch.isnan(a) != torch.isnan(b)).any():
        return float("inf")
    d = (a - b).abs()
    d = torch.where(both_nan | (a == b), torch.zeros_like(d), d)
    return float(d.max())


def tolerance(dtype):
    # Relative to the case's scale: half types round once more than torch does.
    return {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
