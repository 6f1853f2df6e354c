"""NumPy files: ``.npy`` (memory-mapped) and ``.npz`` (members streamed out of the zip).

Nothing is ever unpickled: ``allow_pickle=False``, and object arrays are
refused.  A ``.npy`` holds a structured 1-D array (each field a column, a
sub-array field a list column) or a plain 2-D matrix (columns ``col0…``).  In
an ``.npz`` each member is a column (2-D members are list columns); a member
whose compressed data is damaged is an error naming the member and the row.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

import numpy as np

from ..errors import PredictionFileError
from ._base import HEAD_ROWS, RawChunk, check_names, default_chunk_rows

__all__ = ["NpyReader", "NpzReader"]

_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error, ValueError, KeyError,
               NotImplementedError, RuntimeError)


class NpyReader:
    """Rows of a ``.npy`` file, memory-mapped."""

    def __init__(self, path: str, name: str, *, chunk_rows=None):
        self.path = name
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            if "pickle" in str(e).lower() or "object" in str(e).lower():
                raise PredictionFileError(name, "holds Python objects; refusing to unpickle") from None
            raise PredictionFileError(name, f"not a readable .npy file: {e}") from None
        except (OSError, EOFError) as e:
            raise PredictionFileError(name, f"not a readable .npy file: {e}") from None
        if not isinstance(a, np.ndarray):
            raise PredictionFileError(name, "not a .npy array file")
        if a.dtype.hasobject:
            raise PredictionFileError(name, "holds Python objects; refusing to unpickle")
        if a.dtype.names:
            if a.ndim != 1:
                raise PredictionFileError(name, f"a structured array must be 1-D; got shape {a.shape}")
            self.names = list(a.dtype.names)
            self._get = lambda n, s: a[n][s]
        elif a.ndim == 2:
            self.names = [f"col{i}" for i in range(a.shape[1])]
            self._get = lambda n, s: a[s, int(n[3:])]
        else:
            raise PredictionFileError(name, f"expected a structured 1-D array or a 2-D matrix; got shape {a.shape}")
        check_names(name, self.names)
        self.n = a.shape[0]
        self.chunk_rows = chunk_rows or default_chunk_rows(len(self.names))
        self.done = 0

    def progress(self):
        return self.done, self.n

    def head(self, n: int = HEAD_ROWS) -> RawChunk:
        s = slice(0, min(n, self.n))
        return RawChunk({k: np.asarray(self._get(k, s)) for k in self.names}, 0, s.stop)

    def chunks(self, plan: dict, text_types=None):
        for start in range(0, self.n, self.chunk_rows):
            s = slice(start, min(start + self.chunk_rows, self.n))
            cols = {k: np.array(self._get(k, s)) for k in plan}
            self.done = s.stop
            yield RawChunk(cols, start, s.stop - start)

    def close(self) -> None:
        pass


class NpzReader:
    """Each member array is a column (2-D members are list columns), streamed from the zip."""

    def __init__(self, path: str, name: str, *, chunk_rows=None):
        self.path, self.file = name, path
        try:
            self.zf = zipfile.ZipFile(path)
            members = self.zf.namelist()
        except _ZIP_ERRORS as e:
            raise PredictionFileError(name, f"not a readable .npz file: {e}") from None
        self.headers = {}
        for m in members:
            if not m.endswith(".npy"):
                continue
            col = m[:-4]
            try:
                with self.zf.open(m) as f:
                    self.headers[col] = (m,) + self._header(f, col)
            except PredictionFileError:
                raise
            except _ZIP_ERRORS as e:
                raise PredictionFileError(name, f"member {col!r} is damaged ({type(e).__name__}: {e})") from None
        if not self.headers:
            raise PredictionFileError(name, "the archive holds no arrays")
        self.names = list(self.headers)
        lengths = {n: v[1][0] for n, v in self.headers.items()}
        if len(set(lengths.values())) != 1:
            raise PredictionFileError(name, "arrays have different lengths: "
                                      + ", ".join(f"{n}={k}" for n, k in lengths.items()))
        self.n = next(iter(lengths.values()))
        width = sum(int(np.prod(v[1][1:], dtype=np.int64)) if len(v[1]) > 1 else 1 for v in self.headers.values())
        self.chunk_rows = chunk_rows or default_chunk_rows(width)
        self.done = 0

    def _header(self, f, col):
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = np.lib.format._read_array_header(f, version)
        if dtype.hasobject:
            raise PredictionFileError(self.path, f"member {col!r} holds Python objects; refusing to unpickle")
        if len(shape) not in (1, 2):
            raise PredictionFileError(self.path, f"member {col!r} must be 1-D or 2-D; got shape {shape}")
        return shape, fortran, dtype

    def progress(self):
        return self.done, self.n

    def head(self, n: int = HEAD_ROWS) -> RawChunk:
        gen = self._read(list(self.names), min(n, self.n))
        try:
            return next(gen)
        except StopIteration:
            return RawChunk({k: np.empty(0) for k in self.names}, 0, 0)
        finally:
            gen.close()

    def chunks(self, plan: dict, text_types=None):
        yield from self._read(list(plan), self.chunk_rows)

    def _read(self, names, rows):
        opened = {}
        try:
            for col in names:
                m, shape, fortran, dtype = self.headers[col]
                try:
                    f = self.zf.open(m)
                    self._header(f, col)
                    if fortran and len(shape) == 2:
                        # Column-major data cannot be read row by row: this member is read whole.
                        data = f.read()
                        arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F")
                        f.close()
                        opened[col] = arr
                    else:
                        opened[col] = f
                except PredictionFileError:
                    raise
                except _ZIP_ERRORS as e:
                    raise PredictionFileError(self.path, f"member {col!r} is damaged ({type(e).__name__}: {e})") \
                        from None
            for start in range(0, self.n, max(rows, 1)):
                k = min(rows, self.n - start)
                cols = {}
                for col, f in opened.items():
                    m, shape, fortran, dtype = self.headers[col]
                    if isinstance(f, np.ndarray):
                        cols[col] = f[start:start + k]
                        continue
                    width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
                    nbytes = k * width * dtype.itemsize
                    try:
                        buf = f.read(nbytes)
                    except _ZIP_ERRORS as e:
                        raise PredictionFileError(self.path, f"member {col!r} is damaged ({type(e).__name__}: {e})",
                                                  row=start + 1) from None
                    if len(buf) != nbytes:
                        raise PredictionFileError(self.path, f"member {col!r} is truncated", row=start + 1)
                    cols[col] = np.frombuffer(buf, dtype=dtype).reshape((k,) + tuple(shape[1:]))
                self.done = start + k
                yield RawChunk(cols, start, k)
        finally:
            for f in opened.values():
                if not isinstance(f, np.ndarray):
                    try:
                        f.close()
                    except _ZIP_ERRORS:
                        pass

    def close(self) -> None:
        self.zf.close()
