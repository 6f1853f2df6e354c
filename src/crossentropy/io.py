"""Prediction files, streamed: CSV/TSV, Parquet, NPY/NPZ and JSON Lines.

:class:`PredictionFile` opens a file of labels and predicted probabilities or
logits, works out its layout from the column names and the first chunk of
values (or from what the caller names), and yields it as bounded chunks of
``(scores, labels)`` ready for :class:`crossentropy.metrics.ScoreAccumulator`.

Layout detection, in order (each step can be overridden):

* **format** from the extension (``.csv``, ``.tsv``/``.tab``, ``.parquet``/
  ``.pq``, ``.npy``, ``.npz``, ``.jsonl``/``.ndjson``), else from the file's
  magic bytes;
* **label column** by name: ``label``, ``y``, ``target``, ``class``, ... (one
  match required; two are ambiguous);
* **prediction columns**: one list column; else a family named by a common
  prefix — ``p0 p1 …``, ``prob_cat prob_dog``, ``logit_0 …``, ``score*``; else
  one column named ``p``/``prob``/``logit``/...; else every other numeric
  column (then the column names are the class names);
* **probabilities or logits**: from the prefix (``logit*``/``score*`` are
  logits, ``p*``/``prob*`` probabilities), otherwise from the range — a value
  outside [0, 1] in the first chunk means logits;
* **task**: one prediction column is binary (the probability or logit of
  class 1), several are multi-class with one column per class.

Every problem in the data raises :class:`PredictionFileError` naming the file,
the line (text formats) or row, and the column.  Nothing is ever unpickled:
NumPy files are read with ``allow_pickle=False`` and object arrays refused.
Parquet needs :mod:`pyarrow` (``pip install 'crossentropy[io]'``); the other
formats need only NumPy.

>>> import os, tempfile
>>> d = tempfile.mkdtemp(); f = os.path.join(d, "pred.csv")
>>> _ = open(f, "w").write("label,p0,p1\\n0,0.8,0.2\\n1,0.4,0.6\\n")
>>> pf = PredictionFile(f)
>>> pf.layout.label, pf.layout.columns, pf.layout.logits, pf.layout.binary
('label', ['p0', 'p1'], False, False)
>>> [(b.scores.tolist(), b.labels.tolist()) for b in pf]
[([[0.8, 0.2], [0.4, 0.6]], [0, 1])]
"""

from __future__ import annotations

import csv
import json
import os
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ._errors import CrossEntropyError

__all__ = ["PredictionFileError", "PredictionFile", "Layout", "Batch", "detect_format", "FORMATS"]

FORMATS = ("csv", "tsv", "parquet", "npy", "npz", "jsonl")
DEFAULT_CHUNK_ROWS = 16384  # CSV chunks cost ~2 KB a row as Python strings: ~35 MB

_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
        ".npy": "npy", ".npz": "npz", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_LABEL_NAMES = ("label", "labels", "y", "y_true", "target", "targets", "class", "true", "truth", "true_label",
                "true_class", "ground_truth", "gt", "actual", "outcome")
_PREFIX_RE = re.compile(
    r"^(?P<prefix>p|prob|probs|proba|probability|pred|pred_prob|y_prob|y_pred|y_score|yhat|logit|logits|score|scores|z)"
    r"(?:[_\-.:](?P<name>.+)|(?P<num>\d+))$", re.IGNORECASE)
_SINGLE_NAMES = ("p", "prob", "proba", "probability", "pred", "prediction", "y_prob", "y_pred", "y_score", "yhat",
                 "score", "logit", "logits", "z")
_LOGIT_PREFIXES = ("logit", "logits", "score", "scores", "z", "y_score")
_PROB_PREFIXES = ("p", "probs", "prob", "probs", "proba", "probability", "pred_prob", "y_prob")
_ID_NAMES = ("id", "index", "idx", "row", "sample", "sample_id", "name", "key", "uid", "weight", "fold", "split")


class PredictionFileError(CrossEntropyError, ValueError):
    """A prediction file that cannot be scored: unreadable, malformed or inconsistent.

    The message names the file and, where it applies, the line (text formats,
    1-based, the header is line 1) or data row (1-based) and the column.

    >>> str(PredictionFileError("a.csv", "'x' is not a number", line=3, column="p1"))
    "a.csv: line 3, column 'p1': 'x' is not a number"
    """

    def __init__(self, path, message, *, line=None, row=None, column=None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        loc = (", ".join(where) + ": ") if where else ""
        super().__init__(f"{path}: {loc}{message}")
        self.path, self.line, self.row, self.column = str(path), line, row, column


# ---------------------------------------------------------------------------------------------
# Raw readers: each yields _Raw chunks of named columns, in file order.
# ---------------------------------------------------------------------------------------------

@dataclass
class _Raw:
    columns: dict  # name -> 1-D array (any dtype) or 2-D float array (list column)
    first_row: int  # 1-based data row number of the chunk's first row
    lines: np.ndarray | None = None  # line number of each row (text formats)

    def __len__(self):
        for v in self.columns.values():
            return len(v)
        return 0


def detect_format(path: str) -> str:
    """The format of ``path`` from its extension, else from its first bytes.

    >>> detect_format("scores.TSV"), detect_format("x.ndjson")
    ('tsv', 'jsonl')
    """
    ext = os.path.splitext(str(path))[1].lower()
    if ext in _EXT:
        return _EXT[ext]
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise PredictionFileError(path, f"cannot read: {e.strerror or e}") from None
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


class _ByteLines:
    """Lines of a binary file decoded as UTF-8, counting the bytes consumed."""

    def __init__(self, path, fb):
        self.path, self.fb, self.done, self.lineno = path, fb, 0, 0

    def __iter__(self):
        for raw in self.fb:
            self.done += len(raw)
            self.lineno += 1
            if self.lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise PredictionFileError(self.path, f"not UTF-8 text ({e.reason} at byte {e.start})",
                                          line=self.lineno) from None


class _CsvReader:
    def __init__(self, path, delimiter, chunk_rows):
        self.path, self.chunk_rows = path, chunk_rows
        self.fb = _open(path)
        self.total = _size(path)
        self.src = _ByteLines(path, self.fb)
        self.reader = csv.reader(self.src, delimiter=delimiter)
        try:
            header = next(self.reader)
        except StopIteration:
            raise PredictionFileError(path, "the file is empty (expected a header line)") from None
        except csv.Error as e:
            raise PredictionFileError(path, f"malformed CSV: {e}", line=self.reader.line_num) from None
        self.names = [h.strip() for h in header]
        _check_names(path, self.names, line=1)

    def progress(self):
        return self.src.done, self.total

    def __iter__(self):
        width, row_no = len(self.names), 1
        while True:
            rows, lines = [], []
            try:
                for rec in self.reader:
                    if not rec or (len(rec) == 1 and not rec[0].strip()):
                        continue  # blank line
                    if len(rec) != width:
                        raise PredictionFileError(self.path, f"expected {width} fields as in the header, found "
                                                  f"{len(rec)}", line=self.reader.line_num)
                    rows.append(rec)
                    lines.append(self.reader.line_num)
                    if len(rows) == self.chunk_rows:
                        break
            except csv.Error as e:
                raise PredictionFileError(self.path, f"malformed CSV: {e}", line=self.reader.line_num) from None
            if not rows:
                return
            cols = list(zip(*rows))
            yield _Raw({n: np.array(c, dtype=object) for n, c in zip(self.names, cols)}, row_no,
                       np.array(lines, dtype=np.int64))
            row_no += len(rows)

    def close(self):
        self.fb.close()


class _JsonlReader:
    def __init__(self, path, chunk_rows):
        self.path, self.chunk_rows = path, chunk_rows
        self.fb = _open(path)
        self.total = _size(path)
        self.src = _ByteLines(path, self.fb)
        self.it = iter(self.src)
        self.first = None
        for text in self.it:
            if text.strip():
                self.first = (self.src.lineno, self._parse(text, self.src.lineno))
                break
        if self.first is None:
            raise PredictionFileError(path, "the file is empty (no JSON objects)")
        self.names = list(self.first[1].keys())
        _check_names(path, self.names, line=self.first[0])

    def _parse(self, text, lineno):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise PredictionFileError(self.path, f"invalid JSON ({e.msg} at character {e.pos + 1})",
                                      line=lineno) from None
        if not isinstance(obj, dict):
            raise PredictionFileError(self.path, f"expected a JSON object per line, found {type(obj).__name__}",
                                      line=lineno)
        return obj

    def progress(self):
        return self.src.done, self.total

    def _objects(self):
        if self.first is not None:
            yield self.first
            self.first = None
        for text in self.it:
            if text.strip():
                yield self.src.lineno, self._parse(text, self.src.lineno)

    def __iter__(self):
        row_no = 1
        objs = self._objects()
        while True:
            chunk = []
            for item in objs:
                chunk.append(item)
                if len(chunk) == self.chunk_rows:
                    break
            if not chunk:
                return
            cols = {}
            for n in self.names:
                vals = []
                for lineno, obj in chunk:
                    if n not in obj:
                        raise PredictionFileError(self.path, "missing key", line=lineno, column=n)
                    vals.append(obj[n])
                arr = np.empty(len(vals), dtype=object)
                arr[:] = vals
                cols[n] = arr
            yield _Raw(cols, row_no, np.array([ln for ln, _ in chunk], dtype=np.int64))
            row_no += len(chunk)

    def close(self):
        self.fb.close()


class _NpyReader:
    def __init__(self, path, chunk_rows):
        self.path, self.chunk_rows = path, chunk_rows
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            if "pickle" in str(e).lower() or "object" in str(e).lower():
                raise PredictionFileError(path, "holds Python objects; refusing to unpickle") from None
            raise PredictionFileError(path, f"not a readable .npy file: {e}") from None
        except OSError as e:
            raise PredictionFileError(path, f"cannot read: {e.strerror or e}") from None
        if not isinstance(a, np.ndarray):
            raise PredictionFileError(path, "not a .npy array file")
        if a.dtype.names:
            if a.ndim != 1:
                raise PredictionFileError(path, f"a structured array must be 1-D; got shape {a.shape}")
            self.names = list(a.dtype.names)
            self.get = lambda s: {n: np.asarray(a[n][s]) for n in self.names}
        elif a.ndim == 2:
            # A plain matrix has no names: its columns are col0, col1, ...
            self.names = [f"col{i}" for i in range(a.shape[1])]
            self.get = lambda s: {n: np.asarray(a[s, i]) for i, n in enumerate(self.names)}
        else:
            raise PredictionFileError(path, f"expected a structured 1-D array or a 2-D matrix; got shape {a.shape}")
        self.n = a.shape[0]
        self.done = 0

    def progress(self):
        return self.done, self.n

    def __iter__(self):
        for start in range(0, self.n, self.chunk_rows):
            s = slice(start, min(start + self.chunk_rows, self.n))
            raw = _Raw(self.get(s), start + 1)
            self.done = s.stop
            yield raw

    def close(self):
        pass


class _NpzReader:
    """Each member array is a column (2-D members are list columns), streamed from the zip."""

    def __init__(self, path, chunk_rows):
        self.path, self.chunk_rows = path, chunk_rows
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise PredictionFileError(path, f"not a readable .npz file: {e}") from None
        self.members = {}
        for m in self.zf.namelist():
            if not m.endswith(".npy"):
                continue
            f = self.zf.open(m)
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    shape, fortran, dtype = np.lib.format._read_array_header(f, version)
            except ValueError as e:
                raise PredictionFileError(path, f"member {m!r} is not a .npy array: {e}") from None
            if dtype.hasobject:
                raise PredictionFileError(path, f"member {m!r} holds Python objects; refusing to unpickle")
            if len(shape) not in (1, 2):
                raise PredictionFileError(path, f"member {m!r} must be 1-D or 2-D; got shape {shape}")
            self.members[m[:-4]] = [f, shape, fortran, dtype]
        if not self.members:
            raise PredictionFileError(path, "the archive holds no arrays")
        self.names = list(self.members)
        lengths = {n: v[1][0] for n, v in self.members.items()}
        if len(set(lengths.values())) != 1:
            raise PredictionFileError(path, "arrays have different lengths: "
                                      + ", ".join(f"{n}={k}" for n, k in lengths.items()))
        self.n = next(iter(lengths.values()))
        for n, v in self.members.items():
            f, shape, fortran, dtype = v
            if fortran and len(shape) == 2:
                # Column-major data cannot be read row by row; this member is
                # read whole (the only case that is not streamed).
                buf = f.read()
                v[0] = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F")
        self.done = 0

    def progress(self):
        return self.done, self.n

    def __iter__(self):
        for start in range(0, self.n, self.chunk_rows):
            k = min(self.chunk_rows, self.n - start)
            cols = {}
            for n, (f, shape, fortran, dtype) in self.members.items():
                if isinstance(f, np.ndarray):
                    cols[n] = f[start:start + k]
                    continue
                width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
                nbytes = k * width * dtype.itemsize
                buf = f.read(nbytes)
                if len(buf) != nbytes:
                    raise PredictionFileError(self.path, f"member {n!r} is truncated", row=start + 1)
                cols[n] = np.frombuffer(buf, dtype=dtype).reshape((k,) + tuple(shape[1:]))
            self.done = start + k
            yield _Raw(cols, start + 1)

    def close(self):
        self.zf.close()


class _ParquetReader:
    def __init__(self, path, chunk_rows):
        self.path, self.chunk_rows = path, chunk_rows
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise PredictionFileError(path, "reading Parquet needs pyarrow: pip install 'crossentropy[io]'") from None
        self.pa = pa
        try:
            self.pf = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise PredictionFileError(path, f"not a readable Parquet file: {e}") from None
        self.names = list(self.pf.schema_arrow.names)
        _check_names(path, self.names)
        self.n = self.pf.metadata.num_rows
        self.done = 0

    def progress(self):
        return self.done, self.n

    def _column(self, arr, name, first_row):
        pa = self.pa
        t = arr.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            import pyarrow.compute as pc

            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            lengths = np.where(np.isnan(lengths.astype(np.float64)), -1, lengths).astype(np.int64)
            k = int(lengths[0]) if len(lengths) else 0
            bad = np.flatnonzero(lengths != k)
            if bad.size:
                i = int(bad[0])
                what = "is missing" if lengths[i] < 0 else f"has {lengths[i]} values, expected {k}"
                raise PredictionFileError(self.path, f"the list {what}", row=first_row + i, column=name)
            vals = arr.flatten().to_numpy(zero_copy_only=False)
            return np.asarray(vals).reshape(len(arr), k)
        if pa.types.is_dictionary(t):
            arr = arr.dictionary_decode()
        return arr.to_numpy(zero_copy_only=False)

    def __iter__(self):
        row = 1
        try:
            for batch in self.pf.iter_batches(batch_size=self.chunk_rows):
                cols = {n: self._column(batch.column(i), n, row) for i, n in enumerate(batch.schema.names)}
                self.done = row - 1 + batch.num_rows
                yield _Raw(cols, row)
                row += batch.num_rows
        except self.pa.ArrowException as e:
            raise PredictionFileError(self.path, f"cannot read Parquet data: {e}", row=row) from None

    def close(self):
        pass


def _open(path):
    try:
        if os.path.isdir(path):
            raise PredictionFileError(path, "is a directory, not a file")
        return open(path, "rb")
    except OSError as e:
        raise PredictionFileError(path, f"cannot read: {e.strerror or e}") from None


def _size(path):
    try:
        st = os.stat(path)
        return st.st_size if os.path.isfile(path) else None
    except OSError:
        return None


def _check_names(path, names, line=None):
    seen = set()
    for n in names:
        if n == "":
            raise PredictionFileError(path, "the header has an empty column name", line=line)
        if n in seen:
            raise PredictionFileError(path, f"column {n!r} appears twice in the header", line=line)
        seen.add(n)


# ---------------------------------------------------------------------------------------------
# Layout detection and decoding
# ---------------------------------------------------------------------------------------------

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
    reasons: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return 2 if self.binary else len(self.class_names)

    def describe(self) -> dict:
        """The layout as a JSON-ready dict."""
        return {"format": self.format, "label_column": self.label, "prediction_columns": self.columns,
                "list_column": self.list_column, "input": "logits" if self.logits else "probabilities",
                "task": "binary" if self.binary else "multiclass", "n_classes": self.n_classes,
                "classes": self.class_names, "how": self.reasons}


@dataclass
class Batch:
    """One decoded chunk: ``scores`` ``(n,)`` or ``(n, K)``, class-index ``labels``."""

    scores: np.ndarray
    labels: np.ndarray
    rows: np.ndarray  # 1-based data row numbers
    lines: np.ndarray | None  # line numbers (text formats)


def _is_list_column(a) -> bool:
    """A 2-D column (Parquet/NumPy) or one holding lists (JSON Lines)."""
    if not isinstance(a, np.ndarray):
        return False
    if a.ndim == 2:
        return True
    return a.dtype == object and len(a) > 0 and isinstance(a[0], (list, tuple))


def _is_numeric_array(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiub"


def _looks_numeric(a) -> bool:
    if _is_numeric_array(a):
        return a.dtype.kind != "b"
    try:
        np.asarray(a[: min(len(a), 64)], dtype=np.float64)
        return True
    except (ValueError, TypeError):
        return False


def _natural_key(name):
    m = _PREFIX_RE.match(name)
    if m and m.group("num") is not None:
        return int(m.group("num"))
    suffix = (m.group("name") if m else name) or ""
    return int(suffix) if suffix.isdigit() else suffix


class PredictionFile:
    """A prediction file opened for streaming; iterate it for :class:`Batch` es.

    Options (all optional; what is not given is detected and recorded in
    ``layout.reasons``): ``format``, ``label`` (column name), ``columns``
    (prediction column names, or one list column), ``logits`` (``True`` /
    ``False``), ``classes`` (class names, in column order), ``positive`` (the
    label value of class 1 in a binary task), ``delimiter`` (CSV),
    ``chunk_rows``, ``unnormalized`` (``'warn'``, ``'error'`` or ``'ignore'``:
    what to do with multi-class probability rows whose sum is not 1 within
    ``sum_tolerance``).  ``warnings`` collects the warnings to show the user.

    >>> import os, tempfile
    >>> f = os.path.join(tempfile.mkdtemp(), "p.jsonl")
    >>> _ = open(f, "w").write('{"y": 1, "logit": 2.5}\\n{"y": 0, "logit": -1}\\n')
    >>> pf = PredictionFile(f)
    >>> pf.layout.binary, pf.layout.logits, next(iter(pf)).scores.tolist()
    (True, True, [2.5, -1.0])
    """

    def __init__(self, path, *, format=None, label=None, columns=None, logits=None, classes=None, positive=None,
                 delimiter=None, chunk_rows=DEFAULT_CHUNK_ROWS, unnormalized="warn", sum_tolerance=1e-6):
        self.path = str(path)
        if unnormalized not in ("warn", "error", "ignore"):
            raise PredictionFileError(path, f"unnormalized must be 'warn', 'error' or 'ignore'; got {unnormalized!r}")
        if int(chunk_rows) < 1:
            raise PredictionFileError(path, f"chunk_rows must be >= 1; got {chunk_rows}")
        if not os.path.exists(self.path):
            raise PredictionFileError(path, "no such file")
        if os.path.isdir(self.path):
            raise PredictionFileError(path, "is a directory, not a file")
        fmt = format or detect_format(self.path)
        if fmt not in FORMATS:
            raise PredictionFileError(path, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        chunk_rows = int(chunk_rows)
        if fmt in ("csv", "tsv"):
            delim = delimiter or ("\t" if fmt == "tsv" else ",")
            self._reader = _CsvReader(self.path, delim, chunk_rows)
        elif fmt == "jsonl":
            self._reader = _JsonlReader(self.path, chunk_rows)
        elif fmt == "npy":
            self._reader = _NpyReader(self.path, chunk_rows)
        elif fmt == "npz":
            self._reader = _NpzReader(self.path, chunk_rows)
        else:
            self._reader = _ParquetReader(self.path, chunk_rows)
        self.unnormalized, self.sum_tolerance = unnormalized, float(sum_tolerance)
        self.warnings: list = []
        self._bad_sums = 0
        self._first_bad_sum = None
        self._neg_label = None
        self._it = iter(self._reader)
        try:
            self._first = next(self._it)
        except StopIteration:
            self._first = None
        if self._first is None or len(self._first) == 0:
            self._reader.close()
            raise PredictionFileError(self.path, "no data rows")
        self.layout = self._detect(fmt, label, columns, logits, classes, positive)
        self._label_index = {name: i for i, name in enumerate(self.layout.class_names)}

    # -- detection -----------------------------------------------------------------------

    def _detect(self, fmt, label, columns, logits, classes, positive) -> Layout:
        names, first, why = self._reader.names, self._first, {}
        if label is not None:
            if label not in names:
                raise PredictionFileError(self.path, f"no column {label!r} (columns: {', '.join(names)})")
            why["label"] = "named by --label"
        else:
            found = [n for n in names if n.lower() in _LABEL_NAMES]
            if not found:
                raise PredictionFileError(self.path, f"no label column found (looked for {', '.join(_LABEL_NAMES[:8])}, "
                                          f"...; columns: {', '.join(names)}); name it with --label")
            if len(found) > 1:
                raise PredictionFileError(self.path, f"ambiguous label column: {', '.join(found)} all look like "
                                          "labels; choose one with --label")
            label = found[0]
            why["label"] = f"column named {label!r}"
        rest = [n for n in names if n != label]
        listcols = [n for n in rest if _is_list_column(first.columns[n])]
        prefix = None
        if columns is not None:
            columns = list(columns)
            for c in columns:
                if c not in names:
                    raise PredictionFileError(self.path, f"no column {c!r} (columns: {', '.join(names)})")
            why["columns"] = "named by --columns"
        else:
            columns, prefix, why["columns"] = self._find_columns(rest, listcols, first)
        is_list = len(columns) == 1 and columns[0] in listcols
        if not is_list and any(c in listcols for c in columns):
            raise PredictionFileError(self.path, f"list column {[c for c in columns if c in listcols][0]!r} cannot be "
                                      "combined with other prediction columns")
        k = self._list_floats(first, columns[0], first.columns[columns[0]]).shape[1] if is_list else len(columns)
        if k < 1:
            raise PredictionFileError(self.path, "the prediction list is empty", column=columns[0])
        binary = k == 1
        # Probabilities or logits.
        if logits is not None:
            why["input"] = "set by --logits" if logits else "set by --probs"
        elif prefix in _LOGIT_PREFIXES:
            logits, why["input"] = True, f"columns named {prefix}*"
        elif prefix in _PROB_PREFIXES:
            logits, why["input"] = False, f"columns named {prefix}*"
        else:
            x = self._scores(first, columns, is_list, check=False)
            finite = x[np.isfinite(x)]
            outside = bool(finite.size and (finite.min() < 0.0 or finite.max() > 1.0))
            logits = outside
            why["input"] = (f"values outside [0, 1] in the first {len(first)} rows" if outside
                            else f"all values of the first {len(first)} rows in [0, 1]")
        # Class names.
        if binary:
            pos = positive
            if pos is None and prefix is None and not is_list and not _PREFIX_RE.match(columns[0]) \
                    and columns[0].lower() not in _SINGLE_NAMES:
                pos = columns[0]  # a column named after the positive class
            elif pos is None and prefix is not None and _PREFIX_RE.match(columns[0]):
                m = _PREFIX_RE.match(columns[0])
                pos = m.group("name") or m.group("num")
            class_names = ["0", "1"] if pos is None or str(pos) in ("1", "true", "True") else ["not " + str(pos), str(pos)]
            self._positive = None if class_names == ["0", "1"] else str(pos)
            why["task"] = "one prediction column: binary, the column is class 1" + (
                f" ({self._positive!r})" if self._positive else "")
        else:
            if classes is not None:
                class_names = [str(c) for c in classes]
                if len(class_names) != k:
                    raise PredictionFileError(self.path, f"--classes names {len(class_names)} classes but there are "
                                              f"{k} prediction columns")
            elif is_list:
                class_names = [str(i) for i in range(k)]
            else:
                class_names = []
                for c in columns:
                    m = _PREFIX_RE.match(c)
                    class_names.append((m.group("name") or m.group("num")) if m and prefix else c)
            self._positive = None
            why["task"] = f"{k} prediction values per row: multi-class"
        return Layout(fmt, label, columns, is_list, bool(logits), binary, class_names, why)

    def _find_columns(self, rest, listcols, first):
        if len(listcols) == 1:
            name = listcols[0].lower()
            prefix = name if name in _LOGIT_PREFIXES or name in _PROB_PREFIXES else None
            return listcols, prefix, f"the only list column, {listcols[0]!r}"
        if len(listcols) > 1:
            raise PredictionFileError(self.path, f"ambiguous prediction columns: list columns {', '.join(listcols)}; "
                                      "choose with --columns")
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
            raise PredictionFileError(self.path, "ambiguous prediction columns: "
                                      + "; ".join(f"{p}*: {', '.join(c)}" for p, c in groups.items())
                                      + "; choose with --columns")
        single = [n for n in rest if n.lower() in _SINGLE_NAMES]
        if len(single) == 1:
            p = single[0].lower()
            return single, (p if p in _LOGIT_PREFIXES or p in _PROB_PREFIXES else None), f"column named {single[0]!r}"
        if len(single) > 1:
            raise PredictionFileError(self.path, f"ambiguous prediction columns: {', '.join(single)}; choose with "
                                      "--columns")
        numeric = [n for n in rest if n.lower() not in _ID_NAMES and _looks_numeric(first.columns[n])]
        if not numeric:
            raise PredictionFileError(self.path, f"no prediction columns found (columns: {', '.join(rest)}); "
                                      "name them with --columns")
        return numeric, None, "every other numeric column, named after its class"

    # -- decoding ------------------------------------------------------------------------

    def _where(self, raw, i):
        if raw.lines is not None:
            return {"line": int(raw.lines[i])}
        return {"row": raw.first_row + i}

    def _floats(self, raw, name, values):
        if _is_numeric_array(values):
            return values.astype(np.float64)
        try:
            return np.asarray(values, dtype=np.float64)
        except (ValueError, TypeError):
            pass
        for i, v in enumerate(values):
            try:
                if isinstance(v, (list, dict)) or v is None:
                    raise TypeError
                float(v)
            except (ValueError, TypeError):
                what = "is missing" if v is None or (isinstance(v, str) and not v.strip()) else \
                    f"{v!r} is not a number"
                raise PredictionFileError(self.path, what, column=name, **self._where(raw, i)) from None
        raise PredictionFileError(self.path, "values are not numbers", column=name)  # pragma: no cover

    def _list_floats(self, raw, name, values):
        if _is_numeric_array(values) and values.ndim == 2:
            return values.astype(np.float64)
        k = None
        for i, v in enumerate(values):
            if not isinstance(v, (list, tuple)):
                raise PredictionFileError(self.path, f"expected a list of numbers, found {v!r}", column=name,
                                          **self._where(raw, i))
            if k is None:
                k = len(v)
            if len(v) != k:
                raise PredictionFileError(self.path, f"the list has {len(v)} values, expected {k}", column=name,
                                          **self._where(raw, i))
            for x in v:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise PredictionFileError(self.path, f"{x!r} in the list is not a number", column=name,
                                              **self._where(raw, i))
        return np.array(list(values), dtype=np.float64).reshape(len(values), k or 0)

    def _scores(self, raw, columns, is_list, check=True):
        if is_list:
            x = self._list_floats(raw, columns[0], raw.columns[columns[0]])
            names = [columns[0]] * x.shape[1]
        else:
            cols = []
            for c in columns:
                v = raw.columns[c]
                if isinstance(v, np.ndarray) and v.ndim == 2 or (v.dtype == object and len(v) and isinstance(v[0], list)):
                    raise PredictionFileError(self.path, "a list column cannot be one of several prediction columns",
                                              column=c)
                cols.append(self._floats(raw, c, v))
            x = np.stack(cols, axis=1) if len(cols) > 1 else cols[0][:, None]
            names = list(columns)
        if check:
            lay = self.layout
            if lay.list_column is False and x.shape[1] != len(columns):  # pragma: no cover
                raise PredictionFileError(self.path, "internal: width mismatch")
            if lay.list_column and x.shape[1] != lay.n_classes and not lay.binary:
                raise PredictionFileError(self.path, f"the list has {x.shape[1]} values, expected {lay.n_classes}",
                                          column=columns[0], **self._where(raw, 0))
            nan = np.isnan(x)
            if nan.any():
                i, j = (int(t) for t in np.argwhere(nan)[0])
                raise PredictionFileError(self.path, "value is NaN (or missing)", column=names[j], **self._where(raw, i))
            if not lay.logits:
                bad = (x < 0.0) | (x > 1.0)
                if bad.any():
                    i, j = (int(t) for t in np.argwhere(bad)[0])
                    raise PredictionFileError(self.path, f"probability {float(x[i, j])!r} is outside [0, 1] (if these are "
                                              "logits, pass --logits)", column=names[j], **self._where(raw, i))
                if not lay.binary and self.unnormalized != "ignore":
                    s = x.sum(axis=1)
                    off = np.abs(s - 1.0) > self.sum_tolerance
                    if off.any():
                        i = int(np.flatnonzero(off)[0])
                        if self.unnormalized == "error":
                            raise PredictionFileError(self.path, f"probabilities sum to {float(s[i])!r}, not 1 (tolerance "
                                                      f"{self.sum_tolerance:g})", **self._where(raw, i))
                        if self._first_bad_sum is None:
                            w = self._where(raw, i)
                            self._first_bad_sum = (next(iter(w)), next(iter(w.values())), float(s[i]))
                        self._bad_sums += int(np.count_nonzero(off))
            else:
                if not lay.binary and np.isposinf(x).any():
                    i, j = (int(t) for t in np.argwhere(np.isposinf(x))[0])
                    raise PredictionFileError(self.path, "logit is +inf", column=names[j], **self._where(raw, i))
        return x

    def _labels(self, raw):
        lay, name = self.layout, self.layout.label
        v = raw.columns[name]
        k = lay.n_classes
        if isinstance(v, np.ndarray) and v.ndim != 1:
            raise PredictionFileError(self.path, "the label column must hold one value per row", column=name)
        if _is_numeric_array(v):
            if v.dtype.kind == "b":
                return v.astype(np.int64) if k == 2 else self._bad_label(raw, 0, v[0])
            f = v.astype(np.float64)
            bad = ~(np.isfinite(f) & (f == np.round(f)) & (f >= 0) & (f < k))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                return self._bad_label(raw, i, v[i])
            return f.astype(np.int64)
        uniq, inv = np.unique(np.array([_label_key(x) for x in v], dtype=object), return_inverse=True)
        codes = np.empty(len(uniq), dtype=np.int64)
        for u, key in enumerate(uniq.tolist()):
            c = self._label_code(key)
            if c is None:
                i = int(np.flatnonzero(inv == u)[0])
                return self._bad_label(raw, i, v[i])
            codes[u] = c
        return codes[inv.reshape(-1)]

    def _label_code(self, key):
        if not key:
            return None
        if key in self._label_index:
            return self._label_index[key]
        lay = self.layout
        low = key.lower()
        if lay.binary:
            if low in ("true", "yes"):
                return 1
            if low in ("false", "no"):
                return 0
            if self._positive is not None:
                # Any one other value is the negative class; a second is an error.
                if self._neg_label is None:
                    self._neg_label = key
                    lay.class_names[0] = key
                    self._label_index[key] = 0
                    return 0
                return None
        try:
            f = float(key)
        except ValueError:
            return None
        if f == int(f) and 0 <= f < lay.n_classes:
            return int(f)
        return None

    def _bad_label(self, raw, i, value):
        lay = self.layout
        if value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip()):
            msg = "label is missing"
        elif lay.binary:
            allowed = "0/1 or true/false" if self._positive is None else \
                f"{self._positive!r} (class 1) or one other value (class 0, seen: {self._neg_label!r})"
            msg = f"label {value!r} is not a class of this binary task (expected {allowed})"
        else:
            shown = ", ".join(lay.class_names[:12]) + (", ..." if len(lay.class_names) > 12 else "")
            msg = f"label {value!r} is not one of the {lay.n_classes} classes ({shown}; or an index 0..{lay.n_classes - 1})"
        raise PredictionFileError(self.path, msg, column=lay.label, **self._where(raw, i))

    def decode(self, raw) -> Batch:
        """Validate one raw chunk and turn it into a :class:`Batch`."""
        lay = self.layout
        x = self._scores(raw, lay.columns, lay.list_column)
        if lay.binary:
            x = x[:, 0]
        y = self._labels(raw)
        rows = np.arange(raw.first_row, raw.first_row + len(y), dtype=np.int64)
        return Batch(np.ascontiguousarray(x), y, rows, raw.lines)

    def __iter__(self):
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield self.decode(first)
            for raw in self._it:
                yield self.decode(raw)
        finally:
            self._reader.close()
        if self._bad_sums:
            kind, where, s = self._first_bad_sum
            self.warnings.append(f"{self.path}: {self._bad_sums} row(s) of probabilities do not sum to 1 "
                                 f"(first: {kind} {where}, sum {s!r}); the loss uses them as given "
                                 "(--unnormalized error refuses them, --compat keras renormalises)")

    def progress(self):
        """``(done, total)`` in bytes (text formats) or rows; ``total`` may be ``None``."""
        return self._reader.progress()


def _label_key(x):
    """A label value as the string it is compared by (``""`` if missing)."""
    if x is None:
        return ""
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if isinstance(x, float):
        if np.isnan(x):
            return ""
        return str(int(x)) if x == int(x) else repr(x)
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    return str(x).strip()
