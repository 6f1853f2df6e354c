"""What a prediction file holds, decided once from a fixed sample, then checked on every row.

:func:`detect_layout` looks at the column names and the first
``HEAD_ROWS = 1000`` rows — the same rows whatever ``--chunk-rows`` is — and
decides, each step overridable and recorded in ``Layout.reasons``:

* **label column** (``--label``): the one column named ``label``, ``y``,
  ``target``, ``class``, … (two such columns are ambiguous);
* **sample weights** (``--weight COL``; ``--weight none`` to ignore): a
  column named ``weight``, ``weights``, ``sample_weight`` or
  ``sample_weights``;
* **prediction columns** (``--columns``): one list column; else a family with
  a common prefix (``p0 p1 …``, ``prob_cat prob_dog``, ``logit_0 …``,
  ``score…``); else one column named ``p``, ``prob``, ``score``, ``logit``, …;
  else every other numeric column (named after its class);
* **probabilities or logits** (``--probs`` / ``--logits``): values decide.
  Every sample value in [0, 1] means probabilities — whatever the column is
  called, unless ``--logits`` says otherwise (then a warning says they look
  like probabilities); a value outside [0, 1] means logits, except in columns
  named like probabilities (``p*``, ``prob*``), where it is an error;
* **hard class predictions** (0/1 columns, one-hot rows, or integer class
  indices) are named as such and refused: cross-entropy needs probabilities
  (``--probs`` scores them anyway);
* **task**: one prediction column is binary (probability or logit of class
  1), several are multi-class with one column per class;
* **labels**: class indices ``0…K-1``, or class names matching the columns
  (``prob_cat`` ↔ ``cat``; ``--classes`` to give them; when every class name
  is a number, labels are matched by name only); binary labels may be 0/1,
  true/false, yes/no, or the positive class's name (``--positive``) and one
  other value.

:class:`Decoder` then turns every raw chunk into a checked
:class:`~.accumulators.Batch`: NaN or missing predictions, probabilities
outside [0, 1], ``+inf`` logits of a multi-class row, labels that are not a
class (``inf``, ``1e400`` and ``nan`` included), negative or non-finite
weights — each an error naming the file, the line or row, and the column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .accumulators import Batch
from .errors import PredictionFileError
from .readers._base import MISSING, NUMBER, Coded, RawChunk, token_problem

__all__ = ["Layout", "LayoutOptions", "detect_layout", "Decoder", "LABEL_NAMES", "WEIGHT_NAMES"]

LABEL_NAMES = ("label", "labels", "y", "y_true", "target", "targets", "class", "true", "truth", "true_label",
               "true_class", "ground_truth", "gt", "actual", "outcome")
WEIGHT_NAMES = ("weight", "weights", "sample_weight", "sample_weights")
ID_NAMES = ("id", "sample_id", "row_id", "uid", "key")
_PREFIX_RE = re.compile(
    r"^(?P<prefix>p|prob|probs|proba|probability|pred|pred_prob|y_prob|y_pred|y_score|yhat|logit|logits|score|scores|z)"
    r"(?:[_\-.:](?P<name>.+)|(?P<num>\d+))$", re.IGNORECASE)
_SINGLE_NAMES = ("p", "prob", "proba", "probability", "pred", "prediction", "y_prob", "y_pred", "y_score", "yhat",
                 "score", "logit", "logits", "z")
_LOGIT_NAMES = ("logit", "logits", "z")
_PROB_NAMES = ("p", "prob", "probs", "proba", "probability", "pred_prob", "y_prob")
_SKIP_NAMES = ("id", "index", "idx", "row", "sample", "sample_id", "row_id", "name", "key", "uid", "fold", "split")


@dataclass
class LayoutOptions:
    """What the user said about the file (``None``: detect)."""

    label: str | None = None
    columns: list | None = None
    logits: bool | None = None
    classes: list | None = None
    positive: str | None = None
    weight: str | None = None  # a column name, or "none" to ignore a weight column
    by: str | None = None
    ids: bool = False  # read an id column, if any (model comparison checks it)
    unnormalized: str = "warn"
    sum_tolerance: float = 1e-6


@dataclass
class Layout:
    """What a prediction file holds and how it was worked out (``reasons``)."""

    format: str
    label: str
    columns: list  # prediction column names (one name for a list column)
    list_column: bool
    logits: bool
    binary: bool
    class_names: list
    weight: str | None = None
    by: str | None = None
    id: str | None = None
    positive: str | None = None  # the label of class 1 when binary labels are names
    reasons: dict = field(default_factory=dict)
    numeric_names: bool = False  # every class name is an integer: labels match by name only

    @property
    def n_classes(self) -> int:
        return 2 if self.binary else len(self.class_names)

    def describe(self) -> dict:
        """The layout as a JSON-ready dict."""
        return {"format": self.format, "label_column": self.label, "prediction_columns": self.columns,
                "list_column": self.list_column, "input": "logits" if self.logits else "probabilities",
                "task": "binary" if self.binary else "multiclass", "n_classes": self.n_classes,
                "classes": list(self.class_names), "weight_column": self.weight, "by_column": self.by,
                "how": dict(self.reasons)}

    def plan(self) -> dict:
        """The columns to read and their kinds."""
        p = {self.label: "label"}
        for c in self.columns:
            p[c] = "floats" if self.list_column else "float"
        if self.weight:
            p[self.weight] = "float"
        if self.by:
            p[self.by] = "text"
        if self.id:
            p[self.id] = "text"
        return p


def _err(path, msg, **kw):
    return PredictionFileError(path, msg, **kw)


def _is_numeric(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiu"


def _is_list(a) -> bool:
    return isinstance(a, np.ndarray) and a.ndim == 2


def _natural_key(name):
    m = _PREFIX_RE.match(name)
    if m and m.group("num") is not None:
        return int(m.group("num"))
    suffix = (m.group("name") if m else name) or ""
    return int(suffix) if suffix.isdigit() else suffix


def _values_as_strings(a) -> list:
    """The distinct values of a raw label column, as the strings labels are compared by."""
    if isinstance(a, Coded):
        return [_label_key(v) for v in a.values]
    return [_label_key(v) for v in np.unique(np.asarray(a, dtype=object).astype(str))] if a.dtype == object \
        else [_label_key(v) for v in np.unique(a).tolist()]


def _label_key(x):
    """A label value as the string it is compared by (``""`` if missing)."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "nan"
        if math.isfinite(x) and x == int(x):
            return str(int(x))
        return repr(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return str(x).strip(" \t")


def _find_label(path, names, opts, reasons):
    if opts.label is not None:
        if opts.label not in names:
            raise _err(path, f"no column {opts.label!r} (columns: {', '.join(names)})")
        reasons["label"] = "named by --label"
        return opts.label
    found = [n for n in names if n.lower() in LABEL_NAMES]
    if not found:
        raise _err(path, f"no label column found (looked for {', '.join(LABEL_NAMES[:8])}, ...; columns: "
                         f"{', '.join(names)}); name it with --label")
    if len(found) > 1:
        raise _err(path, f"ambiguous label column: {', '.join(found)} all look like labels; choose one with --label")
    reasons["label"] = f"column named {found[0]!r}"
    return found[0]


def _find_weight(path, names, opts, reasons, taken):
    w = opts.weight
    if w is not None and w.lower() == "none":
        reasons["weight"] = "ignored (--weight none)"
        return None
    if w is not None:
        if w not in names:
            raise _err(path, f"no column {w!r} for --weight (columns: {', '.join(names)})")
        if w in taken:
            raise _err(path, f"--weight {w!r} is already the label or by column")
        reasons["weight"] = "named by --weight"
        return w
    found = [n for n in names if n.lower() in WEIGHT_NAMES and n not in taken]
    if len(found) > 1:
        raise _err(path, f"ambiguous weight column: {', '.join(found)}; choose with --weight COL (or --weight none)")
    if found:
        reasons["weight"] = f"column named {found[0]!r} (sample weights; --weight none ignores it)"
        return found[0]
    return None


def _find_columns(path, rest, listcols, head):
    if len(listcols) == 1:
        name = listcols[0].lower()
        return listcols, name if name in _LOGIT_NAMES + _PROB_NAMES else None, f"the only list column, {listcols[0]!r}"
    if len(listcols) > 1:
        raise _err(path, f"ambiguous prediction columns: list columns {', '.join(listcols)}; choose with --columns")
    groups: dict = {}
    for n in rest:
        m = _PREFIX_RE.match(n)
        if m:
            groups.setdefault(m.group("prefix").lower(), []).append(n)
    if len(groups) == 1:
        prefix, cols = next(iter(groups.items()))
        keys = [_natural_key(c) for c in cols]
        if all(isinstance(k, int) for k in keys):
            cols = [c for _, c in sorted(zip(keys, cols))]
        return cols, prefix, f"{len(cols)} column(s) named {prefix}*"
    if len(groups) > 1:
        listed = "; ".join(f"{p}*: {', '.join(c)}" for p, c in groups.items())
        raise _err(path, f"ambiguous prediction columns: {listed}; choose with --columns")
    single = [n for n in rest if n.lower() in _SINGLE_NAMES]
    if len(single) == 1:
        return single, single[0].lower(), f"column named {single[0]!r}"
    if len(single) > 1:
        raise _err(path, f"ambiguous prediction columns: {', '.join(single)}; choose with --columns")
    numeric = [n for n in rest if n.lower() not in _SKIP_NAMES and _is_numeric(head.columns[n])]
    if not numeric:
        raise _err(path, f"no prediction columns found (columns: {', '.join(rest)}); name them with --columns")
    return numeric, None, "every other numeric column, named after its class"


def _sample_scores(path, head, columns, is_list):
    """The head's predictions as a float matrix (rows, K)."""
    if is_list:
        a = head.columns[columns[0]]
        if not _is_list(a):
            k = None
            for i, v in enumerate(a):
                if not isinstance(v, (list, tuple)):
                    raise _err(path, "is missing" if v is None else f"expected a list of numbers, found {v!r}",
                               column=columns[0], **head.where(i))
                k = len(v) if k is None else k
                if len(v) != k:
                    raise _err(path, f"the list has {len(v)} values, expected {k}", column=columns[0],
                               **head.where(i))
                for x in v:
                    if isinstance(x, bool) or not isinstance(x, (int, float)):
                        raise _err(path, f"{x!r} in the list is not a number", column=columns[0], **head.where(i))
            raise _err(path, "the list column holds values that are not numbers", column=columns[0])
        return a.astype(np.float64)
    cols = []
    for c in columns:
        a = head.columns[c]
        if _is_list(a):
            raise _err(path, "a list column cannot be one of several prediction columns", column=c)
        if not _is_numeric(a):
            i, bad = _first_non_number(a)
            if bad is MISSING:
                what = "missing key"
            elif isinstance(bad, str) and isinstance(a, Coded):
                what = token_problem(bad)  # a text token: the reader's own words (and hints)
            else:
                what = "is missing" if bad is None else f"{bad!r} is not a number"
            raise _err(path, what, column=c, **head.where(i))
        cols.append(a.astype(np.float64))
    return np.stack(cols, axis=1) if cols else np.empty((0, 0))


def _first_non_number(a):
    """``(row, value)`` of the first value of a raw column that is not a number."""
    text = isinstance(a, Coded)  # text tokens (CSV): a number is what the grammar accepts
    seq = (a.values[c] for c in a.codes) if text else iter(a)
    for i, v in enumerate(seq):
        if v is None or v is MISSING or isinstance(v, (bool, np.bool_, list, dict)):
            return i, v
        if isinstance(v, str):
            if not text or NUMBER.fullmatch(v) is None:  # in JSON a string is never a number
                return i, v
            continue
        try:
            float(v)
        except (TypeError, ValueError, OverflowError):
            return i, v
    return 0, None


def detect_layout(path, fmt, names, head: RawChunk, opts: LayoutOptions):
    """``(Layout, warnings)`` from the column names and the fixed head sample."""
    if head.n == 0:
        raise _err(path, "no data rows")
    reasons: dict = {}
    warnings: list = []
    label = _find_label(path, names, opts, reasons)
    by = None
    if opts.by is not None:
        if opts.by not in names:
            raise _err(path, f"no column {opts.by!r} for --by (columns: {', '.join(names)})")
        if opts.by == label:
            raise _err(path, "--by names the label column; slice by another column")
        by = opts.by
        reasons["by"] = "named by --by"
    weight = _find_weight(path, names, opts, reasons, {label, by})
    taken = {label, by, weight}
    ident = next((n for n in names if n.lower() in ID_NAMES and n not in taken), None) if opts.ids else None
    rest = [n for n in names if n not in taken]
    listcols = [n for n in rest if _is_list(head.columns[n]) or (
        isinstance(head.columns[n], np.ndarray) and head.columns[n].dtype == object and head.n
        and isinstance(head.columns[n][0], (list, tuple)))]
    prefix = None
    if opts.columns is not None:
        columns = list(opts.columns)
        for c in columns:
            if c not in names:
                raise _err(path, f"no column {c!r} (columns: {', '.join(names)})")
            if c in taken:
                raise _err(path, f"--columns names {c!r}, which is the label, weight or by column")
        reasons["columns"] = "named by --columns"
    else:
        columns, prefix, reasons["columns"] = _find_columns(path, rest, listcols, head)
    is_list = len(columns) == 1 and columns[0] in listcols
    if not is_list and any(c in listcols for c in columns):
        raise _err(path, f"list column {[c for c in columns if c in listcols][0]!r} cannot be combined with other "
                         "prediction columns")
    x = _sample_scores(path, head, columns, is_list)
    k = x.shape[1]
    if k < 1:
        raise _err(path, "the prediction list is empty", column=columns[0])
    binary = k == 1
    col_names = [columns[0]] * k if is_list else list(columns)
    n_head = head.n
    nan = np.isnan(x)
    if nan.any():
        i, j = (int(t) for t in np.argwhere(nan)[0])
        raise _err(path, "value is NaN", column=col_names[j], **head.where(i))
    # -- probabilities or logits: the values decide -----------------------------------
    finite = np.isfinite(x)
    inside = bool(np.all((x[finite] >= 0.0) & (x[finite] <= 1.0))) and bool(finite.all())
    named_probs, named_logits = prefix in _PROB_NAMES, prefix in _LOGIT_NAMES
    if opts.logits is True:
        logits = True
        reasons["input"] = "set by --logits"
        if inside:
            warnings.append(f"--logits is given, but every value of the first {n_head} rows lies in [0, 1]: these "
                            "look like probabilities (drop --logits to score them as such)")
    elif opts.logits is False:
        logits = False
        reasons["input"] = "set by --probs"
    elif inside:
        logits = False
        reasons["input"] = f"every value of the first {n_head} rows is in [0, 1]"
        if named_logits:
            reasons["input"] += f" (columns named {prefix}*: pass --logits if they are logits)"
            warnings.append(f"columns named {prefix}* hold only values in [0, 1] in the first {n_head} rows: "
                            "scored as probabilities (pass --logits if they are logits)")
    else:
        bad = np.argwhere(~((x >= 0.0) & (x <= 1.0)))[0]
        i, j = int(bad[0]), int(bad[1])
        if named_probs:
            raise _err(path, f"probability {float(x[i, j])!r} is outside [0, 1] (the column is named like "
                             "probabilities; if these are logits, pass --logits)", column=col_names[j],
                       **head.where(i))
        logits = True
        reasons["input"] = f"values outside [0, 1] in the first {n_head} rows (e.g. {float(x[i, j]):g})"
    # -- hard class predictions ----------------------------------------------------------
    if opts.logits is None:
        _refuse_hard_predictions(path, x, head, col_names, binary, label, logits)
    # -- class names ------------------------------------------------------------------------
    positive = None
    if binary:
        pos = opts.positive
        if pos is None and prefix is None and not is_list and not _PREFIX_RE.match(columns[0]) \
                and columns[0].lower() not in _SINGLE_NAMES:
            pos = columns[0]  # a column named after the positive class
        elif pos is None and prefix is not None and _PREFIX_RE.match(columns[0]):
            m = _PREFIX_RE.match(columns[0])
            pos = m.group("name") or m.group("num")  # type: ignore[union-attr]  # matched in the elif
        if pos is None or str(pos) in ("1", "true", "True"):
            class_names = ["0", "1"]
        else:
            positive = str(pos)
            class_names = ["not " + positive, positive]
        reasons["task"] = "one prediction column: binary, the column is class 1" + (
            f" ({positive!r})" if positive else "")
    else:
        if opts.classes is not None:
            class_names = [str(c) for c in opts.classes]
            if len(class_names) != k:
                raise _err(path, f"--classes names {len(class_names)} classes but there are {k} prediction columns")
        elif is_list:
            class_names = [str(i) for i in range(k)]
        else:
            class_names = []
            for c in columns:
                m = _PREFIX_RE.match(c)
                class_names.append((m.group("name") or m.group("num")) if m and prefix else c)
        if len(set(class_names)) != len(class_names):
            raise _err(path, f"two prediction columns name the same class ({', '.join(class_names)}); name the "
                             "classes with --classes")
        reasons["task"] = f"{k} prediction values per row: multi-class"
    numeric_names = all(re.fullmatch(r"[0-9]+", c) for c in class_names) and not binary and \
        class_names != [str(i) for i in range(k)]
    lay = Layout(fmt, label, list(columns), is_list, bool(logits), binary, class_names, weight, by, ident,
                 positive, reasons, numeric_names)
    if binary and positive is not None:
        # The negative class is the one other label value of the sample, if it shows.
        others = [v for v in _values_as_strings(head.columns[label]) if v and v != positive]
        if len(others) == 1:
            lay.class_names[0] = others[0]
    return lay, warnings


def _refuse_hard_predictions(path, x, head, col_names, binary, label, logits):
    """0/1 columns, one-hot rows or integer class indices are predictions of a class, not probabilities."""
    if x.size == 0 or not np.isfinite(x).all():
        return
    ints = bool(np.all(x == np.round(x)))
    if not ints:
        return
    what = None
    if not logits:
        if binary and np.all((x == 0.0) | (x == 1.0)):
            what = "only the values 0 and 1"
        elif not binary and np.all((x == 0.0) | (x == 1.0)) and np.all(x.sum(axis=1) == 1.0):
            what = "one 1 per row and 0 elsewhere (one-hot)"
    elif binary:
        lab = head.columns[label]
        vals = np.unique(x)
        if vals.min() >= 0 and vals.size >= 2 and _is_numeric(lab) and np.all(lab == np.round(lab)) \
                and set(vals.tolist()) <= set(np.unique(lab).tolist()) | set(range(int(vals.max()) + 1)):
            what = f"whole numbers {', '.join(f'{v:g}' for v in vals[:6])}{', ...' if vals.size > 6 else ''} " \
                   "like the labels"
    if what is None:
        return
    raise _err(path, f"the predictions hold {what} in the first {head.n} rows: these look like hard class "
                     "predictions, not probabilities or logits. Cross-entropy needs the predicted probability of "
                     "each class (a wrong 0/1 prediction costs an infinite loss); score the model's probabilities "
                     "or logits, or pass --probs to score these as probabilities anyway",
               column=col_names[0])


# ---------------------------------------------------------------------------------------------
# Decoding every chunk
# ---------------------------------------------------------------------------------------------

class Decoder:
    """Checks raw chunks against a layout and turns them into :class:`~.accumulators.Batch` es."""

    def __init__(self, path, layout: Layout, opts: LayoutOptions):
        self.path, self.lay, self.opts = path, layout, opts
        self.unnormalized, self.tol = opts.unnormalized, float(opts.sum_tolerance)
        self.warnings: list = []
        self.bad_sums = 0
        self.first_bad_sum: tuple[dict, float] | None = None
        self._index = {name: i for i, name in enumerate(layout.class_names)}
        if layout.binary and layout.positive is not None and layout.class_names[0] != "not " + layout.positive:
            self._neg = layout.class_names[0]
        else:
            self._neg = None

    # -- predictions -----------------------------------------------------------------------

    def _scores(self, raw: RawChunk) -> np.ndarray:
        """The chunk's predictions, checked: ``(n,)`` (binary) or ``(n, K)``.

        Multi-class scores are built class-major — a ``(K, n)`` C-contiguous
        array, of which the ``(n, K)`` result is the transposed view — since
        the columns arrive one by one and most per-class work reads them whole.
        """
        lay = self.lay
        if lay.list_column:
            x = raw.columns[lay.columns[0]]
            if x.ndim != 2:
                raise _err(self.path, "expected a list of numbers", column=lay.columns[0])
            if x.shape[1] != (1 if lay.binary else lay.n_classes):
                raise _err(self.path, f"the list has {x.shape[1]} values, expected {lay.n_classes}",
                           column=lay.columns[0], **raw.where(0))
            names = [lay.columns[0]] * x.shape[1]
            xt = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
        else:
            names = lay.columns
            xt = np.empty((len(names), raw.n), dtype=np.float64)
            for j, c in enumerate(names):
                xt[j] = raw.columns[c]
        if not lay.logits:
            # One pass finds both NaN and values outside [0, 1] (a NaN fails both comparisons).
            ok = xt >= 0.0
            ok &= xt <= 1.0
            if not ok.all():
                j, i = (int(t) for t in np.argwhere(~ok)[0])
                v = float(xt[j, i])
                if math.isnan(v):
                    raise _err(self.path, "value is NaN", column=names[j], **raw.where(i))
                raise _err(self.path, f"probability {v!r} is outside [0, 1] (if these are logits, pass --logits)",
                           column=names[j], **raw.where(i))
            if not lay.binary and self.unnormalized != "ignore":
                s = xt[0].copy()
                for k in range(1, xt.shape[0]):  # a fixed order of additions per row
                    s += xt[k]
                off = np.abs(s - 1.0) > self.tol
                if off.any():
                    i = int(np.flatnonzero(off)[0])
                    if self.unnormalized == "error":
                        raise _err(self.path, f"probabilities sum to {float(s[i])!r}, not 1 (tolerance {self.tol:g})",
                                   **raw.where(i))
                    if self.first_bad_sum is None:
                        self.first_bad_sum = (raw.where(i), float(s[i]))
                    self.bad_sums += int(np.count_nonzero(off))
        else:
            nan = np.isnan(xt)
            if nan.any():
                j, i = (int(t) for t in np.argwhere(nan)[0])
                raise _err(self.path, "value is NaN", column=names[j], **raw.where(i))
            if not lay.binary:
                pinf = np.isposinf(xt)
                if pinf.any():
                    j, i = (int(t) for t in np.argwhere(pinf)[0])
                    raise _err(self.path, "logit is +inf (the softmax of this row is undefined)", column=names[j],
                               **raw.where(i))
        return xt[0] if lay.binary else xt.T

    # -- labels ----------------------------------------------------------------------------

    def _code_of(self, key: str):
        """The class index of a label value (its comparison string), or None."""
        lay = self.lay
        if not key:
            return None
        if key in self._index:
            return self._index[key]
        if lay.binary:
            low = key.lower()
            if lay.positive is None:
                if low in ("true", "yes"):
                    return 1
                if low in ("false", "no"):
                    return 0
            elif key == lay.positive:
                return 1
            else:
                # Any one other value is the negative class; a second one is an error.
                if self._neg is None:
                    self._neg = key
                    lay.class_names[0] = key
                    self._index = {name: i for i, name in enumerate(lay.class_names)}
                    return 0
                return None
        if NUMBER.fullmatch(key):
            # A number that is a whole number names a class by its name ("2.0" is "2") or by its index.
            f = float(key)
            if not (math.isfinite(f) and f == int(f)):
                return None
            name = str(int(f))
            if name in self._index:
                return self._index[name]
            if not lay.numeric_names and 0 <= f < lay.n_classes:
                return int(f)
        return None

    def _labels(self, raw: RawChunk) -> np.ndarray:
        lay, name = self.lay, self.lay.label
        v = raw.columns[name]
        if isinstance(v, Coded):
            codes = np.array([self._code_or_bad(_label_key(u)) for u in v.values], dtype=np.int64)
            out = codes[v.codes] if len(v.values) else np.empty(0, dtype=np.int64)
            bad = out < 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                self._bad_label(raw, i, v.values[v.codes[i]])
            return out
        if isinstance(v, np.ndarray) and v.ndim != 1:
            raise _err(self.path, "the label column must hold one value per row", column=name)
        if isinstance(v, np.ndarray) and v.dtype.kind in "fiub" and not (lay.binary and lay.positive is not None) \
                and not lay.numeric_names:
            if v.dtype.kind == "b":
                if not lay.binary:
                    self._bad_label(raw, 0, bool(v[0]))
                return v.astype(np.int64)
            f = v.astype(np.float64)
            with np.errstate(invalid="ignore"):
                bad = ~(np.isfinite(f) & (f == np.round(f)) & (f >= 0) & (f < lay.n_classes))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                self._bad_label(raw, i, v[i])
            return f.astype(np.int64)
        vals = np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v
        keys = [_label_key(u) for u in (vals.tolist() if isinstance(vals, np.ndarray) else vals)]
        cache: dict = {}
        out = np.empty(len(keys), dtype=np.int64)
        for i, key in enumerate(keys):
            c = cache.get(key)
            if c is None:
                c = cache[key] = self._code_or_bad(key)
            if c < 0:
                self._bad_label(raw, i, vals[i])
            out[i] = c
        return out

    def _code_or_bad(self, key):
        c = self._code_of(key)
        return -1 if c is None else c

    def _bad_label(self, raw, i, value):
        lay = self.lay
        shown = _label_key(value) if not isinstance(value, str) else value
        if value is None or (isinstance(value, str) and not value.strip()):
            msg = "label is missing"
        elif lay.binary:
            if lay.positive is None:
                msg = f"label {shown!r} is not a class of this binary task (expected 0/1, true/false or yes/no"
                if NUMBER.fullmatch(shown):
                    msg += ")"
                else:
                    msg += "; if it names the positive class, pass --positive " + _shell(shown) + ")"
            else:
                msg = (f"label {shown!r} is a third value: the binary task has {lay.positive!r} (class 1) and "
                       f"{self._neg!r} (class 0)")
        else:
            listed = ", ".join(lay.class_names[:12]) + (", ..." if len(lay.class_names) > 12 else "")
            idx = "" if lay.numeric_names else f"; or an index 0..{lay.n_classes - 1}"
            msg = f"label {shown!r} is not one of the {lay.n_classes} classes ({listed}{idx})"
        raise _err(self.path, msg, column=lay.label, **raw.where(i))

    # -- weights ---------------------------------------------------------------------------

    def _weights(self, raw: RawChunk):
        name = self.lay.weight
        if not name:
            return None
        w = np.asarray(raw.columns[name], dtype=np.float64)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "NaN" if np.isnan(w[i]) else f"{float(w[i])!r}"
            raise _err(self.path, f"sample weight {what} must be a finite number >= 0", column=name, **raw.where(i))
        return w

    def _text(self, raw: RawChunk, name):
        v = raw.columns[name]
        if isinstance(v, Coded):
            return np.asarray(["" if s is None else str(s) for s in v.values], dtype=object)[v.codes] \
                if len(v.values) else np.empty(0, dtype=object)
        return np.asarray([_label_key(u) for u in np.asarray(v, dtype=object).tolist()], dtype=object)

    def decode(self, raw: RawChunk, row_offset: int = 0, part: int = 0) -> Batch:
        """Validate one raw chunk; ``row_offset`` is the dataset row of the part's first row."""
        x = self._scores(raw)
        y = self._labels(raw)
        w = self._weights(raw)
        by = self._text(raw, self.lay.by) if self.lay.by else None
        ids = self._text(raw, self.lay.id) if self.lay.id else None
        rows = np.arange(row_offset + raw.first_row, row_offset + raw.first_row + raw.n, dtype=np.int64)
        return Batch(x, y, w, rows, raw.lines, part, by, ids)

    def finish(self) -> list:
        """Warnings to show once the whole file has been read."""
        if self.bad_sums:
            where, s = self.first_bad_sum  # type: ignore[misc]  # set with the first bad sum
            loc = f"line {where['line']}" if "line" in where else f"row {where['row']}"
            self.warnings.append(f"{self.path}: {self.bad_sums} row(s) of probabilities do not sum to 1 (first: "
                                 f"{loc}, sum {s!r}); the loss uses them as given (--unnormalized error refuses "
                                 "them, --compat keras renormalises)")
        return self.warnings


def _shell(s: str) -> str:
    return s if re.fullmatch(r"[A-Za-z0-9_.:-]+", s) else repr(s)
