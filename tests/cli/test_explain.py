"""``crossentropy explain``: the tutorial's numbers, your numbers, and the descent walk-through."""

from __future__ import annotations

import math
import re

import pytest

from clihelpers import assert_clean_error, png_size


def test_default_reproduces_tutorial(cli):
    r = cli("explain")
    assert r.rc == 0, r.err
    out = r.out
    # Model A and B, exact in base 10, next to the tutorial's truncated sums.
    a = -sum(math.log10(p) for p in (0.1, 0.7, 0.6, 0.2))
    b = -sum(math.log10(p) for p in (0.8, 0.6, 0.7, 0.9))
    fruit = -sum(math.log10(p) for p in (0.7, 0.3, 0.4))
    assert f"{a:.4f}" == "2.0757" and f"{b:.4f}" == "0.5194" and f"{fruit:.4f}" == "1.0757"
    for s in ("negative log = cross-entropy     2.0757", "negative log = cross-entropy     0.5194",
              "= 1.0757", "prints 2.073", "prints 0.505", "prints 1.073",
              "0.1 x 0.7 x 0.6 x 0.2 = 0.0084", "0.8 x 0.6 x 0.7 x 0.9 = 0.3024", "0.7 x 0.3 x 0.4 = 0.084",
              "= 0.7054", "= 0.2595", "= 0.0351", "discrete error: 2 of 4", "discrete error: 0 of 4"):
        assert s in out, s
    # Each BCE term is shown: -[y log10 p + (1-y) log10(1-p)].
    assert "-[0 x log10(0.9) + 1 x log10(0.1)] = 1.0000" in out


def test_binary_with_scores_and_base(cli):
    r = cli("explain", "binary", "--scores", "1.5,-0.5", "--labels", "1,0", "--base", "2")
    assert r.rc == 0, r.err
    s1, s2 = 1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(0.5))
    want = -(math.log2(s1) + math.log2(1 - s2))
    assert f"sigma(1.5) = 1 / (1 + e^-1.5) = {s1:.4f}" in r.out
    assert f"negative log = cross-entropy     {want:.4f}" in r.out
    assert "bits" in r.out


def test_categorical_with_names(cli):
    r = cli("explain", "--probs", "0.7,0.2,0.1;0.3,0.4,0.3", "--labels", "orange,lemon",
            "--classes", "orange,apple,lemon", "--base", "e")
    assert r.rc == 0, r.err
    want = -(math.log(0.7) + math.log(0.3))
    assert f"= {want:.4f}" in r.out and "Categorical cross-entropy (natural logarithms" in r.out
    assert "sample 2: -(0 x ln(0.3) + 0 x ln(0.4) + 1 x ln(0.3))" in r.out


@pytest.mark.parametrize("args, fragment", [
    (["explain", "binary", "--probs", "1.5", "--labels", "1"], "not a probability"),
    (["explain", "binary", "--probs", "0.5,0.2", "--labels", "1"], "2 probabilities but 1 labels"),
    (["explain", "binary", "--probs", "0.5", "--labels", "2"], "0 or 1"),
    (["explain", "categorical", "--probs", "0.5,0.5", "--labels", "plum"], "'plum' is not a class"),
    (["explain", "--base", "1"], "--base"),
    (["explain", "binary", "--probs", "x", "--labels", "1"], "numbers"),
])
def test_explain_bad_numbers(cli, args, fragment):
    assert_clean_error(cli(*args), fragment)


def test_descent_loss_falls_while_errors_stall(cli, tmp_path):
    r = cli("explain", "descent", "--every", "1", "--plot", "descent.png")
    assert r.rc == 0, r.err
    rows = [tuple(float(x) for x in m.groups()) for m in
            re.finditer(r"^\s+(\d+)\s+([0-9.]+)\s+(\d+)\s+\S+\s+\S+\s+\S+$", r.out, re.M)]
    steps, loss, errors = zip(*rows)
    assert steps[0] == 0 and len(rows) == 81
    assert all(b < a for a, b in zip(loss, loss[1:])), "the continuous loss falls at every step"
    assert errors[0] == 2 and errors[-1] == 0
    flat = sum(1 for a, b in zip(errors, errors[1:]) if a == b)
    assert flat >= 70, "the discrete error count is flat almost everywhere"
    w, h = png_size(tmp_path / "descent.png")
    assert 600 <= w <= 3000 and 300 <= h <= 2000


def test_explain_plot(cli, tmp_path):
    r = cli("explain", "--plot", "curve.png")
    assert r.rc == 0, r.err
    w, h = png_size(tmp_path / "curve.png")
    assert 400 <= w <= 3000 and 300 <= h <= 2000
    assert (tmp_path / "curve.png").stat().st_size > 10_000
