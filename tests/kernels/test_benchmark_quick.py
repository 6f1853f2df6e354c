"""The benchmark harness runs in quick mode and writes well-formed CSV/JSON/PNG (no timing assertions),
to the folder asked for, and by default never into the committed benchmarks/results."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_results(tmp_path):
    out = tmp_path / "results"
    committed = {p.name: p.stat().st_mtime_ns for p in (ROOT / "benchmarks" / "results").glob("results.*")}
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ours/torch" in proc.stdout and "ours/read" in proc.stdout and "cold first call" in proc.stdout

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    from benchmarks.run import FIELDS

    assert rows and list(rows[0].keys()) == FIELDS
    cases = {(r["case"], r["mode"]) for r in rows}
    assert ("cross_entropy", "fwd") in cases and ("cross_entropy", "fwd+grad") in cases
    assert ("cross_entropy", "fwd+grad in-place") in cases and ("bce_with_logits", "fwd+grad") in cases
    for r in rows:
        for k in ("ours_s", "torch_s", "naive_s", "read_s", "copy_s", "ours_over_read", "ours_over_torch",
                  "ours_peak_mib"):
            v = float(r[k])
            assert math.isfinite(v) and v >= 0, (k, r)

    data = json.loads((out / "results.json").read_text())
    assert set(data) == {"environment", "rows", "cold_start", "overhead"} and len(data["rows"]) == len(rows)
    assert data["environment"]["quick"] is True and data["environment"]["kernels"]["available"]
    cs = data["cold_start"]
    assert cs["kernels"] and 0 < cs["first_call_s"] < cs["wall_s"]
    assert all(o["ours_fwd_us"] > 0 and o["torch_fwd_us"] > 0 for o in data["overhead"])

    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    # the committed results are untouched
    assert committed == {p.name: p.stat().st_mtime_ns for p in (ROOT / "benchmarks" / "results").glob("results.*")}


def test_output_folder():
    from benchmarks.run import RESULTS, output_folder

    quick = output_folder(True)
    assert quick.is_dir() and ROOT not in quick.resolve().parents and quick != RESULTS
    quick.rmdir()
    assert output_folder(False) == RESULTS
    assert output_folder(True, "x/y") == Path("x/y")
