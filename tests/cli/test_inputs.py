"""Inputs: stdin, compression, datasets of parts, delimiters, and the two CSV parsers agreeing."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os

import numpy as np
import pytest

from clihelpers import assert_clean_error, make_multiclass, write_csv
from crossentropy.cli.score import example_path

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def _zstd(raw: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as f:
        f.write(raw)
    return sink.getvalue().to_pybytes()


COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zst": _zstd}


def _core(rep):
    """The figures that must not depend on how the rows arrived."""
    return {k: rep[k] for k in ("n_samples", "cross_entropy", "accuracy", "brier", "roc_auc", "calibration",
                                "per_class", "top_k_accuracy", "confusion_matrix", "ci") if k in rep}


@pytest.mark.parametrize("ext", sorted(COMPRESS))
def test_compressed_by_extension_and_by_magic(cli, tmp_path, ext):
    raw = open(example_path("digits"), "rb").read()
    want = _core(cli("score", example_path("digits"), "--json").json())
    (tmp_path / f"p.csv.{ext}").write_bytes(COMPRESS[ext](raw))
    (tmp_path / f"p_{ext}").write_bytes(COMPRESS[ext](raw))  # no extension: the magic bytes decide
    for name in (f"p.csv.{ext}", f"p_{ext}"):
        r = cli("score", tmp_path / name, "--json")
        assert r.rc == 0, r.err
        assert _core(r.json()) == want


def test_compression_extension_must_match_the_data(cli, tmp_path):
    path = tmp_path / "p.csv.gz"
    path.write_bytes(open(example_path("digits"), "rb").read())
    assert_clean_error(cli("score", path), "p.csv.gz", "not gzip-compressed")


def test_truncated_gzip_is_a_located_error(cli, tmp_path):
    rows = "".join(f"{i % 2},0.3,0.7\n" for i in range(200000))
    data = gzip.compress(("label,p0,p1\n" + rows).encode())
    path = tmp_path / "t.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    assert_clean_error(cli("score", path), "t.csv.gz", "line", "truncated or damaged")


def test_parquet_and_jsonl_from_stdin(cli, tmp_path):
    p, _, y = make_multiclass(n=300, k=3, seed=11)
    pq.write_table(pa.table({"label": y, **{f"p{j}": p[:, j] for j in range(3)}}), tmp_path / "a.parquet")
    want = _core(cli("score", tmp_path / "a.parquet", "--json").json())
    import subprocess
    import sys
    env = dict(os.environ)
    for name, data in (("a.parquet", (tmp_path / "a.parquet").read_bytes()),
                       ("a.jsonl", "".join(json.dumps({"label": int(t), **{f"p{j}": float(v) for j, v in
                                                                           enumerate(row)}}) + "\n"
                                           for t, row in zip(y, p)).encode())):
        out = subprocess.run([sys.executable, "-m", "crossentropy", "score", "-", "--json"], input=data,
                             capture_output=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert got["file"] == "<stdin>" and _core(got) == want, name


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl.gz"])
def test_directory_and_glob_of_parts_equal_one_file(cli, tmp_path, fmt):
    p, _, y = make_multiclass(n=1000, k=3, seed=12)
    whole = write_csv(tmp_path / "whole.csv", y, p)
    want = cli("score", whole, "--json", "--ci", "0.9", "--replicates", "50").json()
    parts = tmp_path / "parts"
    parts.mkdir()
    cuts = [0, 7, 300, 301, 999, 1000]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        name = parts / f"part-{i}.{fmt}"
        if fmt == "csv":
            write_csv(name, y[a:b], p[a:b])
        elif fmt == "parquet":
            pq.write_table(pa.table({"label": y[a:b], **{f"p{j}": p[a:b, j] for j in range(3)}}), name)
        else:
            text = "".join(json.dumps({"label": int(t), "p": [float(v) for v in row]}) + "\n"
                           for t, row in zip(y[a:b], p[a:b]))
            name.write_bytes(gzip.compress(text.encode()))
    (parts / "_SUCCESS").write_text("")
    (parts / ".part-0.crc").write_text("x")
    for target in (parts, str(parts / f"part-*.{fmt}")):
        r = cli("score", target, "--json", "--ci", "0.9", "--replicates", "50")
        assert r.rc == 0, r.err
        got = r.json()
        assert got["parts"] == 5
        assert _core(got) == _core(want)  # bootstrap included: rows are numbered across the parts
        first = got["worst"][0]
        assert first["row"] == want["worst"][0]["row"] and first["file"].startswith("part-")


def test_parts_must_share_the_columns(cli, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.csv").write_text("label,p0,p1\n0,0.5,0.5\n")
    (d / "b.csv").write_text("label,q0,q1\n0,0.5,0.5\n")
    assert_clean_error(cli("score", d), "b.csv", "lacks column")


def test_unquoted_glob_reads_as_a_model_comparison_and_says_how_to_score_parts(cli, tmp_path):
    write_csv(tmp_path / "a.csv", [0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    write_csv(tmp_path / "b.csv", [0, 1], [[0.8, 0.2], [0.3, 0.7]])
    assert_clean_error(cli("score", tmp_path / "a.csv", tmp_path / "b.csv"), "b.csv", "same rows",
                       "quoted glob")


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(cli, tmp_path, sep):
    p, _, y = make_multiclass(n=200, k=3, seed=13)
    path = write_csv(tmp_path / "d.txt", y, p, sep=sep)
    want = cli("score", write_csv(tmp_path / "c.csv", y, p), "--json").json()
    got = cli("score", path, "--json").json()
    assert _core(got) == _core(want)


def _awkward_csv(path, n, seed):
    """A large CSV with quoting, CRLF, a BOM, blank and whitespace-only lines, string labels and spaces."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(3), n)
    names = ["cat", "dog", "emu"]
    y = rng.integers(0, 3, n)
    lines = ['"id","truth","cat","dog","emu"']
    for i in range(n):
        cells = [f'"{i}"' if i % 3 else str(i), f'"{names[y[i]]}"' if i % 2 else names[y[i]]]
        cells += [(f" {v!r} " if (i + j) % 5 == 0 else repr(v)) for j, v in enumerate(p[i].tolist())]
        lines.append(",".join(cells))
        if i % 997 == 5:
            lines.append("")
        if i % 1499 == 7:
            lines.append("   ")
    text = "\ufeff" + "\r\n".join(lines)  # no final line break
    path.write_bytes(text.encode("utf-8"))
    return y, p


def test_arrow_and_python_parsers_give_the_same_report(cli, tmp_path):
    path = tmp_path / "awkward.csv"
    _awkward_csv(path, 40000, 14)
    assert path.stat().st_size > (1 << 20)  # large enough for the Arrow path under 'auto'
    runs = [cli("score", path, "--json", "--csv-engine", e, *c)
            for e, c in (("arrow", ()), ("python", ()), ("auto", ("--chunk-rows", "777")),
                         ("arrow", ("--chunk-rows", "50")))]
    assert [r.rc for r in runs] == [0, 0, 0, 0], [r.err[-500:] for r in runs]  # no abort at exit either
    outs = [r.out for r in runs]
    assert outs[0] and all(o == outs[0] for o in outs[1:])
    rep = json.loads(outs[0])
    assert rep["n_samples"] == 40000 and rep["detected"]["classes"] == ["cat", "dog", "emu"]


@pytest.mark.parametrize("engine", ["arrow", "python"])
@pytest.mark.parametrize("bad, fragments", [
    ("1,cat,0.2,abc,0.3", ["column 'dog'", "'abc' is not a number"]),
    ("1,cat,0.2,0.3", ["expected 5 fields"]),
    ("1,cow,0.2,0.5,0.3", ["column 'label'", "'cow'"]),
    ("1,cat,0.2,nan,0.3", ["column 'dog'", "NaN"]),
    ('1,cat,0.2,"0,5",0.3', ["column 'dog'", "'0,5' is not a number"]),
])
def test_error_deep_in_a_large_file_names_the_exact_line(cli, tmp_path, engine, bad, fragments):
    rng = np.random.default_rng(15)
    p = rng.dirichlet(np.ones(3), 60000)
    names = ["cat", "dog", "emu"]
    y = rng.integers(0, 3, 60000)
    rows = [f"{i},{names[t]}," + ",".join(repr(v) for v in row) for i, (t, row) in enumerate(zip(y, p.tolist()))]
    rows.insert(51234, bad)
    path = tmp_path / "big.csv"
    path.write_text("id,label,cat,dog,emu\n" + "\n".join(rows) + "\n")
    r = cli("score", path, "--csv-engine", engine)
    assert_clean_error(r, "big.csv", "line 51236", *fragments)  # header is line 1, row 51234 is line 51236


def test_parquet_list_column_dictionary_labels_and_nulls(cli, tmp_path):
    p, _, y = make_multiclass(n=500, k=3, seed=16)
    names = np.array(["a", "b", "c"])
    t = pa.table({"label": pa.array(names[y]).dictionary_encode(),
                  "probs": pa.array(list(p), type=pa.list_(pa.float64(), 3))})
    pq.write_table(t, tmp_path / "l.parquet", row_group_size=64)
    rep = cli("score", tmp_path / "l.parquet", "--json", "--classes", "a,b,c").json()
    from sklearn.metrics import log_loss
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p), rel=1e-13)
    probs = pa.array([None if i == 77 else list(r) for i, r in enumerate(p)], type=pa.list_(pa.float64()))
    pq.write_table(pa.table({"label": y, "probs": probs}), tmp_path / "n.parquet", row_group_size=50)
    assert_clean_error(cli("score", tmp_path / "n.parquet"), "row 78", "column 'probs'", "missing")


def test_jsonl_with_extra_keys_reordered_keys_and_lists(cli, tmp_path):
    p, _, y = make_multiclass(n=300, k=3, seed=17)
    with open(tmp_path / "a.jsonl", "w") as f:
        for i, (t, row) in enumerate(zip(y, p)):
            obj = {"probs": [float(v) for v in row], "y": int(t), "note": "x" * (i % 3)}
            if i % 2:
                obj = dict(reversed(list(obj.items())))
            f.write(json.dumps(obj) + "\n")
    from sklearn.metrics import log_loss
    rep = cli("score", tmp_path / "a.jsonl", "--json", "--chunk-rows", "13").json()
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p), rel=1e-13)
