"""Benchmark suite: crossentropy's CPU kernels vs torch, naive NumPy and the memory floor.

Run from the repository root::

    python -m benchmarks            # full suite (a few minutes)
    python -m benchmarks --quick    # small shapes, few repeats (seconds)

Every number in a row is measured in the same run, the variants interleaved
round by round, and reported as a median; the table shows ratios, which survive a noisy,
shared machine far better than absolute times.  Columns:

``ours``      crossentropy (``cross_entropy`` / ``value_and_grad``) on NumPy float32
``torch``     ``torch.nn.functional.cross_entropy`` (or ``..._with_logits``) on CPU;
              ``fwd+bwd`` is forward plus ``.backward()`` on a leaf copy-free view
``naive``     a textbook NumPy implementation (max, exp, sum, log, gather)
``read``      ``np.max`` over the logits: one read-only pass (the forward floor)
``copy``      ``x.copy()``: read + write into fresh memory (page faults included,
              as for our fresh gradient); ``copy_into`` writes into a reused buffer

Peak extra memory: ``tracemalloc`` for NumPy code (ours, naive); for torch the
resident-set growth sampled every 0.5 ms by a background thread while the call
runs (torch frees its temporaries inside the call, so the sampled peak is a
lower bound).

Outputs: ``results.csv``, ``results.json`` and ``results.png`` in ``--out``
(default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

FULL_CE_SHAPES = [(4096, 32000), (1024, 128256), (65536, 10), (8, 1000)]
QUICK_CE_SHAPES = [(256, 4000), (32, 20000), (4096, 10), (8, 1000)]
FULL_BCE = 1 << 24  # 16M elements
QUICK_BCE = 1 << 18

FIELDS = ["case", "shape", "mode", "ours_s", "torch_s", "naive_s", "read_s", "copy_s", "copy_into_s",
          "torch_over_ours", "naive_over_ours", "ours_over_read", "ours_over_copy", "ours_over_copy_into",
          "ours_peak_mib", "torch_peak_mib", "naive_peak_mib", "output_mib", "repeats"]


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


# ---------------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------------

def _mib(b):
    return float(b) / 2**20


def run_case(case, shape, mode, ours, theirs, naive, x, repeats, budget, dst):
    """Time and measure one row; all columns come from this one call.

    The variants are interleaved: each round times ours, torch, naive and the
    three floors once, in turn, so a burst of load from other jobs hits all of
    them alike instead of one variant's whole series; medians per variant.
    """
    variants = {"ours": ours, "torch": theirs, "naive": naive, "read": lambda: np.max(x),
                "copy": lambda: x.copy(), "copy_into": lambda: np.copyto(dst, x)}
    variants = {k: f for k, f in variants.items() if f is not None}
    for f in variants.values():
        f()  # warm-up: JIT, caches, page-in
    times = {k: [] for k in variants}
    start = time.perf_counter()
    for _ in range(repeats):
        for k, f in variants.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times["ours"]) >= 3:
            break
    med = {k: float(np.median(v)) for k, v in times.items()}
    t_ours, t_read, t_copy, t_copy_into = med["ours"], med["read"], med["copy"], med["copy_into"]
    t_torch, t_naive = med.get("torch", float("nan")), med["naive"]
    row = dict(case=case, shape="x".join(map(str, shape)), mode=mode, ours_s=t_ours, torch_s=t_torch,
               naive_s=t_naive, read_s=t_read, copy_s=t_copy, copy_into_s=t_copy_into,
               torch_over_ours=t_torch / t_ours, naive_over_ours=t_naive / t_ours, ours_over_read=t_ours / t_read,
               ours_over_copy=t_ours / t_copy, ours_over_copy_into=t_ours / t_copy_into,
               ours_peak_mib=_mib(traced_peak(ours)), torch_peak_mib=_mib(rss_peak(theirs)) if theirs else float("nan"),
               naive_peak_mib=_mib(traced_peak(naive)), output_mib=_mib(x.nbytes) if mode != "fwd" else 0.0,
               repeats=len(times["ours"]))
    return row


def suite(quick=False, repeats=None, budget=None, with_torch=True, log=print):
    import crossentropy as ce

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:  # the table still has every other column
        torch = None
        with_torch = False
    repeats = repeats or (3 if quick else 9)
    budget = budget or (0.5 if quick else 60.0)
    rng = np.random.default_rng(0)
    rows = []
    ce_shapes = QUICK_CE_SHAPES if quick else FULL_CE_SHAPES
    for shape in ce_shapes:
        n, c = shape
        x = rng.standard_normal(shape, dtype=np.float32)
        y = rng.integers(0, c, n)
        dst = np.empty_like(x)
        many = 200 if x.size < 1 << 20 else repeats  # small shapes: more repeats, same time budget
        if with_torch:
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def t_fwd():
                return F.cross_entropy(xt, yt)

            def t_fb():
                a = xt.detach().requires_grad_()  # a leaf over the same memory: no copy
                F.cross_entropy(a, yt).backward()
                return a.grad
        else:
            t_fwd = t_fb = None
        log(f"CE {shape} ...")
        rows.append(run_case("cross_entropy", shape, "fwd", lambda: ce.cross_entropy(x, y), t_fwd,
                             lambda: naive_ce(x, y), x, many, budget, dst))
        rows.append(run_case("cross_entropy", shape, "fwd+grad", lambda: ce.value_and_grad(ce.cross_entropy, x, y),
                             t_fb, lambda: naive_ce_grad(x, y), x, many, budget, dst))
        work = x.copy()  # in place: the gradient overwrites the logits (values change, timing does not)
        rows.append(run_case("cross_entropy", shape, "fwd+grad in-place",
                             lambda: ce.value_and_grad(ce.cross_entropy, work, y, grad_into=work), t_fb,
                             lambda: naive_ce_grad(x, y), x, many, budget, dst))
        del x, dst, work
    n = QUICK_BCE if quick else FULL_BCE
    x = rng.standard_normal(n, dtype=np.float32)
    t = (rng.random(n) > 0.5).astype(np.float32)
    dst = np.empty_like(x)
    if with_torch:
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)

        def b_fwd():
            return F.binary_cross_entropy_with_logits(xt, tt)

        def b_fb():
            a = xt.detach().requires_grad_()
            F.binary_cross_entropy_with_logits(a, tt).backward()
            return a.grad
    else:
        b_fwd = b_fb = None
    log(f"BCE ({n},) ...")
    rows.append(run_case("bce_with_logits", (n,), "fwd", lambda: ce.binary_cross_entropy_with_logits(x, t), b_fwd,
                         lambda: naive_bce(x, t), x, repeats, budget, dst))
    rows.append(run_case("bce_with_logits", (n,), "fwd+grad",
                         lambda: ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, t), b_fb,
                         lambda: naive_bce_grad(x, t), x, repeats, budget, dst))
    return rows


def environment():
    import crossentropy
    from crossentropy import _kernels

    env = dict(python=platform.python_version(), numpy=np.__version__, machine=platform.machine(),
               cpus=os.cpu_count(), crossentropy=crossentropy.__version__, kernels=_kernels.available(),
               kernel_config=_kernels.config())
    for mod in ("numba", "torch"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            env[mod] = None
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        env["loadavg_start"] = os.getloadavg()
    return env


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

def _fmt_t(s):
    if s != s:
        return "-"
    return f"{s * 1e3:.3f}" if s < 1 else f"{s * 1e3:.0f}"


def _fmt_r(r):
    return "-" if r != r else f"{r:.2f}"


def table(rows):
    head = ("case", "shape", "mode", "ours ms", "torch ms", "naive ms", "read ms", "copy ms", "copy_into ms",
            "torch/ours", "naive/ours", "ours/read", "ours/copy", "ours/copy_into", "peak MiB ours", "torch",
            "naive", "grad MiB")
    lines = [head]
    for r in rows:
        lines.append((r["case"], r["shape"], r["mode"], _fmt_t(r["ours_s"]), _fmt_t(r["torch_s"]),
                      _fmt_t(r["naive_s"]), _fmt_t(r["read_s"]), _fmt_t(r["copy_s"]), _fmt_t(r["copy_into_s"]),
                      _fmt_r(r["torch_over_ours"]), _fmt_r(r["naive_over_ours"]), _fmt_r(r["ours_over_read"]),
                      _fmt_r(r["ours_over_copy"]), _fmt_r(r["ours_over_copy_into"]), f"{r['ours_peak_mib']:.1f}",
                      "-" if r["torch_peak_mib"] != r["torch_peak_mib"] else f"{r['torch_peak_mib']:.1f}",
                      f"{r['naive_peak_mib']:.1f}", f"{r['output_mib']:.1f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append("| " + " | ".join(str(v).ljust(w) for v, w in zip(line, widths)) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def write(rows, env, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in FIELDS})
    with open(out / "results.json", "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=2, default=float)
    plot(rows, out / "results.png")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['case'].replace('cross_entropy', 'CE').replace('bce_with_logits', 'BCE')} {r['shape']}\n{r['mode']}"
              for r in rows]
    series = [("ours", "ours_s"), ("torch", "torch_s"), ("naive numpy", "naive_s"), ("copy", "copy_s")]
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(rows)), 5))
    width = 0.8 / len(series)
    xs = np.arange(len(rows))
    for k, (name, key) in enumerate(series):
        vals = [r[key] / r["read_s"] for r in rows]
        ax.bar(xs + (k - (len(series) - 1) / 2) * width, vals, width, label=name)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="read-only pass (np.max)")
    ax.set_yscale("log")
    ax.set_ylabel("median time / read-only pass (log)")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7, rotation=60, ha="right")
    ax.set_title("Cross-entropy on CPU, float32: time relative to one read of the logits (lower is better)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes and few repeats (seconds)")
    p.add_argument("--repeats", type=int, default=None, help="max timed runs per measurement (default 7; quick 3)")
    p.add_argument("--budget", type=float, default=None, help="seconds per measurement before stopping early")
    p.add_argument("--no-torch", action="store_true", help="skip the torch columns")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = p.parse_args(argv)
    env = environment()
    rows = suite(quick=a.quick, repeats=a.repeats, budget=a.budget, with_torch=not a.no_torch,
                 log=lambda m: print(m, file=sys.stderr))
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = os.getloadavg()
    env["quick"] = a.quick
    print(table(rows))
    write(rows, env, a.out)
    print(f"\nwrote {a.out / 'results.csv'}, results.json, results.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
