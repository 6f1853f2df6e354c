"""Exact ROC AUC in bounded memory, mergeable.

The area under the ROC curve is the probability that a random positive
scores above a random negative (ties count half):

``AUC = Σ_v P_v · (N_<v + N_v / 2) / (P · N)``

over the distinct score values ``v``, with ``P_v``/``N_v`` the (weighted)
positives/negatives scoring exactly ``v`` and ``N_<v`` the negatives below.
It needs, for every distinct score, how many positives and negatives hold it
— nothing less gives the exact value — so :class:`RocTable` keeps exactly
that: for the positives and for the negatives, sorted runs of the distinct
``(score, weight)`` pairs with their row counts.

* **Exact and partition-independent.**  Without sample weights the counts are
  integers and the AUC is the exact rational ``Σ P_v (2 N_<v + N_v) / (2 P N)``
  rounded once.  With sample weights, rows are aggregated only when their
  score *and* weight are equal (an integer count of identical rows), and the
  final pass sums in one canonical order (score, then weight), so the result
  is the same bits for any chunking, partitioning or merge order.
* **Bounded memory.**  Each chunk becomes a sorted run; runs are merged
  (compacted) as they accumulate, and when the in-memory entries exceed the
  budget (``CROSSENTROPY_ROC_MEMORY`` bytes, default 32 MiB, shared by every
  table of a report) the largest table's runs are merged into one and
  written to a temporary file, keeping only every 4096th key in memory.  The
  final pass reads every run once, front to back, a key range at a time
  (split points from the runs' own keys), with plain reads, so memory stays
  within the budget and temporary disk holds 8 bytes (16 weighted; plus 1 to
  8 for repeated values) per distinct (score, weight) pair.
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
import os
import shutil
import tempfile
import weakref

import numpy as np

from .exact import ExactSums, exact_ratio

__all__ = ["RocTable", "MemoryBudget", "default_budget"]

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
        self._dir = None

    def used(self) -> int:
        return sum(t.nbytes_in_memory() for t in self.tables)

    def spill_dir(self) -> str:
        if self._dir is None or not os.path.isdir(self._dir):
            self._dir = tempfile.mkdtemp(prefix="crossentropy-roc-")
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

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
    """One sorted run of one class's scores: ``keys`` ascending, unique per (key, weight).

    ``w`` is ``None`` for unweighted tables (every row weighs 1); ``counts``
    is ``None`` when every entry is one row (distinct scores, the common case)
    or the number of rows with that (key, weight).  A spilled run keeps its
    arrays in raw files in ``path`` and, in memory, only every
    ``_INDEX_STEP``-th key and its totals; it is read back front to back, by
    plain reads (a memory map would count the file's pages it touches — a
    binary search touches many — as resident memory).
    """

    __slots__ = ("keys", "w", "counts", "path", "n", "index", "dtypes", "rows", "weight")

    def __init__(self, keys, w=None, counts=None):
        self.keys, self.w, self.counts, self.path = keys, w, counts, None
        self.n = int(keys.size)
        self.index = self.dtypes = None
        self.rows = self.weight = None

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
    # Kept exact (not rounded per run): the total is then the same bits however the rows were cut into runs.
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
    ks, ws, cs = [], [], []
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


class RocTable:
    """Exact ROC statistics of one score against a binary truth; see the module docstring.

    ``update(scores, positive, weights=None)``: float scores (no NaN), bool
    truth, optional non-negative sample weights (all updates of a table must
    agree on having weights or not).  :meth:`result` gives ``auc``,
    ``n_pos``/``n_neg`` (weighted totals) and a down-sampled ``curve`` of
    ``(fpr, tpr)`` points for plots.  Positives and negatives are kept as two
    sorted multisets.
    """

    def __init__(self, *, weighted: bool = False, budget: MemoryBudget | None = None) -> None:
        self.weighted = bool(weighted)
        self.budget = budget if budget is not None else default_budget()
        self.budget.tables.add(self)
        self.runs: tuple = ([], [])  # positives, negatives
        self._mem = 0  # bytes of the in-memory runs

    def __getstate__(self):
        for side in self.runs:
            for r in side:
                r.load()
        return {"weighted": self.weighted, "runs": self.runs}

    def __setstate__(self, state):
        self.weighted = state["weighted"]
        self.runs = state["runs"]
        self.budget = default_budget()
        self.budget.tables.add(self)
        self._recount()

    def _recount(self) -> None:
        self._mem = sum(r.nbytes() for side in self.runs for r in side)

    def nbytes_in_memory(self) -> int:
        return self._mem

    # -- feeding ------------------------------------------------------------------------

    def update(self, scores, positive, weights=None) -> None:
        keys = np.asarray(scores, dtype=np.float64) + 0.0  # -0.0 -> 0.0
        pos = np.asarray(positive, dtype=bool)
        if keys.size == 0:
            return
        if self.weighted:
            w = np.asarray(weights, dtype=np.float64)
            keep = w != 0.0  # a row of weight 0 adds nothing to any count
            for side, m in enumerate((pos & keep, ~pos & keep)):
                if m.any():
                    run = _canonical(keys[m], w[m])
                    self.runs[side].append(run)
                    self._mem += run.nbytes()
        else:
            if weights is not None:
                raise ValueError("this ROC table is unweighted")
            for side, m in enumerate((pos, ~pos)):
                if m.any():
                    run = _canonical(keys[m])
                    self.runs[side].append(run)
                    self._mem += run.nbytes()
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
        """Compact the in-memory runs of each side into one and write it to disk."""
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
        for mine, theirs in zip(self.runs, other.runs):
            mine.extend(theirs)
            theirs.clear()
        self._recount()
        other._mem = 0
        self._maybe_compact()

    # -- reading ------------------------------------------------------------------------

    def _ranges(self):
        """Key ranges ``[lo, hi)`` of about ``budget / 128`` entries each (merging a range needs ~50 bytes an entry)."""
        runs = self.runs[0] + self.runs[1]
        total = sum(r.n for r in runs)
        per = max(self.budget.nbytes // 128, 1 << 14)
        if total <= per:
            return [None]
        pts = np.unique(np.concatenate([np.asarray(r.sample_keys()) for r in runs]))
        n_ranges = -(-total // per)
        return np.unique(pts[np.linspace(0, pts.size - 1, n_ranges + 1).astype(np.int64)[1:-1]]).tolist() + [None]

    def _pieces(self):
        """Per key range, in ascending order: the positives' and negatives' distinct keys and totals.

        Every run is read once, front to back, a range at a time.
        """
        readers = [[r.reader() for r in side] for side in self.runs]
        for hi in self._ranges():
            out = []
            for side in readers:
                parts = [p for p in (rd.take(hi) for rd in side) if p is not None]
                if not parts:
                    out.append((np.empty(0), np.empty(0, dtype=np.float64 if self.weighted else np.int64)))
                    continue
                run = _merge_runs(parts) if len(parts) > 1 else parts[0]
                out.append(_per_key(run, self.weighted))
            yield out

    def result(self) -> dict:
        """``{'auc', 'n_pos', 'n_neg', 'curve': {'fpr': [...], 'tpr': [...]}}``; AUC None if a class is empty."""
        wtd = self.weighted
        if wtd:
            P, N = _exact_total(self.runs[0]), _exact_total(self.runs[1])
        else:
            P = sum(r.total(False) for r in self.runs[0])
            N = sum(r.total(False) for r in self.runs[1])
        curve = _Curve(P, N)
        num2 = ExactSums() if wtd else 0  # Σ_v P_v (2 N_<v + N_v)
        below = 0.0 if wtd else 0  # negatives below the current range
        for (kp, cp), (kn, cn) in self._pieces():
            # Negatives at or below each negative key, accumulated from the running
            # total one key at a time: one canonical order of additions.
            cum = np.cumsum(np.concatenate(([below], cn)))
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
            below = cum[-1] if wtd else int(cum[-1])
            curve.add(kp, cp, kn, cn)
        if wtd:
            auc = num2.value() / (2.0 * P * N) if P > 0 and N > 0 else None
        else:
            auc = exact_ratio(num2, 2 * P * N) if P and N else None
        return {"auc": auc, "n_pos": P, "n_neg": N, "curve": curve.points()}


class _Curve:
    """Down-sampled ROC points, collected while the merged table streams by (ascending scores).

    Every distinct score is a threshold and the running totals are carried
    from range to range (one sequential sum in score order), so the points
    kept are the same bits wherever the key ranges were cut — which depends on
    how the table was built (chunks, partitions, spills).
    """

    def __init__(self, P, N):
        self.P, self.N = P, N
        self.pos_le = self.neg_le = 0  # positives / negatives at or below the last threshold so far
        self.pts = [(1.0, 1.0)] if P and N else []
        self.bucket = 0.0

    def add(self, kp, cp, kn, cn) -> None:
        if not (self.P and self.N) or (kp.size == 0 and kn.size == 0):
            return
        t = np.concatenate((kp, kn))
        t.sort(kind="stable")  # two sorted runs: merged in linear time
        if t.size > 1:
            t = t[np.concatenate(([True], t[1:] != t[:-1]))]
        cpos = np.cumsum(np.concatenate(([self.pos_le], cp)))
        cneg = np.cumsum(np.concatenate(([self.neg_le], cn)))
        # Raising the threshold past each value moves its rows to the negative side; a running
        # weighted sum may round a hair past the exact total, and a rate is never below 0.
        tp = np.maximum(self.P - cpos[np.searchsorted(kp, t, side="right")], 0)
        fp = np.maximum(self.N - cneg[np.searchsorted(kn, t, side="right")], 0)
        fpr, tpr = fp / self.N, tp / self.P
        # The curve only moves left and down, so 2 - fpr - tpr grows along it: keep
        # the first point of every step of 1/_CURVE_POINTS of that length.
        bucket = np.floor((2.0 - fpr - tpr) * (_CURVE_POINTS / 2.0))
        keep = np.flatnonzero(np.diff(np.concatenate(([self.bucket], bucket))) > 0)
        self.pts.extend(zip(fpr[keep].tolist(), tpr[keep].tolist()))
        self.bucket = bucket[-1]
        self.pos_le, self.neg_le = cpos[-1], cneg[-1]

    def points(self) -> dict:
        pts = list(self.pts)
        if pts and pts[-1] != (0.0, 0.0):
            pts.append((0.0, 0.0))
        pts.reverse()
        return {"fpr": [p[0] for p in pts], "tpr": [p[1] for p in pts]}
