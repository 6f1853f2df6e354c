"""Bad input: one line naming the file, line/row and column; exit status 2; no partial output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from clihelpers import assert_clean_error, default_sigint


def _csv(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, fragments", [
    ("label,p0,p1\n0,0.2,0.8\n1,0.5\n", ["bad.csv", "line 3", "expected 3 fields"]),
    ("label,p0,p1\n0,0.2,0.8\n1,abc,0.5\n", ["line 3", "column 'p0'", "'abc' is not a number"]),
    ("label,p0,p1\n0,0.2,0.8\n1,,0.5\n", ["line 3", "column 'p0'", "missing"]),
    ("label,p0,p1\n0,0.2,0.8\n7,0.5,0.5\n", ["line 3", "column 'label'", "'7' is not one of the 2 classes"]),
    ("label,p0,p1\n0,0.2,0.8\n1,1.5,0.5\n", ["line 3", "column 'p0'", "outside [0, 1]"]),
    ("label,p0,p1\n0,0.2,0.8\n1,nan,0.5\n", ["line 3", "column 'p0'", "NaN"]),
    ("", ["bad.csv", "empty"]),
    ("label,p0,p1\n", ["bad.csv", "no data rows"]),
    ("label,y,p0,p1\n0,0,0.2,0.8\n", ["ambiguous label column", "--label"]),
    ("id,p0,p1\n0,0.2,0.8\n", ["no label column"]),
    ("label,p0,logit0\n0,0.2,0.8\n", ["ambiguous prediction columns"]),
    ("label,p,p\n0,0.2,0.8\n", ["appears twice"]),
])
def test_bad_csv(cli, tmp_path, text, fragments):
    path = _csv(tmp_path, text)
    assert_clean_error(cli("score", path), *fragments)


def test_row_sum_warning_or_error(cli, tmp_path):
    path = _csv(tmp_path, "label,p0,p1\n0,0.2,0.8\n1,0.5,0.3\n")
    r = cli("score", path)
    assert r.rc == 0 and "warning" in r.err and "line 3" in r.err and "do not sum to 1" in r.err
    assert_clean_error(cli("score", path, "--unnormalized", "error"), "line 3", "sum to 0.8")
    r = cli("score", path, "--unnormalized", "ignore")
    assert r.rc == 0 and r.err == ""


def test_probs_flag_rejects_logits_with_location(cli, tmp_path):
    path = _csv(tmp_path, "label,a,b\n0,0.2,0.8\n1,3.0,-1\n")
    assert_clean_error(cli("score", path, "--probs"), "line 3", "column 'a'", "--logits")
    assert cli("score", path, "--logits").rc == 0


def test_missing_and_unreadable(cli, tmp_path):
    assert_clean_error(cli("score", tmp_path / "nope.csv"), "nope.csv", "no such file")
    assert_clean_error(cli("score", tmp_path), "holds no prediction files")
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet at all")
    assert_clean_error(cli("score", bad), "x.parquet", "not a readable Parquet file")
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"garbage")
    assert_clean_error(cli("score", bad), "x.npz")


def test_jsonl_errors(cli, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"y": 1, "p": 0.4}\n{"y": 0, "p": 0.1\n')
    assert_clean_error(cli("score", path), "p.jsonl", "line 2", "invalid JSON")
    path.write_text('{"y": 1, "p": 0.4}\n\n{"y": 0}\n')
    assert_clean_error(cli("score", path), "line 3", "column 'p'", "missing key")
    path.write_text('{"y": 1, "probs": [0.4, 0.6]}\n{"y": 0, "probs": [0.1, 0.2, 0.7]}\n')
    assert_clean_error(cli("score", path), "line 2", "column 'probs'", "expected 2")


def test_numpy_files_are_never_unpickled(cli, tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"label": 1}, {"label": 0}], dtype=object), allow_pickle=True)
    assert_clean_error(cli("score", path), "evil.npy", "refusing to unpickle")
    path = tmp_path / "evil.npz"
    np.savez(path, y=np.array([1, 0]), probs=np.array([object(), 1], dtype=object))
    assert_clean_error(cli("score", path), "evil.npz", "refusing to unpickle")


def test_npz_label_out_of_range_names_row(cli, tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, y=np.array([0, 1, 5]), probs=np.full((3, 2), 0.5))
    assert_clean_error(cli("score", path), "p.npz", "row 3", "column 'y'", "'5'" if False else "5")


def test_parquet_without_pyarrow(cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"y": [0, 1], "p": [0.2, 0.7]}), path)
    r = cli("score", path, pre="import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None")
    assert_clean_error(r, "p.parquet", "needs pyarrow", "crossentropy[io]")


def test_plot_without_matplotlib(cli, tmp_path):
    r = cli("score", "--plot", "x.png", pre="import sys; sys.modules['matplotlib'] = None")
    assert_clean_error(r, "needs matplotlib")
    assert not (tmp_path / "x.png").exists()


def test_error_mid_file_leaves_no_output(cli, tmp_path):
    rows = "".join(f"{i % 2},0.3,0.7\n" for i in range(3000))
    path = _csv(tmp_path, "label,p0,p1\n" + rows + "1,oops,0.5\n")
    r = cli("score", path, "--chunk-rows", "100", "-o", "report.json", "--json", "--plot", "report.png")
    assert_clean_error(r, "line 3002", "'oops'")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.csv"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_ctrl_c_leaves_no_output(tmp_path):
    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.Popen([sys.executable, "-m", "crossentropy", "score", str(fifo), "--chunk-rows", "10",
                             "-o", "report.txt", "--plot", "report.png"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    with open(fifo, "w") as w:  # blocks until the command opens the pipe
        w.write("label,p0,p1\n" + "".join(f"{i % 2},0.3,0.7\n" for i in range(50)))
        w.flush()
        time.sleep(1.0)  # the command is now waiting for more rows
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["stream.csv"]


def test_ctrl_c_while_the_reader_thread_waits_on_a_silent_pipe(tmp_path):
    """Past detection, blocks are read by a helper thread; Ctrl-C while it waits on a pipe whose
    writer stays open must end the command at once (a buffered reader's lock made close() wait
    for ever)."""
    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "crossentropy", "score", str(fifo), "-o", "report.txt"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    with open(fifo, "w") as w:
        # returns once the command has read all but a pipe's buffer: far past the detection sample
        w.write("label,p0,p1\n" + "".join(f"{i % 2},0.3,0.7\n" for i in range(200_000)))
        w.flush()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["stream.csv"]


def test_usage_errors(cli):
    r = cli("score", "--bins", "0")
    assert_clean_error(r, "--bins")
    r = cli("score", "--plot", "x.jpg")
    assert_clean_error(r, "PNG")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_prediction_list_of_one_value_is_refused(cli, tmp_path, fmt):
    """Found by the fuzz: `{"label": 0, "p": [0.5]}` was scored as a binary model and called a
    "list of 2".  One number per row in a list is ambiguous: exit 2, naming the column."""
    if fmt == "jsonl":
        path = tmp_path / "one.jsonl"
        path.write_text('{"label": 0, "p": [0.5]}\n{"label": 1, "p": [0.9]}\n')
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq
        path = tmp_path / "one.parquet"
        pq.write_table(pa.table({"label": [0, 1], "p": [[0.5], [0.9]]}), path)
    assert_clean_error(cli("score", path), "column 'p'", "one value per row", "list of 2")
