"""The engine's pieces, in this process: any cut gives the same bits, ROC state crosses processes whole."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daskhelpers import make_multiclass


def _pdf(n=600, seed=0, weights=True):
    import pandas as pd

    p, _, y = make_multiclass(n=n, k=3, seed=seed)
    rng = np.random.default_rng(seed)
    cols = {"label": y, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2],
            "grp": rng.choice(["a", "b", "c"], n)}
    if weights:
        cols["weight"] = rng.random(n) * 10.0 ** rng.integers(-4, 4, n)
    return pd.DataFrame(cols)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, 599), max_size=6, unique=True), by=st.booleans(), ci=st.booleans())
def test_any_partitioning_same_bits(cuts, by, ci):
    """A DataFrame cut anywhere (partitions of one row included) scores to the bits of one partition."""
    import dask.dataframe as dd

    from crossentropy.dask import score
    from crossentropy.scoring.report import json_ready

    pdf = _pdf()
    whole = dd.from_pandas(pdf, npartitions=1)
    cut = whole.repartition(divisions=[0, *sorted(cuts), 599])
    opts = dict(by="grp" if by else None, ci=0.9 if ci else None, replicates=20, client="sync")
    assert json_ready(score(cut, **opts)) == json_ready(score(whole, **opts))


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.integers(1, 3000), min_size=1, max_size=4), budget=st.sampled_from([1 << 16, 32 << 20]),
       weighted=st.booleans(), seed=st.integers(0, 3))
def test_roc_table_same_bits_for_any_runs(steps, budget, weighted, seed):
    """ROC AUC, totals and curve do not depend on how rows were cut into runs, merged or spilled."""
    from crossentropy.scoring.roc import MemoryBudget, RocTable

    rng = np.random.default_rng(seed)
    n = 6000
    s = np.round(rng.random(n), 3)  # ties
    pos = rng.random(n) < s
    w = rng.random(n) * 10.0 ** rng.integers(-6, 6, n) if weighted else None

    def table(cut):
        parts, a = [], 0
        while a < n:
            t = RocTable(weighted=weighted, budget=MemoryBudget(budget))
            b = min(n, a + cut)
            t.update(s[a:b], pos[a:b], None if w is None else w[a:b])
            parts.append(t)
            a = b
        for t in parts[1:]:
            parts[0].merge(pickle.loads(pickle.dumps(t)))
        return parts[0].result()

    ref = table(n)
    for cut in steps:
        assert table(cut) == ref


def test_unit_ships_its_spilled_roc_tables_whole(tmp_path, monkeypatch):
    """A unit that spilled hands back a blob that holds every run (no worker file), and leaves no folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crossentropy.scoring import _dask, roc
    from crossentropy.scoring.dataset import Predictions, spec_for

    pq.write_table(pa.Table.from_pandas(_pdf(n=20000, seed=3), preserve_index=False), tmp_path / "p.parquet")
    ds = Predictions(str(tmp_path / "p.parquet"))
    ds.close()
    spec = spec_for(ds.layout)
    model = _dask._Model(ds.name, ds.layout, ds.opts, {"csv_engine": "auto"}, ds.names, ds.parts[0], spec, False)
    folders = []
    real = roc.MemoryBudget.spill_dir

    def spy(self):
        d = real(self)
        folders.append(d)
        return d
    monkeypatch.setattr(roc.MemoryBudget, "spill_dir", spy)
    unit = _dask._Unit(0, [[_dask._Segment(_dask._Piece(0, ds.parts[0]), None, 0)]], True)
    meta, small, blob = _dask.run_unit(unit, [model], _dask._Env(1 << 16, False, _dask.fingerprint()))
    assert meta["error"] is None and meta["rows"] == 20000
    assert folders and not any(os.path.exists(d) for d in folders)  # it spilled, and cleaned up
    tables = pickle.loads(blob)[(0, None)].tables
    assert len(tables) == 3
    for t in tables:
        assert all(r.path is None for side in t.runs for r in side)
        assert sum(r.n for side in t.runs for r in side) == 20000
    assert small["accs"][0].roc is None  # the ROC state travels only in the blob


def test_merge_order_and_tree_shape(tmp_path):
    """Units merged left to right or as a tree give the same report (rows shifted by the rows before)."""
    import dask.dataframe as dd

    from crossentropy.scoring import _dask
    from crossentropy.scoring.report import json_ready

    pdf = _pdf(n=900, seed=4, weights=False)
    ddf = dd.from_pandas(pdf, npartitions=1).repartition(divisions=[0, 100, 350, 351, 700, 899])
    ds = _dask._FrameDataset(ddf, "d", None, {}, lambda d: d.compute(scheduler="sync"))
    spec = _dask.spec_for(ds.layout, worst=50)
    model = _dask._Model("d", ds.layout, ds.opts, ds.reader, ds.names, None, spec, False, True)
    pieces = [[_dask._Piece(0, None) for _ in ds.delayed]]
    units = _dask._make_units(pieces, None)
    env = _dask._Env(32 << 20, False, _dask.fingerprint())
    args = _dask._frames_of(units, [ds.delayed])  # each unit's partition, as its task argument
    outs = [_dask.run_unit(u, [model], env, *[a.compute(scheduler="sync") for a in arg])
            for u, arg in zip(units, args)]

    def finish(node):
        rocs = _dask._RocMerger([model], None)
        for _, _, blob in outs:
            rocs.add(blob)
        rocs.attach(0, node["accs"][0])
        return json_ready(node["accs"][0].finalize(ds.layout.class_names))

    seq = None
    for _, small, _ in pickle.loads(pickle.dumps(outs)):
        seq = small if seq is None else _dask.merge_nodes(seq, small)
    level = [small for _, small, _ in pickle.loads(pickle.dumps(outs))]
    while len(level) > 1:
        level = [_dask.merge_nodes(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    a, b = finish(seq), finish(level[0])
    assert a == b
    assert [w["row"] for w in a["worst"]] == (np.argsort(-_losses(pdf), kind="stable")[:50] + 1).tolist()


def _losses(pdf):
    p = pdf[["p0", "p1", "p2"]].to_numpy()
    return -np.log(p[np.arange(len(p)), pdf["label"].to_numpy()])


def test_workers_with_other_code_are_refused():
    from crossentropy._errors import InvalidOptionError
    from crossentropy.scoring import _dask

    env = _dask._Env(1 << 20, False, "aaaa")
    with pytest.raises(InvalidOptionError, match="other crossentropy code"):
        _dask._check_fingerprints([{"fingerprint": "bbbb"}], env)
    _dask._check_fingerprints([{"fingerprint": "aaaa"}], env)


@pytest.mark.parametrize("bad, words", [("local:x", "needs N >= 1"), ("nowhere", "must be local:N"),
                                        (3, "expected a distributed.Client")])
def test_client_option_is_checked(bad, words):
    from crossentropy._errors import InvalidOptionError
    from crossentropy.dask import score

    with pytest.raises(InvalidOptionError, match=words):
        score("x.csv", client=bad)


def test_sources_are_checked(tmp_path):
    import dask.dataframe as dd

    from crossentropy._errors import InvalidOptionError
    from crossentropy.dask import score

    with pytest.raises(InvalidOptionError, match="give a path or a Dask DataFrame"):
        score([])
    with pytest.raises(InvalidOptionError, match="not both|DataFrames with Dask DataFrames"):
        score(["a.csv", dd.from_pandas(_pdf(n=10), npartitions=1)], client="sync")
    with pytest.raises(InvalidOptionError, match="one name per DataFrame"):
        score(dd.from_pandas(_pdf(n=10), npartitions=1), client="sync", name=["a", "b"])
