"""``crossentropy score --dask`` and :func:`crossentropy.dask.score` give the single-process report, bit for bit.

Every test runs the CLI twice in this process — alone, and on the session's
local cluster (two worker processes) — and compares the outputs byte for byte.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from daskhelpers import MC_PARTS, run_inproc


def both(args, address, *extra):
    """The CLI's output alone and on the cluster (``--dask ADDRESS``); both must succeed."""
    alone = run_inproc([*args, *extra])
    dist = run_inproc([*args, *extra, "--dask", address])
    assert alone.rc == 0, alone.err
    assert dist.rc == 0, dist.err
    return alone, dist


CASES = {
    "multiclass probabilities, weights": ["mc"],
    "slices": ["mc", "--by", "grp"],
    "bootstrap": ["mc", "--ci", "0.9", "--replicates", "200", "--seed", "7"],
    "slices and bootstrap, unweighted": ["mc", "--by", "grp", "--ci", "0.8", "--replicates", "50", "--weight",
                                         "none", "--worst", "7"],
    "options": ["mc", "--top-k", "1,3", "--bins", "7", "--base", "10", "--compat", "sklearn", "--chunk-rows", "333"],
    "logits, row groups": ["logits"],
    "logits, row groups, bootstrap, slices": ["logits", "--ci", "0.95", "--replicates", "100", "--by", "grp"],
    "binary csv, string labels": ["bin_csv", "--positive", "spam"],
    "binary csv, bootstrap": ["bin_csv", "--positive", "spam", "--ci", "0.9", "--replicates", "100"],
    "binary logits, row groups": ["bin_logits", "--ci", "0.9", "--replicates", "64", "--seed", "3"],
    "comparison (parts cut differently)": ["mc", "mc_b", "--replicates", "200"],
    "comparison with slices": ["mc", "mc_b", "--by", "grp", "--replicates", "100", "--weight", "none"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_json_identical(case, data, cluster, small_groups):
    args = [data.get(a, a) for a in CASES[case]]
    alone, dist = both(["score", *args], cluster[1], "--json")
    assert dist.out == alone.out
    assert dist.err == alone.err  # the same warnings
    report = alone.json()
    if "models" not in report:
        assert report["n_samples"] == sum(MC_PARTS)


@pytest.mark.parametrize("fmt", ["text", "md", "html"])
def test_every_format_identical(fmt, data, cluster):
    alone, dist = both(["score", data["mc"], "--by", "grp", "--format", fmt], cluster[1])
    assert dist.out == alone.out


def test_spilled_roc_tables(data, cluster, monkeypatch):
    """A 64 KiB ROC budget (the tables of 7000 rows x 4 classes spill in every process): the same bits."""
    monkeypatch.setenv("CROSSENTROPY_ROC_MEMORY", "65536")
    alone, dist = both(["score", data["mc"], "--by", "grp", "--json"], cluster[1])
    assert dist.out == alone.out
    monkeypatch.delenv("CROSSENTROPY_ROC_MEMORY")
    assert run_inproc(["score", data["mc"], "--by", "grp", "--json"]).out == alone.out


def test_local_cluster_started_by_the_command(data):
    alone, dist = both(["score", data["bin_csv"], "--positive", "spam", "--json"], "local:2")
    assert dist.out == alone.out


def _frame(path, divisions=None, npartitions=None):
    import dask.dataframe as dd
    import pandas as pd

    pdf = pd.read_parquet(path)
    if divisions is not None:
        return dd.from_pandas(pdf, npartitions=1).repartition(divisions=list(divisions))
    return dd.from_pandas(pdf, npartitions=npartitions, sort=True)


def _as_file(report):
    """A DataFrame's report next to its Parquet copy's: only the names differ."""
    r = json.loads(json.dumps(report, default=str))
    r.pop("file")
    r.pop("parts", None)
    r["detected"].pop("format")
    for sub in [r, *r.get("slices", {}).values()]:
        for w in sub.get("worst", []):
            w.pop("file", None)
    return r


@pytest.mark.parametrize("cut", [(0, 1, 2, 3000, 3001, 6999), (0, 5000, 6999), None])
@pytest.mark.parametrize("options", [{}, {"by": "grp", "ci": 0.9, "replicates": 50}])
def test_dataframe_any_partitioning(cut, options, data, cluster):
    from crossentropy.dask import score
    from crossentropy.scoring import score_dataset
    from crossentropy.scoring.report import json_ready

    ddf = _frame(data["mc"], divisions=cut, npartitions=None if cut else 9)
    got = score(ddf, client=cluster[0], **options)
    want = score_dataset(data["mc"], **options)
    assert got["file"] == "dataframe" and got["detected"]["format"] == "dataframe"
    assert _as_file(json_ready(got)) == _as_file(json_ready(want))


def test_dataframe_from_read_parquet_and_repartitioned(data, cluster):
    import dask.dataframe as dd

    from crossentropy.dask import score
    from crossentropy.scoring.report import json_ready

    ddf = dd.read_parquet(data["mc"])
    a = json_ready(score(ddf, client=cluster[0], ci=0.9, replicates=40))
    b = json_ready(score(ddf.repartition(npartitions=2), client=cluster[0], ci=0.9, replicates=40))
    c = json_ready(score(ddf, client="sync", ci=0.9, replicates=40))
    assert a == b == c


def test_dataframe_comparison(data, cluster):
    from crossentropy.dask import score
    from crossentropy.scoring import compare_datasets
    from crossentropy.scoring.report import json_ready

    a = _frame(data["mc"], divisions=(0, 10, 4000, 6999))
    b = _frame(data["mc_b"], npartitions=4)
    got = json_ready(score([a, b], client=cluster[0], name=["m1", "m2"], replicates=100, weight="none"))
    want = json_ready(compare_datasets([data["mc"], data["mc_b"]], replicates=100, weight="none"))
    assert [m["file"] for m in got["models"]] == ["m1", "m2"]
    assert [_as_file(m) for m in got["models"]] == [_as_file(m) for m in want["models"]]
    for g, w in zip(got["comparison"], want["comparison"]):
        assert {k: v for k, v in g.items() if k not in ("file", "reference")} == \
            {k: v for k, v in w.items() if k not in ("file", "reference")}


def test_library_with_a_scheduler_address(data, cluster):
    from crossentropy.dask import score
    from crossentropy.scoring import score_dataset
    from crossentropy.scoring.report import json_ready

    got = score(data["bin_logits"], client=cluster[1], worst=3)
    assert json_ready(got) == json_ready(score_dataset(data["bin_logits"], worst=3))
    assert np.isfinite(got["roc_auc"]["auc"])
