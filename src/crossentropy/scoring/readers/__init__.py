"""From a path to rows: which files, which format, which reader.

A *dataset* is one file, ``-`` (stdin), a directory of part files, or a glob
pattern (``'preds/part-*.parquet'``, quoted so that the shell leaves it
alone).  Part files are read in natural name order (``part-2`` before
``part-10``) and their rows numbered as one sequence; names starting with
``.`` or ``_`` (``_SUCCESS``, ``.crc``) are skipped.

The format of each part comes from its extension (after any compression
extension: ``x.csv.gz`` is gzip-compressed CSV), else from its first
(decompressed) bytes; ``--format`` overrides both.

Every reader has the same surface: ``names``, ``head(n)`` (the first rows,
for layout detection), ``chunks(plan)`` (every row, typed as asked),
``progress()`` and ``close()``; see :mod:`._base`.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from ..errors import PredictionFileError
from ._base import HEAD_ROWS, Coded, RawChunk
from ._source import STDIN, ByteSource, compression_of, strip_compression

__all__ = ["FORMATS", "detect_format", "open_reader", "expand_dataset", "RawChunk", "Coded", "HEAD_ROWS", "STDIN"]

FORMATS = ("csv", "tsv", "parquet", "npy", "npz", "jsonl")
_EXT = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
        ".npy": "npy", ".npz": "npz", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_GLOB = re.compile(r"[*?\[]")


def format_from_name(name: str):
    """The format an extension names (compression extensions looked through), or ``None``.

    >>> format_from_name("scores.TSV"), format_from_name("x.ndjson.zst"), format_from_name("x.bin")
    ('tsv', 'jsonl', None)
    """
    return _EXT.get(os.path.splitext(strip_compression(name))[1].lower())


def format_from_bytes(head: bytes) -> str:
    """The format of (decompressed) data from its first bytes.

    >>> format_from_bytes(b"PAR1..."), format_from_bytes(b'  {"y": 1}'), format_from_bytes(b"label,p")
    ('parquet', 'jsonl', 'csv')
    """
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "jsonl"
    return "csv"


def detect_format(path: str) -> str:
    """The format of a file: by extension, else by its first bytes (decompressed).

    >>> detect_format("scores.TSV"), detect_format("x.ndjson")
    ('tsv', 'jsonl')
    """
    fmt = format_from_name(path)
    if fmt is not None:
        return fmt
    src = ByteSource(path)
    try:
        return format_from_bytes(src.peek(64))
    finally:
        src.close()


def _natural(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_data_name(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith((".", "_")) and (format_from_name(base) is not None or compression_of(base))


def expand_dataset(path: str) -> list:
    """The part files of a dataset path (a file, ``-``, a directory or a glob), in order.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("part-10.csv", "part-2.csv", "_SUCCESS", ".part-2.csv.crc"): _ = (d / n).write_text("x")
    >>> [os.path.basename(p) for p in expand_dataset(str(d))]
    ['part-2.csv', 'part-10.csv']
    """
    p = str(path)
    if p == STDIN:
        return [p]
    if os.path.isdir(p):
        parts = [os.path.join(p, n) for n in os.listdir(p) if _is_data_name(n)
                 and not os.path.isdir(os.path.join(p, n))]
        if not parts:
            raise PredictionFileError(p, "the directory holds no prediction files (.csv, .parquet, .jsonl, .npy, "
                                      ".npz, possibly compressed)")
        return sorted(parts, key=lambda q: _natural(os.path.basename(q)))
    if not os.path.exists(p) and _GLOB.search(p):
        parts = [q for q in glob.glob(p) if not os.path.isdir(q) and not os.path.basename(q).startswith((".", "_"))]
        if not parts:
            raise PredictionFileError(p, "no files match this pattern")
        return sorted(parts, key=_natural)
    return [p]


def open_reader(path: str, *, format=None, delimiter=None, chunk_rows=None, csv_engine="auto"):
    """A reader for one file (or ``-``)."""
    fmt = format or format_from_name(path)
    src = ByteSource(path)
    r: Any  # a reader of one format (duck-typed: they share no base class)
    try:
        if fmt is None:
            try:
                head = src.peek(64)
            except Exception as e:  # a damaged compressed stream: say so, with the file's name
                raise PredictionFileError(src.name, str(e)) from None
            fmt = format_from_bytes(head)
        if fmt in ("csv", "tsv"):
            from .csv import CsvReader
            r = CsvReader(src, delimiter=delimiter, tsv=(fmt == "tsv"), chunk_rows=chunk_rows, engine=csv_engine)
        elif fmt == "jsonl":
            from .jsonl import JsonlReader
            r = JsonlReader(src, chunk_rows=chunk_rows)
        elif fmt in ("npy", "npz", "parquet"):
            real = src.seekable_path()
            if fmt == "npy":
                from .npy import NpyReader
                r = NpyReader(real, src.name, chunk_rows=chunk_rows)
            elif fmt == "npz":
                from .npy import NpzReader
                r = NpzReader(real, src.name, chunk_rows=chunk_rows)
            else:
                from .parquet import ParquetReader
                r = ParquetReader(real, src.name, chunk_rows=chunk_rows)
            r.source = src
            _close = r.close

            def close(_close=_close, src=src):
                _close()
                src.close()
            r.close = close
        else:
            raise PredictionFileError(src.name, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    except BaseException:
        src.close()
        raise
    r.format = fmt
    return r
