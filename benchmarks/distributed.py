"""Vocabulary-parallel cross-entropy: time and peak memory per rank as the vocabulary is split over 1, 2, 4 processes.

Run from the repository root::

    python -m benchmarks.distributed            # N = 2048 tokens, V = 32768, D = 1024 (a minute or two)
    python -m benchmarks.distributed --quick    # small shapes (seconds)
    python -m benchmarks.distributed --out DIR  # where the CSV/JSON go

What it measures, honestly labelled: R processes on *this* machine (gloo
over loopback, CPU tensors, float32), each with ``max(1, cores // R)``
intra-op threads, so that R = 1 and R = 2 use the same cores and R = 4
shares them (on a 2-core machine, 4 ranks are oversubscribed).  This is
how the arithmetic and the memory scale with the split; it is not a
multi-GPU measurement (NCCL on GPUs: not measured, no GPU here).

Each rank holds ``V / R`` vocabulary entries.  Variants, interleaved round by
round in the same processes and reported as the median of the slowest rank:

logits (each rank has its ``N × V_r`` logits shard):
  ``ours``      ``vocab_parallel_cross_entropy`` forward + backward
  ``gather``    the peer without a vocabulary-parallel loss: all-gather the
                shards into ``N × V`` logits, ``torch.nn.functional.cross_entropy``
                forward + backward (at R = 1: just torch's loss)
  ``floor``     the shard read twice and a shard-sized gradient written once
                (``x.sum()`` + ``torch.mul(x, 1, out=buf)``): the memory
                traffic any forward + backward needs
fused (each rank has hidden ``N × D`` and its ``V_r × D`` rows of the LM head):
  ``ours``      ``vocab_parallel_linear_cross_entropy`` forward + backward
                (∂hidden all-reduced, ∂weight_shard), ``memory_budget`` 16 MiB
                (``--fused-budget``): smaller chunks hold less memory and
                accumulate ∂weight_shard more often (one ``V_r × D`` update per chunk)
  ``unfused``   ``logits = hidden @ W_rᵀ`` (materialised), then
                ``vocab_parallel_cross_entropy`` and autograd's matmul
                backward, ∂hidden all-reduced likewise
  ``floor``     the three matmuls alone (``h W_rᵀ``, ``g W_r``, ``gᵀ h``)

Peak memory per rank: the growth of the resident set during one call
(``/proc/self/clear_refs`` resets the high-water mark before the call,
``VmHWM`` after it, minus the resident set before; glibc's mmap threshold is
pinned so that freed tensors leave the resident set), after a warm-up call.
Inputs are allocated before the call and not counted; the gradient the call
returns is (it is part of what the call allocates).

Outputs: a table on stdout, ``distributed.csv`` and ``distributed.json`` in
``--out`` (default ``benchmarks/results/distributed.tmp``, ignored by git).
"""

from __future__ import annotations

import argparse
import csv
import datetime
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
FULL = dict(N=2048, V=32768, D=1024, rounds=5)
QUICK = dict(N=256, V=4096, D=128, rounds=5)
FUSED_BUDGET_MIB = 16  # bytes of logits per chunk in the fused loss (MiB): several chunks at every split
FIELDS = ["variant", "ranks", "threads_per_rank", "N", "V", "V_r", "D", "ours_ms", "peer", "peer_ms", "floor_ms",
          "peer_over_ours", "ours_over_floor", "ours_peak_mib", "peer_peak_mib", "peer_over_ours_memory"]


# ------------------------------------------------------------------------------------------------
# worker (one rank)
# ------------------------------------------------------------------------------------------------

def _status_kib(field):
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def peak_mib(fn):
    """Resident-set growth (MiB) during ``fn()``: the kernel's high-water mark, reset just before."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    base = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - base) / 1024


def _worker(rank, world, store, out, N, V, D, rounds, budget_mib):
    import torch
    import torch.distributed as dist

    from crossentropy.torch.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    threads = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    sizes = [V // world + (1 if r < V % world else 0) for r in range(world)]
    w = sizes[rank]
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, V, (N,), generator=g)
    X = torch.randn(N, w, generator=g) * 2  # this rank's logits shard
    H = torch.randn(N, D, generator=g)
    Wr = torch.randn(w, D, generator=g) * D ** -0.5
    buf = torch.empty_like(X)
    G = torch.randn(N, w, generator=g)  # a gradient-shaped operand for the matmul floor

    def logits_ours():
        x = X.detach().requires_grad_()
        vocab_parallel_cross_entropy(x, y).backward()

    def logits_gather():
        x = X.detach().requires_grad_()
        if world > 1:
            parts = [torch.empty(N, s) for s in sizes]
            dist.all_gather(parts, X)
            parts[rank] = x
            full = torch.cat(parts, dim=1)
        else:
            full = x
        torch.nn.functional.cross_entropy(full, y).backward()

    def logits_floor():
        X.sum()
        torch.mul(X, 1.0, out=buf)

    def fused_ours():
        h, W = H.detach().requires_grad_(), Wr.detach().requires_grad_()
        vocab_parallel_linear_cross_entropy(h, W, y, memory_budget=budget_mib << 20).backward()

    def fused_unfused():
        h, W = H.detach().requires_grad_(), Wr.detach().requires_grad_()
        vocab_parallel_cross_entropy(h @ W.t(), y).backward()
        if world > 1:
            dist.all_reduce(h.grad)

    def fused_floor():
        H @ Wr.t()
        G @ Wr
        G.t() @ H

    groups = {"logits": {"ours": logits_ours, "peer": logits_gather, "floor": logits_floor},
              "fused": {"ours": fused_ours, "peer": fused_unfused, "floor": fused_floor}}
    res = {}
    for name, fns in groups.items():
        peaks = {}
        for k, fn in fns.items():  # a warm-up call (one-time allocations), then one call measured for memory
            dist.barrier()
            fn()
            dist.barrier()
            peaks[k] = peak_mib(fn)
        times = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                dist.barrier()
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        res[name] = {"median_s": {k: statistics.median(v) for k, v in times.items()}, "peak_mib": peaks}
    res["threads"] = threads
    res["V_r"] = w
    dist.barrier()
    dist.destroy_process_group()
    Path(out).write_text(json.dumps(res))


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------

def _launch(world, shape, budget_mib, timeout=1800):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    with tempfile.TemporaryDirectory(prefix="ce-dist-bench-") as tmp:
        store = os.path.join(tmp, "store")
        outs = [os.path.join(tmp, f"{r}.json") for r in range(world)]
        args = [str(shape[k]) for k in ("N", "V", "D", "rounds")] + [str(budget_mib)]
        procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.distributed", "--worker", str(r), str(world),
                                   store, outs[r], *args], cwd=ROOT, env=env) for r in range(world)]
        for p in procs:
            p.wait(timeout=timeout)
        if any(p.returncode for p in procs):
            raise SystemExit(f"a worker of the {world}-process run failed")
        return [json.loads(Path(o).read_text()) for o in outs]


def _rows(world, shape, reps):
    rows = []
    for variant, peer in (("logits", "gather+torch"), ("fused", "unfused")):
        t = {k: max(r[variant]["median_s"][k] for r in reps) for k in ("ours", "peer", "floor")}
        m = {k: max(r[variant]["peak_mib"][k] for r in reps) for k in ("ours", "peer")}
        rows.append({"variant": variant, "ranks": world, "threads_per_rank": reps[0]["threads"],
                     "N": shape["N"], "V": shape["V"], "V_r": max(r["V_r"] for r in reps), "D": shape["D"],
                     "ours_ms": 1e3 * t["ours"], "peer": peer, "peer_ms": 1e3 * t["peer"],
                     "floor_ms": 1e3 * t["floor"], "peer_over_ours": t["peer"] / t["ours"],
                     "ours_over_floor": t["ours"] / t["floor"], "ours_peak_mib": m["ours"],
                     "peer_peak_mib": m["peer"], "peer_over_ours_memory": m["peer"] / max(m["ours"], 1e-9)})
    return rows


def _table(rows):
    head = (f"{'variant':8} {'ranks':>5} {'V_r':>6} {'ours ms':>9} {'peer':>13} {'peer ms':>9} {'floor ms':>9} "
            f"{'peer/ours':>9} {'ours/floor':>10} {'ours MiB':>9} {'peer MiB':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['variant']:8} {r['ranks']:>5} {r['V_r']:>6} {r['ours_ms']:>9.1f} {r['peer']:>13} "
                     f"{r['peer_ms']:>9.1f} {r['floor_ms']:>9.1f} {r['peer_over_ours']:>9.2f} "
                     f"{r['ours_over_floor']:>10.2f} {r['ours_peak_mib']:>9.1f} {r['peer_peak_mib']:>9.1f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed.tmp")
    ap.add_argument("--fused-budget", type=int, default=FUSED_BUDGET_MIB, metavar="MIB",
                    help=f"memory_budget of the fused loss in MiB (default {FUSED_BUDGET_MIB})")
    ap.add_argument("--worker", nargs=9, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        r, w, store, out, N, V, D, rounds, budget = a.worker
        _worker(int(r), int(w), store, out, int(N), int(V), int(D), int(rounds), int(budget))
        return 0
    shape = QUICK if a.quick else FULL
    rows = []
    for world in a.ranks:
        rows += _rows(world, shape, _launch(world, shape, a.fused_budget))
    cores = os.cpu_count()
    print(f"vocabulary-parallel CE on this machine: {cores} cores, gloo over loopback, CPU float32, "
          f"N = {shape['N']}, V = {shape['V']}, D = {shape['D']}, fused memory_budget {a.fused_budget} MiB; "
          f"medians of {shape['rounds']} rounds "
          "(slowest rank); peak = resident-set growth per rank")
    print(_table(rows))
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "distributed.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    meta = {"cores": cores, "platform": platform.platform(), "python": sys.version.split()[0], "shape": shape,
            "fused_memory_budget_mib": a.fused_budget}
    (a.out / "distributed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {a.out / 'distributed.csv'} and distributed.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
