"""Bad data on a cluster: the CLI's one-line error, with the same file, line or global row, and exit status 2."""

from __future__ import annotations

import os

import numpy as np
import pytest

from daskhelpers import make_multiclass, run_inproc, write_csv


def _parquet_parts(folder, columns, sizes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    t = pa.table(columns)
    start = 0
    for i, n in enumerate(sizes):
        pq.write_table(t.slice(start, n), os.path.join(folder, f"part-{i}.parquet"))
        start += n
    return str(folder)


def same_error(args, address, *fragments):
    alone = run_inproc(["score", *map(str, args), "--json"])
    dist = run_inproc(["score", *map(str, args), "--json", "--dask", address])
    assert alone.rc == 2 and alone.out == "", (alone.rc, alone.err)
    assert dist.rc == 2 and dist.out == "", (dist.rc, dist.err)
    assert dist.err == alone.err
    lines = alone.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossentropy: error: ")
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.mark.parametrize("ci", [[], ["--ci", "0.9", "--replicates", "10"]])
def test_nan_in_a_later_part(tmp_path, cluster, ci):
    p, _, y = make_multiclass(n=4000, k=3, seed=1)
    p[1500 + 17, 1] = np.nan
    p[3700, 2] = np.nan  # a later error loses
    folder = _parquet_parts(tmp_path / "d", {"label": y, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2]},
                            (1000, 500, 2000, 500))
    same_error([folder, *ci], cluster[1], "part-2.parquet", "row 18", "'p1'", "NaN")


def test_bad_token_in_a_csv_part_names_its_line(tmp_path, cluster):
    p, _, y = make_multiclass(n=1600, k=3, seed=2)
    folder = tmp_path / "csv"
    os.makedirs(folder)
    for i, (a, b) in enumerate([(0, 1000), (1000, 1300), (1300, 1600)]):  # the detection sample: part 0
        write_csv(folder / f"part-{i}.csv", y[a:b], p[a:b])
    text = (folder / "part-1.csv").read_text().splitlines()
    text[41] = text[41].replace(",", ",x", 1)
    (folder / "part-1.csv").write_text("\n".join(text) + "\n")
    same_error([folder], cluster[1], "part-1.csv", "line 42", "'p0'", "'x0.")


@pytest.mark.parametrize("ci", [[], ["--ci", "0.9", "--replicates", "10"]])
def test_undefined_loss_names_the_global_row(tmp_path, cluster, ci):
    """A row of -inf logits fails in the accumulator: the CLI names its global row (units count from 0 without --ci)."""
    _, z, y = make_multiclass(n=3000, k=3, seed=3)
    z[1200 + 33] = -np.inf
    folder = _parquet_parts(tmp_path / "d", {"label": y, **{f"logit_{k}": z[:, k] for k in range(3)}},
                            (1200, 1300, 500))
    same_error([folder, *ci], cluster[1], "part-1.parquet", "row 1234", "the loss is NaN")


def test_third_binary_label_learnt_in_another_part(tmp_path, cluster):
    """The negative class is learnt from the first part that shows one; a later part's other value is an error.

    The detection sample (the first 1000 rows) holds only the positive class, so
    each unit learns its own negative: the engine reads the offending unit
    again with the negative the CLI had learnt.
    """
    n = 3000
    y = np.array(["cat"] * n, dtype=object)
    y[1200 + 100] = "dog"
    y[2500 + 5] = "emu"
    rng = np.random.default_rng(4)
    folder = _parquet_parts(tmp_path / "d", {"label": y.astype(str), "p": rng.random(n)}, (1200, 1300, 500))
    same_error([folder, "--positive", "cat"], cluster[1], "part-2.parquet", "row 6", "'emu' is a third value",
               "'dog' (class 0)")
    # With the negative in a later part only, and no third value: the report learns it too.
    y[2500 + 5] = "dog"
    folder = _parquet_parts(tmp_path / "e", {"label": y.astype(str), "p": rng.random(n)}, (1200, 1300, 500))
    alone = run_inproc(["score", folder, "--positive", "cat", "--json"])
    dist = run_inproc(["score", folder, "--positive", "cat", "--json", "--dask", cluster[1]])
    assert alone.rc == 0 and dist.out == alone.out
    assert alone.json()["detected"]["classes"] == ["dog", "cat"]


def test_more_than_1000_slices_over_several_parts(tmp_path, cluster):
    """No unit sees 1001 values of --by, the dataset does: the unit where the CLI stops is read again."""
    n = 1800
    p, _, y = make_multiclass(n=n, k=3, seed=5)
    g = np.array([f"g{i % 1300}" for i in range(n)])
    folder = _parquet_parts(tmp_path / "d", {"label": y, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2], "g": g},
                            (600, 600, 600))
    # (The CLI opens a batch's new slices in sorted order of the values: the row is the CLI's, checked above.)
    same_error([folder, "--by", "g", "--no-auc", "--worst", "0"], cluster[1], "part-1.parquet",
               "more than 1000 distinct values")


def test_comparison_errors_are_the_serial_readers(tmp_path, cluster):
    p, _, y = make_multiclass(n=2000, k=3, seed=6)
    a = _parquet_parts(tmp_path / "a", {"label": y, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2]}, (700, 1300))
    y2 = y.copy()
    y2[1500] = (y2[1500] + 1) % 3
    b = _parquet_parts(tmp_path / "b", {"label": y2, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2]}, (1000, 1000))
    same_error([a, b, "--replicates", "10"], cluster[1], "differs from", "model comparison needs the same rows")
    c = _parquet_parts(tmp_path / "c", {"label": y[:1999], "p0": p[:1999, 0], "p1": p[:1999, 1],
                                        "p2": p[:1999, 2]}, (1999,))
    same_error([a, c, "--replicates", "10"], cluster[1], "has 1,999 rows but", "has more")


def test_dataframe_errors_name_the_global_row(cluster):
    import dask.dataframe as dd
    import pandas as pd

    from crossentropy.dask import score
    from crossentropy.scoring import PredictionFileError

    p, _, y = make_multiclass(n=3000, k=3, seed=7)
    p[2345, 2] = 1.5
    pdf = pd.DataFrame({"label": y, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2]})
    messages = set()
    for parts in (1, 4, 7):
        for ci in (None, 0.9):
            with pytest.raises(PredictionFileError) as e:
                score(dd.from_pandas(pdf, npartitions=parts), client=cluster[0], ci=ci, replicates=5,
                      name="preds")
            messages.add(str(e.value))
    assert messages == {"preds: row 2346, column 'p2': probability 1.5 is outside [0, 1] (if these are logits, "
                        "pass --logits)"}


def test_bad_dask_option_and_stdin(cluster):
    import socket

    import dask

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = run_inproc(["score", "--dask", f"tcp://127.0.0.1:{port}"])
    assert r.rc == 2 and f"--dask: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in r.err
    assert len(r.err.splitlines()) == 1
    r = run_inproc(["score", "--dask", "local:0"])
    assert r.rc == 2 and "--dask: 'local:N' needs N >= 1" in r.err
    r = run_inproc(["score", "--dask", "somewhere"])
    assert r.rc == 2 and "--dask must be local:N" in r.err
    r = run_inproc(["score", "-", "--dask", cluster[1]])
    assert r.rc == 2 and "stdin" in r.err and "cannot be scored on a cluster" in r.err
