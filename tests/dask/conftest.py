"""Fixtures for the Dask tests: one local cluster per test session (two single-threaded worker processes),
and partitioned prediction datasets written once."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# pytest's importlib mode does not put test folders on sys.path; the helpers sit next to the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daskhelpers import B_PARTS, MC_PARTS, make_multiclass, write_csv  # noqa: E402


@pytest.fixture(scope="session")
def cluster():
    """``(client, scheduler address)`` of a local cluster: 2 worker processes, 1 thread each."""
    import logging
    import warnings

    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # another cluster's dashboard port
        lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.CRITICAL)
    client = Client(lc, set_as_default=False)
    try:
        yield client, lc.scheduler_address
    finally:
        client.close()
        lc.close()


def _write_parts(folder, table, sizes, name="part-{}.parquet", **kw):
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    start = 0
    for i, n in enumerate(sizes):
        pq.write_table(table.slice(start, n), os.path.join(folder, name.format(i)), **kw)
        start += n
    return str(folder)


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """Paths of the test datasets (see the comments)."""
    import pyarrow as pa

    root = tmp_path_factory.mktemp("dask-data")
    n = sum(MC_PARTS)
    p, z, y = make_multiclass(n=n, k=4, seed=12)
    rng = np.random.default_rng(12)
    w = rng.random(n) * 10.0 ** rng.integers(-3, 3, n)  # wide range: a weighted sum's rounding shows
    w[rng.random(n) < 0.05] = 0.0
    grp = rng.choice(["north", "south", "east", "10", "9"], n)
    ids = np.array([f"r{i}" for i in range(n)])
    out = {}
    probs = {"id": ids, "label": y, **{f"p{k}": p[:, k] for k in range(4)}, "weight": w, "grp": grp}
    # Multi-class probabilities with weights and a slice column, 5 uneven Parquet parts.
    out["mc"] = _write_parts(root / "mc", pa.table(probs), MC_PARTS)
    # A second model on the same rows (same labels and ids), in 2 parts cut elsewhere.
    p2 = 0.5 * p + 0.5 * make_multiclass(n=n, k=4, seed=13)[0]
    other = {"id": ids, "label": y, **{f"p{k}": p2[:, k] for k in range(4)}}
    out["mc_b"] = _write_parts(root / "mc_b", pa.table(other), B_PARTS)
    # Logits of 4 classes (no weights), one Parquet file of 7 row groups (cut into units at row groups).
    logits = {"label": y, **{f"logit_{k}": z[:, k] for k in range(4)}, "grp": grp}
    out["logits"] = _write_parts(root / "logits", pa.table(logits), (n,), row_group_size=1000)
    # Binary probabilities in CSV parts (lines in errors), string labels.
    folder = root / "bin_csv"
    os.makedirs(folder)
    pb = np.clip(rng.beta(2, 2, n) * 0.6 + (y == 1) * 0.35, 0.0, 1.0)
    labels = np.where(y == 1, "spam", "ham")
    start = 0
    for i, m in enumerate((1200, 2800, 3000)):
        write_csv(folder / f"part-{i}.csv", labels[start:start + m], pb[start:start + m],
                  extra={"weight": w[start:start + m]})
        start += m
    out["bin_csv"] = str(folder)
    # Binary logits, one Parquet file of row groups.
    zb = rng.normal(size=n) * 3
    zb[:50] = np.round(zb[:50])  # ties in the ROC
    out["bin_logits"] = _write_parts(root / "bin_logits", pa.table({"y": (rng.random(n) < 1 / (1 + np.exp(-zb))).astype(
        np.int64), "logit": zb}), (n,), row_group_size=900)
    return out


@pytest.fixture
def small_groups(monkeypatch):
    """Cut Parquet parts into units of ~2000 rows (the default cuts only parts of more than 2^20 rows)."""
    from crossentropy.scoring import _dask

    monkeypatch.setattr(_dask, "_GROUP_ROWS", 2000)
