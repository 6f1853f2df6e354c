"""Model comparison: side-by-side reports and paired bootstrap tests against the first model."""

from __future__ import annotations

import numpy as np
import pytest

from clihelpers import assert_clean_error, softmax, write_csv
from crossentropy.scoring.bootstrap import poisson_weights


def _models(tmp_path, n=600, seed=21):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 2
    y = np.array([rng.choice(3, p=row) for row in softmax(z)])
    good = softmax(z)
    worse = softmax(z * 0.4)  # under-confident
    a = write_csv(tmp_path / "a.csv", y, good)
    b = write_csv(tmp_path / "b.csv", y, worse)
    return a, b, y, good, worse


def test_each_model_report_equals_its_own_single_report(cli, tmp_path):
    a, b, *_ = _models(tmp_path)
    rep = cli("score", a, b, "--json", "--ci", "0.9", "--replicates", "200").json()
    assert [m["file"] for m in rep["models"]] == [str(a), str(b)]
    for path, m in zip((a, b), rep["models"]):
        single = cli("score", path, "--json", "--ci", "0.9", "--replicates", "200").json()
        single.pop("warnings", None)
        assert m == single


def test_paired_bootstrap_difference_ci_and_p_value(cli, tmp_path):
    a, b, y, good, worse = _models(tmp_path)
    rep = cli("score", a, b, "--json", "--replicates", "300", "--seed", "5").json()
    c = rep["comparison"][0]
    assert c["reference"] == str(a) and c["file"] == str(b)
    la = -np.log(good[np.arange(len(y)), y])
    lb = -np.log(worse[np.arange(len(y)), y])
    diff = lb.mean() - la.mean()
    assert c["cross_entropy_nats"]["difference"] == pytest.approx(diff, rel=1e-12)
    # The same Poisson weights per row for both models: recompute the replicates independently.
    w = poisson_weights(np.arange(len(y)), 300, seed=5).astype(np.float64)
    d = (w.T @ lb) / w.sum(axis=0) - (w.T @ la) / w.sum(axis=0)
    lo, hi = np.quantile(d, [0.025, 0.975])
    assert c["cross_entropy_nats"]["ci"] == pytest.approx([lo, hi], rel=1e-9)
    p = (1 + np.count_nonzero(np.abs(d - diff) >= abs(diff))) / 301
    assert c["cross_entropy_nats"]["p_value"] == pytest.approx(p)
    assert rep["ci"]["level"] == 0.95 and rep["ci"]["replicates"] == 300


def test_comparison_is_identical_for_any_chunking_and_format(cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b, y, good, worse = _models(tmp_path)
    pq.write_table(pa.table({"label": y, **{f"p{j}": worse[:, j] for j in range(3)}}), tmp_path / "b.parquet",
                   row_group_size=37)
    outs = [cli("score", a, b, "--json", "--replicates", "100", "--chunk-rows", c).json() for c in ("1000", "17")]
    pq_rep = cli("score", a, tmp_path / "b.parquet", "--json", "--replicates", "100").json()
    assert outs[0]["comparison"][0]["cross_entropy_nats"] == outs[1]["comparison"][0]["cross_entropy_nats"]
    assert outs[0]["comparison"][0]["brier"] == pq_rep["comparison"][0]["brier"]
    assert outs[0]["comparison"][0]["cross_entropy_nats"] == pq_rep["comparison"][0]["cross_entropy_nats"]


def test_text_and_markdown_comparison(cli, tmp_path):
    a, b, *_ = _models(tmp_path)
    r = cli("score", a, b, "--replicates", "100")
    assert r.rc == 0, r.err
    assert "comparing 2 models" in r.out and "differences from a.csv" in r.out and "b.csv" in r.out
    md = cli("score", a, b, "--replicates", "100", "--format", "md").out
    assert md.startswith("# Model comparison") and "| figure | a.csv | b.csv |" in md


def test_rows_that_differ_stop_the_comparison_with_their_line(cli, tmp_path):
    a, b, y, good, worse = _models(tmp_path)
    y2 = y.copy()
    y2[123] = (y2[123] + 1) % 3
    c = write_csv(tmp_path / "c.csv", y2, worse)
    assert_clean_error(cli("score", a, c), "c.csv", "line 125", "differs", "a.csv line 125")
    d = write_csv(tmp_path / "d.csv", y[:-1], worse[:-1])
    assert_clean_error(cli("score", a, d), "d.csv", "same rows")


def test_ids_must_match_when_every_file_has_them(cli, tmp_path):
    y = [0, 1, 1]
    p = [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]
    a = write_csv(tmp_path / "a.csv", y, p, extra={"id": ["x", "y", "z"]})
    b = write_csv(tmp_path / "b.csv", y, p, extra={"id": ["x", "z", "y"]})
    assert_clean_error(cli("score", a, b), "b.csv", "line 3", "id 'z' differs")


def test_models_must_predict_the_same_classes(cli, tmp_path):
    a = write_csv(tmp_path / "a.csv", [0, 1], [[0.8, 0.2], [0.3, 0.7]])
    b = write_csv(tmp_path / "b.csv", [0, 1], [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1]])
    assert_clean_error(cli("score", a, b), "b.csv", "classes")


def test_comparison_with_slices(cli, tmp_path):
    a, b, y, good, worse = _models(tmp_path)
    group = ["left" if i % 3 else "right" for i in range(len(y))]
    a = write_csv(tmp_path / "a2.csv", y, good, extra={"group": group})
    rep = cli("score", a, b, "--by", "group", "--json", "--replicates", "100").json()
    sl = rep["comparison"][0]["slices"]
    assert sorted(sl) == ["left", "right"]
    m = np.array([g == "right" for g in group])
    la = -np.log(good[np.arange(len(y)), y])
    lb = -np.log(worse[np.arange(len(y)), y])
    assert sl["right"]["cross_entropy_nats"]["difference"] == pytest.approx(lb[m].mean() - la[m].mean(), rel=1e-12)
