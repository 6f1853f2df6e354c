"""Per-call cost of the torch drop-ins against torch.nn.functional (CPU).

Run from the repository root::

    python -m benchmarks.torch_adapter            # a few seconds per shape
    python -m benchmarks.torch_adapter --quick    # fewer repeats
    python -m benchmarks.torch_adapter --base /path/to/dir   # also an older adapter

``--base DIR``: DIR holds a copy of an older ``crossentropy`` package renamed
``crossentropy_base`` (e.g. ``git archive <commit> src/crossentropy``, moved to
``DIR/crossentropy_base``); its ``torch.functional`` is timed in the same rounds.

Each row times, interleaved round by round and reported as medians:

``step``      forward + ``.backward()`` of the loss on a leaf (the training step);
``forward``   the loss under ``torch.no_grad()``;
``vmap(grad)`` per-example gradients ``torch.func.vmap(torch.func.grad(loss))``
              (cross-entropy, one row per example);
``double``    ``autograd.grad(create_graph=True)`` then a second backward
              (cross-entropy).  The base adapter (before issue 8) can do neither.

Shapes ``N×C`` are logits and class-index targets; ``N×C×H×W`` the channels-first
(segmentation) layout.

Ratios are ours over torch (and base over torch).  The table goes to stdout;
``--out FILE`` also writes CSV.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time

SHAPES = [(8, 10), (8, 1000), (256, 1000), (4096, 1000)]
KDIM = (8, 21, 64, 64)


def _timer(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def measure(variants, rounds, budget_s=1.5):
    """Median seconds per call of each variant, interleaved round by round."""
    for fn in variants.values():  # warm-up (and numba compilation)
        fn()
        fn()
    one = max(_timer(fn, 3) for fn in variants.values())
    number = max(1, int(budget_s / rounds / max(one, 1e-7)))
    samples = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            samples[k].append(_timer(fn, number))
    return {k: statistics.median(v) for k, v in samples.items()}


def rows(quick=False, base=None):
    import torch
    import torch.nn.functional as F

    import crossentropy.torch.functional as cf

    impls = {"torch": F, "ours": cf}
    if base is not None:
        sys.path.insert(0, base)
        import crossentropy_base.torch.functional as bf

        impls["base"] = bf
    rounds = 5 if quick else 15
    torch.manual_seed(0)
    out = []

    def add(loss, shape, mode, variants):
        med = measure(variants, rounds)
        row = {"loss": loss, "shape": shape, "mode": mode,
               **{f"{k}_us": med.get(k, float("nan")) * 1e6 for k in impls},
               "ours_over_torch": med["ours"] / med["torch"]}
        if "base" in impls:
            row["base_over_torch"] = med.get("base", float("nan")) / med["torch"]
            row["ours_over_base"] = med["ours"] / med.get("base", float("nan"))
        out.append(row)

    # channels-first cross-entropy, training step
    xk = torch.randn(*KDIM, requires_grad=True)
    tk = torch.randint(0, KDIM[1], (KDIM[0], *KDIM[2:]))

    def kstep(mod):
        def run():
            xk.grad = None
            mod.cross_entropy(xk, tk).backward()
        return run

    add("cross_entropy", "x".join(map(str, KDIM)), "step", {k: kstep(m) for k, m in impls.items()})
    # per-example gradients and double backward
    xv, tv = torch.randn(64, 10), torch.randint(0, 10, (64,))
    add("cross_entropy", "64x10", "vmap(grad)",
        {k: (lambda m=m: torch.func.vmap(torch.func.grad(lambda z, y: m.cross_entropy(z, y)))(xv, tv))
         for k, m in impls.items() if k != "base"})
    xd = torch.randn(256, 100, requires_grad=True)
    td = torch.randint(0, 100, (256,))

    def double(mod):
        def run():
            (g,) = torch.autograd.grad(mod.cross_entropy(xd, td), xd, create_graph=True)
            torch.autograd.grad(g.pow(2).sum(), xd)
        return run

    add("cross_entropy", "256x100", "double", {k: double(m) for k, m in impls.items() if k != "base"})
    for loss in ("cross_entropy", "binary_cross_entropy_with_logits"):
        for n, c in SHAPES:
            x = torch.randn(n, c)
            t = torch.randint(0, c, (n,)) if loss == "cross_entropy" else torch.rand(n, c)
            xl = x.clone().requires_grad_(True)

            def step(mod, fn=loss):
                def run():
                    xl.grad = None
                    getattr(mod, fn)(xl, t).backward()
                return run

            def fwd(mod, fn=loss):
                def run():
                    with torch.no_grad():
                        getattr(mod, fn)(x, t)
                return run

            for mode, make in (("step", step), ("forward", fwd)):
                add(loss, f"{n}x{c}", mode, {k: make(m) for k, m in impls.items()})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--base", help="directory holding crossentropy_base (an older copy of the package)")
    ap.add_argument("--out", help="CSV file to write")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    res = rows(quick=args.quick, base=args.base)
    cols = list(res[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in res:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(res)


if __name__ == "__main__":
    main()
