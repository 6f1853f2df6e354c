"""The CUDA paths of crossentropy.torch on CPU tensors under Triton's interpreter:
``TRITON_INTERPRET=1 python _triton_torch_cases.py`` prints one JSON line
``{case: [[max relative errors], tolerance]}``.

* ``linear-*``: the fused linear cross-entropy's CUDA route (cuBLAS → torch.mm here, the Triton in-chunk
  kernel): loss, ∂input, ∂weight, ∂bias against the float64 unfused composition;
* ``ce-*``: ``crossentropy.torch.functional.cross_entropy`` through the CUDA device kernel
  (``_compute.triton_kernel``, registered here for "cpu" with the NumPy route turned off): loss and input
  gradient against ``torch.nn.functional.cross_entropy`` in float64.

Run by ``test_torch_linear.py::test_cuda_paths_under_the_triton_interpreter`` in a fresh process
(the interpreter only takes effect if the variable is set before triton is imported).
"""

from __future__ import annotations

import json
import os
import sys

import torch

from crossentropy.torch import linear as tl


def main():
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1 (set before triton is imported)")
    tl._TRITON_ON_CPU = True
    g = torch.Generator().manual_seed(4)
    n, d, v = 11, 6, 40
    h, w, b = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((n, d), (v, d), (v,)))
    y = torch.randint(0, v, (n,), generator=g)
    y[[2, 7]] = -100
    cw = torch.rand(v, generator=g, dtype=torch.float64) + 0.5
    cases = {
        "plain_mean": dict(),
        "sum_bias_weight": dict(reduction="sum", weight=cw),
        "none_all_options": dict(reduction="none", weight=cw, label_smoothing=0.1, z_loss=1e-2, softcap=3.0),
        "num_items_smoothing": dict(num_items_in_batch=13, label_smoothing=0.2),
        "two_row_blocks": dict(z_loss=1e-3, memory_budget=5 * v * 4),
    }
    out = {}
    for dtype, tol in ((torch.float32, 2e-5), (torch.bfloat16, 3e-2)):
        for name, kw in cases.items():
            res = []
            for fused in (True, False):
                tl._TRITON_ON_CPU = fused
                hh, ww, bb = (t.detach().to(dtype if fused else torch.float64).clone().requires_grad_(True)
                              for t in (h, w, b))
                kk = dict(kw)
                if "weight" in kk:
                    kk["weight"] = kk["weight"].to(hh.dtype)
                if not fused:
                    kk.pop("memory_budget", None)
                loss = tl.linear_cross_entropy(hh, ww, y, linear_bias=bb, ignore_index=-100, **kk)
                if fused:
                    assert type(loss.grad_fn).__name__ == "_FusedBackward", loss.grad_fn
                go = torch.linspace(0.5, 1.5, n, dtype=loss.dtype) if loss.dim() else None
                loss.backward(go)
                res.append([loss.detach().double(), hh.grad.double(), ww.grad.double(), bb.grad.double()])
            errs = [float((a - r).abs().max() / r.abs().max()) for a, r in zip(*res)]
            out[f"linear-{str(dtype)[6:]}-{name}"] = [errs, tol]
    out.update(_plain_ce(g))
    print(json.dumps(out))


def _plain_ce(g):
    import torch.nn.functional as F

    from crossentropy.torch import _compute
    from crossentropy.torch.functional import cross_entropy

    calls = []

    def kernel(*a, **k):
        res = _compute.triton_kernel(*a, **k)
        calls.append(res is not NotImplemented)
        return res

    _compute.numpy_path = lambda xc: False
    _compute.register_device_kernel("cpu", kernel)
    x = torch.randn(13, 29, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 29, (13,), generator=g)
    y[[1, 4]] = -100
    w = torch.rand(29, generator=g, dtype=torch.float64) + 0.5
    out = {}
    cases = {"mean": dict(), "sum_weight": dict(reduction="sum", weight=w),
             "none_smoothing_weight": dict(reduction="none", weight=w, label_smoothing=0.2)}
    for name, kw in cases.items():
        res = []
        for fn, dtype in ((cross_entropy, torch.float32), (F.cross_entropy, torch.float64)):
            xx = x.detach().to(dtype).clone().requires_grad_(True)
            kk = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
            loss = fn(xx, y, **kk)
            loss.backward(torch.linspace(0.5, 1.5, 13, dtype=dtype) if loss.dim() else None)
            res.append([loss.detach().double(), xx.grad.double()])
        errs = [float((a - r).abs().max() / r.abs().max()) for a, r in zip(*res)]
        out[f"ce-float32-{name}"] = [errs, 1e-5]
    out["ce-kernel-ran"] = [[0.0 if calls and all(calls) else 1.0], 0.0]
    return out


if __name__ == "__main__":
    main()
