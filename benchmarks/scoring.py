"""Benchmark of ``crossentropy score``: ours vs Arrow's bare read (the I/O floor) vs pandas + scikit-learn.

Run from the repository root::

    python -m benchmarks.scoring                  # 1M and 20M rows x 10 classes, CSV and Parquet
    python -m benchmarks.scoring --quick          # 200k rows, seconds
    python -m benchmarks.scoring --rows 1000000 --formats csv --repeats 5

Every variant runs in its own subprocess (wall time, and peak resident memory
from ``wait4``'s rusage of that very process), the variants interleaved round
by round; the table shows medians and ratios.  Variants per file:

``ours``          ``crossentropy score FILE --json -o /dev/null``: the full default
                  report (cross-entropy, accuracy, top-k, Brier, ROC AUC one-vs-rest,
                  calibration incl. class-wise, confusion matrix, worst rows)
``ours-noauc``    the same with ``--no-auc`` (no per-class sorting)
``arrow-stream``  Arrow's streaming reader, batch by batch, nothing computed (the
                  floor of a bounded-memory pass): ``pyarrow.csv.open_csv`` /
                  ``ParquetFile.iter_batches``
``arrow-table``   Arrow reading the whole file into memory with all threads
                  (``pyarrow.csv.read_csv`` / ``pyarrow.parquet.read_table``)
``pandas+sklearn`` ``pandas.read_csv`` / ``read_parquet``, then scikit-learn's
                  ``log_loss``, ``accuracy_score``, ``top_k_accuracy_score``,
                  ``brier_score_loss``, ``roc_auc_score`` (one-vs-rest) and
                  ``confusion_matrix`` (what a user would write by hand)

Also measured: ``crossentropy score`` on the bundled example (warm, the median
of ``--example-runs`` runs) with the kernels on (default) and off
(``CROSSENTROPY_KERNELS=0``).

Data are generated in a temporary folder (``--tmp``; removed afterwards unless
``--keep``): softmax probabilities of Gaussian logits, 10 classes, labels
drawn from them.  Results go to ``--out`` (default: a new temporary folder;
never over committed files) as ``scoring.csv`` and ``scoring.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FIELDS = ["format", "rows", "classes", "file_mib", "variant", "median_s", "runs", "peak_rss_mib",
          "over_arrow_stream", "over_arrow_table", "ours_speedup_vs_variant"]


def generate(folder, rows, k, formats, seed=0, block=1_000_000):
    """Write ``rows`` x ``k`` probabilities and labels as CSV and/or Parquet, block by block (bounded memory)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = ["label"] + [f"p{j}" for j in range(k)]
    paths = {f: os.path.join(folder, f"preds_{rows}.{f}") for f in formats}
    writers = {}
    try:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            z = rng.normal(size=(n, k)) * 2.0
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            u = rng.random(n)[:, None]
            y = np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), k - 1)
            t = pa.table([pa.array(y)] + [pa.array(p[:, j]) for j in range(k)], names=names)
            if "csv" in paths:
                if "csv" not in writers:
                    writers["csv"] = pacsv.CSVWriter(paths["csv"], t.schema)
                writers["csv"].write_table(t)
            if "parquet" in paths:
                if "parquet" not in writers:
                    writers["parquet"] = pq.ParquetWriter(paths["parquet"], t.schema)
                writers["parquet"].write_table(t, row_group_size=1 << 20)
    finally:
        for w in writers.values():
            w.close()
    return paths


_ARROW_STREAM = {
    "csv": "import pyarrow.csv as c, sys\nn = 0\nfor b in c.open_csv(sys.argv[1]): n += b.num_rows\nprint(n)",
    "parquet": "import pyarrow.parquet as q, sys\nn = 0\nfor b in q.ParquetFile(sys.argv[1]).iter_batches(): "
               "n += b.num_rows\nprint(n)",
}
_ARROW_TABLE = {
    "csv": "import pyarrow.csv as c, sys\nprint(c.read_csv(sys.argv[1]).num_rows)",
    "parquet": "import pyarrow.parquet as q, sys\nprint(q.read_table(sys.argv[1]).num_rows)",
}
_PANDAS = """
import sys
import numpy as np, pandas as pd
from sklearn import metrics as m
f = sys.argv[1]
df = pd.read_csv(f) if f.endswith(".csv") else pd.read_parquet(f)
y = df.pop("label").to_numpy()
p = df.to_numpy()
labels = list(range(p.shape[1]))
pred = p.argmax(axis=1)
print(m.log_loss(y, p, labels=labels), m.accuracy_score(y, pred), m.top_k_accuracy_score(y, p, k=3, labels=labels),
      m.brier_score_loss(y, p, labels=labels), m.roc_auc_score(y, p, multi_class="ovr", labels=labels),
      m.confusion_matrix(y, pred, labels=labels).sum())
"""


def _variants(fmt, path):
    py = sys.executable
    ours = [py, "-m", "crossentropy", "score", path, "--json", "-o", os.devnull, "--no-progress"]
    return {
        "ours": ours,
        "ours-noauc": ours + ["--no-auc"],
        "arrow-stream": [py, "-c", _ARROW_STREAM[fmt], path],
        "arrow-table": [py, "-c", _ARROW_TABLE[fmt], path],
        "pandas+sklearn": [py, "-c", _PANDAS, path],
    }


_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def measure(cmd, env=None):
    """``(wall seconds, peak RSS MiB)`` of one run of ``cmd`` in a fresh process.

    The peak comes from GNU time (``%M``), a small C program between us and
    the command: the resident size of a process forked from a large parent
    counts the parent's pages, so ``wait4`` from here would overstate it.
    Without ``/usr/bin/time``, the kernel's high-water mark (``VmHWM``) is
    polled every 20 ms instead.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = [_TIME, "-f", "%M", "-o", tf.name, *cmd] if _TIME else list(cmd)
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        hwm = 0.0
        if not _TIME:
            while proc.poll() is None:
                hwm = max(hwm, _vm_hwm(proc.pid))
                time.sleep(0.02)
        err = proc.communicate()[1].decode(errors="replace")
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])}... failed ({proc.returncode}): {err[-2000:]}")
        if _TIME:
            hwm = float(tf.read().strip().splitlines()[-1]) / 1024.0  # kilobytes
    return wall, hwm


def _vm_hwm(pid) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run(args) -> list:
    rows_list = [int(r) for r in args.rows.split(",")]
    formats = args.formats.split(",")
    tmp = tempfile.mkdtemp(prefix="crossentropy-bench-", dir=args.tmp)
    results = []
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = args.src + os.pathsep + env.get("PYTHONPATH", "")
    try:
        for rows in rows_list:
            need = rows * 230 * (1.6 if "parquet" in formats else 1.0)
            free = shutil.disk_usage(tmp).free
            if need > free * 0.8:
                print(f"skipping {rows:,} rows: needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
                continue
            print(f"generating {rows:,} rows x {args.classes} classes ({', '.join(formats)}) ...", flush=True)
            paths = generate(tmp, rows, args.classes, formats)
            for fmt in formats:
                path = paths[fmt]
                variants = _variants(fmt, path)
                skip = set(args.skip.split(",")) if args.skip else set()
                if rows > args.pandas_max_rows:
                    skip.add("pandas+sklearn")
                names = [v for v in variants if v not in skip]
                repeats = args.repeats if rows <= 2_000_000 else args.big_repeats
                times = {v: [] for v in names}
                peaks = {v: [] for v in names}
                for r in range(repeats):  # interleaved: every variant once per round
                    for v in names:
                        w, m = measure(variants[v], env)
                        times[v].append(w)
                        peaks[v].append(m)
                        print(f"  {fmt:8s} {rows:>11,} {v:15s} round {r + 1}: {w:7.2f} s {m:7.0f} MiB", flush=True)
                med = {v: statistics.median(times[v]) for v in names}
                for v in names:
                    results.append({
                        "format": fmt, "rows": rows, "classes": args.classes,
                        "file_mib": round(os.path.getsize(path) / 2**20, 1), "variant": v,
                        "median_s": round(med[v], 3), "runs": len(times[v]), "peak_rss_mib": round(max(peaks[v]), 1),
                        "over_arrow_stream": round(med[v] / med["arrow-stream"], 2) if "arrow-stream" in med else None,
                        "over_arrow_table": round(med[v] / med["arrow-table"], 2) if "arrow-table" in med else None,
                        "ours_speedup_vs_variant": round(med[v] / med["ours"], 2) if "ours" in med else None,
                    })
                os.unlink(path)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def example_timings(runs, src=None) -> list:
    """``crossentropy score`` on the bundled example, kernels on and off, interleaved (warm: one run discarded)."""
    py = sys.executable
    cmd = [py, "-m", "crossentropy", "score", "-o", os.devnull]
    out = []
    envs = {"default": dict(os.environ), "CROSSENTROPY_KERNELS=0": dict(os.environ, CROSSENTROPY_KERNELS="0")}
    for e in envs.values():
        if src:
            e["PYTHONPATH"] = src + os.pathsep + e.get("PYTHONPATH", "")
        measure(cmd, e)  # warm the file cache
    for example in ("digits", "breast-cancer"):
        times = {k: [] for k in envs}
        peaks = {k: [] for k in envs}
        for _ in range(runs):
            for k, e in envs.items():
                w, m = measure(cmd + ["--example", example], e)
                times[k].append(w)
                peaks[k].append(m)
        for k in envs:
            out.append({"example": example, "kernels": k, "median_s": round(statistics.median(times[k]), 3),
                        "runs": runs, "peak_rss_mib": round(max(peaks[k]), 1)})
    return out


def table(results, examples) -> str:
    lines = [f"{'format':8s} {'rows':>11s} {'variant':15s} {'median s':>9s} {'x stream':>9s} {'x table':>8s} "
             f"{'peak MiB':>9s}"]
    for r in results:
        lines.append(f"{r['format']:8s} {r['rows']:>11,} {r['variant']:15s} {r['median_s']:9.2f} "
                     f"{r['over_arrow_stream'] or float('nan'):9.2f} {r['over_arrow_table'] or float('nan'):8.2f} "
                     f"{r['peak_rss_mib']:9.0f}")
    if examples:
        lines.append("")
        lines.append("bundled example (crossentropy score, warm)")
        for e in examples:
            lines.append(f"  {e['example']:14s} kernels {e['kernels']:24s} {e['median_s']:.3f} s (median of "
                         f"{e['runs']})  {e['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="1000000,20000000", help="row counts, comma-separated")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--formats", default="csv,parquet")
    p.add_argument("--repeats", type=int, default=3, help="rounds for files up to 2M rows (median)")
    p.add_argument("--big-repeats", type=int, default=1, help="rounds for larger files")
    p.add_argument("--pandas-max-rows", type=int, default=20_000_000, help="skip pandas+sklearn above this")
    p.add_argument("--skip", default="", help="variants to leave out, comma-separated")
    p.add_argument("--example-runs", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="200k rows, 2 rounds, 3 example runs")
    p.add_argument("--tmp", default=None, help="folder for the generated data (default: the system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    p.add_argument("--out", default=None, help="folder for scoring.csv/json (default: a new temporary folder)")
    p.add_argument("--src", default=None, help="put this folder first on PYTHONPATH (e.g. ./src)")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.example_runs = "200000", 2, 3
    out = args.out or tempfile.mkdtemp(prefix="crossentropy-bench-scoring-")
    os.makedirs(out, exist_ok=True)
    examples = example_timings(args.example_runs, args.src)
    results = run(args)
    text = table(results, examples)
    print()
    print(text)
    with open(os.path.join(out, "scoring.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(results)
    meta = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None}
    with open(os.path.join(out, "scoring.json"), "w") as f:
        json.dump({"meta": meta, "files": results, "bundled_example": examples}, f, indent=2)
    print(f"\nwrote {out}/scoring.csv and scoring.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
