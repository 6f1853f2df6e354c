"""Exactness of the fused linear cross-entropy (torch, CPU): the table of docs/linear.md.

    python -m benchmarks.linear_ce_exactness            # prints the tables, writes benchmarks/results/linear_ce_exactness.json
    python -m benchmarks.linear_ce_exactness --out DIR

1. float64: max relative error (max |a − b| / max |b| over each output) of the fused loss and its three
   gradients against the unfused torch composition (``F.linear`` → soft cap → ``F.cross_entropy`` + z-loss)
   and, where PyTorch has the option, against ``F.linear_cross_entropy`` itself; for each option and for all
   of them together, with the vocabulary in several tiles (two passes) and in one.
2. float32 / bfloat16: the error of the fused result against the float64 reference, next to the error of the
   unfused torch computation in the same precision (same inputs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from crossentropy import _linear_engine as engine
from crossentropy.torch.functional import linear_cross_entropy

ROOT = Path(__file__).resolve().parent.parent
N, D, V = 300, 64, 5000


def _unfused(h, w, y, *, linear_bias=None, weight=None, reduction="mean", ignore_index=-100, label_smoothing=0.0,
             z_loss=0.0, softcap=None, num_items_in_batch=None):
    z = F.linear(h, w, linear_bias)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    per = F.cross_entropy(z, y, weight=weight, ignore_index=ignore_index, reduction="none",
                          label_smoothing=label_smoothing)
    valid = y != ignore_index
    per = per + torch.where(valid, z_loss * torch.logsumexp(z.float() if z.dtype != torch.float64 else z, -1) ** 2,
                            0.0).to(per.dtype)
    if reduction == "none":
        return per
    if reduction == "sum" or num_items_in_batch is not None:
        return per.sum() / (num_items_in_batch or 1)
    wy = valid.to(per.dtype) if weight is None else torch.where(valid, weight[y.clamp(0)], 0.0)
    return per.sum() / wy.sum()


def _grads(fn, h, w, b, y, **kw):
    h, w, b = (t.detach().clone().requires_grad_(True) for t in (h, w, b))
    loss = fn(h, w, y, linear_bias=b, **kw)
    loss.backward(torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
                  if loss.dim() else None)
    return [loss.detach(), h.grad, w.grad, b.grad]


def _rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64) * 0.3
    b = torch.randn(V, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (N,), generator=g)
    y[::7] = -100
    cw = torch.rand(V, generator=g, dtype=torch.float64) + 0.5
    options = {
        "plain": {}, "reduction=sum": dict(reduction="sum"), "reduction=none": dict(reduction="none"),
        "class weights": dict(weight=cw), "label_smoothing=0.1": dict(label_smoothing=0.1),
        "z_loss=1e-3": dict(z_loss=1e-3), "softcap=30": dict(softcap=30.0),
        "num_items_in_batch=1000": dict(num_items_in_batch=1000),
        "all together": dict(weight=cw, label_smoothing=0.1, z_loss=1e-3, softcap=30.0),
    }
    torch_has = {"plain", "reduction=sum", "reduction=none", "class weights", "label_smoothing=0.1"}
    rows64 = []
    for tiles in ("one tile", "tiles of 1024, two passes"):
        saved = engine.TILE_CLASSES
        if tiles != "one tile":
            engine.TILE_CLASSES = 1024
        try:
            for name, kw in options.items():
                budget = 2 * N * 1024 * 8 if tiles != "one tile" else None  # two tiles in flight
                ours = _grads(linear_cross_entropy, h, w, b, y, memory_budget=budget, **kw)
                ref = _grads(_unfused, h, w, b, y, **kw)
                row = {"layout": tiles, "option": name,
                       "vs_unfused": [_rel(o, r) for o, r in zip(ours, ref)]}
                if name in torch_has:
                    tref = _grads(lambda *a, **k: F.linear_cross_entropy(*a, **k), h, w, b, y, **kw)
                    row["vs_torch_linear_cross_entropy"] = [_rel(o, r) for o, r in zip(ours, tref)]
                rows64.append(row)
        finally:
            engine.TILE_CLASSES = saved
    print("float64, max relative error (loss, ∂input, ∂linear_weight, ∂linear_bias)")
    for r in rows64:
        t = r.get("vs_torch_linear_cross_entropy")
        print(f"  {r['layout']:26} {r['option']:24} vs unfused " + " ".join(f"{e:8.1e}" for e in r["vs_unfused"])
              + ("" if t is None else "   vs F.linear_cross_entropy " + " ".join(f"{e:8.1e}" for e in t)))
    rows_low = []
    kw = dict(weight=cw, label_smoothing=0.1, z_loss=1e-3, softcap=30.0)
    ref = _grads(_unfused, h, w, b, y, **kw)
    for dtype in (torch.float32, torch.bfloat16):
        low = [t.to(dtype) for t in (h, w, b)]
        kwl = dict(kw, weight=cw.to(dtype))
        ours = _grads(linear_cross_entropy, *low[:2], low[2], y, **kwl)
        unf = _grads(_unfused, *low[:2], low[2], y, **kwl)
        rows_low.append({"dtype": str(dtype)[6:], "ours": [_rel(o, r) for o, r in zip(ours, ref)],
                         "unfused": [_rel(u, r) for u, r in zip(unf, ref)]})
    print("low precision vs the float64 reference, all options (loss, ∂input, ∂linear_weight, ∂linear_bias)")
    for r in rows_low:
        print(f"  {r['dtype']:9} ours    " + " ".join(f"{e:8.1e}" for e in r["ours"]))
        print(f"  {r['dtype']:9} unfused " + " ".join(f"{e:8.1e}" for e in r["unfused"]))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "linear_ce_exactness.json").write_text(json.dumps({"shape": [N, D, V], "float64": rows64,
                                                                 "low_precision": rows_low}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
