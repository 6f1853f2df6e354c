"""Exact ROC AUC in bounded memory, mergeable.

The area under the ROC curve is the probability that a random positive
scores above a random negative (ties count half):

``AUC = Σ_v P_v · (N_<v + N_v / 2) / (P · N)``

over the distinct score values ``v``, with ``P_v``/``N_v`` the (weighted)
positives/negatives scoring exactly ``v`` and ``N_<v`` the negatives below.
It needs, for every distinct score, how many positives and negatives hold it
— nothing less gives the exact value — so :class:`RocTable` keeps exactly
that, in one of two forms:

* **Packed** (unweighted scores in [0, 2): probabilities, the common case).
  A non-negative double's bit pattern orders like the number, and below 2.0
  its top two bits are 0, so ``bits << 1 | label`` is one ``uint64`` key per
  row that sorts by score, negatives before positives of the same score
  (``-0.0`` loses its sign bit on the shift: it is ``0.0``).  Rows go into an
  unsorted buffer; a full buffer is sorted once (SIMD sort) into a run.  In
  the final pass, the negatives at or below a positive are just the count of
  negative keys before it: ``Σ_v P_v (N_<v + N_≤v)`` is one cumulative sum.
* **General** (sample weights, or any other scores, e.g. logits): for the
  positives and for the negatives, sorted runs of the distinct
  ``(score, weight)`` pairs with their row counts.  A packed table that meets
  a score outside [0, 2), or is merged with a general one, converts itself.

* **Exact and partition-independent.**  Without sample weights the counts are
  integers and the AUC is the exact rational ``Σ P_v (2 N_<v + N_v) / (2 P N)``
  rounded once.  With sample weights, rows are aggregated only when their
  score *and* weight are equal (an integer count of identical rows), and the
  final pass sums in one canonical order (score, then weight), so the result
  is the same bits for any chunking, partitioning or merge order.  The
  plotted curve's points are a function of the whole sorted table too (the
  first threshold of every 1/200 step along the curve).
* **Bounded memory.**  Buffers and runs count against a budget
  (``CROSSENTROPY_ROC_MEMORY`` bytes, default 32 MiB, shared by every table
  of a report); past it, the largest table's runs are merged into one and
  written to a temporary file, keeping only every 4096th key in memory.  The
  final pass reads every run once, front to back, a key range at a time
  (split points from the runs' own keys), with plain reads, so memory stays
  within the budget and temporary disk holds 8 bytes (general form: 8, 16
  weighted; plus 1 to 8 for repeated values) per row or distinct pair.
* **Mergeable and picklable.**  :meth:`merge` adopts the other table's runs;
  pickling loads spilled runs back into the state (a Dask worker ships them).

Scores equal as numbers are one value (``-0.0`` is ``0.0``); NaN is refused
upstream.  The binary task ranks the raw score (a logit or p(class 1)); the
one-vs-rest tables of a multi-class task rank each class's probability.

>>> t = RocTable()
>>> t.update(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
>>> t.result()["auc"]  # sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
"""

from __future__ import annotations

import atexit
import mmap
import os
import shutil
import sys
import tempfile
import weakref
from typing import Any

import numpy as np

from .exact import ExactSums, exact_ratio, sorted_run_sums

__all__ = ["RocTable", "MemoryBudget", "default_budget", "BinTally"]

_DEFAULT_BYTES = 32 << 20
_MAX_RUNS = 64  # in-memory runs per side before they are compacted into one
_CURVE_POINTS = 200  # points kept for the plotted ROC curve


class MemoryBudget:
    """The in-memory entry budget shared by the ROC tables of one report."""

    def __init__(self, nbytes: int | None = None) -> None:
        if nbytes is None:
            env = os.environ.get("CROSSENTROPY_ROC_MEMORY")
            nbytes = int(env) if env else _DEFAULT_BYTES
        self.nbytes = max(int(nbytes), 1 << 16)
        self.tables: weakref.WeakSet = weakref.WeakSet()
        self._dir: str | None = None

    def used(self) -> int:
        return sum(t.nbytes_in_memory() for t in self.tables)

    def spill_dir(self) -> str:
        if self._dir is None or not os.path.isdir(self._dir):
            self._dir = tempfile.mkdtemp(prefix="crossentropy-roc-")
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir  # type: ignore[return-value]  # set just above when it was None

    def cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def enforce(self) -> None:
        """Spill the largest tables until the in-memory entries fit the budget."""
        while self.used() > self.nbytes:
            biggest = max(self.tables, key=lambda t: t.nbytes_in_memory(), default=None)
            if biggest is None or biggest.nbytes_in_memory() == 0:
                return
            biggest.spill()


_shared_budget = None


def default_budget() -> MemoryBudget:
    """The process-wide budget (tables created without one share it)."""
    global _shared_budget
    if _shared_budget is None:
        _shared_budget = MemoryBudget()
    return _shared_budget


_INDEX_STEP = 4096  # a spilled run keeps every 4096th key in memory, to find where a key range starts


class _Run:
    """One sorted run of one table's keys: ascending, unique per (key, weight) in the general form.

    General form: ``keys`` are scores (float64) of one side (positives or
    negatives), ``w`` is ``None`` for unweighted tables (every row weighs 1).
    Packed form: ``keys`` are ``uint64`` packed keys (see the module
    docstring), repeats allowed, and ``pos`` counts the positive rows.
    ``counts`` is ``None`` when every entry is one row, or the number of rows
    with that key (and weight).  A spilled run keeps its arrays in raw files
    in ``path`` and, in memory, only every ``_INDEX_STEP``-th key and its
    totals; it is read back front to back, by plain reads (a memory map would
    count the file's pages it touches — a binary search touches many — as
    resident memory).
    """

    __slots__ = ("keys", "w", "counts", "path", "n", "index", "dtypes", "rows", "weight", "pos")

    def __init__(self, keys, w=None, counts=None, pos=None):
        self.keys, self.w, self.counts, self.path = keys, w, counts, None
        self.n = int(keys.size)
        self.index = self.dtypes = None
        self.rows = self.weight = None
        self.pos = pos

    def nbytes(self) -> int:
        if self.path is not None:
            return 0
        return sum(a.nbytes for a in (self.keys, self.w, self.counts) if a is not None)

    def _read(self, name, start, stop):
        dt = self.dtypes.get(name)
        if dt is None:
            return None
        dt = np.dtype(dt)
        with open(os.path.join(self.path, name + ".bin"), "rb") as f:
            return np.fromfile(f, dtype=dt, count=stop - start, offset=start * dt.itemsize)

    def arrays(self):
        """``(keys, w, counts)`` (read from disk when spilled)."""
        if self.path is None:
            return self.keys, self.w, self.counts
        return tuple(self._read(name, 0, self.n) for name in ("keys", "w", "counts"))

    def sample_keys(self):
        """About 256 keys spread over the run (for choosing key ranges), without reading it."""
        if self.path is not None:
            return self.index
        return self.keys[::max(self.n // 256, 1)]

    def total(self, weighted: bool):
        """The run's rows (int) or weight (an exact :class:`~.exact.ExactSums`) in total."""
        if self.path is not None:
            return self.weight if weighted else self.rows
        return _totals(self.keys, self.w, self.counts, weighted)

    def spill(self, folder: str) -> None:
        if self.path is not None:
            return
        d = tempfile.mkdtemp(dir=folder)
        self.dtypes = {}
        for name in ("keys", "w", "counts"):
            a = getattr(self, name)
            if a is not None:
                a.tofile(os.path.join(d, name + ".bin"))
                self.dtypes[name] = a.dtype.str
        self.rows = _totals(self.keys, self.w, self.counts, False)
        self.weight = _totals(self.keys, self.w, self.counts, True) if self.w is not None else None
        self.index = self.keys[::_INDEX_STEP].copy()
        self.path = d
        self.keys = self.w = self.counts = None

    def load(self) -> None:
        if self.path is not None:
            k, w, c = self.arrays()
            shutil.rmtree(self.path, ignore_errors=True)
            self.keys, self.w, self.counts, self.path = k, w, c, None
            self.index = self.dtypes = None

    def reader(self):
        return _RunReader(self)


def _totals(k, w, c, weighted):
    if not weighted:
        return int(k.shape[0]) if c is None else int(c.sum(dtype=np.int64))
    # Kept exact (not rounded per run): the total is then the same bits however the rows were cut into runs
    # (chunks, partitions, spills).
    total = ExactSums()
    total.add(w if c is None else w * c)
    return total


def _exact_total(runs) -> float:
    total = ExactSums()
    for r in runs:
        total.merge(r.total(True))
    return total.value()


class _RunReader:
    """Reads a run front to back in key ranges: ``take(hi)`` gives the entries below ``hi`` not yet taken."""

    def __init__(self, run: _Run):
        self.run = run
        self.pos = 0  # entries consumed

    def take(self, hi) -> "_Run | None":
        r = self.run
        if self.pos >= r.n:
            return None
        if r.path is None:
            k = r.keys
            b = r.n if hi is None else int(np.searchsorted(k, hi, side="left"))
            a, self.pos = self.pos, max(b, self.pos)
            if b <= a:
                return None
            return _Run(k[a:b], None if r.w is None else r.w[a:b], None if r.counts is None else r.counts[a:b])
        # Spilled: read up to the index block that holds hi, then cut exactly.
        if hi is None:
            stop = r.n
        else:
            j = int(np.searchsorted(r.index, hi, side="left"))
            stop = min(j * _INDEX_STEP, r.n)
        if stop <= self.pos:
            return None
        keys = r._read("keys", self.pos, stop)
        b = keys.size if hi is None else int(np.searchsorted(keys, hi, side="left"))
        if b == 0:
            return None
        a = self.pos
        self.pos = a + b
        w = r._read("w", a, a + b)
        c = r._read("counts", a, a + b)
        return _Run(keys[:b], w, c)


def _canonical(keys, w=None, counts=None) -> _Run:
    """Sort by (key, weight) and add up the counts of equal pairs."""
    if w is None and counts is None:
        k = np.sort(keys)  # SIMD sort; equal keys are merged below, so stability is moot
        c = None
    else:
        order = np.argsort(keys) if w is None else np.lexsort((w, keys))
        k = keys[order]
        w = None if w is None else w[order]
        c = None if counts is None else counts[order]
    if k.size < 2:
        return _Run(k, w, c)
    new = np.empty(k.size, dtype=bool)
    new[0] = True
    np.not_equal(k[1:], k[:-1], out=new[1:])
    if w is not None:
        new[1:] |= w[1:] != w[:-1]
    if new.all():
        return _Run(k, w, c)
    starts = np.flatnonzero(new)
    cc = np.ones(k.size, dtype=np.int64) if c is None else c.astype(np.int64)
    return _Run(k[starts], None if w is None else w[starts], _narrow(np.add.reduceat(cc, starts)))


def _narrow(counts):
    """Counts in the smallest unsigned type that holds them."""
    top = int(counts.max()) if counts.size else 0
    for t in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(t).max:
            return counts.astype(t, copy=False)
    return counts.astype(np.int64, copy=False)


def _merge_runs(runs) -> _Run:
    ks: list = []
    ws: list = []  # arrays, or None (unweighted runs)
    cs: list = []
    any_counts = any(r.arrays()[2] is not None for r in runs)
    for r in runs:
        k, w, c = r.arrays()
        ks.append(np.asarray(k))
        ws.append(None if w is None else np.asarray(w))
        if any_counts:
            cs.append(np.ones(k.shape[0], dtype=np.int64) if c is None else np.asarray(c, dtype=np.int64))
    w = None if ws[0] is None else np.concatenate(ws)
    return _canonical(np.concatenate(ks), w, np.concatenate(cs) if any_counts else None)


def _per_key(run: _Run, weighted: bool):
    """Distinct keys and their rows (int64) or weight (float, summed in weight order)."""
    k, w, c = run.keys, run.w, run.counts
    if not weighted:
        return k, (np.ones(k.size, dtype=np.int64) if c is None else c.astype(np.int64))
    v = w if c is None else w * c
    new = np.empty(k.size, dtype=bool)
    new[0] = True
    np.not_equal(k[1:], k[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    return k[starts], np.add.reduceat(v, starts)


_U1 = np.uint64(1)
_FIRST = 1 << 16  # smallest buffer of a packed table (entries); a full one is replaced by one twice as large


def _unique(a) -> np.ndarray:
    """The distinct values of ``a``, ascending (``np.unique`` imports ``numpy.ma``: a tenth of a second)."""
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _anon_array(n: int) -> np.ndarray:
    """An uninitialised ``uint64`` array in fresh private memory pages, resident only once written.

    Its own mapping: dropping the array hands the pages straight back to the
    system (heap memory, freed, may stay with the process), so the resident
    size follows what the ROC tables hold.
    """
    flags = getattr(mmap, "MAP_PRIVATE", None)
    if flags is None or not n:  # Windows: ordinary memory
        return np.empty(n, dtype=np.uint64)
    m = mmap.mmap(-1, 8 * n, flags=flags | mmap.MAP_ANONYMOUS)
    return np.frombuffer(m, dtype=np.uint64)


def _packed_fit(x) -> bool:
    """Whether scores can be packed: every value in [0, 2) (``-0.0`` included; NaN fails)."""
    return x.size == 0 or bool(x.min() >= 0.0 and x.max() < 2.0)


def _pack_into(dst, x, positive) -> None:
    """``dst[:] = bits(x) << 1 | positive``: one sortable key per row (``x`` in [0, 2), contiguous float64)."""
    np.left_shift(x.view(np.uint64), _U1, out=dst)
    np.bitwise_or(dst, positive, out=dst)


_LITTLE = sys.byteorder == "little"


def _label_bits(keys):
    """The label bit of each packed key, as ``uint8`` (1: positive)."""
    # The bit is in the lowest byte: read that byte of each key (a strided view), not a
    # full 8-byte temporary.
    if _LITTLE and keys.flags.c_contiguous:
        return keys.view(np.uint8)[::8] & 1
    return (keys & _U1).astype(np.uint8)


def _positives(keys):
    """Indices of the positive keys, ascending."""
    return np.flatnonzero(_label_bits(keys))


def _sorted_packed(parts, compress: bool = True, in_place: bool = False) -> _Run:
    """One sorted packed run of ``parts`` (arrays of unsorted keys, or runs); ``compress``: fold repeats.

    ``in_place``: a single array part may be sorted where it is (no copy).
    """
    keys, counts = [], []
    for p in parts:
        k, _, c = p.arrays() if isinstance(p, _Run) else (p, None, None)
        keys.append(k)
        counts.append(c)
    if all(c is None for c in counts):
        if len(keys) > 1:
            k = np.concatenate(keys)
        else:
            k = keys[0] if in_place else keys[0].copy()
        k.sort()  # our own array: sorted in place
        c = None
    else:
        k = np.concatenate(keys)
        c = np.concatenate([np.ones(len(kk), dtype=np.int64) if cc is None else cc.astype(np.int64)
                            for kk, cc in zip(keys, counts)])
        order = np.argsort(k, kind="stable")
        k, c = k[order], c[order]
    return _compress(k, c, fold=compress)


def _compress(k, c=None, fold: bool = True) -> _Run:
    """A sorted packed run; repeated keys are folded into counts when that saves a quarter or more (``fold``)."""
    if fold and k.size > 1:
        same = k[1:] == k[:-1]
        dup = int(np.count_nonzero(same))
        if dup * 4 >= k.size:
            new = np.empty(k.size, dtype=bool)
            new[0] = True
            np.logical_not(same, out=new[1:])
            starts = np.flatnonzero(new)
            cc = np.ones(k.size, dtype=np.int64) if c is None else c
            c = _narrow(np.add.reduceat(cc, starts))
            k = k[starts]
    if c is None:
        pos = int(np.count_nonzero(_label_bits(k)))
    else:
        pos = int(c[(k & _U1).astype(bool)].sum(dtype=np.int64))
        c = _narrow(c) if c.dtype == np.int64 else c
    return _Run(k, None, c, pos=pos)


def _unpack(run: _Run):
    """A packed run as general runs ``(positives, negatives)`` (scores as float64)."""
    k, _, c = run.arrays()
    lab = (k & _U1).astype(bool)
    vals = (k >> _U1).view(np.float64)
    out: list[_Run | None] = []
    for m in (lab, ~lab):
        if m.any():
            out.append(_canonical(vals[m], None, None if c is None else c[m]))
        else:
            out.append(None)
    return out


class RocTable:
    """Exact ROC statistics of one score against a binary truth; see the module docstring.

    ``update(scores, positive, weights=None)``: float scores (no NaN), bool
    truth, optional non-negative sample weights (all updates of a table must
    agree on having weights or not).  :meth:`result` gives ``auc``,
    ``n_pos``/``n_neg`` (weighted totals) and a down-sampled ``curve`` of
    ``(fpr, tpr)`` points for plots.
    """

    def __init__(self, *, weighted: bool = False, budget: MemoryBudget | None = None) -> None:
        self.weighted = bool(weighted)
        self.budget = budget if budget is not None else default_budget()
        self.budget.tables.add(self)
        self.packed = not self.weighted
        self.runs: tuple = ([], [])  # general form: positives, negatives
        self.pruns: list = []  # packed form: sorted runs
        self._buf: np.ndarray | None = None  # packed form: the unsorted keys, in a buffer that grows in place
        self._fill = 0  # entries used in the buffer
        self._mem = 0  # bytes of the in-memory runs and buffer entries

    def __getstate__(self):
        for side in self.runs:
            for r in side:
                r.load()
        for r in self.pruns:
            r.load()
        return {"weighted": self.weighted, "packed": self.packed, "runs": self.runs, "pruns": self.pruns,
                "pending": self._pending()}

    def __setstate__(self, state):
        self.weighted = state["weighted"]
        self.packed = state.get("packed", False)
        self.runs = state["runs"]
        self.pruns = state.get("pruns", [])
        pending = state.get("pending")
        self._buf = pending if pending is not None and pending.size else None
        self._fill = 0 if self._buf is None else self._buf.size
        self.budget = default_budget()
        self.budget.tables.add(self)
        self._recount()

    def _pending(self):
        """The unsorted packed keys, as one array (``None`` when there are none)."""
        return None if self._buf is None or not self._fill else self._buf[:self._fill]

    def _recount(self) -> None:
        self._mem = (sum(r.nbytes() for side in self.runs for r in side) + sum(r.nbytes() for r in self.pruns)
                     + 8 * self._fill)

    def nbytes_in_memory(self) -> int:
        return self._mem

    # -- feeding ------------------------------------------------------------------------

    def update(self, scores, positive, weights=None) -> None:
        keys = np.asarray(scores, dtype=np.float64)
        pos = np.asarray(positive, dtype=bool)
        if keys.size == 0:
            return
        if self.weighted:
            w = np.asarray(weights, dtype=np.float64)
            keys = keys + 0.0  # -0.0 -> 0.0
            keep = w != 0.0  # a row of weight 0 adds nothing to any count
            for side, m in enumerate((pos & keep, ~pos & keep)):
                if m.any():
                    run = _canonical(keys[m], w[m])
                    self.runs[side].append(run)
                    self._mem += run.nbytes()
            self._maybe_compact()
            return
        if weights is not None:
            raise ValueError("this ROC table is unweighted")
        if self.packed and _packed_fit(keys):
            self.add_packed(keys, pos)
            return
        self._to_general()
        keys = keys + 0.0
        for side, m in enumerate((pos, ~pos)):
            if m.any():
                run = _canonical(keys[m])
                self.runs[side].append(run)
                self._mem += run.nbytes()
        self._maybe_compact()

    def add_packed(self, scores, positive) -> None:
        """Add unweighted rows whose scores are known to lie in [0, 2) (see :func:`_packed_fit`).

        The caller checks the range (once for many tables); a table already in
        the general form takes the general road.
        """
        x = np.ascontiguousarray(scores, dtype=np.float64)
        pos = np.asarray(positive, dtype=bool)
        if not self.packed:
            self.update(x, pos)
            return
        n = x.size
        dst = self._room(n)
        _pack_into(dst, x, pos)
        self.budget.enforce()

    def _room(self, n: int):
        """The next ``n`` entries of the buffer (a larger one, when full, gets a copy of it)."""
        if self._buf is None:
            share = self.budget.nbytes // 8 // max(len(self.budget.tables), 1)
            self._buf = _anon_array(max(share, _FIRST, n))
        elif self._fill + n > self._buf.size:
            buf = _anon_array(max(2 * self._buf.size, self._fill + n))
            buf[:self._fill] = self._buf[:self._fill]
            self._buf = buf
        dst = self._buf[self._fill:self._fill + n]
        self._fill += n
        self._mem += 8 * n
        return dst

    def _drop_buffer(self) -> None:
        self._buf, self._fill = None, 0

    def _to_general(self) -> None:
        """Convert a packed table to the general form (scores outside [0, 2), or a merge with one)."""
        if not self.packed:
            return
        self.packed = False
        parts = list(self.pruns)
        pend = self._pending()
        if pend is not None:
            parts.append(_sorted_packed([pend], in_place=True))
        self.pruns = []
        self._drop_buffer()
        for run in parts:
            for side, r in enumerate(_unpack(run)):
                if r is not None:
                    self.runs[side].append(r)
            run.load()  # removes its files, if spilled
        self._recount()
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        for side in self.runs:
            mem = [r for r in side if r.path is None]
            if len(mem) > _MAX_RUNS:
                merged = _merge_runs(mem)
                side[:] = [r for r in side if r.path is not None] + [merged]
                self._recount()
        self.budget.enforce()

    def spill(self) -> None:
        """Merge the in-memory data into one sorted run and write it to disk."""
        if self.packed:
            mem = [r for r in self.pruns if r.path is None]
            pend = self._pending()
            parts = mem + ([pend] if pend is not None else [])
            if parts:
                merged = _sorted_packed(parts, in_place=True)
                self._drop_buffer()
                merged.spill(self.budget.spill_dir())
                self.pruns = [r for r in self.pruns if r.path is not None] + [merged]
            self._mem = 0
            return
        for side in self.runs:
            mem = [r for r in side if r.path is None]
            if not mem:
                continue
            on_disk = [r for r in side if r.path is not None]
            merged = _merge_runs(mem) if len(mem) > 1 else mem[0]
            merged.spill(self.budget.spill_dir())
            side[:] = on_disk + [merged]
        self._mem = 0

    def merge(self, other: "RocTable") -> None:
        if other.weighted != self.weighted:
            raise ValueError("cannot merge a weighted ROC table with an unweighted one")
        if self.packed and other.packed:
            pend = other._pending()
            self.pruns.extend(other.pruns)
            if pend is not None:
                self._room(pend.size)[:] = pend
            other.pruns = []
            other._drop_buffer()
        else:
            self._to_general()
            other._to_general()
            for mine, theirs in zip(self.runs, other.runs):
                mine.extend(theirs)
                theirs.clear()
        self._recount()
        other._mem = 0
        if not self.packed:
            self._maybe_compact()
        else:
            self.budget.enforce()

    # -- reading ------------------------------------------------------------------------

    def _ranges(self, runs, per):
        """Split keys of ranges of about ``per`` entries (``[None]``: one range)."""
        total = sum(r.n for r in runs)
        if total <= per:
            return [None]
        pts = _unique(np.concatenate([np.asarray(r.sample_keys()) for r in runs]))
        n_ranges = -(-total // per)
        cuts = _unique(pts[np.linspace(0, pts.size - 1, n_ranges + 1).astype(np.int64)[1:-1]])
        if self.packed:
            cuts = _unique(cuts & ~_U1)  # cut before a score's negatives: a score is never split
        return cuts.tolist() + [None]

    def _pieces(self):
        """Per key range, in ascending order: the positives' and negatives' distinct keys and totals.

        Every run is read once, front to back, a range at a time.
        """
        runs = self.runs[0] + self.runs[1]
        per = max(self.budget.nbytes // 128, 1 << 14)  # merging a range needs ~50 bytes an entry
        readers = [[r.reader() for r in side] for side in self.runs]
        for hi in self._ranges(runs, per):
            out = []
            for side in readers:
                parts = [p for p in (rd.take(hi) for rd in side) if p is not None]
                if not parts:
                    out.append((np.empty(0), np.empty(0, dtype=np.float64 if self.weighted else np.int64)))
                    continue
                run = _merge_runs(parts) if len(parts) > 1 else parts[0]
                out.append(_per_key(run, self.weighted))
            yield out

    def _flush(self) -> None:
        """Sort the unsorted packed keys into a run."""
        pend = self._pending()
        if pend is not None:
            # Read once, in memory: no need to fold repeats (the final pass handles them).
            self.pruns.append(_sorted_packed([pend], compress=False, in_place=True))
            self._drop_buffer()
            self._recount()

    def _packed_pieces(self):
        """Per key range, in ascending order: the sorted packed keys and their counts (or ``None``)."""
        self._flush()
        per = max(self.budget.nbytes // 128, 1 << 14)  # merging a range needs ~24 bytes an entry
        readers = [r.reader() for r in self.pruns]
        for hi in self._ranges(self.pruns, per):
            parts = [p for p in (rd.take(None if hi is None else np.uint64(hi)) for rd in readers) if p is not None]
            if not parts:
                continue
            run = parts[0] if len(parts) == 1 else _sorted_packed(parts, compress=False)
            yield run.keys, run.counts

    def result(self, bins=None) -> dict:
        """``{'auc', 'n_pos', 'n_neg', 'curve': {'fpr': [...], 'tpr': [...]}}``; AUC None if a class is empty.

        ``bins`` (inner bin edges in (0, 1), ascending; unweighted tables): the
        same pass also counts the rows, the positives and the exact sum of the
        scores per bin (a score on an edge belongs to the lower bin), as
        ``'bins'``: a :class:`BinTally`.
        """
        tally = None if bins is None else BinTally(bins)
        if tally is not None and self.weighted:
            raise ValueError("bins are counted for unweighted tables only")
        out = self._packed_result(tally) if self.packed else self._general_result(tally)
        if tally is not None:
            out["bins"] = tally
        return out

    def _general_result(self, tally) -> dict:
        wtd = self.weighted
        P: Any  # weighted: float totals of exact sums; unweighted: int counts (exact_ratio below)
        N: Any
        if wtd:
            P, N = _exact_total(self.runs[0]), _exact_total(self.runs[1])
        else:
            P = sum(r.total(False) for r in self.runs[0])
            N = sum(r.total(False) for r in self.runs[1])
        curve = _Curve(P, N)
        num2: Any = ExactSums() if wtd else 0  # Σ_v P_v (2 N_<v + N_v)
        below = 0.0 if wtd else 0  # negatives below the current range
        below_p = 0.0 if wtd else 0  # positives below the current range
        for (kp, cp), (kn, cn) in self._pieces():
            if tally is not None:
                tally.add_values(kp, cp, positive=True)
                tally.add_values(kn, cn, positive=False)
            # Negatives at or below each negative key, accumulated from the running
            # total one key at a time: one canonical order of additions.
            cum = np.cumsum(np.concatenate(([below], cn)))
            cum_p = np.cumsum(np.concatenate(([below_p], cp)))
            if kp.size:
                a = np.searchsorted(kn, kp, side="left")
                b = np.searchsorted(kn, kp, side="right")
                lt, le = cum[a], cum[b]  # negatives < v and <= v
                if wtd:
                    num2.add(cp * (lt + le))  # P_v (2 N_<v + N_v) = P_v (N_<v + N_<=v)
                elif 2 * P * N < (1 << 62):  # no partial sum can leave int64
                    num2 += int(np.sum(cp * (lt + le)))
                else:
                    num2 += sum(int(x) * (int(y) + int(z)) for x, y, z in zip(cp, lt, le))
            if kp.size or kn.size:
                # The curve's thresholds: every distinct score of the range, with the
                # negatives and positives at or below it.
                t = _unique(np.concatenate((kp, kn)))
                curve.add(t.size, lambda i, t=t, cum=cum, cum_p=cum_p, kp=kp, kn=kn: (
                    cum[np.searchsorted(kn, t[i], side="right")], cum_p[np.searchsorted(kp, t[i], side="right")]))
            below = cum[-1] if wtd else int(cum[-1])
            below_p = cum_p[-1] if wtd else int(cum_p[-1])
        if wtd:
            auc = num2.value() / (2.0 * P * N) if P > 0 and N > 0 else None
        else:
            auc = exact_ratio(num2, 2 * P * N) if P and N else None
        return {"auc": auc, "n_pos": P, "n_neg": N, "curve": curve.points()}

    def _packed_result(self, tally=None) -> dict:
        self._flush()
        rows = sum(r.total(False) for r in self.pruns)
        P = sum(r.pos for r in self.pruns)
        N = rows - P
        curve = _Curve(P, N)
        num2 = 0  # Σ_v P_v (N_<v + N_≤v)
        below_n = below_p = 0  # negatives and positives below the current range
        for keys, counts in self._packed_pieces():
            if counts is None:
                part, n_pos = _packed_range(keys, below_n, below_p, curve, tally)
            else:
                part, n_pos = _packed_range_counts(keys, counts, below_n, below_p, curve, tally)
            num2 += part
            below_p += n_pos
            below_n += (keys.size if counts is None else int(counts.sum(dtype=np.int64))) - n_pos
        auc = exact_ratio(num2, 2 * P * N) if P and N else None
        return {"auc": auc, "n_pos": P, "n_neg": N, "curve": curve.points()}


def _packed_range(keys, below_n: int, below_p: int, curve: "_Curve", tally=None):
    """``(Σ P_v (N_<v + N_≤v), positives)`` of one range of sorted packed keys, one row each.

    Only the positives' positions are needed: a positive at position ``i``
    (the ``r``-th positive of the range) has ``i − r`` negatives before it in
    the range, which are the negatives at or below its score.
    """
    pidx = _positives(keys)
    p = int(pidx.size)
    below = below_n + below_p

    def at(i):
        pos_le = below_p + np.searchsorted(pidx, i, side="right")
        return below + 1 + i - pos_le, pos_le

    curve.add(keys.size, at, lambda i: np.searchsorted(keys, keys[i] | _U1, side="right") - 1)
    if tally is not None:
        tally.add_packed(keys, None, pidx)
    if p == 0:
        return 0, 0
    le_sum = p * below_n + int(pidx.sum(dtype=np.int64)) - p * (p - 1) // 2  # Σ N_≤v over the positives
    # A tie: a positive right after the negative key of its own score.
    j = pidx[1:] if pidx[0] == 0 else pidx
    if not np.any(keys[j - 1] == keys[j] - _U1):
        return 2 * le_sum, p
    # Ties: the negatives below a positive's score are those before the score's first key.
    first = np.searchsorted(keys, keys[pidx] & ~_U1, side="left")
    lt_sum = p * below_n + int((first - np.searchsorted(pidx, first, side="left")).sum(dtype=np.int64))
    return le_sum + lt_sum, p


def _packed_range_counts(keys, counts, below_n: int, below_p: int, curve: "_Curve", tally=None):
    """:func:`_packed_range` for keys with row counts (repeated scores folded)."""
    c = counts.astype(np.int64)
    lab = (keys & _U1).view(np.int64)
    posw = c * lab
    if tally is not None:
        tally.add_packed(keys, c, posw)
    negw = c - posw
    neg_le = np.cumsum(negw)
    neg_le += below_n
    pos_le = np.cumsum(posw)
    pos_le += below_p
    curve.add(keys.size, lambda i: (neg_le[i], pos_le[i]),
              lambda i: np.searchsorted(keys, keys[i] | _U1, side="right") - 1)
    vals = keys >> _U1
    start = np.empty(keys.size, dtype=bool)
    start[0] = True
    np.not_equal(vals[1:], vals[:-1], out=start[1:])
    neg_lt = np.where(start, neg_le - negw, 0)  # at a score's first key: the negatives below it
    np.maximum.accumulate(neg_lt, out=neg_lt)  # carried along the score's keys (it never decreases)
    both = neg_lt + neg_le
    n_pos = int(posw.sum())
    if 2 * (int(neg_le[-1]) + 1) * (below_p + n_pos + 1) < (1 << 62):  # no partial sum can leave int64
        part = int(np.dot(posw, both))
    else:
        part = sum(int(a) * int(b) for a, b in zip(posw.tolist(), both.tolist()) if a)
    return part, n_pos


class BinTally:
    """Per bin of scores: rows, positives and the exact sum of the scores (for class-wise calibration).

    ``edges``: the inner bin edges, ascending, in (0, 1); a score equal to an
    edge belongs to the lower bin (``searchsorted(edges, v, 'left')``, as
    scikit-learn's ``calibration_curve``); scores outside [0, 1] fall in the
    first or last bin.
    """

    def __init__(self, edges):
        self.edges = np.asarray(edges, dtype=np.float64)
        nb = self.edges.size + 1
        self.count = np.zeros(nb, dtype=np.int64)
        self.pos = np.zeros(nb, dtype=np.int64)
        self.sums = ExactSums(nb)
        # A packed key is in a bin above edge e when its score's bits exceed e's: keys ≥ (bits(e) + 1) << 1.
        self._edge_keys = (self.edges.view(np.uint64) + _U1) << _U1

    def add_packed(self, keys, counts, positives) -> None:
        """Sorted packed keys; ``positives``: their indices (``counts`` None) or the positive rows per key."""
        starts = np.concatenate(([0], np.searchsorted(keys, self._edge_keys, side="left")))
        ends = np.append(starts[1:], keys.size)
        if counts is None:
            self.sums._add_exact(sorted_run_sums(keys >> _U1, starts))
        else:
            self.sums.add_runs((keys >> _U1).view(np.float64), starts, counts)
        if counts is None:
            self.count += ends - starts
            self.pos += np.searchsorted(positives, ends) - np.searchsorted(positives, starts)
        else:
            cc = np.concatenate(([0], np.cumsum(counts)))
            pc = np.concatenate(([0], np.cumsum(positives)))
            self.count += cc[ends] - cc[starts]
            self.pos += pc[ends] - pc[starts]

    def add_values(self, values, counts, positive: bool) -> None:
        """Distinct sorted scores (float64) with their row counts, all positive or all negative."""
        if values.size == 0:
            return
        starts = np.concatenate(([0], np.searchsorted(values, self.edges, side="right")))
        ends = np.append(starts[1:], values.size)
        c = np.asarray(counts, dtype=np.int64)
        self.sums.add_runs(values, starts, c)
        cc = np.concatenate(([0], np.cumsum(c)))
        self.count += cc[ends] - cc[starts]
        if positive:
            self.pos += cc[ends] - cc[starts]


class _Curve:
    """Down-sampled ROC points, collected while the table streams by (ascending scores).

    A point is ``(fpr, tpr)`` with the threshold just above a distinct score
    ``v``: ``((N − N_≤v) / N, (P − P_≤v) / P)``.  Walking up the scores, the
    curve moves towards ``(0, 0)`` and ``N_≤v/N + P_≤v/P`` grows from 0 to 2;
    the point kept for each step ``2j/200`` of it (``j = 1 … 200``) is the
    first score that reaches it.  So the points depend on the whole table
    only, not on how it was cut into ranges or chunks.
    """

    _GRID = 256  # entries between the probes of a range

    def __init__(self, P, N):
        self.P, self.N = P, N
        self.pts = [(1.0, 1.0)] if P and N else []
        self.j = 1  # the next step to reach
        steps = range(1, _CURVE_POINTS + 1)
        if isinstance(P, (int, np.integer)) and isinstance(N, (int, np.integer)) and 4 * N * P < (1 << 62):
            # N_≤v·P + P_≤v·N ≥ 2j·N·P/200, in integers: exact thresholds
            self.exact = True
            self.T = np.array([-(-2 * j * int(N) * int(P) // _CURVE_POINTS) for j in steps], dtype=np.int64)
        else:
            self.exact = False
            self.T = np.array(steps, dtype=np.float64) * (2.0 * float(N) * float(P) / _CURVE_POINTS)

    def _q(self, neg_le, pos_le):
        if self.exact:
            return np.asarray(neg_le, dtype=np.int64) * int(self.P) + np.asarray(pos_le, dtype=np.int64) * int(self.N)
        return np.asarray(neg_le, dtype=np.float64) * float(self.P) + np.asarray(pos_le, dtype=np.float64) * float(self.N)

    def add(self, n: int, at, end_of=None) -> None:
        """The ``n`` entries of one range (ascending).

        ``at(i)``: the negatives and positives at or below entries ``i`` (an
        index array); ``end_of(i)``: the last entry of the score of entries
        ``i`` (``None``: one entry per distinct score).
        """
        if not (self.P and self.N) or self.j > self.T.size or n == 0:
            return
        g = self._GRID
        grid = np.arange(g - 1, n, g, dtype=np.int64)
        if grid.size == 0 or grid[-1] != n - 1:
            grid = np.append(grid, n - 1)
        T = self.T[self.j - 1:]
        blk = np.searchsorted(self._q(*at(grid)), T, side="left")
        T, blk = T[blk < grid.size], blk[blk < grid.size]
        if T.size == 0:
            return
        self.j += T.size
        # The first entry reaching each threshold: within its block of the grid.
        lo = np.where(blk > 0, grid[blk - 1] + 1, 0)
        cand = np.minimum(lo[:, None] + np.arange(g, dtype=np.int64)[None, :], grid[blk][:, None])
        q = self._q(*at(cand.ravel())).reshape(cand.shape)
        idx = cand[np.arange(T.size), np.argmax(q >= T[:, None], axis=1)]
        if end_of is not None:
            idx = end_of(idx)
        idx = _unique(idx)
        neg_le, pos_le = at(idx)
        fp = self.N - np.asarray(neg_le)
        tp = self.P - np.asarray(pos_le)
        self.pts.extend(zip((fp / self.N).tolist(), (tp / self.P).tolist()))

    def points(self) -> dict:
        pts = list(self.pts)
        if pts and pts[-1] != (0.0, 0.0):
            pts.append((0.0, 0.0))
        pts.reverse()
        return {"fpr": [p[0] for p in pts], "tpr": [p[1] for p in pts]}
