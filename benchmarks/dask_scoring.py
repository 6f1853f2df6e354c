"""Benchmark of ``crossentropy score --dask``: rows per second against worker processes, next to the single-process CLI.

Run from the repository root::

    python -m benchmarks.dask_scoring                 # 2M and 10M rows x 10 classes, Parquet parts; 1, 2, 4 workers
    python -m benchmarks.dask_scoring --quick         # 200k rows, 1 and 2 workers
    python -m benchmarks.dask_scoring --rows 2000000 --workers 1,2 --repeats 5 --no-auc

Data: a directory of Parquet parts (``--part-rows`` rows each; softmax
probabilities of Gaussian logits, ``benchmarks.scoring.generate``).  Every
variant runs in a fresh subprocess, the variants interleaved round by round;
in each, the set-up (imports, starting the cluster) and a warm-up pass over a
small dataset are not timed, the pass over the dataset is (``score s``);
``wall s`` is the whole subprocess (for ``dask-N``: what ``--dask local:N``
costs, cluster start and shutdown included).

``cli``           ``crossentropy score DIR --json -o FILE`` in one process (its helper
                  thread sorts ROC tables beside the rest, as always)
``dask-N``        the same with ``--dask tcp://…`` on a local cluster of N
                  single-threaded worker processes
``arrow-stream``  Arrow's bare streaming read of every part (``iter_batches``, nothing
                  computed): the floor of one process's pass

Every report is compared with the CLI's, byte for byte (``identical``).  Peak
memory: the largest process of the subprocess tree (GNU time's ``%M``) and,
for ``dask-N``, the largest worker (``ru_maxrss`` read on the workers).  The
machine's core count is printed and stored: with fewer cores than processes,
they share them.  Results go to ``--out`` (default: a new temporary folder)
as ``dask_scoring.csv`` and ``dask_scoring.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile

from benchmarks.scoring import generate, measure

FIELDS = ["rows", "classes", "parts", "auc", "variant", "workers", "score_s", "wall_s", "rows_per_s", "runs",
          "speedup_vs_cli", "over_arrow_stream", "peak_mib", "worker_peak_mib", "identical"]

# Every variant runs this driver in a fresh process: the set-up (imports, a cluster) is not timed, a warm-up
# pass on a small dataset is not timed, then the pass over the dataset is (``score_s``).
_DRIVER = r"""
import json, os, resource, sys, time, warnings, logging
mode, path, warm, out, result = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
extra = sys.argv[6:]

def arrow(d):
    import pyarrow.parquet as q
    n = 0
    for f in sorted(os.listdir(d)):
        for b in q.ParquetFile(os.path.join(d, f)).iter_batches():
            n += b.num_rows
    return 0

if __name__ == "__main__":
    from crossentropy.cli import main
    client = cluster = None
    if mode == "arrow":
        run = arrow
    else:
        dask = []
        if mode != "cli":
            from distributed import Client, LocalCluster
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cluster = LocalCluster(n_workers=int(mode), threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
            client = Client(cluster)
            dask = ["--dask", cluster.scheduler_address]
        def run(d, o=os.devnull):
            return main(["score", d, "--json", "-o", o, "--no-progress", *dask, *extra])
    assert run(warm) == 0
    t0 = time.perf_counter()
    rc = run(path) if mode == "arrow" else run(path, out)
    t = time.perf_counter() - t0
    wpeak = None
    if client is not None:
        wpeak = max(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0).values())
        client.close()
        cluster.close()
    with open(result, "w") as f:
        json.dump({"rc": rc, "score_s": t, "worker_peak_mib": wpeak}, f)
"""


def make_dataset(folder, rows, k, part_rows, seed=0) -> str:
    """A directory of Parquet parts of ``part_rows`` rows (the last one shorter)."""
    os.makedirs(folder, exist_ok=True)
    for i, start in enumerate(range(0, rows, part_rows)):
        n = min(part_rows, rows - start)
        sub = tempfile.mkdtemp(dir=folder)
        path = generate(sub, n, k, ["parquet"], seed=seed * 100003 + i)["parquet"]
        os.replace(path, os.path.join(folder, f"part-{i:05d}.parquet"))
        os.rmdir(sub)
    return folder


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(args) -> list:
    workers = [int(w) for w in args.workers.split(",")]
    tmp = tempfile.mkdtemp(prefix="crossentropy-bench-dask-", dir=args.tmp)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.path.abspath(args.src) + os.pathsep + env.get("PYTHONPATH", "")
    py = sys.executable
    extra = ["--no-auc"] if args.no_auc else []
    results = []
    try:
        warm = make_dataset(os.path.join(tmp, "warm"), 20_000, args.classes, 10_000, seed=99)
        for rows in [int(r) for r in args.rows.split(",")]:
            print(f"generating {rows:,} rows x {args.classes} classes in parts of {args.part_rows:,} ...", flush=True)
            data = make_dataset(os.path.join(tmp, f"d{rows}"), rows, args.classes, args.part_rows)
            parts = len(os.listdir(data))
            out = {v: os.path.join(tmp, f"{v}.json") for v in ["cli"] + [f"dask-{n}" for n in workers]}
            res = {v: os.path.join(tmp, f"{v}.result") for v in ["cli", "arrow-stream", *out]}
            modes = {"cli": "cli", "arrow-stream": "arrow", **{f"dask-{n}": str(n) for n in workers}}
            variants = {v: [py, "-c", _DRIVER, m, data, warm, out.get(v, os.devnull), res[v], *extra]
                        for v, m in modes.items()}
            rec = {v: {"wall": [], "score": [], "peak": [], "wpeak": [], "digest": set()} for v in variants}
            for r in range(args.repeats):  # interleaved: every variant once per round
                for v, cmd in variants.items():
                    wall, peak = measure(cmd, env)
                    rec[v]["wall"].append(wall)
                    rec[v]["peak"].append(peak)
                    with open(res[v]) as f:
                        got = json.load(f)
                    if got["rc"] != 0:
                        raise RuntimeError(f"{v} failed (exit {got['rc']})")
                    score = got["score_s"]
                    if got["worker_peak_mib"] is not None:
                        rec[v]["wpeak"].append(got["worker_peak_mib"])
                    rec[v]["score"].append(score)
                    if v in out:
                        rec[v]["digest"].add(_digest(out[v]))
                    print(f"  {rows:>11,} {v:13s} round {r + 1}: score {score:7.2f} s  wall {wall:7.2f} s  "
                          f"{peak:6.0f} MiB", flush=True)
            med = {v: statistics.median(rec[v]["score"]) for v in variants}
            cli_digest = rec["cli"]["digest"]
            for v in variants:
                results.append({
                    "rows": rows, "classes": args.classes, "parts": parts, "auc": not args.no_auc, "variant": v,
                    "workers": int(v.split("-")[1]) if v.startswith("dask-") else (1 if v == "cli" else None),
                    "score_s": round(med[v], 3), "wall_s": round(statistics.median(rec[v]["wall"]), 3),
                    "rows_per_s": round(rows / med[v]), "runs": len(rec[v]["score"]),
                    "speedup_vs_cli": round(med["cli"] / med[v], 2),
                    "over_arrow_stream": round(med[v] / med["arrow-stream"], 2),
                    "peak_mib": round(max(rec[v]["peak"]), 1),
                    "worker_peak_mib": round(max(rec[v]["wpeak"]), 1) if rec[v]["wpeak"] else None,
                    "identical": (rec[v]["digest"] == cli_digest and len(cli_digest) == 1) if v in out else None,
                })
            shutil.rmtree(data, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def table(results) -> str:
    lines = [f"{'rows':>11s} {'parts':>5s} {'variant':13s} {'score s':>8s} {'wall s':>7s} {'rows/s':>11s} "
             f"{'x cli':>6s} {'x floor':>8s} {'peak MiB':>9s} {'worker MiB':>10s} identical"]
    for r in results:
        wp = f"{r['worker_peak_mib']:10.0f}" if r["worker_peak_mib"] else f"{'-':>10s}"
        ident = "-" if r["identical"] is None else ("yes" if r["identical"] else "NO")
        lines.append(f"{r['rows']:>11,} {r['parts']:>5d} {r['variant']:13s} {r['score_s']:8.2f} {r['wall_s']:7.2f} "
                     f"{r['rows_per_s']:>11,} {r['speedup_vs_cli']:6.2f} {r['over_arrow_stream']:8.2f} "
                     f"{r['peak_mib']:9.0f} {wp} {ident}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dask_scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="2000000,10000000", help="row counts, comma-separated")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--part-rows", type=int, default=250_000, help="rows per Parquet part")
    p.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="rounds (the table shows medians)")
    p.add_argument("--no-auc", action="store_true", help="score with --no-auc (no ROC tables)")
    p.add_argument("--quick", action="store_true", help="200k rows in parts of 50k, 1 and 2 workers, 2 rounds")
    p.add_argument("--tmp", default=None, help="folder for the generated data (default: the system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    p.add_argument("--out", default=None, help="folder for dask_scoring.csv/json (default: a new temporary folder)")
    p.add_argument("--src", default=None, help="put this folder first on PYTHONPATH (e.g. ./src)")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.part_rows, args.workers, args.repeats = "200000", 50_000, "1,2", 2
    out = args.out or tempfile.mkdtemp(prefix="crossentropy-bench-dask-scoring-")
    os.makedirs(out, exist_ok=True)
    results = run(args)
    text = table(results)
    cpus = os.cpu_count()
    print()
    print(f"{cpus} CPU cores on this machine: dask-N runs N worker processes on them (plus the driver)")
    print(text)
    with open(os.path.join(out, "dask_scoring.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(results)
    meta = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": cpus,
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None}
    with open(os.path.join(out, "dask_scoring.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(f"\nwrote {out}/dask_scoring.csv and dask_scoring.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
