"""Parquet, in bounded memory: only the needed columns, batch by batch, small buffers.

Arrow's defaults read a whole row group ahead ("pre-buffering") and keep
freed memory in its allocator, so the resident size grows with the file.
Here the file is opened with ``pre_buffer=False`` and a 1 MiB read buffer,
only the columns the report needs are decoded, batches are ``chunk_rows``
long, and Arrow's pool hands unused memory back after each row group.  Needs
:mod:`pyarrow` (``pip install 'crossentropy[io]'``).
"""

from __future__ import annotations

import numpy as np

from ..errors import PredictionFileError
from ._base import HEAD_ROWS, RawChunk, arrow_coded, arrow_numpy, check_names, default_chunk_rows

__all__ = ["ParquetReader"]


def _need_pyarrow(name):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise PredictionFileError(name, "reading Parquet needs pyarrow: pip install 'crossentropy[io]'") from None
    return pa, pq


class ParquetReader:
    """Rows of a Parquet file as :class:`RawChunk` s."""

    def __init__(self, path: str, name: str, *, chunk_rows=None):
        self.path = name
        self.pa, pq = _need_pyarrow(name)
        pa = self.pa
        try:
            self.pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
            schema = self.pf.schema_arrow
        except (OSError, pa.ArrowException) as e:
            raise PredictionFileError(name, f"not a readable Parquet file: {e}") from None
        self.names = list(schema.names)
        check_names(name, self.names)
        self.types = {f.name: f.type for f in schema}
        self.n = self.pf.metadata.num_rows
        width = 0
        for t in self.types.values():
            width += t.list_size if pa.types.is_fixed_size_list(t) else (16 if pa.types.is_list(t) else 1)
        self.chunk_rows = chunk_rows or default_chunk_rows(width)
        self.done = 0

    def progress(self):
        return self.done, self.n

    def _batches(self, columns, batch_size):
        pa = self.pa
        row = 0
        try:
            for g in range(self.pf.num_row_groups):
                for b in self.pf.iter_batches(batch_size=batch_size, row_groups=[g], columns=columns,
                                              use_threads=False):
                    yield row, b
                    row += b.num_rows
                pa.default_memory_pool().release_unused()
        except pa.ArrowException as e:
            raise PredictionFileError(self.path, f"cannot read Parquet data: {e}", row=row + 1) from None

    def head(self, n: int = HEAD_ROWS) -> RawChunk:
        for row, b in self._batches(None, max(min(n, max(self.n, 1)), 1)):
            return RawChunk({name: self._raw(b.column(i), name, row) for i, name in enumerate(b.schema.names)},
                            0, b.num_rows)
        return RawChunk({k: np.empty(0) for k in self.names}, 0, 0)

    def chunks(self, plan: dict, text_types=None):
        cols = [c for c in self.names if c in plan]
        for row, b in self._batches(cols, self.chunk_rows):
            out = {}
            for i, name in enumerate(b.schema.names):
                kind = plan[name]
                out[name] = self._typed(b.column(i), name, kind, row)
            self.done = row + b.num_rows
            yield RawChunk(out, row, b.num_rows)

    # -- columns ------------------------------------------------------------------------

    def _first_null(self, arr) -> int:
        return arr.is_null().to_pylist().index(True)

    def _list_matrix(self, arr, name, row):
        pa = self.pa
        import pyarrow.compute as pc

        lengths = arrow_numpy(pc.list_value_length(arr).fill_null(-1)).astype(np.int64)
        k = int(lengths[0]) if len(lengths) else 0
        bad = np.flatnonzero(lengths != k)
        if bad.size:
            i = int(bad[0])
            what = "is missing" if lengths[i] < 0 else f"has {lengths[i]} values, expected {k}"
            raise PredictionFileError(self.path, f"the list {what}", row=row + i + 1, column=name)
        flat = arr.flatten()
        if flat.null_count:
            i = self._first_null(flat) // max(k, 1)
            raise PredictionFileError(self.path, "a value in the list is missing (null)", row=row + i + 1, column=name)
        if not (pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type)):
            raise PredictionFileError(self.path, f"the list holds {flat.type}, not numbers", column=name)
        return np.asarray(arrow_numpy(flat), dtype=np.float64).reshape(len(arr), k)

    def _is_list(self, t):
        pa = self.pa
        return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)

    def _raw(self, arr, name, row):
        """A column as it is (for detection): numbers, a list matrix, or strings."""
        pa = self.pa
        t = arr.type
        if self._is_list(t):
            try:
                return self._list_matrix(arr, name, row)
            except PredictionFileError:
                return np.array(arr.to_pylist(), dtype=object)
        if pa.types.is_dictionary(t):
            if pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type):
                return arrow_coded(arr)
            arr = arr.dictionary_decode()
            t = arr.type
        if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)) and not arr.null_count:
            return arrow_numpy(arr)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return arrow_coded(arr)
        out = np.empty(len(arr), dtype=object)
        out[:] = arr.to_pylist()
        return out

    def _typed(self, arr, name, kind, row):
        pa = self.pa
        t = arr.type
        if kind == "floats":
            if not self._is_list(t):
                raise PredictionFileError(self.path, f"expected a list column, found {t}", column=name)
            return self._list_matrix(arr, name, row)
        if kind == "float":
            if pa.types.is_dictionary(t):
                arr = arr.dictionary_decode()
                t = arr.type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
                raise PredictionFileError(self.path, f"holds {t}, not numbers", column=name)
            if arr.null_count:
                raise PredictionFileError(self.path, "is missing (null)", row=row + self._first_null(arr) + 1,
                                          column=name)
            if pa.types.is_decimal(t):
                return np.array(arr.to_pylist(), dtype=np.float64)
            return np.asarray(arrow_numpy(arr), dtype=np.float64)
        return self._raw(arr, name, row)

    def close(self) -> None:
        try:
            self.pf.close()
        except Exception:  # already closed or damaged: nothing to release
            pass
