"""Regenerate the bundled example predictions in src/crossentropy/data/.

``crossentropy score`` with no file scores these: held-out predictions of a
real model on a real dataset, so the first thing a user sees is an honest
report rather than made-up numbers.  Both datasets ship with scikit-learn
(no download), the split and the model are seeded, and the files are written
with ``repr`` floats so the scores are the model's exact output.

    python scripts/make_example.py

Needs scikit-learn (a development dependency only; the CLI itself does not).
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "crossentropy", "data")
SEED = 0


def _write(path, header, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes, {len(rows)} rows)")


def digits():
    """8x8 handwritten digits, 10 classes: a multinomial logistic regression."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)
    # scikit-learn's default regularisation (C=1): the model a user would fit first.
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(X_tr, y_tr)
    proba = model.predict_proba(X_te)
    header = ["label"] + [f"p{k}" for k in range(proba.shape[1])]
    rows = [[int(t)] + [repr(float(v)) for v in p] for t, p in zip(y_te, proba)]
    _write(os.path.join(OUT, "digits_logreg.csv"), header, rows)


def breast_cancer():
    """Wisconsin breast cancer, binary (1 = benign): logistic regression logits."""
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(X_tr, y_tr)
    z = model.decision_function(X_te)
    rows = [[int(t), repr(float(v))] for t, v in zip(y_te, z)]
    _write(os.path.join(OUT, "breast_cancer_logreg.csv"), ["label", "logit"], rows)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    digits()
    breast_cancer()
    sys.exit(0)
