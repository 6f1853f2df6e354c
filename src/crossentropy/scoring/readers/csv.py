"""CSV / TSV: Arrow's parser for speed, Python's ``csv`` module as the authority.

The byte stream is cut into blocks at line ends (never inside a quoted
field: a cut is made only where the count of ``"`` so far is even).  Each
block is parsed by ``pyarrow.csv`` when pyarrow is installed — typed, in
Arrow's threads, while the previous block is being scored — and its rows get
exact line numbers from the block's first line.  A block that Arrow refuses
(a bad number, a short row, a whitespace-only line…) or that Arrow could
mis-number (blank lines, line breaks inside quotes, lone ``\\r``, non-UTF-8
bytes) is parsed again by Python's :mod:`csv` module, which either reads it
or names the exact line and column of the problem.  The two parsers accept
the same numbers (see :mod:`._base`), so the report does not depend on which
one read a block (``--csv-engine`` forces one, for tests).

The delimiter is sniffed from the header and the first lines among ``,``
``;`` tab and ``|`` unless given; ``.tsv`` / ``.tab`` files use tab.
"""

from __future__ import annotations

import csv
import io
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..errors import PredictionFileError
from ._base import (HEAD_ROWS, INTEGER, NUMBER, RawChunk, arrow_coded, arrow_numpy, check_names, factorize,
                    parse_floats)
from ._source import ByteSource, CorruptStream

__all__ = ["CsvReader", "sniff_delimiter", "DELIMITERS"]

DELIMITERS = (",", "\t", ";", "|")
_HEAD_BYTES = 1 << 18
_MAX_BLOCK = 16 << 20
_DEFAULT_BLOCK = 2 << 20
_SMALL_FILE = 1 << 20  # below this, Python's parser alone (importing pyarrow would cost more)
_PARSERS = 2  # Arrow parser threads


class _Stopped(Exception):
    """The consumer stopped reading."""


def _ready(value) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def _failed(e: BaseException) -> Future:
    f: Future = Future()
    f.set_exception(e)
    return f


def _text(path, data: bytes, first_line: int) -> str:
    """``data`` decoded as UTF-8, or an error naming the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        col = e.start - data.rfind(b"\n", 0, e.start)
        raise PredictionFileError(path, f"not UTF-8 text ({e.reason} at byte {col} of the line)", line=line) from None


def sniff_delimiter(lines: list) -> str:
    """The delimiter among ``, \\t ; |`` that splits the header into the most fields
    and every sample line into as many; ``,`` when nothing fits.

    >>> sniff_delimiter(["label;p0;p1", "0;0,2;0,8"]), sniff_delimiter(["a|b", "1|2"]), sniff_delimiter(["x"])
    (';', '|', ',')
    """
    best, best_width = ",", 1
    for d in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=d))
        except csv.Error:
            continue
        rows = [r for r in rows if r and not (len(r) == 1 and not r[0].strip())]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        if all(len(r) == width for r in rows[1:-1]) and width > best_width:
            best, best_width = d, width
    return best


_SENTINEL = "\u2063crossentropy-end-of-file\u2063"


def _with_sentinel(lines):
    """The lines, then one line that only an open quoted field would swallow."""
    yield from lines
    yield _SENTINEL + "\n"


def _decoded_lines(reader, pending: bytes, line0: int):
    """Text lines of ``pending`` and the rest of the source, decoded incrementally as UTF-8."""
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")()
    line = line0
    buf = pending
    while True:
        try:
            more = reader.source.read(1 << 20)
        except CorruptStream as e:
            raise PredictionFileError(reader.path, str(e), line=line) from None
        data = buf + more
        cut = data.rfind(b"\n") + 1 if more else len(data)
        chunk, buf = data[:cut], data[cut:]
        try:
            text = dec.decode(chunk, final=not more)
        except UnicodeDecodeError:
            _text(reader.path, chunk, line)  # raises with the exact line
            raise
        for t in io.StringIO(text, newline=""):
            yield t
        line += chunk.count(b"\n")
        if not more:
            return


def _open_quote_parity(a: np.ndarray) -> np.ndarray:
    """1 where an odd number of ``"`` precede (and include) each byte: one byte per byte of input."""
    return np.bitwise_xor.accumulate((a == 34).view(np.uint8))


def _safe_cut(buf, start: int = 0, end: int | None = None) -> int:
    """End of the last complete line of ``buf[:end]`` that is not inside quotes (0 if none)."""
    nl = buf.rfind(b"\n", 0, len(buf) if end is None else end)
    if nl < start:
        return 0
    if buf.find(b'"', 0, nl) < 0:
        return nl + 1
    a = np.frombuffer(buf, dtype=np.uint8, count=nl + 1)
    ends = np.flatnonzero(a == 10)
    even = ends[_open_quote_parity(a)[ends] == 0]
    return int(even[-1]) + 1 if even.size else 0


def _quoted_newline(a: np.ndarray) -> bool:
    """Whether a line break sits inside a quoted field (``a``: the bytes as ``uint8``)."""
    ends = np.flatnonzero(a == 10)
    return bool(_open_quote_parity(a)[ends].any())


class _Block:
    """Whole lines: ``data[:n]``, from line ``line0``, with ``newlines`` line breaks.

    ``data`` is a buffer that the next block reuses: read it (or copy it with
    :meth:`tobytes`) before asking for the next one.
    """

    __slots__ = ("data", "n", "line0", "newlines")

    def __init__(self, data, n, line0, newlines):
        self.data, self.n, self.line0, self.newlines = data, n, line0, newlines

    def array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8, count=self.n)

    def find(self, sub: bytes) -> int:
        return self.data.find(sub, 0, self.n)

    def count(self, sub: bytes) -> int:
        return self.data.count(sub, 0, self.n)

    def tobytes(self) -> bytes:
        return bytes(memoryview(self.data)[:self.n])


class CsvReader:
    """Rows of a CSV/TSV byte stream as :class:`RawChunk` s; see the module docstring."""

    def __init__(self, source: ByteSource, *, delimiter=None, tsv=False, chunk_rows=None, engine="auto"):
        self.source, self.path = source, source.name
        self.engine = engine
        try:
            head = source.peek(_HEAD_BYTES)
        except CorruptStream as e:
            raise PredictionFileError(self.path, str(e)) from None
        if head.startswith(b"\xef\xbb\xbf"):
            source.read(3)
            head = head[3:]
        if not head.strip():
            raise PredictionFileError(self.path, "the file is empty (expected a header line)")
        cut = _safe_cut(head)
        hcut = self._header_end(head)
        header_bytes = head[:hcut]
        header_text = _text(self.path, header_bytes, 1)
        if delimiter is None:
            sample = _text(self.path, head[:cut] if cut else head, 1).splitlines()[:50]
            delimiter = "\t" if tsv else sniff_delimiter(sample)
            self.sniffed = not tsv
        else:
            self.sniffed = False
        if len(delimiter) != 1 or delimiter in "\r\n\"":
            raise PredictionFileError(self.path, f"the delimiter must be one character other than a quote or a line "
                                      f"break; got {delimiter!r}")
        self.delimiter = delimiter
        try:
            header = next(csv.reader(io.StringIO(header_text), delimiter=delimiter))
        except (StopIteration, csv.Error) as e:
            raise PredictionFileError(self.path, f"malformed header ({e})", line=1) from None
        self.names = [h.strip() for h in header]
        check_names(self.path, self.names, line=1)
        if len(self.names) < 2:
            hint = ""
            for d in DELIMITERS:
                if d != delimiter and d in header_text:
                    hint = f"; the header contains {d!r}: pass --delimiter {d!r}" if d != "\t" else \
                        "; the header contains tabs: pass --delimiter tab"
                    break
            raise PredictionFileError(self.path, f"the header has one column ({self.names[0]!r}) with the delimiter "
                                      f"{delimiter!r}{hint}", line=1)
        source.read(hcut)
        self.first_data_line = 1 + header_bytes.count(b"\n")
        data = head[hcut:hcut + (1 << 16)]
        lines = max(data.count(b"\n"), 1)
        self.line_bytes = max(len(data) / lines, 1.0)
        self.chunk_rows = chunk_rows
        self.plan: dict = {}
        self._rows_done = 0

    def _header_end(self, head: bytes) -> int:
        nl = head.find(b"\n")
        if nl < 0:
            return len(head)
        if head.find(b'"', 0, nl) < 0:
            return nl + 1
        a = np.frombuffer(head, dtype=np.uint8)
        ends = np.flatnonzero(a == 10)
        even = ends[_open_quote_parity(a)[ends] == 0]
        return int(even[0]) + 1 if even.size else len(head)

    def progress(self):
        return self.source.progress()

    # -- blocks of whole lines ----------------------------------------------------------

    def _block_bytes(self) -> int:
        if self.chunk_rows is None:
            return _DEFAULT_BLOCK
        return int(min(max(self.chunk_rows * self.line_bytes, 1), _MAX_BLOCK))

    def _blocks(self, spare=None):
        """``(first line number, block, last)`` of consecutive :class:`_Block` s of whole lines.

        The bytes are read straight into a buffer: one, reused block after
        block, or with ``spare(size)`` (a function that gives a free buffer of
        at least ``size`` bytes) a buffer per block, until its reader hands it
        back.
        ``block`` is ``None`` when no safe cut was found in a large window (a
        stray quote in an unquoted field makes the quote count useless): the
        rest of the file is then read as one stream by Python's parser, which
        keeps memory bounded; the third item is then the pending bytes.
        """
        size = self._block_bytes()
        limit = max(4 * size, _MAX_BLOCK)
        buf = bytearray(size)
        have = 0
        line = self.first_data_line
        eof = False
        while True:
            if not eof and have < len(buf):
                try:
                    got = self.source.readinto(memoryview(buf)[have:])
                except CorruptStream as e:
                    raise PredictionFileError(self.path, str(e), line=line + buf.count(b"\n", 0, have)) from None
                eof = have + got < len(buf)
                have += got
            cut = have if eof else _safe_cut(buf, 0, have)
            if cut == 0:
                if eof:
                    return
                if have >= limit:
                    yield line, None, bytes(memoryview(buf)[:have])
                    return
                bigger = bytearray(2 * len(buf))  # a line (or a quoted field) longer than the block
                bigger[:have] = memoryview(buf)[:have]
                buf = bigger
                continue
            newlines = int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8, count=cut) == 10))
            last = eof and cut == have
            yield line, _Block(buf, cut, line, newlines), last
            line += newlines
            if last:
                return
            rest = memoryview(buf)[cut:have]  # the partial line goes to the front (of the next buffer)
            if spare is not None:
                buf = spare(len(buf))
            buf[:have - cut] = rest
            have -= cut

    # -- parsing ------------------------------------------------------------------------

    def head(self, n: int = HEAD_ROWS) -> RawChunk:
        """The first ``n`` rows: a column is float64 when every value is a number, else strings.

        ``head_types`` records, per column, ``'int'`` (every value an integer
        token), ``'float'`` (every value a number) or ``'str'``.
        """
        want = _HEAD_BYTES
        while True:
            data = self.source.peek(want)
            if len(data) < want or data.count(b"\n") > n or want >= 64 * _HEAD_BYTES:
                break
            want *= 4
        whole = len(data) < want
        block = data if whole else data[:_safe_cut(data)]
        rows, lines = self._python_rows(block, self.first_data_line, limit=n, last=whole)
        cols: list = list(zip(*rows)) if rows else [()] * len(self.names)
        out: dict = {}  # name -> array or Coded
        self.head_types = {}
        for name, col in zip(self.names, cols):
            col = list(col)
            if col and all(NUMBER.fullmatch(t) for t in col):
                out[name] = np.array([float(t) for t in col], dtype=np.float64)
                self.head_types[name] = "int" if all(INTEGER.fullmatch(t) for t in col) else "float"
            else:
                out[name] = factorize([t.strip(" \t") for t in col])
                self.head_types[name] = "str"
        return RawChunk(out, 0, len(rows), np.array(lines, dtype=np.int64))

    def _python_rows(self, block: bytes, line0: int, limit=None, last=False):
        """Rows of ``block`` (lists of strings) and their line numbers; blank lines skipped.

        ``last``: the block ends the file, and a quoted field still open there
        is an error (the file was cut inside it).
        """
        text = _text(self.path, block, line0)
        lines_in = io.StringIO(text, newline="")
        if last:
            lines_in = _with_sentinel(lines_in)
        return self._rows_of(lines_in, line0, limit)

    def _rows_of(self, lines_in, line0, limit=None):
        rows, lines = [], []
        for rec, ln in self._iter_rows(lines_in, line0):
            rows.append(rec)
            lines.append(ln)
            if limit is not None and len(rows) >= limit:
                break
        return rows, lines

    def _python_block(self, line0: int, block: bytes, first_row: int, last: bool = False) -> RawChunk:
        rows, lines = self._python_rows(block, line0, last=last)
        return self._typed_chunk(rows, lines, first_row)

    def _typed_chunk(self, rows, lines, first_row) -> RawChunk:
        lines = np.array(lines, dtype=np.int64)
        cols: dict = {}  # name -> array or Coded
        for j, name in enumerate(self.names):
            kind = self.plan.get(name)
            if kind is None:
                continue
            tokens = [r[j] for r in rows]

            def where(i):
                return {"line": int(lines[i])}
            if kind == "float":
                cols[name] = parse_floats(tokens, self.path, name, where, self.delimiter)
            elif kind == "floats":
                raise PredictionFileError(self.path, "a CSV column holds one number per row, not a list",
                                          column=name)
            else:
                if kind == "label" and tokens and all(INTEGER.fullmatch(t) for t in tokens):
                    try:
                        cols[name] = np.array([int(t) for t in tokens], dtype=np.int64)
                        continue
                    except OverflowError:
                        pass
                cols[name] = factorize([t.strip(" \t") for t in tokens])
        return RawChunk(cols, first_row, len(rows), lines)

    def _python_stream(self, line0: int, pending: bytes, first_row: int):
        """The rest of the file through one :func:`csv.reader`, in chunks (bounded memory)."""
        rows_per = self.chunk_rows or 16384
        lines_in = _with_sentinel(_decoded_lines(self, pending, line0))
        reader_rows = self._iter_rows(lines_in, line0)
        row = first_row
        while True:
            rows, lines = [], []
            for rec, ln in reader_rows:
                rows.append(rec)
                lines.append(ln)
                if len(rows) >= rows_per:
                    break
            if not rows:
                return
            chunk = self._typed_chunk(rows, lines, row)
            row += chunk.n
            yield chunk

    def _iter_rows(self, lines_in, line0):
        reader = csv.reader(lines_in, delimiter=self.delimiter, strict=False)
        width = len(self.names)
        start = 0
        try:
            for rec in reader:
                ln = line0 + start
                start = reader.line_num
                if rec and _SENTINEL in rec[-1]:
                    if rec == [_SENTINEL]:
                        return
                    raise PredictionFileError(self.path, "a quoted field is never closed (the file ends inside it)",
                                              line=ln)
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue
                if len(rec) != width:
                    raise PredictionFileError(self.path, f"expected {width} fields as in the header, found "
                                              f"{len(rec)}", line=ln)
                yield rec, ln
        except csv.Error as e:
            raise PredictionFileError(self.path, f"malformed CSV: {e}", line=line0 + reader.line_num - 1) from None

    def _arrow_block(self, pa, pacsv, block: _Block, first_row: int, last: bool = False):
        """The block through Arrow, or ``None`` when Python's parser must read it.

        Blank lines (which Arrow skips) show as fewer rows than line breaks.
        """
        a = block.array()
        if block.find(b'"') >= 0:
            if last and block.count(b'"') % 2:
                return None  # maybe a quoted field cut by the end of the file: Python's parser says
            if _quoted_newline(a):
                return None
        if block.find(b"\r") >= 0 and block.count(b"\r") != block.count(b"\r\n"):
            return None  # lone CR line ends: Arrow splits lines there, we count \n
        if a.size and a.max() >= 0x80:  # not ASCII: Python's parser names a line that is not UTF-8
            try:
                block.tobytes().decode("utf-8")
            except UnicodeDecodeError:
                return None
        line0 = block.line0
        types, include = {}, []
        for name in self.names:
            kind = self.plan.get(name)
            if kind is None:
                continue
            include.append(name)
            if kind == "float":
                types[name] = pa.float64()
            elif kind == "floats":
                return None
            elif kind == "label":
                types[name] = self._text_types.get(name, pa.string())
            else:
                types[name] = pa.string()
        try:
            # One Arrow thread per block: the block is parsed in our reader thread while
            # the previous one is scored (and Arrow's own pool, driven from a thread
            # of ours, can abort the interpreter at exit).
            t = pacsv.read_csv(
                pa.py_buffer(memoryview(block.data)[:block.n]),
                read_options=pacsv.ReadOptions(column_names=self.names, block_size=block.n + 1,
                                               use_threads=False),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"', double_quote=True,
                                                 escape_char=False, newlines_in_values=False,
                                                 ignore_empty_lines=True),
                convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include, null_values=[],
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                     true_values=[], false_values=[], check_utf8=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        n = t.num_rows
        if n != block.newlines + (0 if a[-1] == 10 else 1):
            return None
        cols: dict = {}  # name -> array or Coded
        for name in include:
            c = t.column(name)
            if pa.types.is_floating(c.type) or pa.types.is_integer(c.type):
                cols[name] = arrow_numpy(c)
            else:
                cols[name] = arrow_coded(c)
        return RawChunk(cols, first_row, n, np.arange(line0, line0 + n, dtype=np.int64))

    def _use_arrow(self):
        if self.engine == "python":
            return None
        if self.engine == "auto":
            total = self.source.total
            if total is not None and total < _SMALL_FILE:
                return None
        try:
            import pyarrow as pa
            import pyarrow.csv as pacsv
        except ImportError:
            if self.engine == "arrow":
                raise PredictionFileError(self.path, "--csv-engine arrow needs pyarrow: pip install "
                                          "'crossentropy[io]'") from None
            return None
        return pa, pacsv

    def chunks(self, plan: dict, text_types: dict | None = None):
        """Every row from the first, typed as ``plan`` asks (``{name: kind}``), as :class:`RawChunk` s.

        ``text_types``: for ``label``/``text`` columns, ``'int'`` or ``'float'``
        when the sample was all numbers (Arrow then reads them as such; a
        block that disagrees goes to Python's parser).
        """
        self.plan = dict(plan)
        arrow = self._use_arrow()
        if arrow is not None:
            pa = arrow[0]
            tt = {"int": pa.int64(), "float": pa.float64()}
            self._text_types = {k: tt[v] for k, v in (text_types or {}).items() if v in tt}
            yield from self._threaded(arrow)
            return
        row = 0
        for line0, block, last in self._blocks():
            if block is None:
                yield from self._python_stream(line0, last, row)
                return
            c = self._python_block(line0, block.tobytes(), row, last)
            row += c.n
            if c.n:
                yield c

    def _threaded(self, arrow):
        """Blocks read by a helper thread and parsed by two more (Arrow releases the GIL), in order.

        A block is read into a buffer of its own (four in turn), parsed by
        one of two parser threads while the next is read and the previous
        ones are scored; the consumer takes the parsed blocks in file order.
        """
        pa, pacsv = arrow
        n_buffers = _PARSERS + 2
        free: queue.Queue = queue.Queue()
        for _ in range(n_buffers):
            free.put(None)  # allocated on first use, at the size asked
        done: queue.Queue = queue.Queue(maxsize=_PARSERS + 1)  # futures of parsed blocks, in file order
        stop = threading.Event()
        parsers = ThreadPoolExecutor(max_workers=_PARSERS, thread_name_prefix="crossentropy-csv-parse")

        def spare(size):
            while True:
                buf = free.get()
                if stop.is_set():
                    raise _Stopped
                if buf is None or len(buf) < size:
                    buf = bytearray(size)
                return buf

        def parse(line0, block, last):
            try:
                chunk = self._arrow_block(pa, pacsv, block, 0, last)
                # Python's parser reads a refused block in the consumer's thread: a copy of it.
                return line0, None if chunk is not None else (block.tobytes(), last), chunk
            finally:
                free.put(block.data)

        def produce():
            try:
                for line0, block, last in self._blocks(spare):
                    if stop.is_set():
                        return
                    if block is None:
                        done.put(_ready(("stream", line0, last)))
                        return
                    done.put(parsers.submit(parse, line0, block, last))
                done.put(_ready(("end", None, None)))
            except _Stopped:
                return
            except BaseException as e:  # handed to the consumer, who raises it
                done.put(_failed(e))

        th = threading.Thread(target=produce, name="crossentropy-csv", daemon=True)
        th.start()
        row = 0
        try:
            while True:
                item = done.get().result()
                if item[0] == "end":
                    return
                if item[0] == "stream":
                    yield from self._python_stream(item[1], item[2], row)
                    return
                line0, block, chunk = item
                if chunk is None:
                    chunk = self._python_block(line0, block[0], row, block[1])
                else:
                    chunk.first_row = row
                row += chunk.n
                if chunk.n:
                    yield chunk
        finally:
            stop.set()
            free.put(None)  # wakes the reader if it waits for a buffer
            # Let the reader and the parsers finish before going on: a thread still
            # inside Arrow when the interpreter exits aborts the process.  Keep the
            # queue empty so that the reader is never blocked on it; one blocked on
            # its input (a pipe that stays silent) is in Python code and left to the exit.
            # After Ctrl-C, only a moment: a reader still alive then is waiting on its input.
            interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
            deadline = time.monotonic() + (0.5 if interrupted else 10.0)
            while th.is_alive() and time.monotonic() < deadline:
                try:
                    done.get_nowait()
                except queue.Empty:
                    th.join(0.01)
            parsers.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.source.close()
