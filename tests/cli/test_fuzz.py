"""Fuzzed CSV and JSON Lines files: the scorer scores exactly like pandas + scikit-learn, or exits 2 naming the file.

Hypothesis writes files of random width, quoting, delimiters, line ends,
encodings, number spellings, non-finite values, injected bad cells and blank
lines, and truncates some at a random byte.  The oracle reads the same bytes
with pandas (values as strings, so pandas does the tokenising), applies the
documented rules (the number grammar, labels, probabilities in [0, 1], hard
predictions, NaN, one field per column) and computes the figures with
scikit-learn.  The scorer, run in-process through ``crossentropy.cli.main``,
must either agree (exit 0, same figures) or exit 2 with one line naming the
file — nothing else.  Set ``CROSSENTROPY_FUZZ_COUNTS=path.json`` to write the
tally of outcomes.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, brier_score_loss

from clihelpers import run_inproc

pytestmark = pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # the oracle's sklearn

COUNTS: collections.Counter = collections.Counter()
NUMBER = re.compile(r"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)[ \t]*",
                    re.IGNORECASE)
INTEGER = re.compile(r"[+-]?[0-9]+")
BAD_CELLS = ["nan", "inf", "-inf", "1e400", "Infinity", "abc", "", "0,5", "1_0", " ", "-0.0", "+.5", "1e-400",
             "0x1", "١"]
BAD_LABELS = ["inf", "1e400", "nan", "2.0", "-1", "x", "", "1.5", "Infinity", "01"]
ERROR = "error"

SETTINGS = settings(max_examples=int(os.environ.get("CROSSENTROPY_FUZZ_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------
# The oracle: pandas reads, the documented rules decide, scikit-learn computes
# ---------------------------------------------------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def oracle_table(values, labels, names, text=True):
    """From raw values per prediction column and raw labels: ERROR or the expectation.

    ``text``: the values are CSV tokens (a string is a number if the grammar
    accepts it); else JSON values (a string is never a number).
    """
    k = len(names)
    binary = k == 1
    x = np.empty((len(labels), k))
    for j in range(k):
        for i, v in enumerate(values[j]):
            if isinstance(v, str):
                if not text or not NUMBER.fullmatch(v):
                    return ERROR
                x[i, j] = float(v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                try:
                    x[i, j] = float(v)
                except OverflowError:
                    return ERROR
            else:
                return ERROR
    if len(labels) == 0 or np.isnan(x).any():
        return ERROR
    prob_named = names[0].startswith("p")
    inside = bool(np.all((x >= 0) & (x <= 1)))
    if not inside and prob_named:
        return ERROR
    logits = not inside
    if not logits:
        if binary and np.all((x == 0) | (x == 1)):
            return ERROR  # hard class predictions
        if not binary and np.all((x == 0) | (x == 1)) and np.all(x.sum(axis=1) == 1):
            return ERROR
    elif binary and np.all(x == np.round(x)) and np.all(np.isfinite(x)) and x.min() >= 0 and \
            np.unique(x).size >= 2:
        ys = []
        for v in labels:
            try:
                ys.append(float(v))
            except (TypeError, ValueError):
                ys = None
                break
        if ys is not None and all(math.isfinite(t) and t == round(t) for t in ys) and \
                set(np.unique(x).tolist()) <= set(ys) | set(range(int(x.max()) + 1)):
            return ERROR  # whole numbers like the labels: hard predictions
    if logits and not binary and (np.isposinf(x).any() or np.all(np.isneginf(x), axis=1).any()):
        return ERROR
    y = []
    for v in labels:
        if isinstance(v, bool):
            if not binary:
                return ERROR
            y.append(int(v))
            continue
        if isinstance(v, str):
            t = v.strip(" \t")
            if binary and t.lower() in ("true", "yes", "false", "no"):
                y.append(int(t.lower() in ("true", "yes")))
                continue
            if not NUMBER.fullmatch(t):
                return ERROR
            f = float(t)
        elif isinstance(v, (int, float)):
            try:
                f = float(v)
            except OverflowError:
                return ERROR
        else:
            return ERROR
        if not (math.isfinite(f) and f == round(f) and 0 <= f < (2 if binary else k)):
            return ERROR
        y.append(int(f))
    y = np.array(y)
    if binary:
        z = x[:, 0]
        with np.errstate(over="ignore"):
            p1 = 1 / (1 + np.exp(-z)) if logits else z
            p0 = 1 / (1 + np.exp(z)) if logits else 1 - z  # sigma(-z): no cancellation for large z
        probs = np.stack([p0, p1], axis=1)
        pred = (z > 0).astype(int) if logits else (z > 0.5).astype(int)
        p_true = np.where(y == 1, p1, p0)
    else:
        probs = _softmax(x) if logits else x
        pred = x.argmax(axis=1)
        p_true = probs[np.arange(len(y)), y]
    return {"n": len(y), "y": y, "probs": probs, "pred": pred, "p_true": p_true, "logits": logits,
            "binary": binary}


def check(result, expect, path):
    """The scorer's result agrees with the oracle, or both refuse the file."""
    if expect == ERROR:
        assert result.rc == 2, (result.rc, result.out[:300], result.err)
        lines = [ln for ln in result.err.splitlines() if ln.startswith("crossentropy: error: ")]
        assert len(lines) == 1 and "Traceback" not in result.err, result.err
        assert lines[0].startswith(f"crossentropy: error: {path}"), lines[0]
        COUNTS["exit 2, located" + (" (line/row)" if re.search(r": (line|row) \d+", lines[0]) else " (file)")] += 1
        return
    assert result.rc == 0, result.err
    rep = result.json()
    assert rep["n_samples"] == expect["n"]
    y, probs, pred = expect["y"], expect["probs"], expect["pred"]
    assert rep["misclassified"] == int((pred != y).sum())
    assert rep["accuracy"] == pytest.approx(accuracy_score(y, pred), rel=1e-15)
    with np.errstate(divide="ignore"):
        per = -np.log(expect["p_true"])
    ce = rep["cross_entropy"]["nats"]
    if np.isinf(per).any():
        assert ce == "inf"
    elif expect["logits"]:
        assert ce == pytest.approx(per.mean(), rel=1e-9, abs=1e-12)
    else:
        # scikit-learn's log_loss clips at the dtype's eps: equal wherever no probability is below it
        from sklearn.metrics import log_loss
        ref = log_loss(y, probs, labels=list(range(probs.shape[1]))) if expect["p_true"].min() > 1e-15 \
            else per.mean()
        assert ce == pytest.approx(ref, rel=1e-12, abs=1e-15)
    ref_brier = brier_score_loss(y, probs[:, 1] if expect["binary"] else probs,
                                 labels=list(range(probs.shape[1])))
    assert rep["brier"] == pytest.approx(ref_brier, rel=1e-9, abs=1e-15)
    COUNTS["scored like pandas + scikit-learn"] += 1


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

number_formats = st.sampled_from(["repr", ".3g", ".6f", "e", "spaced"])


@st.composite
def _scores(draw, k, logits):
    """One row of predictions: K logits, one probability, or K probabilities summing to 1."""
    if logits:
        return draw(st.lists(st.floats(-30, 30, allow_nan=False), min_size=k, max_size=k))
    if k == 1:
        return [draw(st.floats(0, 1))]
    raw = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
    s = sum(raw)
    return [v / s for v in raw] if s > 0 else [1.0 / k] * k


def _fmt(v, how):
    if how == "repr":
        return repr(float(v))
    if how == "spaced":
        return f" {float(v)!r} "
    return format(float(v), how)


@st.composite
def csv_files(draw):
    k = draw(st.integers(1, 5))
    n = draw(st.integers(1, 25))
    logits = draw(st.booleans())
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    fmt = draw(number_formats)
    if k == 1:
        names = ["logit"] if logits else ["p"]
    else:
        names = [f"{'z' if logits else 'p'}{j}" for j in range(k)]
    with_note = draw(st.booleans())
    note_alphabet = st.sampled_from(list("abc xyz\"'é,;|\t\n"))
    rows = []
    for _ in range(n):
        vals = draw(_scores(k, logits))
        label = draw(st.integers(0, 1 if k == 1 else k - 1))
        cells = [str(label)] + [_fmt(v, fmt) for v in vals]
        if with_note:
            cells.append(draw(st.text(note_alphabet, max_size=6)))
        rows.append(cells)
    # Injections: a bad cell, a bad label, a blank line.
    if draw(st.integers(0, 3)) == 0:
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(1, k))
        rows[i][j] = draw(st.sampled_from(BAD_CELLS))
    if draw(st.integers(0, 4)) == 0:
        rows[draw(st.integers(0, n - 1))][0] = draw(st.sampled_from(BAD_LABELS))
    header = ["label"] + names + (["note"] if with_note else [])
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delim, quoting=quoting if quoting != csv.QUOTE_NONNUMERIC else csv.QUOTE_MINIMAL,
                   lineterminator="\r\n" if draw(st.booleans()) else "\n")
    w.writerow(header)
    for r in rows:
        if quoting == csv.QUOTE_NONNUMERIC:
            r = [c if NUMBER.fullmatch(c) else f'"{c}"' if '"' not in c and delim not in c and "\n" not in c else c
                 for c in r]
        w.writerow(r)
    text = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        lines = text.split("\n")
        at = draw(st.integers(1, len(lines)))
        lines.insert(at, "")
        text = "\n".join(lines)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1"]))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data, delim, names


def csv_oracle(data: bytes, delim: str, names):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ERROR
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return ERROR
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
    except csv.Error:
        return ERROR
    records = [r for r in records if r and not (len(r) == 1 and not r[0].strip())]
    if not records or any(len(r) != len(records[0]) for r in records):
        return ERROR  # a row without the header's number of fields
    try:
        df = pd.read_csv(io.StringIO(text), sep=delim, dtype=str, keep_default_na=False, na_filter=False,
                         skip_blank_lines=True, engine="c", encoding_errors="strict")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return ERROR
    if [c.strip() for c in df.columns] != [c.strip() for c in records[0]] or \
            not set(["label"] + names) <= set(c.strip() for c in df.columns):
        return ERROR
    df.columns = [c.strip() for c in df.columns]
    return oracle_table([df[c].tolist() for c in names], df["label"].tolist(), names)


def _tally(kind, counts):
    """Both outcomes occurred (the generator reaches both sides); write the tally if asked."""
    assert counts["scored like pandas + scikit-learn"] > 0, dict(counts)
    assert sum(v for k, v in counts.items() if k.startswith("exit 2")) > 0, dict(counts)
    out = os.environ.get("CROSSENTROPY_FUZZ_COUNTS")
    if out:
        data = json.load(open(out)) if os.path.exists(out) else {}
        data[kind] = dict(counts)
        with open(out, "w") as f:
            json.dump(data, f, indent=2)


def test_fuzzed_csv(tmp_path_factory):
    COUNTS.clear()

    @SETTINGS
    @given(csv_files(), st.sampled_from(["auto", "arrow", "python"]))
    def prop(case, engine):
        data, delim, names = case
        path = tmp_path_factory.mktemp("fz") / "f.csv"
        path.write_bytes(data)
        expect = csv_oracle(data, delim, names)
        args = ["score", path, "--json", "--csv-engine", engine, "--chunk-rows", "3", "--no-progress"]
        if delim != ",":
            args += ["--delimiter", delim]
        check(run_inproc(args), expect, path)

    prop()
    _tally("csv", COUNTS)


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------

json_bad = st.sampled_from(["0.5", None, True, [0.5], {"a": 1}, 10 ** 400, float("nan"), float("inf"), "x"])


@st.composite
def jsonl_files(draw):
    k = draw(st.integers(1, 4))
    n = draw(st.integers(1, 20))
    logits = draw(st.booleans())
    as_list = draw(st.booleans()) and k > 1
    names = (["logit"] if logits else ["p"]) if k == 1 else [f"{'z' if logits else 'p'}{j}" for j in range(k)]
    list_key = "logits" if logits else "probs"
    lines = []
    for _ in range(n):
        vals = draw(_scores(k, logits))
        obj = {"label": draw(st.integers(0, 1 if k == 1 else k - 1))}
        if as_list:
            obj["logits" if logits else "probs"] = vals
        else:
            obj.update(zip(names, vals))
        if draw(st.booleans()):
            obj = dict(reversed(list(obj.items())))
        if draw(st.integers(0, 5)) == 0:
            obj["extra"] = draw(st.text(max_size=5))
        lines.append(obj)
    if draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, n - 1))
        key = draw(st.sampled_from(["label"] + ([list_key] if as_list else names)))
        if i > 0 and draw(st.integers(0, 4)) == 0:  # the first object names the columns
            del lines[i][key]
        else:
            lines[i][key] = draw(json_bad)
    text = "\n".join(json.dumps(o) for o in lines) + ("\n" if draw(st.booleans()) else "")
    if draw(st.integers(0, 5)) == 0:
        parts = text.split("\n")
        parts.insert(draw(st.integers(0, len(parts))), "")
        text = "\n".join(parts)
    data = text.encode("utf-8")
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data, ([list_key] * k if as_list else names), as_list


def jsonl_oracle(data: bytes, names, as_list):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ERROR
    objs = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError:
            return ERROR
        if not isinstance(o, dict):
            return ERROR
        objs.append(o)
    if not objs:
        return ERROR
    first = list(objs[0])
    cols = names[:1] if as_list else names
    if "label" not in first or any(c not in first for c in cols):
        return ERROR
    if any(c not in o for o in objs for c in ["label"] + cols):
        return ERROR
    df = pd.DataFrame(objs)
    if as_list:
        rows = df[names[0]].tolist()
        if any(not isinstance(r, list) or len(r) != len(names) for r in rows):
            return ERROR
        values = [[r[j] for r in rows] for j in range(len(names))]
        if any(isinstance(v, (list, dict)) for col in values for v in col):
            return ERROR
    else:
        values = [[o[c] for o in objs] for c in names]  # the parsed JSON values, as pandas holds them
    return oracle_table(values, df["label"].tolist() if df["label"].dtype == object else
                        [o["label"] for o in objs], names, text=False)


def test_fuzzed_jsonl(tmp_path_factory):
    COUNTS.clear()

    @SETTINGS
    @given(jsonl_files())
    def prop(case):
        data, names, as_list = case
        path = tmp_path_factory.mktemp("fz") / "f.jsonl"
        path.write_bytes(data)
        expect = jsonl_oracle(data, names, as_list)
        check(run_inproc(["score", path, "--json", "--chunk-rows", "2", "--no-progress"]), expect, path)

    prop()
    _tally("jsonl", COUNTS)
