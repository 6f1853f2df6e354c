"""JSON Lines: one object per line; list values are list columns.

Blocks of lines are parsed in one :func:`json.loads` call (a JSON array of
the block's objects, far faster than a call per line); a block that fails is
parsed line by line to name the exact line.  Python's parser accepts
``NaN``/``Infinity``/``-Infinity``, which then meet the same checks as in any
other format (a NaN prediction or an infinite label is an error with its
line).  The columns are the keys of the first object; an object without one
of the needed keys is an error, extra keys are ignored.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import PredictionFileError
from ._base import HEAD_ROWS, MISSING, RawChunk, check_names, factorize
from ._source import ByteSource, fill_block

__all__ = ["JsonlReader"]

_BLOCK = 1 << 22
_MISSING = MISSING


def _is_number(v) -> bool:
    return type(v) in (int, float)


class JsonlReader:
    """Rows of a JSON Lines byte stream as :class:`RawChunk` s."""

    def __init__(self, source: ByteSource, *, chunk_rows=None):
        self.source, self.path = source, source.name
        self.chunk_rows = chunk_rows
        first = None
        head = source.peek(1 << 16)
        if head.startswith(b"\xef\xbb\xbf"):
            source.read(3)
        for lineno, obj in self._objects(self._lines(peek=True)):
            first = (lineno, obj)
            break
        if first is None:
            raise PredictionFileError(self.path, "the file is empty (no JSON objects)")
        self.names = list(first[1].keys())
        check_names(self.path, self.names, line=first[0])
        self.plan: dict = {}

    def progress(self):
        return self.source.progress()

    def _lines(self, peek=False):
        """``(line number, bytes)`` of every line; ``peek`` looks at the first 1 MiB only, without consuming."""
        if peek:
            data = self.source.peek(1 << 20)
            parts = data.split(b"\n")
            if len(data) >= 1 << 20:
                parts.pop()  # a line cut by the look-ahead
            for i, raw in enumerate(parts[:HEAD_ROWS * 2], start=1):
                yield i, raw
            return
        line, buf, eof = 1, b"", False
        size = _BLOCK if self.chunk_rows is None else max(1, min(_BLOCK, self.chunk_rows * 64))
        while True:
            if not eof:
                buf, eof = fill_block(self.source, buf, size, line, need_newline=True)
            cut = len(buf) if eof else buf.rfind(b"\n") + 1
            block, buf = buf[:cut], buf[cut:]
            parts = block.split(b"\n")
            if block.endswith(b"\n"):
                parts.pop()
            for raw in parts:
                yield line, raw
                line += 1
            if eof and not buf:
                return

    def _parse(self, lineno, raw):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PredictionFileError(self.path, f"not UTF-8 text ({e.reason} at byte {e.start + 1} of the line)",
                                      line=lineno) from None
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = f"invalid JSON ({e.msg} at character {e.pos + 1})" if isinstance(e, json.JSONDecodeError) \
                else "invalid JSON (nested too deeply)"
            raise PredictionFileError(self.path, msg, line=lineno) from None
        if not isinstance(obj, dict):
            raise PredictionFileError(self.path, f"expected a JSON object per line, found {type(obj).__name__}",
                                      line=lineno)
        return obj

    def _objects(self, lines):
        for lineno, raw in lines:
            if raw.strip():
                yield lineno, self._parse(lineno, raw)

    def _batches(self, limit=None):
        """Lists of ``(line, object)`` per block of lines."""
        pending = []
        target = self.chunk_rows or 16384
        for lineno, raw in self._lines():
            if raw.strip():
                pending.append((lineno, raw))
            if len(pending) >= target:
                yield self._parse_many(pending)
                pending = []
        if pending:
            yield self._parse_many(pending)

    def _parse_many(self, items):
        try:
            blob = b"[" + b",".join(raw for _, raw in items) + b"]"
            objs = json.loads(blob.decode("utf-8"))
            if len(objs) == len(items) and all(type(o) is dict for o in objs):
                return [(ln, o) for (ln, _), o in zip(items, objs)]
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            pass
        return [(ln, self._parse(ln, raw)) for ln, raw in items]

    def head(self, n: int = HEAD_ROWS) -> RawChunk:
        """The first ``n`` rows: numbers as float64, lists of numbers as ``(n, k)``, the rest as objects."""
        items = []
        for item in self._objects(self._lines(peek=True)):
            items.append(item)
            if len(items) >= n:
                break
        cols = {}
        for name in self.names:
            vals = [o.get(name, _MISSING) for _, o in items]
            if vals and all(_is_number(v) for v in vals):
                try:
                    cols[name] = np.array(vals, dtype=np.float64)
                    continue
                except OverflowError:
                    pass
            if vals and all(isinstance(v, list) and v and all(_is_number(x) for x in v) for v in vals) \
                    and len({len(v) for v in vals}) == 1:
                try:
                    cols[name] = np.array(vals, dtype=np.float64)
                    continue
                except OverflowError:
                    pass
            arr = np.empty(len(vals), dtype=object)
            arr[:] = vals
            cols[name] = arr
        return RawChunk(cols, 0, len(items), np.array([ln for ln, _ in items], dtype=np.int64))

    def chunks(self, plan: dict, text_types=None):
        """Every row, typed as ``plan`` asks."""
        self.plan = dict(plan)
        row = 0
        for items in self._batches():
            lines = np.array([ln for ln, _ in items], dtype=np.int64)
            cols = {}
            for name, kind in self.plan.items():
                vals = []
                for i, (ln, o) in enumerate(items):
                    v = o.get(name, _MISSING)
                    if v is _MISSING:
                        raise PredictionFileError(self.path, "missing key", line=ln, column=name)
                    vals.append(v)
                cols[name] = self._typed(name, kind, vals, lines)
            yield RawChunk(cols, row, len(items), lines)
            row += len(items)

    def _typed(self, name, kind, vals, lines):
        if kind == "float":
            if all(_is_number(v) for v in vals):
                try:
                    return np.array(vals, dtype=np.float64)
                except OverflowError:
                    pass
            for i, v in enumerate(vals):
                if not _is_number(v):
                    what = "is missing (null)" if v is None else f"{json.dumps(v)[:40]} is not a number"
                    raise PredictionFileError(self.path, what, line=int(lines[i]), column=name)
                try:
                    float(v)
                except OverflowError:
                    raise PredictionFileError(self.path, f"{str(v)[:40]} is too large for a double", line=int(lines[i]),
                                              column=name) from None
        if kind == "floats":
            k = None
            for i, v in enumerate(vals):
                if not isinstance(v, list):
                    what = "is missing (null)" if v is None else \
                        f"expected a list of numbers, found {json.dumps(v)[:40]}"
                    raise PredictionFileError(self.path, what, line=int(lines[i]), column=name)
                if k is None:
                    k = len(v)
                if len(v) != k:
                    raise PredictionFileError(self.path, f"the list has {len(v)} values, expected {k}",
                                              line=int(lines[i]), column=name)
                for x in v:
                    if not _is_number(x):
                        raise PredictionFileError(self.path, f"{json.dumps(x)[:40]} in the list is not a number",
                                                  line=int(lines[i]), column=name)
            try:
                return np.array(vals, dtype=np.float64).reshape(len(vals), k or 0)
            except OverflowError:
                raise PredictionFileError(self.path, "a number in the list is too large for a double",
                                          column=name) from None
        # label / text: keep the JSON values (the layout decodes them).
        if all(type(v) is str for v in vals):
            return factorize([v.strip(" \t") for v in vals])
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        return arr

    def close(self) -> None:
        self.source.close()
