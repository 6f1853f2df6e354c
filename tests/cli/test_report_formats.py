"""Report options and formats: --ci, --by, --top-k, JSON / Markdown / HTML."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from clihelpers import make_multiclass, png_size, write_csv
from crossentropy.scoring.bootstrap import poisson_weights


def test_ci_matches_an_independent_poisson_bootstrap(cli, tmp_path):
    p, _, y = make_multiclass(n=800, k=3, seed=31)
    path = write_csv(tmp_path / "p.csv", y, p)
    rep = cli("score", path, "--json", "--ci", "0.9", "--replicates", "400", "--seed", "7").json()
    ci = rep["ci"]
    assert (ci["level"], ci["replicates"], ci["seed"]) == (0.9, 400, 7)
    w = poisson_weights(np.arange(800), 400, seed=7).astype(np.float64)
    loss = -np.log(p[np.arange(800), y])
    hit = (p.argmax(1) == y).astype(float)
    brier = ((p - np.eye(3)[y]) ** 2).sum(1)
    for key, v in (("cross_entropy_nats", loss), ("accuracy", hit), ("brier", brier)):
        reps = (w.T @ v) / w.sum(0)
        assert ci[key] == pytest.approx(np.quantile(reps, [0.05, 0.95]).tolist(), rel=1e-9), key
    assert ci["cross_entropy_nats"][0] < rep["cross_entropy"]["nats"] < ci["cross_entropy_nats"][1]
    assert ci["perplexity"] == pytest.approx([math.exp(x) for x in ci["cross_entropy_nats"]], rel=1e-15)


def test_ci_same_for_any_chunking_and_changes_with_the_seed(cli, tmp_path):
    p, _, y = make_multiclass(n=3000, k=4, seed=32)
    path = write_csv(tmp_path / "p.csv", y, p)
    runs = [cli("score", path, "--json", "--ci", "0.95", "--replicates", "200", "--chunk-rows", c).json()["ci"]
            for c in ("1", "999", "100000")]
    assert runs[0] == runs[1] == runs[2]
    other = cli("score", path, "--json", "--ci", "0.95", "--replicates", "200", "--seed", "1").json()["ci"]
    assert other["cross_entropy_nats"] != runs[0]["cross_entropy_nats"]


def test_by_slices_match_pandas_groupby_and_sklearn(cli, tmp_path):
    rng = np.random.default_rng(33)
    n = 1200
    p1 = rng.random(n)
    y = (rng.random(n) < p1).astype(int)
    region = rng.choice(["north", "south", "east"], n)
    w = rng.integers(1, 4, n).astype(float)
    path = write_csv(tmp_path / "p.csv", y, p1, extra={"region": region.tolist(), "weight": w.tolist()})
    rep = cli("score", path, "--json", "--by", "region", "--ci", "0.9", "--replicates", "100").json()
    df = pd.read_csv(path)
    assert sorted(rep["slices"]) == sorted(df["region"].unique())
    for key, g in df.groupby("region"):
        s = rep["slices"][key]
        assert s["n_samples"] == len(g)
        assert s["cross_entropy"]["nats"] == pytest.approx(log_loss(g.label, g.p, sample_weight=g.weight), rel=1e-12)
        assert s["accuracy"] == pytest.approx(accuracy_score(g.label, g.p > 0.5, sample_weight=g.weight))
        assert s["brier"] == pytest.approx(brier_score_loss(g.label, g.p, sample_weight=g.weight), rel=1e-12)
        assert s["roc_auc"]["auc"] == pytest.approx(roc_auc_score(g.label, g.p, sample_weight=g.weight), rel=1e-12)
        assert "ci" in s
    text = cli("score", path, "--by", "region").out
    assert "slices by 'region'" in text and "north" in text


def test_top_k_option(cli, tmp_path):
    p, _, y = make_multiclass(n=300, k=6, seed=34)
    rep = cli("score", write_csv(tmp_path / "p.csv", y, p), "--json", "--top-k", "1,4").json()
    assert sorted(rep["top_k_accuracy"]) == ["1", "4"]
    assert rep["top_k_accuracy"]["1"] == rep["accuracy"]


def test_json_is_strict_and_non_finite_numbers_are_strings(cli, tmp_path):
    path = write_csv(tmp_path / "p.csv", [0, 1, 2], [[0.0, 1.0, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    r = cli("score", path, "--json")
    assert "NaN" not in r.out and "Infinity" not in r.out
    rep = json.loads(r.out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert rep["cross_entropy"]["nats"] == "inf" and rep["worst"][0]["row"] == 1


def test_markdown_report(cli):
    r = cli("score", "--format", "md")
    assert r.rc == 0, r.err
    md = r.out
    assert md.startswith("# Cross-entropy report")
    for heading in ("## Per class", "## Confusion matrix", "## Worst 5 samples", "## Reliability"):
        assert heading in md
    table = [ln for ln in md.splitlines() if ln.startswith("| cross-entropy")]
    assert table and "0.1140 nats" in table[0]


def test_html_report_is_self_contained(cli, tmp_path):
    r = cli("score", "--format", "html", "-o", "r.html")
    assert r.rc == 0 and r.out == ""
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//|file:)""", html), "no outside references"
    for ident in ("plot-reliability", "plot-histogram", "plot-roc", "plot-confusion", "summary", "per-class",
                  "worst", "reliability"):
        assert f'id="{ident}"' in html, ident
    assert html.count("<svg") == 4


def test_json_flag_and_format_must_agree(cli):
    from clihelpers import assert_clean_error
    assert_clean_error(cli("score", "--json", "--format", "md"), "--json and --format md disagree")


def test_old_format_meaning_still_reads_the_input_format_with_a_warning(cli, tmp_path):
    path = tmp_path / "noext"
    path.write_text("label,p0,p1\n0,0.8,0.2\n1,0.3,0.7\n")
    r = cli("score", path, "--format", "csv", "--json")
    assert r.rc == 0 and "--input-format csv" in r.err
    assert r.json()["n_samples"] == 2


def test_plot_png_with_comparison(cli, tmp_path):
    p, _, y = make_multiclass(n=200, k=3, seed=35)
    a = write_csv(tmp_path / "a.csv", y, p)
    b = write_csv(tmp_path / "b.csv", y, np.full_like(p, 1 / 3))
    r = cli("score", a, b, "--plot", "cmp.png", "--replicates", "50")
    assert r.rc == 0, r.err
    w, h = png_size(tmp_path / "cmp.png")
    assert 600 <= w <= 3000 and 300 <= h <= 2000
