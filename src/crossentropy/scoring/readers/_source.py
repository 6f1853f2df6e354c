"""Bytes in: files, stdin, FIFOs and devices, decompressed on the fly, with look-ahead.

:class:`ByteSource` never seeks: a pipe or stdin is read once, front to back,
and format sniffing uses :meth:`ByteSource.peek`, which keeps what it looked
at for the next :meth:`~ByteSource.read`.  gzip, bzip2, xz and zstd streams
are recognised by their extension *and* by their magic bytes, and
decompressed incrementally (bounded memory).  Formats that need random access
(Parquet, NumPy) get a real file: the path itself, or a temporary copy of a
stream (:meth:`ByteSource.seekable_path`).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile

from ..errors import PredictionFileError

__all__ = ["ByteSource", "CorruptStream", "COMPRESSIONS", "compression_of", "strip_compression", "STDIN",
           "fill_block"]

STDIN = "-"
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))


class CorruptStream(Exception):
    """A compressed stream that cannot be decompressed (truncated or damaged)."""


def compression_of(name: str):
    """The compression named by the file's extension, or ``None``.

    >>> compression_of("preds.csv.GZ"), compression_of("a.parquet")
    ('gzip', None)
    """
    return COMPRESSIONS.get(os.path.splitext(str(name))[1].lower())


def strip_compression(name: str) -> str:
    """The name without its compression extension (``a.csv.gz`` → ``a.csv``)."""
    base, ext = os.path.splitext(str(name))
    return base if ext.lower() in COMPRESSIONS else str(name)


class _Counting:
    """A raw binary file that counts the bytes read (progress of compressed input)."""

    def __init__(self, f):
        self.f, self.count = f, 0

    def read(self, n=-1):
        b = self.f.read(n)
        self.count += len(b)
        return b

    def read1(self, n=-1):
        b = self.f.read1(n) if hasattr(self.f, "read1") else self.f.read(n)
        self.count += len(b)
        return b

    def readinto(self, buf):
        n = self.f.readinto(buf)
        self.count += n or 0
        return n

    def readable(self):
        return True

    def seekable(self):
        return False

    def close(self):
        self.f.close()

    @property
    def closed(self):
        return self.f.closed


def _decompressor(kind: str, raw, name: str):
    """A file-like object that yields the decompressed bytes of ``raw``."""
    if kind == "gzip":
        import gzip
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bz2":
        import bz2
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        import lzma
        return lzma.LZMAFile(raw, mode="rb")
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    try:
        import pyarrow as pa
    except ImportError:
        raise PredictionFileError(name, "reading zstd needs pyarrow or zstandard: pip install 'crossentropy[io]'") \
            from None
    return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd")


def _corrupt_types():
    import lzma
    import zlib
    types = [EOFError, OSError, zlib.error, lzma.LZMAError, ValueError]
    try:
        import pyarrow as pa
        types.append(pa.ArrowException)
    except ImportError:
        pass
    try:
        import zstandard
        types.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(types)


class ByteSource:
    """A byte stream to read front to back: a file, ``-`` (stdin), a FIFO or a device.

    ``name`` is what messages call it (``<stdin>`` for ``-``).
    ``compression`` is ``'gzip'``, ``'bz2'``, ``'xz'``, ``'zstd'`` or ``None``:
    the extension decides, else the magic bytes; the two must agree.
    """

    def __init__(self, path: str):
        self.path = str(path)
        self.name = "<stdin>" if self.path == STDIN else self.path
        self.total = None
        self._spooled: str | None = None
        self._buf = b""
        self._eof = False
        if self.path == STDIN:
            raw = sys.stdin.buffer
        else:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                raise PredictionFileError(self.path, "no such file") from None
            except OSError as e:
                raise PredictionFileError(self.path, f"cannot read: {e.strerror or e}") from None
            if stat.S_ISDIR(st.st_mode):
                raise PredictionFileError(self.path, "is a directory, not a file")
            if stat.S_ISREG(st.st_mode):
                self.total = st.st_size
            try:
                # A pipe or a device is read unbuffered: a buffered reader holds its lock while a read
                # blocks, so closing it from the main thread (after Ctrl-C, with the reader thread
                # waiting on a silent pipe) would wait for ever; our reads are large blocks anyway.
                raw = open(self.path, "rb") if self.total is not None else open(self.path, "rb", buffering=0)
            except OSError as e:
                raise PredictionFileError(self.path, f"cannot read: {e.strerror or e}") from None
        self._raw = _Counting(raw)
        self._stream = self._raw
        head = self._peek_raw(6)
        by_magic = next((k for m, k in _MAGIC if head.startswith(m)), None)
        by_name = compression_of(self.path)
        if by_name is not None and by_magic != by_name:
            self.close()
            raise PredictionFileError(self.name, f"the name says {by_name} but the data is not {by_name}-compressed"
                                      + (f" (it looks {by_magic}-compressed)" if by_magic else ""))
        self.compression = by_name or by_magic
        if self.compression:
            pending, self._buf = self._buf, b""
            self._stream = _decompressor(self.compression, _Prefixed(pending, self._raw), self.name)
        self._corrupt = _corrupt_types() if self.compression else (OSError,)

    def _peek_raw(self, n: int) -> bytes:
        while len(self._buf) < n:
            b = self._raw.read(n - len(self._buf))
            if not b:
                break
            self._buf += b
        return self._buf[:n]

    # -- reading ------------------------------------------------------------------------

    def _damaged(self, e) -> CorruptStream:
        what = f"the {self.compression} data" if self.compression else "the file"
        return CorruptStream(f"{what} is truncated or damaged ({type(e).__name__}: {e})")

    def _read_stream(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except self._corrupt as e:
            raise self._damaged(e) from None

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes from the current position, without consuming them."""
        while len(self._buf) < n and not self._eof:
            b = self._read_stream(max(n - len(self._buf), 1 << 16))
            if not b:
                self._eof = True
                break
            self._buf += b
        return self._buf[:n]

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end)."""
        out = [self._buf[:n]]
        got = len(out[0])
        self._buf = self._buf[n:]
        while got < n and not self._eof:
            b = self._read_stream(n - got)
            if not b:
                self._eof = True
                break
            out.append(b)
            got += len(b)
        return b"".join(out)

    def readinto(self, b) -> int:
        """Fill the writable buffer ``b`` from the current position; fewer bytes only at the end.

        Large reads go straight into ``b`` (no intermediate ``bytes``).
        """
        mv = memoryview(b).cast("B")
        size = len(mv)
        got = 0
        if self._buf:
            got = min(len(self._buf), size)
            mv[:got] = self._buf[:got]
            self._buf = self._buf[got:]
        into = getattr(self._stream, "readinto", None)
        while got < size and not self._eof:
            try:
                if into is not None:
                    r = into(mv[got:])
                else:
                    data = self._stream.read(size - got)
                    r = len(data)
                    mv[got:got + r] = data
            except self._corrupt as e:
                raise self._damaged(e) from None
            if not r:
                self._eof = True
                break
            got += r
        return got

    def progress(self):
        """``(bytes read, total bytes)`` of the underlying file; total ``None`` for streams."""
        return self._raw.count, self.total

    def seekable_path(self) -> str:
        """A real file with these (decompressed) bytes: the path itself, or a temporary copy."""
        if self.path != STDIN and not self.compression and self.total is not None and not self._buf:
            return self.path
        if self._spooled is None:
            fd, tmp = tempfile.mkstemp(prefix="crossentropy-", suffix=".spool")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(self._buf)
                    self._buf = b""
                    while True:
                        b = self._read_stream(1 << 20)
                        if not b:
                            break
                        out.write(b)
            except BaseException:
                os.unlink(tmp)
                raise
            self._spooled = tmp
            self._eof = True
        return self._spooled  # type: ignore[return-value]  # set just above when it was None

    def close(self) -> None:
        try:
            if self._stream is not self._raw:
                self._stream.close()
            if self.path != STDIN:
                self._raw.close()
        except Exception:  # closing a damaged stream can fail again: nothing left to do
            pass
        if self._spooled is not None:
            try:
                os.unlink(self._spooled)
            except OSError:
                pass
            self._spooled = None


class _Prefixed:
    """``prefix`` followed by the rest of ``raw`` (bytes already peeked at)."""

    def __init__(self, prefix: bytes, raw):
        self.prefix, self.raw = prefix, raw

    def read(self, n=-1):
        if self.prefix:
            if n is None or n < 0:
                out, self.prefix = self.prefix + self.raw.read(), b""
                return out
            out, self.prefix = self.prefix[:n], self.prefix[n:]
            if len(out) < n:
                out += self.raw.read(n - len(out))
            return out
        return self.raw.read(n)

    def read1(self, n=-1):
        return self.read(n if n and n > 0 else 1 << 16)

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def readable(self):
        return True

    def seekable(self):
        return False

    def close(self):
        pass

    @property
    def closed(self):
        return False



def fill_block(source: ByteSource, buf: bytes, size: int, line: int, need_newline: bool = False):
    """``(buf, eof)``: ``buf`` extended to at least ``size`` bytes (and a line end, if asked) or to the end.

    ``line`` is the line number where ``buf`` starts, for the message of a
    damaged compressed stream.
    """
    while len(buf) < size or (need_newline and b"\n" not in buf):
        try:
            b = source.read(max(size - len(buf), 1 << 12))
        except CorruptStream as e:
            raise PredictionFileError(source.name, str(e), line=line + buf.count(b"\n")) from None
        if not b:
            return buf, True
        buf += b
    return buf, False
