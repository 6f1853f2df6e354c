"""Fused linear + cross-entropy: time and peak memory against PyTorch and the matmul floor.

Run from the repository root::

    python -m benchmarks.linear_ce                # full run (about half an hour on 2 cores)
    python -m benchmarks.linear_ce --quick        # small shapes, seconds; writes to a temporary folder
    python -m benchmarks.linear_ce --device cuda  # on a CUDA machine: bf16, with liger-kernel and
                                                  # cut-cross-entropy when importable

Variants (forward + backward of ``loss = mean CE(h Wᵀ, y)``, gradients for ``h`` and ``W``):

``ours``           ``crossentropy.torch.functional.linear_cross_entropy`` (fused, default budget)
``unfused``        ``F.cross_entropy(h @ W.T, y)`` with autograd (materialises the N×V logits and their gradient)
``torch_chunked``  ``F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions())`` (PyTorch 2.13)
``floor``          the three products any method needs: ``h·Wᵀ``, ``g·W``, ``gᵀ·h`` (``torch.mm``: the same
                   BLAS, in the same process and run)

CPU method: one worker process per shape; rounds interleave the variants (``ours, unfused, torch_chunked,
floor``, then again) after one warm-up call each; the table gives medians over the rounds and ratios of
medians.  The large shape (minutes a call) runs three interleaved rounds without warm-up (a one-round
run, ``rounds = 1``, would run each variant in its own process).  Peak extra memory: the growth of the resident set during a timed call (``/proc/self/clear_refs``
resets the high-water mark, ``VmHWM`` after the call minus ``VmRSS`` before; glibc's mmap threshold is
pinned at 64 KiB so that freed tensors leave the resident set at once), minus the bytes of the gradients
the call returns (``∂h`` and ``∂W``: the same for every variant).  It includes everything else the call
allocates: logits, their gradient, BLAS workspaces.

CUDA method (``--device cuda``, not run here: no GPU): ``torch.cuda.Event`` timing, medians, and
``torch.cuda.max_memory_allocated`` growth minus the gradients; bf16, N=8192, D=4096, V=128256.

Outputs: a table on stdout; with the full run ``benchmarks/results/linear_ce.{csv,json,png}`` (the plot:
time and peak memory against N and V); ``--quick`` writes to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("ours", "unfused", "torch_chunked", "floor")
FIELDS = ["group", "N", "D", "V", "dtype", "rounds", "variant", "median_s", "over_floor", "peer_over_ours",
          "peak_extra_mib", "grads_mib"]


def _shapes(quick):
    """(group, N, D, V, rounds, variants) of a run."""
    if quick:
        return ([("target", 256, 128, 4096, 3, VARIANTS), ("large", 512, 128, 8192, 2, VARIANTS)]
                + [("scale_N", n, 128, 4096, 2, ("ours", "floor", "unfused")) for n in (128, 512)]
                + [("scale_V", 256, 128, v, 2, ("ours", "floor", "unfused")) for v in (2048, 8192)])
    return ([("target", 2048, 1024, 32000, 5, VARIANTS)]
            + [("scale_N", n, 1024, 32000, 3, VARIANTS) for n in (512, 1024, 4096)]
            + [("scale_V", 2048, 1024, v, 3, VARIANTS) for v in (8000, 16000, 64000)]
            + [("large", 8192, 2048, 128256, 3, VARIANTS)])


# ------------------------------------------------------------------------------------------------
# worker (one shape, one process)
# ------------------------------------------------------------------------------------------------

def _worker(N, D, V, rounds, variants):
    import torch
    import torch.nn.functional as F

    from benchmarks.distributed import peak_mib
    from crossentropy.torch.functional import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, D, generator=g) * 0.5
    W = torch.randn(V, D, generator=g) * (1.0 / D ** 0.5)
    y = torch.randint(0, V, (N,), generator=g)
    opts = torch.nn.LinearCrossEntropyOptions()

    def leaves():
        return h.detach().requires_grad_(True), W.detach().requires_grad_(True)

    def ours():
        hh, ww = leaves()
        linear_cross_entropy(hh, ww, y).backward()
        return hh.grad, ww.grad

    def unfused():
        hh, ww = leaves()
        F.cross_entropy(hh @ ww.T, y).backward()
        return hh.grad, ww.grad

    def torch_chunked():
        hh, ww = leaves()
        F.linear_cross_entropy(hh, ww, y, options=opts).backward()
        return hh.grad, ww.grad

    def floor():
        z = torch.mm(h, W.t())  # the logits; then the same buffer stands for their gradient
        return torch.mm(z, W), torch.mm(z.t(), h)

    fns = {"ours": ours, "unfused": unfused, "torch_chunked": torch_chunked, "floor": floor}
    fns = {k: fns[k] for k in variants}
    times = {k: [] for k in fns}
    peaks = {}
    grads_mib = (N * D + V * D) * 4 / 2**20
    if rounds > 1 and N * D * V < 10**12:
        for fn in fns.values():  # warm-up (BLAS workspaces, lazy imports); not worth minutes at the large shape
            fn()

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for _ in range(rounds):
        for k, fn in fns.items():
            # the peak of the call too (the returned gradients are alive at the high-water mark)
            dt = []
            peaks[k] = peak_mib(lambda fn=fn: dt.append(timed(fn))) - grads_mib
            times[k].append(dt[0])
    return {"times": times, "peaks": peaks, "grads_mib": grads_mib}


def _run_worker(N, D, V, rounds, variants, timeout=3600):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    cmd = [sys.executable, "-m", "benchmarks.linear_ce", "--worker", str(N), str(D), str(V), str(rounds),
           ",".join(variants)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {N}x{D}x{V} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(group, N, D, V, rounds, res, dtype="float32"):
    med = {k: statistics.median(v) for k, v in res["times"].items()}
    rows = []
    for k, m in med.items():
        rows.append(dict(group=group, N=N, D=D, V=V, dtype=dtype, rounds=rounds, variant=k, median_s=round(m, 4),
                         over_floor=round(m / med["floor"], 3) if "floor" in med else "",
                         peer_over_ours=round(m / med["ours"], 3) if "ours" in med else "",
                         peak_extra_mib=round(res["peaks"][k], 1), grads_mib=round(res["grads_mib"], 1)))
    return rows


def _table(rows):
    head = f"{'group':8} {'N':>6} {'D':>5} {'V':>7} {'variant':14} {'median s':>9} {'/floor':>7} " \
           f"{'/ours':>6} {'peak extra MiB':>15}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['group']:8} {r['N']:>6} {r['D']:>5} {r['V']:>7} {r['variant']:14} {r['median_s']:>9.3f} "
                     f"{r['over_floor']!s:>7} {r['peer_over_ours']!s:>6} {r['peak_extra_mib']:>15.1f}")
    return "\n".join(lines)


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (group, key) in enumerate((("scale_N", "N"), ("scale_V", "V"))):
        base = [r for r in rows if r["group"] == "target"]
        sel = [r for r in rows if r["group"] == group] + base
        for variant in VARIANTS:
            pts = sorted((r[key], r["median_s"], r["peak_extra_mib"]) for r in sel if r["variant"] == variant)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            axes[0, col].plot(xs, [p[1] for p in pts], "o-", label=variant)
            axes[1, col].plot(xs, [max(p[2], 0.1) for p in pts], "o-", label=variant)
        other = "V = 32000" if key == "N" else "N = 2048"
        axes[0, col].set(xscale="log", yscale="log", xlabel=key, ylabel="forward + backward (s, median)",
                         title=f"time vs {key} ({other}, D = 1024, float32)")
        axes[1, col].set(xscale="log", yscale="log", xlabel=key, ylabel="peak extra memory beyond gradients (MiB)",
                         title=f"memory vs {key}")
        for ax in axes[:, col]:
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle(f"fused linear cross-entropy on the CPU ({os.cpu_count()} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------------
# CUDA (not run here)
# ------------------------------------------------------------------------------------------------

def _cuda(N=8192, D=4096, V=128256, rounds=10):
    import torch
    import torch.nn.functional as F

    from crossentropy.torch.functional import linear_cross_entropy

    dev, dt = torch.device("cuda"), torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    h = torch.randn(N, D, generator=g, device=dev, dtype=dt) * 0.5
    W = torch.randn(V, D, generator=g, device=dev, dtype=dt) * (1.0 / D ** 0.5)
    y = torch.randint(0, V, (N,), generator=g, device=dev)

    def leaves():
        return h.detach().requires_grad_(True), W.detach().requires_grad_(True)

    def run(loss_fn):
        def f():
            hh, ww = leaves()
            loss_fn(hh, ww).backward()
        return f

    fns = {"ours": run(lambda a, b: linear_cross_entropy(a, b, y)),
           "unfused": run(lambda a, b: F.cross_entropy((a @ b.T).float(), y)),
           "torch_chunked": run(lambda a, b: F.linear_cross_entropy(a, b, y,
                                                                    options=torch.nn.LinearCrossEntropyOptions()))}
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss()
        fns["liger"] = run(lambda a, b: liger(b, a, y))
    except ImportError:
        print("liger-kernel not importable: skipped")
    try:
        from cut_cross_entropy import linear_cross_entropy as cce

        fns["cut_cross_entropy"] = run(lambda a, b: cce(a, b, y))
    except ImportError:
        print("cut-cross-entropy not importable: skipped")

    def floor():
        z = torch.mm(h, W.t())
        torch.mm(z, W)
        torch.mm(z.t(), h)

    fns["floor"] = floor
    times = {k: [] for k in fns}
    peaks = {}
    grads_mib = (N * D + V * D) * 2 / 2**20
    for k, fn in fns.items():
        fn()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peaks[k] = (torch.cuda.max_memory_allocated() - base) / 2**20 - grads_mib
    for _ in range(rounds):
        for k, fn in fns.items():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times[k].append(a.elapsed_time(b) / 1000)
    return _rows("cuda", N, D, V, rounds, {"times": times, "peaks": peaks, "grads_mib": grads_mib}, "bfloat16")


# ------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few rounds, temporary output folder")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--groups", nargs="+", help="run only these groups (target, scale_N, scale_V, large); the "
                                                "other groups' rows already in the output folder are kept")
    ap.add_argument("--out", type=Path, help="output folder (default: benchmarks/results, or a temporary "
                                                 "folder with --quick)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        N, D, V, rounds, variants = a.worker
        print(json.dumps(_worker(int(N), int(D), int(V), int(rounds), variants.split(","))))
        return 0
    out = a.out or (Path(tempfile.mkdtemp(prefix="linear_ce-")) if a.quick else ROOT / "benchmarks" / "results")
    if a.device == "cuda":
        rows = _cuda()
    else:
        rows = []
        for group, N, D, V, rounds, variants in _shapes(a.quick):
            if a.groups and group not in a.groups:
                continue
            print(f"{group}: N={N} D={D} V={V}, {rounds} rounds ...", flush=True)
            if rounds > 1:
                res = _run_worker(N, D, V, rounds, variants)
            else:  # one call each (the large shape): a process per variant, no warm-up
                res = {"times": {}, "peaks": {}}
                for v in variants:
                    r = _run_worker(N, D, V, 1, [v])
                    res["times"].update(r["times"])
                    res["peaks"].update(r["peaks"])
                    res["grads_mib"] = r["grads_mib"]
            rows += _rows(group, N, D, V, rounds, res)
    previous = out / "linear_ce.json"
    if a.groups and previous.exists():  # a partial rerun keeps the other groups' rows (each group is its own run)
        kept = [r for r in json.loads(previous.read_text())["rows"] if r["group"] not in a.groups]
        rows = [r for r in kept if r["group"] != "large"] + rows + [r for r in kept if r["group"] == "large"]
    print(f"fused linear cross-entropy, {a.device}, {os.cpu_count()} cores, float32 forward + backward "
          "(medians of interleaved rounds; peak extra = resident-set growth minus the gradients)")
    print(_table(rows))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "linear_ce.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    import torch

    meta = {"cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "torch": torch.__version__, "blas": "MKL (torch CPU build)", "device": a.device}
    (out / "linear_ce.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if a.device == "cpu":
        _plot(rows, out / "linear_ce.png")
    print(f"wrote {out / 'linear_ce.csv'}, linear_ce.json" + (", linear_ce.png" if a.device == "cpu" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
