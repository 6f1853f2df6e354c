"""``crossentropy score`` end to end: every report field against an independent computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from clihelpers import make_multiclass, png_size, reference_ece  # on sys.path: conftest.py
from crossentropy.cli.score import example_path
from crossentropy.scoring import Batch, ScoreAccumulator, ScoreSpec, score_arrays


def _load_digits_example():
    d = np.loadtxt(example_path("digits"), delimiter=",", skiprows=1)
    return d[:, 1:], d[:, 0].astype(int)


def _write_csv(path, y, p, prefix="p", sep=","):
    with open(path, "w") as f:
        f.write(sep.join(["label"] + [f"{prefix}{j}" for j in range(p.shape[1])]) + "\n")
        for t, row in zip(y, p):
            f.write(sep.join([str(int(t))] + [repr(float(v)) for v in row]) + "\n")


def test_default_command_scores_bundled_example_like_sklearn(cli):
    r = cli("--json")
    assert r.rc == 0, r.err
    rep = r.json()
    p, y = _load_digits_example()
    assert rep["detected"]["task"] == "multiclass" and rep["n_classes"] == 10 and rep["n_samples"] == len(y)
    assert rep["detected"]["input"] == "probabilities" and rep["detected"]["label_column"] == "label"
    ll = log_loss(y, p, labels=list(range(10)))
    assert rep["cross_entropy"]["nats"] == pytest.approx(ll, rel=1e-13)
    assert rep["cross_entropy"]["bits"] == pytest.approx(ll / math.log(2), rel=1e-13)
    assert rep["perplexity"] == pytest.approx(math.exp(ll), rel=1e-13)
    pred = p.argmax(axis=1)
    assert rep["accuracy"] == accuracy_score(y, pred)
    assert rep["misclassified"] == int((pred != y).sum())
    per = -np.log(p[np.arange(len(y)), y])
    for c in rep["per_class"]:
        m = y == c["index"]
        assert c["count"] == int(m.sum())
        assert c["loss_nats"] == pytest.approx(per[m].mean(), rel=1e-12)
        assert c["accuracy"] == pytest.approx((pred[m] == y[m]).mean())
    conf = p.max(axis=1)
    ece, mce = reference_ece(conf, pred == y)
    assert rep["calibration"]["ece"] == pytest.approx(ece, abs=1e-12)
    assert rep["calibration"]["mce"] == pytest.approx(mce, abs=1e-12)
    assert sum(b["count"] for b in rep["calibration"]["bins"]) == len(y)
    order = sorted(range(len(y)), key=lambda i: (-per[i], i))[:5]
    assert [w["row"] for w in rep["worst"]] == [i + 1 for i in order]
    assert [w["line"] for w in rep["worst"]] == [i + 2 for i in order]  # header is line 1
    freq = np.bincount(y, minlength=10) / len(y)
    h = -(freq[freq > 0] * np.log(freq[freq > 0])).sum()
    assert rep["normalized_cross_entropy"] == pytest.approx(ll / h, rel=1e-12)
    # Same report from `crossentropy score` and from `python -m crossentropy.cli score`.
    assert cli("score", "--json").json() == rep


def test_default_text_report(cli):
    r = cli()
    assert r.rc == 0, r.err
    for s in ("bundled example 'digits'", "cross-entropy", "nats", "bits", "perplexity", "accuracy",
              "misclassified", "per class", "worst 5 samples", "reliability", "calibration error"):
        assert s in r.out, s
    r2 = cli("score", "--base", "10")
    assert "base-10" in r2.out


def test_binary_example_logits(cli):
    rep = cli("score", "--example", "breast-cancer", "--json").json()
    d = np.loadtxt(example_path("breast-cancer"), delimiter=",", skiprows=1)
    y, z = d[:, 0].astype(int), d[:, 1]
    assert rep["detected"]["task"] == "binary" and rep["detected"]["input"] == "logits"
    p1 = 1 / (1 + np.exp(-z))
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p1), rel=1e-10)
    assert rep["accuracy"] == accuracy_score(y, (z > 0).astype(int))
    br = y.mean()
    assert rep["base_rate"] == br
    hb = -(br * math.log(br) + (1 - br) * math.log(1 - br))
    assert rep["normalized_cross_entropy"] == pytest.approx(rep["cross_entropy"]["nats"] / hb, rel=1e-13)
    assert rep["calibration"]["ece"] == pytest.approx(reference_ece(p1, y == 1)[0], abs=1e-12)


FORMATS = ["csv", "tsv", "parquet", "parquet-list", "npy", "npz", "npz-compressed", "jsonl", "jsonl-list"]


def _write(fmt, tmp_path, y, p):
    if fmt in ("csv", "tsv"):
        path = tmp_path / f"pred.{fmt}"
        _write_csv(path, y, p, sep="," if fmt == "csv" else "\t")
    elif fmt.startswith("parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "pred.parquet"
        if fmt == "parquet":
            t = pa.table({"label": y, **{f"prob_{j}": p[:, j] for j in range(p.shape[1])}})
        else:
            t = pa.table({"target": y, "probs": pa.array(list(p), type=pa.list_(pa.float64()))})
        pq.write_table(t, path, row_group_size=97)
    elif fmt == "npy":
        path = tmp_path / "pred.npy"
        a = np.zeros(len(y), dtype=[("y", "i8"), ("proba", "f8", (p.shape[1],))])
        a["y"], a["proba"] = y, p
        np.save(path, a)
    elif fmt.startswith("npz"):
        path = tmp_path / "pred.npz"
        (np.savez_compressed if fmt.endswith("compressed") else np.savez)(path, y=y, probs=p)
    else:
        path = tmp_path / "pred.jsonl"
        with open(path, "w") as f:
            for t, row in zip(y, p):
                if fmt == "jsonl":
                    f.write(json.dumps({"label": int(t), **{f"p{j}": float(v) for j, v in enumerate(row)}}) + "\n")
                else:
                    f.write(json.dumps({"y": int(t), "probs": [float(v) for v in row]}) + "\n")
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_matches_sklearn_and_memory(cli, tmp_path, fmt):
    p, _, y = make_multiclass(n=700, k=4, seed=1)
    path = _write(fmt, tmp_path, y, p)
    r = cli("score", path, "--json", "--chunk-rows", "100")
    assert r.rc == 0, r.err
    rep = r.json()
    assert rep["detected"]["format"] == fmt.split("-")[0]
    assert rep["n_samples"] == 700 and rep["n_classes"] == 4
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2, 3]), rel=1e-13)
    assert rep["misclassified"] == int((p.argmax(1) != y).sum())
    # Streaming a file equals scoring the whole arrays in memory, field by field, bit for bit.
    whole = score_arrays(p, y)
    for key in ("cross_entropy", "perplexity", "accuracy", "misclassified", "normalized_cross_entropy"):
        assert rep[key] == whole[key], key
    assert rep["calibration"]["ece"] == whole["calibration"]["ece"]
    assert [c["loss_nats"] for c in rep["per_class"]] == [c["loss_nats"] for c in whole["per_class"]]


def test_result_identical_for_any_chunk_size(cli, tmp_path):
    p, _, y = make_multiclass(n=400, k=3, seed=2)
    path = tmp_path / "pred.csv"
    _write_csv(path, y, p)
    outs = [cli("score", path, "--json", "--chunk-rows", c).out for c in (1, 7, 64, 399, 100000)]
    assert all(o == outs[0] for o in outs[1:])


def test_accumulators_merge_exactly():
    p, z, y = make_multiclass(n=1000, k=5, seed=3)
    spec = ScoreSpec(n_classes=5, logits=True, ci=0.9, replicates=50, seed=4)
    whole = ScoreAccumulator(spec)
    whole.update(Batch(z, y))
    parts = [ScoreAccumulator(spec) for _ in range(3)]
    cuts = [0, 123, 640, 1000]
    for a, (s, e) in zip(parts, zip(cuts, cuts[1:])):
        a.update(Batch(z[s:e], y[s:e], rows=np.arange(s, e)))
    parts[2].merge(parts[0])  # any order
    parts[2].merge(parts[1])
    assert parts[2].finalize() == whole.finalize()


def test_logits_detected_by_range_and_class_name_columns(cli, tmp_path):
    _, z, y = make_multiclass(n=300, k=3, seed=4)
    names = ["cat", "dog", "emu"]
    path = tmp_path / "scores.csv"
    with open(path, "w") as f:
        f.write("id,truth," + ",".join(names) + "\n")
        for i, (t, row) in enumerate(zip(y, z)):
            f.write(f"{i},{names[t]}," + ",".join(repr(float(v)) for v in row) + "\n")
    r = cli("score", path, "--json")
    assert r.rc == 0, r.err
    rep = r.json()
    d = rep["detected"]
    assert d["input"] == "logits" and d["classes"] == names and d["prediction_columns"] == names
    assert "outside [0, 1]" in d["how"]["input"]
    sm = np.exp(z - z.max(1, keepdims=True))
    sm /= sm.sum(1, keepdims=True)
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, sm), rel=1e-12)
    assert [c["class"] for c in rep["per_class"]] == names


def test_binary_probability_column_with_string_labels(cli, tmp_path):
    rng = np.random.default_rng(5)
    p = rng.uniform(0.01, 0.99, 200)
    y = (rng.uniform(size=200) < p).astype(int)
    path = tmp_path / "spam.csv"
    with open(path, "w") as f:
        f.write("label,prob_spam\n")
        for t, v in zip(y, p):
            f.write(f"{'spam' if t else 'ham'},{float(v)!r}\n")
    rep = cli("score", path, "--json").json()
    assert rep["task"] == "binary"
    assert rep["detected"]["classes"] == ["ham", "spam"]
    assert rep["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p), rel=1e-12)
    assert rep["accuracy"] == accuracy_score(y, (p > 0.5).astype(int))


def test_compat_sklearn_and_keras(cli, tmp_path):
    p, _, y = make_multiclass(n=200, k=3, seed=6)
    p[0] = [0.0, 1.0, 0.0]
    y[0] = 0  # an impossible label: exact loss is inf
    path = tmp_path / "pred.csv"
    _write_csv(path, y, p)
    exact = cli("score", path, "--json").json()
    assert exact["cross_entropy"]["nats"] == "inf"
    assert exact["worst"][0]["row"] == 1 and exact["worst"][0]["loss_nats"] == "inf"
    sk = cli("score", path, "--json", "--compat", "sklearn").json()
    assert sk["cross_entropy"]["nats"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), rel=1e-13)
    ke = cli("score", path, "--json", "--compat", "keras").json()
    # Keras's sparse loss: clip to [1e-7, 1 - 1e-7], renormalise, take -log.
    c = np.clip(p, 1e-7, 1 - 1e-7)
    c = c / c.sum(1, keepdims=True)
    assert ke["cross_entropy"]["nats"] == pytest.approx(-np.log(c[np.arange(200), y]).mean(), rel=1e-12)
    # Binary: Keras's BinaryCrossentropy clips at 1e-7.
    pb = np.array([0.0, 1.0, 0.3, 0.9])
    yb = np.array([1, 1, 0, 1])
    bpath = tmp_path / "b.csv"
    bpath.write_text("y,p\n" + "".join(f"{t},{float(v)!r}\n" for t, v in zip(yb, pb)))
    kb = cli("score", bpath, "--json", "--compat", "keras").json()
    cb = np.clip(pb, 1e-7, 1 - 1e-7)
    want = -(yb * np.log(cb) + (1 - yb) * np.log(1 - cb)).mean()
    assert kb["cross_entropy"]["nats"] == pytest.approx(want, rel=1e-12)
    sb = cli("score", bpath, "--json", "--compat", "sklearn").json()
    assert sb["cross_entropy"]["nats"] == pytest.approx(log_loss(yb, pb), rel=1e-13)


def test_plot_png(cli, tmp_path):
    r = cli("score", "--plot", "report.png")
    assert r.rc == 0, r.err
    w, h = png_size(tmp_path / "report.png")
    assert 600 <= w <= 3000 and 300 <= h <= 2000
    assert 10_000 < (tmp_path / "report.png").stat().st_size < 2_000_000
    assert sorted(x.name for x in tmp_path.iterdir()) == ["report.png"]


def test_output_file_and_progress(cli, tmp_path):
    r = cli("score", "--json", "-o", "rep.json", "--progress")
    assert r.rc == 0 and r.out == ""
    assert json.loads((tmp_path / "rep.json").read_text())["n_samples"] == 450
