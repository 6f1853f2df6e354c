"""What every reader yields, and the rules all of them share.

A reader turns one file into :class:`RawChunk` s of named columns.  The
columns a report needs are asked for by *kind* (a :data:`Plan`):

``"float"``
    one number per row (a prediction or weight column): a float64 array; a
    value that is not a number is the reader's error, with its location;
``"floats"``
    a list of numbers per row (a list column): a float64 ``(n, k)`` array;
``"label"`` / ``"text"``
    the values as they are: a numeric array, or a :class:`Coded` array of
    strings (codes into a small list of distinct values); the layout decodes
    them.

In text formats a number is what this grammar accepts (after trimming spaces
and tabs): ``[+-]`` digits with an optional ``.`` and fraction, an optional
exponent, or ``inf``/``infinity``/``nan`` in any case — ASCII only, no
underscores.  Python's ``float`` and Arrow's CSV parser agree on every such
token (both round correctly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import PredictionFileError

__all__ = ["arrow_numpy", "arrow_coded", "MISSING", "RawChunk", "Coded", "NUMBER", "INTEGER", "parse_floats", "factorize", "check_names", "HEAD_ROWS",
           "default_chunk_rows"]

HEAD_ROWS = 1000  # the fixed sample that layout detection looks at


class _Missing:
    """A key absent from a JSON object (in the detection sample)."""

    def __repr__(self):
        return "<missing key>"


MISSING = _Missing()
NUMBER = re.compile(r"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)[ \t]*",
                    re.IGNORECASE)
INTEGER = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*")


def default_chunk_rows(n_columns: int) -> int:
    """Rows per chunk when not given: about 2^18 values, at least 256 rows.

    >>> default_chunk_rows(11), default_chunk_rows(100000)
    (23831, 256)
    """
    return int(min(65536, max(256, (1 << 18) // max(n_columns, 1))))


class Coded:
    """A column of strings as integer codes into ``values`` (``None`` for a missing value)."""

    __slots__ = ("codes", "values")

    def __init__(self, codes, values):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.values = list(values)

    def __len__(self):
        return len(self.codes)

    def __getitem__(self, sel):
        return Coded(self.codes[sel], self.values)

    def strings(self) -> np.ndarray:
        """The values as an object array."""
        v = np.empty(len(self.values), dtype=object)
        v[:] = self.values
        return v[self.codes]

    @staticmethod
    def concat(parts) -> "Coded":
        values: list = []
        index: dict = {}
        codes = []
        for p in parts:
            remap = np.empty(len(p.values), dtype=np.int64)
            for i, v in enumerate(p.values):
                if v not in index:
                    index[v] = len(values)
                    values.append(v)
                remap[i] = index[v]
            codes.append(remap[p.codes] if len(p.values) else p.codes)
        return Coded(np.concatenate(codes) if codes else np.empty(0, dtype=np.int64), values)


def factorize(values) -> Coded:
    """Distinct values in order of appearance, and each row's code.

    >>> c = factorize(["b", "a", "b", None]); c.codes.tolist(), c.values
    ([0, 1, 0, 2], ['b', 'a', None])
    """
    index: dict = {}
    codes = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        j = index.get(v)
        if j is None:
            j = index[v] = len(index)
        codes[i] = j
    return Coded(codes, list(index))


@dataclass
class RawChunk:
    """Columns of consecutive rows of one file.

    ``first_row``: 0-based index of the first row in the file; ``lines``:
    each row's line number (text formats, the header is line 1) or ``None``.
    """

    columns: dict
    first_row: int
    n: int
    lines: np.ndarray | None = None

    def where(self, i: int) -> dict:
        """The location of row ``i`` of the chunk, as keywords for :class:`PredictionFileError`."""
        if self.lines is not None:
            return {"line": int(self.lines[i])}
        return {"row": self.first_row + i + 1}

    def head(self, n: int) -> "RawChunk":
        if n >= self.n:
            return self
        cols = {k: v[:n] for k, v in self.columns.items()}
        return RawChunk(cols, self.first_row, n, None if self.lines is None else self.lines[:n])

    @staticmethod
    def concat(parts) -> "RawChunk":
        if len(parts) == 1:
            return parts[0]
        cols: dict = {}  # name -> array or Coded
        for name in parts[0].columns:
            vals = [p.columns[name] for p in parts]
            if isinstance(vals[0], Coded):
                cols[name] = Coded.concat(vals)
            elif any(isinstance(v, Coded) for v in vals):
                cols[name] = np.concatenate([v.strings() if isinstance(v, Coded) else v.astype(object)
                                             for v in vals])
            else:
                try:
                    cols[name] = np.concatenate(vals)
                except ValueError:  # list columns of different widths: keep them as objects
                    cols[name] = np.concatenate([_as_object_rows(v) for v in vals])
        lines = None if parts[0].lines is None else np.concatenate([p.lines for p in parts])
        return RawChunk(cols, parts[0].first_row, sum(p.n for p in parts), lines)


def _as_object_rows(a):
    out = np.empty(len(a), dtype=object)
    out[:] = [list(r) for r in a] if getattr(a, "ndim", 1) == 2 else list(a)
    return out


def token_problem(tok: str, delimiter: str | None = None) -> str:
    """Why a text token is not a number (for the error message)."""
    if not tok.strip(" \t"):
        return "is missing"
    t = tok.strip(" \t")
    hint = ""
    if delimiter != "," and re.fullmatch(r"[+-]?[0-9]+,[0-9]+", t):
        hint = " (a decimal comma? write numbers with a '.')"
    return f"{tok!r} is not a number{hint}"


def parse_floats(tokens, path, column, where, delimiter=None) -> np.ndarray:
    """Float64 values of text tokens, by the grammar above; the first bad one is an error at ``where(i)``."""
    full = NUMBER.fullmatch
    for i, t in enumerate(tokens):
        if full(t) is None:
            raise PredictionFileError(path, token_problem(t, delimiter), column=column, **where(i))
    return np.array(tokens, dtype=np.float64) if len(tokens) else np.empty(0)


def check_names(path, names, line=None) -> None:
    """Column names must be non-empty and unique."""
    seen = set()
    for n in names:
        if n == "":
            raise PredictionFileError(path, "the header has an empty column name", line=line)
        if n in seen:
            raise PredictionFileError(path, f"column {n!r} appears twice in the header", line=line)
        seen.add(n)


def arrow_numpy(arr) -> np.ndarray:
    """A pyarrow (chunked) array of numbers or booleans without nulls, as a NumPy array.

    Straight from Arrow's buffers: ``to_numpy`` would import pandas (most of
    a second, and from the reader's thread it can abort the interpreter at
    exit).  The caller checks ``null_count`` first.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    t = arr.type
    if pa.types.is_boolean(t):
        return arrow_numpy(pc.cast(arr, pa.uint8())).astype(bool)
    dtype = _ARROW_DTYPES.get(str(t))
    if dtype is None:
        return np.asarray(arr.to_pylist())
    parts = [np.frombuffer(c.buffers()[1], dtype=dtype, count=c.offset + len(c))[c.offset:] if len(c) else
             np.empty(0, dtype=dtype) for c in chunks]
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


_ARROW_DTYPES = {n: np.dtype(n) for n in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                                          "float32", "float64")}
_ARROW_DTYPES.update({"double": np.dtype("float64"), "float": np.dtype("float32"), "halffloat": np.dtype("float16")})


def arrow_coded(arr) -> Coded:
    """A pyarrow string (or dictionary) array as a :class:`Coded` column (values stripped; nulls as ``None``)."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    d = arr if pa.types.is_dictionary(arr.type) else arr.dictionary_encode()
    values = [None if v is None else str(v).strip(" \t") for v in d.dictionary.to_pylist()]
    idx = d.indices
    if idx.null_count:
        values.append(None)
        idx = idx.fill_null(len(values) - 1)
    return Coded(arrow_numpy(idx).astype(np.int64), values)
