"""Every figure of the report against scikit-learn (or a NumPy reference where sklearn has none), end to end.

Each case writes a file, runs ``crossentropy score FILE --json`` in a
subprocess, and checks every figure against scikit-learn on the same data,
with and without sample weights, for probabilities and logits, binary and
multi-class.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as M
from sklearn.calibration import calibration_curve

from clihelpers import reference_ece, softmax, write_csv

REL = 1e-12  # sklearn sums pairwise, we sum exactly: a few ulps apart at most


def _case(kind, weighted, seed=0, n=1500):
    rng = np.random.default_rng(seed)
    if kind.startswith("binary"):
        z = rng.normal(size=n) * 2.5
        y = (rng.random(n) < 1 / (1 + np.exp(-z * 0.8))).astype(int)
        scores = z if kind == "binary-logits" else np.round(1 / (1 + np.exp(-z)), 3)  # rounding makes ties
        prob1 = 1 / (1 + np.exp(-z)) if kind == "binary-logits" else scores
        probs = np.stack([1 - prob1, prob1], axis=1)
    else:
        k = 4
        z = rng.normal(size=(n, k)) * 1.7
        y = np.array([rng.choice(k, p=row) for row in softmax(z)])
        if kind == "multi-logits":
            scores, probs = z, softmax(z)
        else:
            scores = probs = softmax(z)
    w = (rng.integers(0, 5, n) * 0.25) if weighted else None
    return y, scores, probs, w


CASES = [(k, w) for k in ("multi-probs", "multi-logits", "binary-probs", "binary-logits") for w in (False, True)]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Every case scored once through the command line."""
    from clihelpers import run_cli

    out = {}
    d = tmp_path_factory.mktemp("metrics")
    for i, (kind, weighted) in enumerate(CASES):
        y, scores, probs, w = _case(kind, weighted, seed=i)
        prefix = "logit" if kind.endswith("logits") else "p"
        extra = {"weight": w.tolist()} if weighted else None
        path = write_csv(d / f"{kind}-{weighted}.csv", y, scores, prefix=prefix, extra=extra)
        r = run_cli(["score", path, "--json", "--chunk-rows", "337"])
        assert r.rc == 0, r.err
        out[(kind, weighted)] = (r.json(), y, scores, probs, w)
    return out


@pytest.mark.parametrize("kind, weighted", CASES)
def test_every_figure_matches_sklearn(reports, kind, weighted):
    rep, y, scores, probs, w = reports[(kind, weighted)]
    binary = kind.startswith("binary")
    k = probs.shape[1]
    labels = list(range(k))
    logits = kind.endswith("logits")
    assert rep["detected"]["input"] == ("logits" if logits else "probabilities")
    assert rep["detected"]["weight_column"] == ("weight" if weighted else None)
    p_in = probs[:, 1] if binary else probs
    # Losses
    assert rep["cross_entropy"]["nats"] == pytest.approx(M.log_loss(y, probs, labels=labels, sample_weight=w),
                                                         rel=REL if not logits else 1e-11)
    assert rep["cross_entropy"]["bits"] == pytest.approx(rep["cross_entropy"]["nats"] / math.log(2), rel=1e-15)
    assert rep["perplexity"] == pytest.approx(math.exp(rep["cross_entropy"]["nats"]), rel=1e-15)
    # Discrete
    if binary:
        pred = (scores > 0).astype(int) if logits else (scores > 0.5).astype(int)
    else:
        pred = scores.argmax(axis=1)
    assert rep["accuracy"] == pytest.approx(M.accuracy_score(y, pred, sample_weight=w), rel=1e-15)
    assert rep["misclassified"] == int((pred != y).sum())
    for kk, v in rep["top_k_accuracy"].items():
        assert v == pytest.approx(M.top_k_accuracy_score(y, scores, k=int(kk), labels=labels, sample_weight=w),
                                  rel=1e-15)
    assert rep["brier"] == pytest.approx(M.brier_score_loss(y, p_in if binary else probs, sample_weight=w), rel=REL)
    # ROC AUC
    roc = rep["roc_auc"]
    if binary:
        assert roc["auc"] == pytest.approx(M.roc_auc_score(y, scores, sample_weight=w), rel=1e-12)
    else:
        assert roc["macro"] == pytest.approx(M.roc_auc_score(y, probs, multi_class="ovr", average="macro",
                                                             sample_weight=w), rel=1e-12)
        assert roc["weighted"] == pytest.approx(M.roc_auc_score(y, probs, multi_class="ovr", average="weighted",
                                                                sample_weight=w), rel=1e-12)
        for c in range(k):
            assert roc["per_class"][c] == pytest.approx(M.roc_auc_score(y == c, probs[:, c], sample_weight=w),
                                                        rel=1e-12)
    # Confusion matrix, precision / recall / F1
    cm = M.confusion_matrix(y, pred, labels=labels)
    assert rep["confusion_matrix"]["matrix"] == cm.tolist()
    if weighted:
        wcm = M.confusion_matrix(y, pred, labels=labels, sample_weight=w)
        np.testing.assert_allclose(rep["confusion_matrix"]["weighted_matrix"], wcm, rtol=1e-15)
    pr, rc, f1, support = M.precision_recall_fscore_support(y, pred, labels=labels, sample_weight=w,
                                                            zero_division=np.nan)
    for c, row in enumerate(rep["per_class"]):
        assert row["count"] == int((y == c).sum())
        for key, ref in (("precision", pr[c]), ("recall", rc[c]), ("f1", f1[c])):
            if np.isnan(ref):
                assert row[key] is None
            else:
                assert row[key] == pytest.approx(ref, rel=1e-14)
        m = y == c
        per = -np.log(probs[m, c])
        assert row["loss_nats"] == pytest.approx(np.average(per, weights=None if w is None else w[m]), rel=1e-11)
    for avg in ("macro", "weighted"):
        p_, r_, f_, _ = M.precision_recall_fscore_support(y, pred, labels=labels, average=avg, sample_weight=w)
        got = rep["precision_recall_f1"][avg]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p_, r_, f_), rel=1e-13)
    # Calibration: sklearn's bins for the binary reliability table; ECE / MCE / class-wise from them.
    cal = rep["calibration"]
    if binary:
        conf, hit = probs[:, 1], (y == 1)
        if w is None:
            prob_true, prob_pred = calibration_curve(y, probs[:, 1], n_bins=10, strategy="uniform")
            full = [b for b in cal["bins"] if b["count"]]
            np.testing.assert_allclose([b["accuracy"] for b in full], prob_true, rtol=1e-14)
            np.testing.assert_allclose([b["confidence"] for b in full], prob_pred, rtol=1e-13)
    else:
        conf, hit = probs.max(axis=1), pred == y
    ece, mce = reference_ece(conf, hit, 10, w)
    assert cal["ece"] == pytest.approx(ece, rel=1e-12, abs=1e-15)
    assert cal["mce"] == pytest.approx(mce, rel=1e-12, abs=1e-15)
    cw = [reference_ece(probs[:, c], y == c, 10, w) for c in range(k)]
    assert cal["classwise_ece"] == pytest.approx(np.mean([e for e, _ in cw]), rel=1e-12)
    assert cal["classwise_mce"] == pytest.approx(max(m for _, m in cw), rel=1e-12)
    # Normalised cross-entropy
    freq = np.bincount(y, weights=w, minlength=k) / (w.sum() if w is not None else len(y))
    h = -(freq[freq > 0] * np.log(freq[freq > 0])).sum()
    assert rep["normalized_cross_entropy"] == pytest.approx(rep["cross_entropy"]["nats"] / h, rel=1e-12)
    if binary:
        assert rep["base_rate"] == pytest.approx(freq[1], rel=1e-14)
