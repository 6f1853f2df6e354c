"""Benchmark suite: crossentropy's compiled CPU kernels vs torch, naive NumPy and the memory floor.

Run from the repository root::

    python -m benchmarks            # the full suite, on purpose: writes benchmarks/results/
    python -m benchmarks --quick    # small shapes, few repeats: writes to a new temporary folder
    python -m benchmarks --out DIR  # either, written to DIR

Three measurements, all float32, torch with its default intra-op threads and
crossentropy with its default (the cores this process may use):

* **the shape grid** (issue 10): ``cross_entropy`` forward, forward+gradient
  (``value_and_grad``) and forward+gradient in place (``grad_into=x``) at
  8×1000, 32×20000, 256×4000, 4096×10, 65536×10, 4096×32000, 1024×128256, and
  BCE-with-logits on 16M elements.  Every number in a row comes from the same
  run, the variants interleaved round by round (each round times ours, torch,
  naive and the floors once, in turn, so a burst of load from other jobs hits
  all of them alike), reported as medians; small shapes time batches of calls.
  Columns: ``ours``; ``torch`` (``torch.nn.functional.cross_entropy`` on a
  tensor sharing the array's memory; ``fwd+grad`` = forward + ``.backward()``);
  ``naive`` (max/exp/sum/log/gather in NumPy); the memory floor: ``read``
  (``np.max``, one read-only pass), ``copy`` (``x.copy()``: read + write into
  fresh memory, page faults included, as for a fresh gradient) and
  ``copy_into`` (into a reused buffer).
* **the cold first call**: a new Python process with an empty bytecode cache
  (``PYTHONPYCACHEPREFIX`` set to an empty folder) imports crossentropy and
  runs ``value_and_grad(cross_entropy, x, y)`` on 64×1000; the process's wall
  time from spawn to exit, the import and the first call.
* **per-call overhead** on tiny inputs: ``crossentropy.cross_entropy`` on a
  NumPy array vs ``F.cross_entropy`` on a torch tensor, and ``value_and_grad``
  vs torch's forward+backward.

Peak extra memory: ``tracemalloc`` for NumPy code (ours, naive: the NumPy
allocations; the kernels' own scratch, a few rows of doubles per thread, is
not NumPy's and is not counted); for torch the resident-set growth sampled
every 0.5 ms by a background thread (a lower bound).

Outputs: ``results.csv`` (the grid), ``results.json`` (everything, with the
environment and the load average) and ``results.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

GRID = [(8, 1000), (32, 20000), (256, 4000), (4096, 10), (65536, 10), (4096, 32000), (1024, 128256)]
QUICK_GRID = [(8, 1000), (256, 4000), (4096, 10)]
FULL_BCE = 1 << 24  # 16M elements
QUICK_BCE = 1 << 18
TINY = [(1, 2), (4, 10), (16, 100)]
RESULTS = Path(__file__).resolve().parent / "results"

FIELDS = ["case", "shape", "mode", "ours_s", "torch_s", "naive_s", "read_s", "copy_s", "copy_into_s",
          "ours_over_torch", "torch_over_ours", "naive_over_ours", "ours_over_read", "ours_over_copy",
          "ours_over_copy_into", "ours_peak_mib", "torch_peak_mib", "naive_peak_mib", "output_mib", "repeats"]


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------

def traced_peak(fn):
    """Peak bytes allocated (tracemalloc, NumPy included) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak(fn):
    """Resident-set growth while ``fn()`` runs, sampled by a thread (torch releases the GIL)."""
    if not os.path.exists("/proc/self/statm"):
        return float("nan")
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        done.set()
        th.join()
    peak[0] = max(peak[0], _rss())
    return max(0, peak[0] - base)


def interleaved(variants, rounds, batch, budget):
    """Median seconds per call of each variant: ``rounds`` rounds, each timing every variant
    once over ``batch`` calls, in turn; stops early after ``budget`` seconds (≥ 3 rounds)."""
    for f in variants.values():
        f()  # warm-up: caches, page-in, thread pools
    times = {k: [] for k in variants}
    start = time.perf_counter()
    for _ in range(rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            for _ in range(batch):
                f()
            times[k].append((time.perf_counter() - t0) / batch)
        if time.perf_counter() - start > budget and len(times[next(iter(times))]) >= 3:
            break
    return {k: float(np.median(v)) for k, v in times.items()}, len(times[next(iter(times))])


# ---------------------------------------------------------------------------------------------
# implementations
# ---------------------------------------------------------------------------------------------

def naive_ce(x, y):
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return np.mean(lse - x[np.arange(x.shape[0]), y])


def naive_ce_grad(x, y):
    n = x.shape[0]
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[np.arange(n), y])
    p = e / s
    p[np.arange(n), y] -= 1.0
    p /= n
    return loss, p


def naive_bce(x, t):
    return np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))


def naive_bce_grad(x, t):
    loss = naive_bce(x, t)
    return loss, (1.0 / (1.0 + np.exp(-x)) - t) / x.size


def _mib(b):
    return float(b) / 2**20


# ---------------------------------------------------------------------------------------------
# the shape grid
# ---------------------------------------------------------------------------------------------

def run_case(case, shape, mode, ours, theirs, naive, x, dst, rounds, budget):
    """One row: ours, torch, naive and the three floors, interleaved; all columns from this call."""
    variants = {"ours": ours, "torch": theirs, "naive": naive, "read": lambda: np.max(x),
                "copy": lambda: x.copy(), "copy_into": lambda: np.copyto(dst, x)}
    variants = {k: f for k, f in variants.items() if f is not None}
    single = None
    for _ in range(2):
        t0 = time.perf_counter()
        ours()
        single = time.perf_counter() - t0
    batch = max(1, int(2e-3 / max(single, 1e-7)))  # batches of about 2 ms for the small shapes
    med, n = interleaved(variants, rounds, batch, budget)
    t_ours, t_torch = med["ours"], med.get("torch", float("nan"))
    return dict(case=case, shape="x".join(map(str, shape)), mode=mode, ours_s=t_ours, torch_s=t_torch,
                naive_s=med["naive"], read_s=med["read"], copy_s=med["copy"], copy_into_s=med["copy_into"],
                ours_over_torch=t_ours / t_torch, torch_over_ours=t_torch / t_ours,
                naive_over_ours=med["naive"] / t_ours, ours_over_read=t_ours / med["read"],
                ours_over_copy=t_ours / med["copy"], ours_over_copy_into=t_ours / med["copy_into"],
                ours_peak_mib=_mib(traced_peak(ours)),
                torch_peak_mib=_mib(rss_peak(theirs)) if theirs else float("nan"),
                naive_peak_mib=_mib(traced_peak(naive)), output_mib=_mib(x.nbytes) if mode != "fwd" else 0.0,
                repeats=n)


def grid(quick=False, rounds=None, budget=None, with_torch=True, log=print):
    import crossentropy as ce

    torch = F = None
    if with_torch:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:  # the table still has every other column
            torch = None
    rounds = rounds or (5 if quick else 9)
    budget = budget or (1.0 if quick else 40.0)
    rng = np.random.default_rng(0)
    rows = []
    for shape in (QUICK_GRID if quick else GRID):
        n, c = shape
        x = rng.standard_normal(shape, dtype=np.float32)
        y = rng.integers(0, c, n)
        dst = np.empty_like(x)
        t_fwd = t_fb = None
        if torch is not None:
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def t_fwd():
                return F.cross_entropy(xt, yt)

            def t_fb():
                a = xt.detach().requires_grad_()  # a leaf over the same memory: no copy
                F.cross_entropy(a, yt).backward()
                return a.grad
        log(f"CE {shape} ...")
        r = max(rounds, 15) if x.size < 1 << 20 else rounds
        rows.append(run_case("cross_entropy", shape, "fwd", lambda: ce.cross_entropy(x, y), t_fwd,
                             lambda: naive_ce(x, y), x, dst, r, budget))
        rows.append(run_case("cross_entropy", shape, "fwd+grad", lambda: ce.value_and_grad(ce.cross_entropy, x, y),
                             t_fb, lambda: naive_ce_grad(x, y), x, dst, r, budget))
        work = x.copy()  # in place: the gradient overwrites the logits (values change, timing does not)
        rows.append(run_case("cross_entropy", shape, "fwd+grad in-place",
                             lambda: ce.value_and_grad(ce.cross_entropy, work, y, grad_into=work), t_fb,
                             lambda: naive_ce_grad(x, y), x, dst, r, budget))
        del x, dst, work
    n = QUICK_BCE if quick else FULL_BCE
    x = rng.standard_normal(n, dtype=np.float32)
    t = (rng.random(n) > 0.5).astype(np.float32)
    dst = np.empty_like(x)
    b_fwd = b_fb = None
    if torch is not None:
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)

        def b_fwd():
            return F.binary_cross_entropy_with_logits(xt, tt)

        def b_fb():
            a = xt.detach().requires_grad_()
            F.binary_cross_entropy_with_logits(a, tt).backward()
            return a.grad
    log(f"BCE ({n},) ...")
    rows.append(run_case("bce_with_logits", (n,), "fwd", lambda: ce.binary_cross_entropy_with_logits(x, t), b_fwd,
                         lambda: naive_bce(x, t), x, dst, rounds, budget))
    rows.append(run_case("bce_with_logits", (n,), "fwd+grad",
                         lambda: ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, t), b_fb,
                         lambda: naive_bce_grad(x, t), x, dst, rounds, budget))
    return rows


# ---------------------------------------------------------------------------------------------
# cold start and per-call overhead
# ---------------------------------------------------------------------------------------------

_COLD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import crossentropy as ce
t1 = time.perf_counter()
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 1000), dtype=np.float32)
y = rng.integers(0, 1000, 64)
t2 = time.perf_counter()
ce.value_and_grad(ce.cross_entropy, x, y)
t3 = time.perf_counter()
from crossentropy import _kernels
print(json.dumps(dict(import_s=t1 - t0, first_call_s=t3 - t2, kernels=_kernels.get() is not None)))
"""


def cold_start(repeats=3, log=print):
    """New processes with an empty bytecode cache: wall time from spawn to exit, import, first call."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="crossentropy-pycache-") as cache:
            env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _COLD], env=env, capture_output=True, text=True,
                                  timeout=300)
            wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"cold-start child failed:\n{proc.stderr[-2000:]}")
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        d["wall_s"] = wall
        out.append(d)
    res = {k: float(np.median([d[k] for d in out])) for k in ("wall_s", "import_s", "first_call_s")}
    res["wall_max_s"] = max(d["wall_s"] for d in out)
    res["kernels"] = all(d["kernels"] for d in out)
    res["runs"] = len(out)
    log(f"cold start: {res['wall_s']:.3f} s wall (max {res['wall_max_s']:.3f} s)")
    return res


def overhead(quick=False, with_torch=True, log=print):
    """Median time per call on tiny inputs, ours vs torch, interleaved."""
    import crossentropy as ce

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    rows = []
    rng = np.random.default_rng(1)
    for shape in (TINY[:2] if quick else TINY):
        x = rng.standard_normal(shape, dtype=np.float32)
        y = rng.integers(0, shape[1], shape[0])
        v = {"ours_fwd": lambda: ce.cross_entropy(x, y),
             "ours_vg": lambda: ce.value_and_grad(ce.cross_entropy, x, y)}
        if torch is not None and with_torch:
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def t_fb():
                a = xt.detach().requires_grad_()
                F.cross_entropy(a, yt).backward()
                return a.grad

            v["torch_fwd"] = lambda: F.cross_entropy(xt, yt)
            v["torch_fb"] = t_fb
        med, n = interleaved(v, 7 if quick else 21, 200, 5.0 if quick else 30.0)
        row = dict(shape="x".join(map(str, shape)), **{f"{k}_us": s * 1e6 for k, s in med.items()}, rounds=n)
        if "torch_fwd" in med:
            row["fwd_ours_over_torch"] = med["ours_fwd"] / med["torch_fwd"]
            row["vg_ours_over_torch"] = med["ours_vg"] / med["torch_fb"]
        rows.append(row)
        log(f"overhead {shape}: " + ", ".join(f"{k} {s * 1e6:.2f} us" for k, s in med.items()))
    return rows


def environment():
    import crossentropy
    from crossentropy import _kernels

    env = dict(python=platform.python_version(), numpy=np.__version__, machine=platform.machine(),
               cpus=os.cpu_count(), crossentropy=crossentropy.__version__, kernels=_kernels.info())
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        env["cpu"] = None
    if hasattr(os, "getloadavg"):
        env["loadavg_start"] = os.getloadavg()
    return env


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

def _t(s):
    if s != s:
        return "-"
    return f"{s * 1e3:.4f}" if s < 1e-2 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}"


def _r(r):
    return "-" if r != r else f"{r:.2f}"


def _markdown(head, lines):
    widths = [max(len(str(row[i])) for row in [head] + lines) for i in range(len(head))]
    out = ["| " + " | ".join(str(v).ljust(w) for v, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths)) + " |" for row in lines]
    return "\n".join(out)


def table(rows):
    head = ("case", "shape", "mode", "ours ms", "torch ms", "ours/torch", "torch/ours", "naive ms", "read ms",
            "copy ms", "ours/read", "ours/copy", "ours/copy_into", "peak MiB ours", "torch", "grad MiB")
    lines = [(r["case"], r["shape"], r["mode"], _t(r["ours_s"]), _t(r["torch_s"]), _r(r["ours_over_torch"]),
              _r(r["torch_over_ours"]), _t(r["naive_s"]), _t(r["read_s"]), _t(r["copy_s"]), _r(r["ours_over_read"]),
              _r(r["ours_over_copy"]), _r(r["ours_over_copy_into"]), f"{r['ours_peak_mib']:.1f}",
              "-" if r["torch_peak_mib"] != r["torch_peak_mib"] else f"{r['torch_peak_mib']:.1f}",
              f"{r['output_mib']:.1f}") for r in rows]
    return _markdown(head, lines)


def overhead_table(rows):
    head = ("shape", "ours fwd µs", "torch fwd µs", "ours/torch", "ours value_and_grad µs", "torch fwd+bwd µs",
            "ours/torch")
    lines = [(r["shape"], f"{r['ours_fwd_us']:.2f}", f"{r.get('torch_fwd_us', float('nan')):.2f}",
              _r(r.get("fwd_ours_over_torch", float("nan"))), f"{r['ours_vg_us']:.2f}",
              f"{r.get('torch_fb_us', float('nan')):.2f}", _r(r.get("vg_ours_over_torch", float("nan"))))
             for r in rows]
    return _markdown(head, lines)


def write(data, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in data["rows"]:
            w.writerow({k: r[k] for k in FIELDS})
    with open(out / "results.json", "w") as f:
        json.dump(data, f, indent=2, default=float)
    plot(data["rows"], out / "results.png")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ce_rows = [r for r in rows if r["mode"] in ("fwd", "fwd+grad")]
    shapes = list(dict.fromkeys(f"{r['case'].replace('cross_entropy', 'CE').replace('bce_with_logits', 'BCE')}\n"
                                f"{r['shape']}" for r in ce_rows))
    xs = np.arange(len(shapes))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(shapes)), 8), sharex=True)
    for k, mode in enumerate(("fwd", "fwd+grad")):
        sel = [r for r in ce_rows if r["mode"] == mode]
        a1.bar(xs + (k - 0.5) * 0.38, [r["torch_over_ours"] for r in sel], 0.38, label=f"{mode}: torch time / ours")
        a2.bar(xs + (k - 0.5) * 0.38, [r["ours_over_read"] for r in sel], 0.38, label=f"{mode}: ours / read-only pass")
    a1.axhline(1.0, color="k", lw=0.8, ls="--")
    a1.axhline(3.0, color="tab:red", lw=0.8, ls=":", label="3× (target at the two large shapes)")
    a1.set_yscale("log")
    a1.set_ylabel("speed-up over torch (log)")
    a1.set_title("Cross-entropy on CPU, float32, same run, interleaved medians (higher is better)")
    a1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    a2.axhline(1.0, color="k", lw=0.8, ls="--")
    a2.set_yscale("log")
    a2.set_ylabel("ours / one read of the logits (log)")
    a2.set_title("Against the memory floor (lower is better)")
    a2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    a2.set_xticks(xs)
    a2.set_xticklabels(shapes, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def output_folder(quick, out=None):
    """Where the results go: ``out`` if given; else the committed benchmarks/results for the
    full suite only, and a new temporary folder for ``--quick`` (never the committed files)."""
    if out is not None:
        return Path(out)
    return Path(tempfile.mkdtemp(prefix="crossentropy-bench-")) if quick else RESULTS


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes and few repeats (seconds); a temporary folder")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 9; quick 5)")
    p.add_argument("--budget", type=float, default=None, help="seconds per row before stopping early")
    p.add_argument("--no-torch", action="store_true", help="skip the torch columns")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: benchmarks/results for the full suite, a new temporary "
                        "folder with --quick)")
    a = p.parse_args(argv)
    out = output_folder(a.quick, a.out)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    env = environment()
    data = {"environment": env}
    data["cold_start"] = cold_start(1 if a.quick else 3, log=log)
    data["overhead"] = overhead(a.quick, with_torch=not a.no_torch, log=log)
    data["rows"] = grid(quick=a.quick, rounds=a.rounds, budget=a.budget, with_torch=not a.no_torch, log=log)
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = os.getloadavg()
    env["quick"] = a.quick
    print(table(data["rows"]))
    print()
    print(overhead_table(data["overhead"]))
    cs = data["cold_start"]
    print(f"\ncold first call (new process, empty bytecode cache, 64x1000 value_and_grad): {cs['wall_s']:.3f} s wall "
          f"(import {cs['import_s']:.3f} s, first call {cs['first_call_s'] * 1e3:.2f} ms; {cs['runs']} runs)")
    write(data, out)
    print(f"\nwrote {out / 'results.csv'}, results.json, results.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
