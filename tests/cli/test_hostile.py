"""Every hostile case of issue 9, one test each: what damaged files, crashed, or was silently wrong."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from clihelpers import assert_clean_error, default_sigint, run_cli, write_csv
from crossentropy.cli.score import example_path

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


# ---------------------------------------------------------------------------------------------
# It damaged files and crashed
# ---------------------------------------------------------------------------------------------

def test_output_to_dev_null_keeps_the_device(cli):
    before = os.stat("/dev/null")
    r = cli("score", "-o", "/dev/null")
    assert r.rc == 0, r.err
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_output_to_a_fifo_reaches_the_reader(cli, tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo, "rb") as f:
            got["data"] = f.read()
    t = threading.Thread(target=read)
    t.start()
    r = cli("score", "--json", "-o", fifo)
    t.join(60)
    assert r.rc == 0, r.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert json.loads(got["data"])["n_samples"] == 450


def test_output_through_a_symlink_writes_the_target(cli, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    r = cli("score", "--json", "-o", link)
    assert r.rc == 0, r.err
    assert os.path.islink(link) and os.readlink(link) == target.name
    assert json.loads(target.read_text())["n_samples"] == 450
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # an existing file keeps its mode, as open() does
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to("created.json")
    assert cli("score", "--json", "-o", dangling).rc == 0
    assert json.loads((tmp_path / "created.json").read_text())["n_samples"] == 450


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_output_files_follow_the_umask(tmp_path, umask):
    code = f"import os; os.umask({umask})"
    r = run_cli(["score", "-o", "r.txt", "--plot", "r.png"], cwd=tmp_path, pre=code)
    assert r.rc == 0, r.err
    for name in ("r.txt", "r.png"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
    assert sorted(os.listdir(tmp_path)) == ["r.png", "r.txt"]  # no temporary left behind


@pytest.mark.parametrize("label", ["inf", "-inf", "1e400", "nan", "NaN", "Infinity"])
def test_non_finite_label_in_csv_is_a_located_error(cli, tmp_path, label):
    path = tmp_path / "p.csv"
    path.write_text(f"label,p\n1,0.9\n{label},0.2\n0,0.3\n")
    assert_clean_error(cli("score", path), "p.csv", "line 3", "column 'label'")
    path.write_text(f"label,p0,p1,p2\n1,0.1,0.8,0.1\n{label},0.2,0.5,0.3\n")
    assert_clean_error(cli("score", path), "line 3", "column 'label'", "not one of the 3 classes")


@pytest.mark.parametrize("label", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_label_in_jsonl_is_a_located_error(cli, tmp_path, label):
    path = tmp_path / "p.jsonl"
    path.write_text('{"y": 1, "p": 0.9}\n' + '{"y": %s, "p": 0.2}\n' % label)
    assert_clean_error(cli("score", path), "p.jsonl", "line 2", "column 'y'")


def test_perplexity_beyond_the_float_range(cli, tmp_path):
    # Mean loss 2000 nats: exp(2000) overflows a double (above ~709.78 nats).
    path = tmp_path / "big.csv"
    path.write_text("label,logit0,logit1\n0,-1000,1000\n1,1000,-1000\n")
    r = cli("score", path, "--json")
    assert r.rc == 0, r.err
    rep = r.json()
    assert rep["cross_entropy"]["nats"] == 2000.0 and rep["perplexity"] == "inf"
    assert rep["perplexity_log10"] == pytest.approx(2000 / math.log(10), rel=1e-15)
    text = cli("score", path)
    assert text.rc == 0 and "≈3.8812e+868" in text.out


def test_losses_summing_past_the_largest_double_give_the_exact_mean(cli, tmp_path):
    # Each loss is 1e308 (finite); their sum 2e308 is not a double, the mean is.
    path = tmp_path / "huge.csv"
    path.write_text("label,logit0,logit1\n0,-0.5e308,0.5e308\n1,0.5e308,-0.5e308\n")
    rep = cli("score", path, "--json").json()
    assert rep["cross_entropy"]["nats"] == 1e308
    assert rep["perplexity"] == "inf"


def test_corrupt_npz_member_is_a_located_error(cli, tmp_path):
    path = tmp_path / "p.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, y=rng.integers(0, 2, 5000), probs=rng.dirichlet([1, 1], 5000))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("probs.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    mid = start + info.compress_size // 2
    for i in range(mid, mid + 64):  # inside the compressed data of probs.npy
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    r = cli("score", path)
    assert_clean_error(r, "p.npz", "'probs'")


def test_truncated_npz_is_a_clean_error(cli, tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, y=np.arange(100) % 2, p=np.full(100, 0.5))
    path.write_bytes(path.read_bytes()[:300])
    assert_clean_error(cli("score", path), "p.npz")


def _launcher_cmd(args):
    code = "import sys; from crossentropy_launcher import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2])
def test_ctrl_c_during_start_up_ends_quietly(tmp_path, delay):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(_launcher_cmd(["score", "-o", "r.txt"]), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if "Fatal Python error: init_import_site" in err:
        # Python's own start-up (the site module and its .pth files), before any code of ours runs:
        # the interpreter reports this itself, with exit status 1; nothing of ours is involved.
        assert "crossentropy" not in err and proc.returncode == 1, err
        return
    if "Traceback" in err and err.rstrip().endswith("KeyboardInterrupt"):
        # Delivered while Python itself was still importing the launcher module (the command
        # line's own `import`, before any line of ours runs): every frame is Python's.
        frames = [line for line in err.splitlines() if line.lstrip().startswith("File ")]
        assert all('"<string>"' in f or "<frozen " in f for f in frames), err
        return
    assert "Traceback" not in err, err
    # Interrupted (130, or killed by the signal before Python installed its handler), or already done.
    assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, err)
    if proc.returncode != 0:
        assert not (tmp_path / "r.txt").exists()
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []


# ---------------------------------------------------------------------------------------------
# It was silently wrong
# ---------------------------------------------------------------------------------------------

def test_row_of_all_minus_inf_logits_is_refused_with_its_line(cli, tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("label,z0,z1,z2\n1,0.5,2.0,-1.0\n0,-inf,-inf,-inf\n2,0.0,1.0,3.0\n")
    assert_clean_error(cli("score", path), "z.csv", "line 3", "NaN", "-inf")


@pytest.mark.parametrize("name", ["score", "y_score", "scores_1"])
def test_score_column_in_unit_interval_is_read_as_probabilities(cli, tmp_path, name):
    rng = np.random.default_rng(7)
    y = (rng.random(400) < 0.4).astype(int)
    p = np.clip(np.where(y == 1, rng.beta(8, 2, 400), rng.beta(2, 8, 400)), 1e-6, 1 - 1e-6)
    path = tmp_path / "s.csv"
    path.write_text(f"label,{name}\n" + "".join(f"{t},{v!r}\n" for t, v in zip(y, p.tolist())))
    rep = cli("score", path, "--json").json()
    assert rep["detected"]["input"] == "probabilities"
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p), rel=1e-12)
    assert rep["accuracy"] == accuracy_score(y, (p > 0.5).astype(int))


def test_logits_flag_on_probabilities_warns(cli, tmp_path):
    path = write_csv(tmp_path / "p.csv", [0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]], prefix="score")
    r = cli("score", path, "--logits")
    assert r.rc == 0
    assert "warning" in r.err and "--logits" in r.err and "look like probabilities" in r.err


def test_detection_does_not_depend_on_chunk_rows(cli, tmp_path):
    # The first row alone looks like probabilities; the sample of the first rows does not.
    rows = ["1,0.9"] + [f"{i % 2},{(-1) ** i * (1.5 + i / 100)!r}" for i in range(60)]
    path = tmp_path / "z.csv"
    path.write_text("label,z\n" + "\n".join(rows) + "\n")
    outs = [cli("score", path, "--json", "--chunk-rows", c) for c in (1, 2, 7, 1000)]
    assert all(o.rc == 0 for o in outs), [o.err for o in outs]
    assert all(o.out == outs[0].out for o in outs)
    assert outs[0].json()["detected"]["input"] == "logits"


@pytest.mark.parametrize("name, flag", [("weight", None), ("sample_weight", None), ("w", "w")])
def test_weight_column_is_used_and_stated(cli, tmp_path, name, flag):
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(3), 300)
    y = rng.integers(0, 3, 300)
    w = rng.integers(0, 4, 300) * 0.5
    path = write_csv(tmp_path / "w.csv", y, p, extra={name: w.tolist()})
    args = ["score", path, "--json"] + (["--weight", flag] if flag else [])
    rep = cli(*args).json()
    assert rep["detected"]["weight_column"] == name
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p, sample_weight=w), rel=1e-12)
    assert rep["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1), sample_weight=w), rel=1e-14)
    assert rep["weight_total"] == pytest.approx(w.sum())
    text = cli("score", path, *(["--weight", flag] if flag else [])).out
    assert f"sample weights '{name}'" in text
    ignored = cli("score", path, "--json", "--weight", "none").json()
    if flag is None:
        assert ignored["detected"]["weight_column"] is None
        assert ignored["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p), rel=1e-12)


def test_negative_or_nan_weight_is_a_located_error(cli, tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("label,p,weight\n1,0.9,1\n0,0.2,-1\n")
    assert_clean_error(cli("score", path), "line 3", "column 'weight'", ">= 0")
    path.write_text("label,p,weight\n1,0.9,1\n0,0.2,nan\n")
    assert_clean_error(cli("score", path), "line 3", "column 'weight'")


# ---------------------------------------------------------------------------------------------
# Where users stumbled
# ---------------------------------------------------------------------------------------------

def test_stdin_dash_and_dev_stdin(cli):
    data = open(example_path("digits")).read()
    want = cli("score", example_path("digits"), "--json").json()
    for name in ("-", "/dev/stdin"):
        r = cli("score", name, "--json", stdin=data)
        assert r.rc == 0, r.err
        got = r.json()
        assert got["cross_entropy"] == want["cross_entropy"] and got["worst"] == want["worst"]


def test_gzipped_csv_by_extension_and_by_content(cli, tmp_path):
    raw = open(example_path("digits"), "rb").read()
    (tmp_path / "p.csv.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "p.bin").write_bytes(gzip.compress(raw))
    want = cli("score", example_path("digits"), "--json").json()["cross_entropy"]
    for name in ("p.csv.gz", "p.bin"):
        r = cli("score", tmp_path / name, "--json")
        assert r.rc == 0, r.err
        assert r.json()["cross_entropy"] == want


def test_semicolon_csv_is_sniffed_and_a_forced_comma_gets_a_hint(cli, tmp_path):
    raw = open(example_path("digits")).read().replace(",", ";")
    path = tmp_path / "semi.csv"
    path.write_text(raw)
    rep = cli("score", path, "--json").json()
    assert rep["n_samples"] == 450 and "sniffed ';'" in rep["detected"]["how"]["delimiter"]
    assert_clean_error(cli("score", path, "--delimiter", ","), "one column", "--delimiter ';'")


def test_string_binary_labels_get_a_positive_hint(cli, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("label,p\nspam,0.9\nham,0.2\nspam,0.6\n")
    assert_clean_error(cli("score", path), "line 2", "'spam'", "--positive spam")
    rep = cli("score", path, "--positive", "spam", "--json").json()
    assert rep["detected"]["classes"] == ["ham", "spam"]
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss([1, 0, 1], [0.9, 0.2, 0.6]), rel=1e-13)


@pytest.mark.parametrize("text, what", [
    ("label,pred\n1,1\n0,0\n1,0\n0,1\n", "only the values 0 and 1"),
    ("label,p0,p1,p2\n0,1,0,0\n2,0,0,1\n1,0,1,0\n", "one-hot"),
    ("label,pred\n3,3\n0,0\n2,1\n5,4\n", "whole numbers"),
])
def test_hard_class_predictions_are_named(cli, tmp_path, text, what):
    path = tmp_path / "h.csv"
    path.write_text(text)
    assert_clean_error(cli("score", path), "hard class predictions", what, "--probs")


def test_hard_predictions_scored_anyway_with_probs(cli, tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("label,pred\n1,1\n0,0\n1,0\n")
    rep = cli("score", path, "--probs", "--json").json()
    assert rep["cross_entropy"]["nats"] == "inf" and rep["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("args, hint", [
    (["scor", "file.csv"], "did you mean 'score'"),
    (["explian"], "did you mean 'explain'"),
    (["score", "--jsn"], "did you mean --json"),
    (["score", "--chunck-rows", "5"], "did you mean --chunk-rows"),
    (["score", "--compat", "sklern"], "did you mean 'sklearn'"),
    (["score", "--format", "htm"], "did you mean 'html'"),
])
def test_typos_get_a_hint(cli, args, hint):
    assert_clean_error(cli(*args), hint)


@pytest.mark.parametrize("args, fragment", [
    (["--bins", "0"], "--bins must be at least 1"),
    (["--worst", "-1"], "--worst"),
    (["--chunk-rows", "0"], "--chunk-rows must be at least 1"),
    (["--ci", "1.5"], "--ci"),
    (["--replicates", "0"], "--replicates"),
    (["--top-k", "0"], "--top-k"),
    (["--base", "1"], "--base"),
])
def test_bad_option_values_name_the_option(cli, args, fragment):
    assert_clean_error(cli("score", *args), fragment)


def test_base_means_the_same_in_score_and_explain(cli, tmp_path):
    # The tutorial's students, model A: p(pass) and labels.
    path = tmp_path / "students.csv"
    path.write_text("label,p\n0,0.9\n0,0.3\n1,0.6\n1,0.2\n")
    for base, unit in (("10", "base-10"), ("2", "bits"), ("e", "nats")):
        scored = cli("score", path, "--base", base)
        explained = cli("explain", "binary", "--probs", "0.9,0.3,0.6,0.2", "--labels", "0,0,1,1", "--base", base)
        assert scored.rc == 0 and explained.rc == 0
        mean = float(re.findall(r"sum [0-9.]+, mean ([0-9.]+)", explained.out)[-1])
        per_class = [ln for ln in scored.out.splitlines() if ln.startswith("  class")][0]
        assert f"loss ({unit})" in per_class
        rep = cli("score", path, "--json", "--base", base).json()
        b = {"10": 10.0, "2": 2.0, "e": math.e}[base]
        assert rep["cross_entropy"]["nats"] / math.log(b) == pytest.approx(mean, abs=5e-5)


def test_scoring_logits_does_not_import_numba(tmp_path):
    code = ("import sys; from crossentropy.cli import main; rc = main(['score', '--example', 'breast-cancer', "
            "'-o', 'r.txt']); print(rc, 'numba' in sys.modules)")
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.stdout.split() == ["0", "False"], out.stderr
