"""The benchmark harness runs in quick mode and writes well-formed CSV/JSON/PNG (no timing assertions)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_results(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                            "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch/ours" in proc.stdout and "ours/read" in proc.stdout  # the printed table

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    from benchmarks.run import FIELDS

    assert rows and list(rows[0].keys()) == FIELDS
    cases = {(r["case"], r["mode"]) for r in rows}
    assert ("cross_entropy", "fwd") in cases and ("cross_entropy", "fwd+grad") in cases
    assert ("cross_entropy", "fwd+grad in-place") in cases and ("bce_with_logits", "fwd+grad") in cases
    for r in rows:
        for k in ("ours_s", "naive_s", "read_s", "copy_s", "ours_over_read", "ours_peak_mib"):
            v = float(r[k])
            assert math.isfinite(v) and v >= 0, (k, r)

    data = json.loads((out / "results.json").read_text())
    assert set(data) == {"environment", "rows"} and len(data["rows"]) == len(rows)
    assert data["environment"]["quick"] is True

    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
