"""The engine behind :func:`crossentropy.dask.score`: the CLI's report, computed partition by partition on Dask.

How a report is cut up and put back together (``docs/cli.md``, *Distributed
scoring*, says the same for users):

* **Detection** runs here, in the calling process, on the same fixed sample
  as the CLI — the first ``HEAD_ROWS`` rows of the dataset, in order — with
  the CLI's own code (:class:`~.dataset.Predictions` for files, the same
  :func:`~.layout.detect_layout` for a Dask DataFrame).
* **Units.**  One task per *unit*: a part file, a range of row groups of a
  Parquet part, or a partition of a Dask DataFrame; a model comparison's
  unit is one unit of the first model with the same rows of every other
  model.  Each task reads its rows with the CLI's readers and
  :class:`~.layout.Decoder` (a DataFrame partition goes through the same
  Parquet reader, from an uncompressed in-memory Parquet copy) and feeds the
  CLI's accumulators.
* **Row numbers.**  The bootstrap keys every row by its global row number, so
  with ``ci`` (and in every comparison) the units' row counts are counted
  first (Parquet: from the footers, free; other formats: one reading pass)
  and each unit gets its first global row.  Without the bootstrap, units
  number their rows from 0 and the merge shifts the worst-rows list (the only
  other place a row number is kept) by the rows before it.
* **Merging.**  Every unit returns three things: a small *meta* record (rows,
  the error it met if any, what its decoder learnt), its accumulators without
  ROC tables (merged pairwise in a tree on the workers, in unit order), and
  its ROC tables as one pickled blob.  A ROC table pickles with its spilled
  runs read back into the blob (:class:`~.roc.RocTable`), so nothing that
  crosses processes names a temporary file of a worker; the unit's own spill
  folder is removed before it returns.  This process takes the blobs one at a
  time, as units finish, and merges them into its own tables under its own
  memory budget (``CROSSENTROPY_ROC_MEMORY``, spilling to its own temporary
  folder): at most one unit's ROC state (8 bytes per row and class, 16 with
  weights) plus the budget is in memory here at once.
* **Bits.**  Every accumulator merges exactly in any order, and the ROC result
  depends only on the multiset of scores (not on runs, spills or key
  ranges), so the report is the CLI's to the last bit, whatever the units.
* **Errors.**  The first error in row order wins, as in the CLI: units
  return their error instead of raising it, and the earliest one is raised.
  What a unit's decoder learns from earlier units (the negative class of
  string binary labels seen for the first time, the ``--by`` values seen so
  far) can change the error; where it would, that unit alone is read again
  here with the state the CLI would have had.  In a comparison, an error is
  re-derived by the CLI's own serial reader, which stops at the faulty row.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from .accumulators import MAX_SLICES, RocAuc, RowError, ScoreAccumulator, ScoreSpec, SlicedAccumulator
from .compare import compare_datasets, comparison_report, lockstep, open_models
from .dataset import Predictions, finish_report, spec_for
from .errors import PredictionFileError
from .layout import Decoder, Layout, LayoutOptions, detect_layout
from .readers import HEAD_ROWS, STDIN, RawChunk, format_from_name, open_reader
from .roc import MemoryBudget

__all__ = ["run", "connect", "disconnect", "run_unit", "merge_nodes", "frame_reader", "FRAME_FORMAT"]

FRAME_FORMAT = "dataframe"  # the `format` a Dask DataFrame's report shows
_REPORT_OPTIONS = ("compat", "n_bins", "top_k", "worst", "auc", "replicates", "seed")


# ---------------------------------------------------------------------------------------------
# What the tasks get: models, pieces, units (all small and picklable)
# ---------------------------------------------------------------------------------------------

@dataclass
class _Model:
    """One model's dataset as every task needs it."""

    name: str
    layout: Layout
    opts: LayoutOptions
    reader: dict  # open_reader's options
    names: list
    first_part: str | None  # the first part file (messages); None for a DataFrame
    spec: ScoreSpec
    sliced: bool
    frame: bool = False


@dataclass
class _Piece:
    """A part file (``path``), or a DataFrame partition (``path`` None: a task argument), of one model."""

    part: int  # Batch.part: the part file's index in the dataset (0 for a DataFrame)
    path: str | None
    head_types: dict = field(default_factory=dict)
    row_groups: tuple | None = None  # (first, stop) row groups of a Parquet part, first_row of the first
    rows: int | None = None  # its row count, when known


@dataclass
class _Segment:
    piece: _Piece
    frame: int | None  # index of the task argument that holds the DataFrame partition
    base: int  # global row of the piece's first row (0 when unknown: rows are then relative to the unit)
    start: int = 0  # rows [start, stop) of the piece
    stop: int | None = None


@dataclass
class _Unit:
    index: int
    segments: list  # per model: a list of _Segment
    relative: bool  # rows numbered from the unit's first row (offsets not known)
    entry: list | None = None  # per model: (negative class, known --by values) the CLI would have here


@dataclass
class _Env:
    roc_memory: int
    threads: bool
    fingerprint: str


_FINGERPRINT = None


def fingerprint() -> str:
    """A hash of this installation's crossentropy sources: workers must compute with the same code."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        for folder, dirs, files in sorted(os.walk(root)):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".py"):
                    p = os.path.join(folder, f)
                    h.update(os.path.relpath(p, root).encode())
                    with open(p, "rb") as fh:
                        h.update(fh.read())
        _FINGERPRINT = h.hexdigest()[:16]
    return _FINGERPRINT


# ---------------------------------------------------------------------------------------------
# Reading a piece (in a task)
# ---------------------------------------------------------------------------------------------

def frame_reader(pdf, name: str, chunk_rows=None):
    """A pandas partition as the CLI's Parquet reader sees it (an uncompressed in-memory Parquet copy).

    The same reader as a Parquet file: the same typing of every column, the
    same checks and messages (rows are counted within the partition; the
    caller adds the partition's first row).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .readers.parquet import ParquetReader

    try:
        table = pa.Table.from_pandas(pdf, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise PredictionFileError(name, f"a partition cannot be converted to Arrow: {e}") from None
    sink = pa.BufferOutputStream()
    # Plain, uncompressed, no dictionaries or statistics: the copy costs about a memcpy.
    pq.write_table(table, sink, compression="none", use_dictionary=False, write_statistics=False,
                   row_group_size=1 << 16)
    r: Any = ParquetReader(pa.BufferReader(sink.getvalue()), name, chunk_rows=chunk_rows)  # gets .format
    r.format = FRAME_FORMAT
    return r


class _RowGroups:
    """A Parquet part reader limited to row groups ``[first, stop)`` (its rows keep their numbers in the file)."""

    def __init__(self, reader, first: int, stop: int, first_row: int, rows: int):
        self.r, self.first, self.stop, self.first_row, self.rows = reader, first, stop, first_row, rows
        self.names, self.path, self.format = reader.names, reader.path, reader.format

    def chunks(self, plan, text_types=None):
        r = self.r
        cols = [c for c in r.names if c in plan]
        row, got = self.first_row, 0
        try:
            for g in range(self.first, self.stop):
                for b in r.pf.iter_batches(batch_size=r.chunk_rows, row_groups=[g], columns=cols, use_threads=False):
                    out = {name: r._typed(b.column(i), name, plan[name], row) for i, name in enumerate(b.schema.names)}
                    yield RawChunk(out, row, b.num_rows)
                    row += b.num_rows
                    got += b.num_rows
                r.pa.default_memory_pool().release_unused()
        except r.pa.ArrowException as e:
            raise PredictionFileError(r.path, f"cannot read Parquet data: {e}", row=row + 1) from None
        if got != self.rows:  # never a silently short read
            raise PredictionFileError(r.path, f"row groups {self.first}..{self.stop - 1} gave {got} rows, the footer "
                                      f"says {self.rows}")

    def close(self):
        self.r.close()


def _open_piece(model: _Model, piece: _Piece, frame):
    if frame is not None:
        return frame_reader(frame, model.name, model.reader.get("chunk_rows"))
    r = open_reader(cast(str, piece.path), **model.reader)  # a file piece (not a DataFrame): it has a path
    if piece.row_groups is not None:
        g0, g1, first_row, rows = piece.row_groups
        return _RowGroups(r, g0, g1, first_row, rows)
    return r


def _check_names(model: _Model, piece: _Piece, r) -> None:
    missing = [n for n in model.names if n not in r.names]
    if missing:
        if model.frame:
            raise PredictionFileError(model.name, f"a partition lacks column(s) {', '.join(map(repr, missing))} "
                                      "(every partition needs the same columns)")
        # The CLI's words (dataset.Predictions).
        raise PredictionFileError(r.path, f"this part lacks column(s) {', '.join(map(repr, missing))} of "
                                  f"{model.first_part} (every part of a dataset needs the same columns)")


def _cut(raw: RawChunk, a: int, b: int) -> RawChunk:
    cols = {k: v[a:b] for k, v in raw.columns.items()}
    return RawChunk(cols, raw.first_row + a, b - a, None if raw.lines is None else raw.lines[a:b])


def _segment_batches(model: _Model, seg: _Segment, frames, decoder: Decoder):
    """The checked batches of one segment, numbered ``base + row in the piece``.

    A file's errors keep the CLI's locations (its line, or its row in the part
    file); a DataFrame partition's are numbered ``base + row in the partition``.
    """
    piece = seg.piece
    r = _open_piece(model, piece, None if seg.frame is None else frames[seg.frame])
    try:
        if piece.part != 0 or model.frame:
            _check_names(model, piece, r)
        decoder.path = r.path
        plan = model.layout.plan()
        types = {n: t for n, t in piece.head_types.items() if plan.get(n) == "label"}
        chunks = r.chunks(plan, types)
        while True:
            try:
                raw = next(chunks)
            except StopIteration:
                return
            except PredictionFileError as e:
                if model.frame and e.row is not None:
                    raise PredictionFileError(e.path, e.reason, row=e.row + seg.base, column=e.column) from None
                raise
            if raw.n == 0:
                continue
            lo, hi = raw.first_row, raw.first_row + raw.n
            if seg.stop is not None and lo >= seg.stop:
                return
            if hi <= seg.start:
                continue
            a, b = max(seg.start - lo, 0), raw.n if seg.stop is None else min(seg.stop - lo, raw.n)
            if (a, b) != (0, raw.n):
                raw = _cut(raw, a, b)  # rows of another unit are neither checked nor counted here
            if model.frame:
                raw.first_row += seg.base  # the decoder's locations, too, count from the frame's start
                yield decoder.decode(raw, 0, piece.part)
            else:
                yield decoder.decode(raw, seg.base, piece.part)
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

class _Failure(Exception):
    """An error met by a unit, as data (raised in the caller in row order)."""

    def __init__(self, path, reason, *, line=None, row=None, column=None, relative=False, overflow=False):
        super().__init__(reason)
        self.info = {"path": path, "reason": reason, "line": line, "row": row, "column": column,
                     "relative": relative, "overflow": overflow}


def _file_failure(e: PredictionFileError, model: _Model, relative: bool) -> _Failure:
    # A file's locations are the CLI's (in the part file); a DataFrame's count from the unit's start
    # when the units' first rows are not known (``relative``).
    return _Failure(e.path, e.reason, line=e.line, row=e.row, column=e.column,
                    relative=relative and model.frame and e.row is not None)


def _new_acc(model: _Model, budget, threads):
    return SlicedAccumulator(model.spec, budget) if model.sliced else ScoreAccumulator(model.spec, budget,
                                                                                        threads=threads)


def _update(model: _Model, acc, batch, created: list, relative: bool, names) -> None:
    """``acc.update(batch)``, recording new ``--by`` values; a RowError becomes a :class:`_Failure`."""
    before = len(acc.slices) if model.sliced else 0
    try:
        acc.update(batch)
    except RowError as e:
        where = ({"line": int(batch.lines[e.index])} if batch.lines is not None
                 else {"row": int(batch.rows[e.index]) + 1})
        overflow = model.sliced and len(acc.slices) >= MAX_SLICES
        raise _Failure(names(batch.part), str(e), column=e.column, relative=relative and "row" in where,
                       overflow=overflow, **where) from None
    finally:
        if model.sliced and len(acc.slices) != before:
            created.extend(list(acc.slices)[before:])  # dicts keep insertion order


def _part_names(model: _Model, unit_segments):
    paths = {s.piece.part: (model.name if model.frame else s.piece.path) for s in unit_segments}
    return lambda part: paths.get(part, model.name)


class _SegmentedModel:
    """A model's segments of one unit as a dataset, for the comparison's lockstep reader."""

    def __init__(self, model, segments, frames, decoder):
        self.model, self.segments, self.frames, self.decoder = model, segments, frames, decoder
        self.layout, self.name = model.layout, model.name
        self._names = _part_names(model, segments)

    def batches(self):
        for seg in self.segments:
            yield from _segment_batches(self.model, seg, self.frames, self.decoder)

    def part_name(self, part):
        return self._names(part)


def run_unit(unit: _Unit, models: list, env: _Env, *frames):
    """Score one unit: ``(meta, accumulators without ROC tables, pickled ROC tables)``.

    An error in the data comes back in ``meta['error']`` (the caller raises
    the first one in row order); anything else is raised.
    """
    budget = MemoryBudget(env.roc_memory)
    meta: dict[str, Any] = {"unit": unit.index, "rows": 0, "relative": unit.relative, "error": None, "fingerprint": fingerprint(),
            "models": []}
    accs: list = []
    decoders: list = []
    created: list[list] = []
    try:
        for m, model in enumerate(models):
            lay = copy.deepcopy(model.layout)
            entry = unit.entry[m] if unit.entry else None
            if entry is not None and entry[0] is not None:
                lay.class_names[0] = entry[0]  # the negative class the CLI's decoder has learnt by now
            dec = Decoder(model.name, lay, model.opts)
            acc = _new_acc(model, budget, env.threads)
            if entry is not None and model.sliced:
                for key in entry[1]:  # the --by values the CLI has seen by now (for its 1000-value limit)
                    acc.slices[key] = ScoreAccumulator(acc.slice_spec, budget)
            decoders.append(dec)
            accs.append(acc)
            created.append([])
            meta["models"].append({"negative": lay.class_names[0], "bad_sums": 0, "first_bad_sum": None,
                                   "created": created[-1]})
        try:
            if len(models) == 1:
                model, acc = models[0], accs[0]
                names = _part_names(model, unit.segments[0])
                for seg in unit.segments[0]:
                    try:
                        for b in _segment_batches(model, seg, frames, decoders[0]):
                            _update(model, acc, b, created[0], unit.relative, names)
                            meta["rows"] += len(b)
                    except PredictionFileError as e:
                        raise _file_failure(e, model, unit.relative) from None
            else:
                _lockstep(unit, models, frames, accs, decoders, created, meta)
        except _Failure as f:
            meta["error"] = f.info
        for dec, mm in zip(decoders, meta["models"]):
            mm["negative"] = dec.lay.class_names[0]
            mm["bad_sums"], mm["first_bad_sum"] = dec.bad_sums, dec.first_bad_sum
        if meta["error"] is not None:
            return meta, None, None
        rocs = {}
        for m, (model, acc) in enumerate(zip(models, accs)):
            for key, a in _score_accs(acc):
                if a.roc is not None:
                    rocs[(m, key)] = a.roc
                    a.roc = None
            if model.sliced:
                acc.budget = None  # a MemoryBudget does not pickle; merging needs none
        # RocTable pickles with its spilled runs read back in: the blob names no file of this worker.
        blob = pickle.dumps(rocs, protocol=pickle.HIGHEST_PROTOCOL)
        return meta, {"rows": meta["rows"], "relative": unit.relative, "accs": accs}, blob
    finally:
        for acc in accs:
            for _, a in _score_accs(acc):
                a.close()
        budget.cleanup()


def _score_accs(acc) -> list:
    """``[(slice key or None, ScoreAccumulator)]`` of an accumulator (the overall one first)."""
    if isinstance(acc, SlicedAccumulator):
        return [(None, acc.overall), *acc.slices.items()]
    return [(None, acc)]


def _lockstep(unit, models, frames, accs, decoders, created, meta) -> None:
    """The comparison's reader (compare.lockstep): every model's rows side by side, checked alike."""
    dss = [_SegmentedModel(model, segs, frames, dec) for model, segs, dec in zip(models, unit.segments, decoders)]
    try:
        for batches in lockstep(dss):
            if models[0].sliced:
                for b in batches[1:]:
                    b.by = batches[0].by
            for k, (model, acc, b) in enumerate(zip(models, accs, batches)):
                _update(model, acc, b, created[k], unit.relative, dss[k].part_name)
            meta["rows"] += len(batches[0])
    except PredictionFileError as e:
        raise _Failure(e.path, e.reason, line=e.line, row=e.row, column=e.column) from None


# ---------------------------------------------------------------------------------------------
# Merging (on the workers, pairwise in unit order)
# ---------------------------------------------------------------------------------------------

def shift_rows(acc, by: int) -> None:
    """Add ``by`` to the row numbers an accumulator keeps (its worst rows): rows counted from a later start."""
    for _, a in _score_accs(acc):
        # WorstK.items: (loss, row, part, line, label, predicted, p_true, weight)
        a.worst.items = [(t[0], t[1] + by, *t[2:]) for t in a.worst.items]


def merge_nodes(a, b):
    """Two adjacent units' (or subtrees') accumulators merged, the left one first."""
    if a is None or b is None:
        return None
    if b["relative"] and a["rows"]:
        for acc in b["accs"]:
            shift_rows(acc, a["rows"])
    for x, y in zip(a["accs"], b["accs"]):
        x.merge(y)
    return {"rows": a["rows"] + b["rows"], "relative": a["relative"], "accs": a["accs"]}


# ---------------------------------------------------------------------------------------------
# Sources (in the calling process): detection, pieces, row counts
# ---------------------------------------------------------------------------------------------

class _FrameDataset:
    """A Dask DataFrame as the report sees a dataset: one "file", named ``name``."""

    def __init__(self, ddf, name, chunk_rows, open_options, compute):
        self.ddf, self.name = ddf, name
        self.reader = {"chunk_rows": chunk_rows}
        self.opts = LayoutOptions(**open_options)
        self.parts = [name]
        self.warnings: list = []
        self.delayed = ddf.to_delayed()
        heads, names, need = [], None, HEAD_ROWS
        for k in range(len(self.delayed)):
            r = frame_reader(compute(self.delayed[k]), name, chunk_rows)  # the first rows, in order
            if names is None:
                names = r.names
            else:
                missing = [n for n in names if n not in r.names]
                if missing:
                    raise PredictionFileError(name, f"a partition lacks column(s) {', '.join(map(repr, missing))} "
                                              "(every partition needs the same columns)")
            h = r.head(need)
            heads.append(h)
            need -= h.n
            if need <= 0:
                break
        if names is None:
            raise PredictionFileError(name, "no data rows")
        head = RawChunk.concat([h for h in heads if h.n] or heads[:1])
        self.names = names
        self.layout, warnings = detect_layout(name, FRAME_FORMAT, names, head, self.opts)
        self.warnings.extend(warnings)

    @property
    def n_parts(self) -> int:
        return 1

    def part_name(self, part: int) -> str:
        return self.name

    def close(self) -> None:
        pass


def _file_model(ds: Predictions, spec, sliced, reader) -> _Model:
    return _Model(ds.name, ds.layout, ds.opts, reader, ds.names, ds.parts[0], spec, sliced)


def _file_pieces(ds: Predictions, split_row_groups: bool) -> list:
    """The pieces of a file dataset: its parts, Parquet parts cut at row groups when asked."""
    # The readers opened for the detection sample had head() called: the CLI then reads their
    # label columns with the types the sample showed (dataset.Predictions.batches).
    types = [dict(getattr(r, "head_types", {}) or {}) for r in ds._readers]
    out = []
    for i, part in enumerate(ds.parts):
        ht = types[i] if i < len(types) else {}
        groups = _row_group_cuts(part, ds) if split_row_groups else None
        if not groups:
            out.append(_Piece(i, part, ht))
            continue
        for g0, g1, first_row, rows in groups:
            out.append(_Piece(i, part, ht, (g0, g1, first_row, rows), rows))
    return out


_GROUP_ROWS = 1 << 20  # rows per unit when a Parquet part is cut at row groups


def _row_group_cuts(part: str, ds: Predictions):
    """``[(first group, stop group, first row, rows)]`` of a Parquet part worth cutting, else None."""
    try:
        fmt = ds.format or format_from_name(part)
        if fmt != "parquet":
            return None
        import pyarrow.parquet as pq

        md = pq.ParquetFile(part).metadata
    except Exception:  # not a plain Parquet file (compressed, unreadable): the reader will say why
        return None
    if md.num_rows <= _GROUP_ROWS or md.num_row_groups < 2:
        return None
    cuts, g0, first, rows = [], 0, 0, 0
    for g in range(md.num_row_groups):
        rows += md.row_group(g).num_rows
        if rows >= _GROUP_ROWS or g == md.num_row_groups - 1:
            cuts.append((g0, g + 1, first, rows))
            g0, first, rows = g + 1, first + rows, 0
    return cuts if len(cuts) > 1 else None


def count_rows(model: _Model, piece: _Piece, frame=None) -> int:
    """The rows of a piece (Parquet: the footer; else read through, label column only)."""
    if piece.rows is not None:
        return piece.rows
    if frame is not None:
        return len(frame)
    r = open_reader(cast(str, piece.path), **model.reader)  # a file piece (not a DataFrame): it has a path
    try:
        n = getattr(r, "n", None)
        if isinstance(n, (int, np.integer)) and r.format == "parquet":
            return int(n)
        rows = 0
        for raw in r.chunks({model.layout.label: "label"}):
            rows = raw.first_row + raw.n
        return rows
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

def run(sources, *, client=None, name=None, compat=None, base=None, n_bins=10, top_k=None, worst=5, auc=True,
        ci=None, replicates=1000, seed=0, roc_memory=None, split_row_groups=True, on_progress=None,
        **open_options) -> dict:
    """The report of one source, or the comparison of several; see :func:`crossentropy.dask.score`."""
    from .._errors import InvalidOptionError

    sources = list(sources)
    compare = len(sources) > 1
    if compare and ci is None:
        ci = 0.95
    report_options = dict(compat=compat, n_bins=n_bins, top_k=top_k, worst=worst, auc=auc, ci=ci,
                          replicates=replicates, seed=seed)
    kinds = {_is_frame(s) for s in sources}
    if len(kinds) > 1:
        raise InvalidOptionError("source: compare paths with paths, or Dask DataFrames with Dask DataFrames")
    frame = kinds.pop()
    if not frame and any(str(s) == STDIN for s in sources):
        raise InvalidOptionError("source: '-' (stdin) cannot be scored on a cluster; write it to a file first")
    by = open_options.get("by")
    opts = dict(open_options)
    reader = {k: opts.pop(k, None) for k in ("format", "delimiter", "chunk_rows")}
    reader["csv_engine"] = opts.pop("csv_engine", None) or "auto"
    ex = _Executor(client)
    try:
        if frame:
            dss = _open_frames(sources, _frame_names(sources, name), by, reader["chunk_rows"], opts, ex)
        else:
            paths = [os.fspath(s) for s in sources]
            if compare:
                opts.pop("by", None)
                dss = open_models(paths, by, **reader, **opts)
            else:
                dss = [Predictions(paths[0], **reader, **opts)]
            for ds in dss:
                ds.close()  # detection is done; the tasks open the files themselves
        specs = [spec_for(ds.layout, **report_options) for ds in dss]
        models = [_Model(ds.name, ds.layout, ds.opts, ds.reader if frame else reader, ds.names,
                         None if frame else ds.parts[0], spec, bool(by), frame) for ds, spec in zip(dss, specs)]
        env = _Env(MemoryBudget(roc_memory).nbytes, ex.client is None, fingerprint())
        if frame:
            pieces = [[_Piece(0, None) for _ in ds.delayed] for ds in dss]
            delayed = [ds.delayed for ds in dss]
        else:
            pieces = [_file_pieces(ds, split_row_groups and not compare) for ds in dss]
            delayed = [None] * len(dss)
        counts = ex.counts(models, pieces, delayed) if (compare or ci is not None) else None
        if compare and counts is not None and len({sum(c) for c in counts}) > 1:
            return _unequal_rows(sources, dss, frame, counts, report_options, base, reader, opts)
        units = _make_units(pieces, counts)
        result = ex.run(units, models, env, delayed, on_progress)
        _check_fingerprints(result["metas"], env)
        if compare:
            if result["error"] is not None:
                if frame:
                    _raise_info(result["metas"][-1]["error"], 0)
                return _serial_comparison(sources, report_options, base, reader, opts, by)
            negatives = [_negative(m, result["metas"], k) for k, m in enumerate(models)]
        else:
            negatives = [_resolve(result["metas"], units, models, env, delayed, ex)]
        return _finish(result, models, dss, specs, negatives, base, compare, by, ci, replicates, seed)
    finally:
        ex.close()


def _is_frame(s) -> bool:
    return hasattr(s, "to_delayed") and hasattr(s, "npartitions")


def _frame_names(sources, name):
    if name is None:
        return ["dataframe"] if len(sources) == 1 else [f"dataframe {i + 1}" for i in range(len(sources))]
    names = [name] if isinstance(name, str) else list(name)
    if len(names) != len(sources):
        from .._errors import InvalidOptionError
        raise InvalidOptionError(f"name: give one name per DataFrame ({len(sources)}); got {len(names)}")
    return [str(n) for n in names]


def _open_frames(sources, names, by, chunk_rows, opts, ex):
    dss = []
    for i, (ddf, nm) in enumerate(zip(sources, names)):
        o = dict(opts, by=by if i == 0 else None)
        if len(sources) > 1:
            o["ids"] = True
        dss.append(_FrameDataset(ddf, nm, chunk_rows, o, ex.compute))
    ref = dss[0].layout
    for ds in dss[1:]:
        lay = ds.layout
        if (lay.binary, lay.n_classes) != (ref.binary, ref.n_classes) or (
                not ref.binary and list(lay.class_names) != list(ref.class_names)):
            raise PredictionFileError(ds.name, f"predicts the classes {', '.join(lay.class_names[:8])} but "
                                      f"{dss[0].name} predicts {', '.join(ref.class_names[:8])}: models compared "
                                      "must predict the same classes")
    return dss


def _make_units(pieces, counts) -> list:
    """One unit per piece of the first model; in a comparison, the same rows of every other model.

    Without row counts (no bootstrap), a unit numbers its rows from its own
    first row, and the merge shifts them.
    """
    units = []
    if counts is None:
        for k, p in enumerate(pieces[0]):
            units.append(_Unit(k, [[_Segment(p, k if p.path is None else None, _piece_base(p, 0))]], True))
        return units
    starts = [np.concatenate(([0], np.cumsum(c, dtype=np.int64))).tolist() for c in counts]
    for k, p in enumerate(pieces[0]):
        lo, hi = starts[0][k], starts[0][k + 1]
        segs = [[_Segment(p, k if p.path is None else None, _piece_base(p, lo))]]
        for m in range(1, len(pieces)):
            segs.append(_cover(pieces[m], starts[m], lo, hi))
        units.append(_Unit(k, segs, False))
    return units


def _piece_base(piece: _Piece, global_first: int) -> int:
    """The global row of the piece's row 0 (a row-group piece's rows keep their numbers in the file)."""
    return global_first - (piece.row_groups[2] if piece.row_groups is not None else 0)


def _cover(pieces, starts, lo, hi) -> list:
    """The segments of ``pieces`` (global rows ``starts[j]…starts[j+1]``) that hold global rows ``[lo, hi)``."""
    out = []
    for j, p in enumerate(pieces):
        a, b = starts[j], starts[j + 1]
        if b <= lo or a >= hi:
            continue
        first = p.row_groups[2] if p.row_groups is not None else 0
        out.append(_Segment(p, j if p.path is None else None, a - first, first + max(lo - a, 0),
                            first + min(hi, b) - a))
    return out


def _frames_of(units, delayed):
    """Per unit: the Dask partitions its segments read (and each segment's ``frame`` set to its argument)."""
    out = []
    for u in units:
        args = []
        for m, segs in enumerate(u.segments):
            for s in segs:
                if s.frame is not None:
                    args.append(delayed[m][s.frame])
                    s.frame = len(args) - 1
        out.append(args)
    return out


class _Executor:
    """Runs units on a Dask distributed client, or here (no client), and gathers what they return."""

    def __init__(self, client):
        self.client, self.owned = connect(client)

    def close(self):
        disconnect(self.owned)

    def compute(self, delayed):
        if self.client is None:
            return delayed.compute(scheduler="sync")
        return self.client.compute(delayed).result()

    def counts(self, models, pieces, delayed) -> list:
        """Per model, per piece: its rows."""
        out = []
        for model, ps, dl in zip(models, pieces, delayed):
            if self.client is None:
                out.append([len(self.compute(dl[j])) if p.path is None else count_rows(model, p)
                            for j, p in enumerate(ps)])
            elif dl is not None:
                import dask
                out.append([int(v) for v in self.client.gather(self.client.compute([dask.delayed(len)(d)
                                                                                     for d in dl]))])
            else:
                futs = self.client.map(count_rows, [model] * len(ps), ps, pure=False)
                out.append([int(v) for v in self.client.gather(futs)])
        return out

    def run(self, units, models, env, delayed, on_progress) -> dict:
        """Every unit's meta, the merged accumulators and the merged ROC tables (or the first error)."""
        frame_args = _frames_of(units, delayed) if any(d is not None for d in delayed) else [[] for _ in units]
        if self.client is None:
            return self._run_here(units, models, env, frame_args, on_progress)
        return self._run_cluster(units, models, env, frame_args, on_progress)

    def _run_here(self, units, models, env, frame_args, on_progress):
        metas, node, rocs, rows = [], None, _RocMerger(models, env.roc_memory), 0
        try:
            for u, args in zip(units, frame_args):
                meta, small, blob = run_unit(u, models, env, *[a.compute(scheduler="sync") for a in args])
                metas.append(meta)
                if meta["error"] is not None:
                    rocs.cleanup()
                    return {"metas": metas, "error": u.index}
                node = small if node is None else merge_nodes(node, small)
                rocs.add(blob)
                rows += meta["rows"]
                if on_progress is not None:
                    on_progress(len(metas), len(units), rows)
        except BaseException:
            rocs.cleanup()
            raise
        return {"metas": metas, "node": node, "rocs": rocs, "error": None}

    def _run_cluster(self, units, models, env, frame_args, on_progress):
        import dask
        from distributed import as_completed

        c = self.client
        task = dask.delayed(run_unit, pure=False, nout=3)
        outs = [task(u, models, env, *args) for u, args in zip(units, frame_args)]
        futs = c.compute([x for o in outs for x in o])
        meta_f, small_f, roc_f = futs[0::3], futs[1::3], futs[2::3]
        # The units' accumulators meet pairwise on the workers, in unit order.
        level = list(small_f)
        while len(level) > 1:
            nxt = [c.submit(merge_nodes, level[i], level[i + 1], pure=False) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        root = level[0]
        del futs, small_f, level
        rocs = _RocMerger(models, env.roc_memory)
        metas: dict = {}
        first_error, rows = None, 0
        which = {f.key: ("meta", i) for i, f in enumerate(meta_f)}
        which.update({f.key: ("roc", i) for i, f in enumerate(roc_f)})
        pending = as_completed(meta_f + roc_f, loop=c.loop)
        try:
            for fut in pending:
                kind, i = which[fut.key]
                if fut.cancelled():  # a unit after the first error
                    continue
                if kind == "roc":
                    if first_error is None:
                        blob = fut.result()
                        fut.release()
                        rocs.add(blob)  # one unit's ROC state in memory here at a time
                        del blob
                    continue
                meta = fut.result()
                metas[i] = meta
                rows += meta["rows"]
                if on_progress is not None:
                    on_progress(len(metas), len(units), rows)
                if meta["error"] is not None and (first_error is None or i < first_error):
                    first_error = i
                    c.cancel([f for j, f in enumerate(meta_f) if j > i] + roc_f + [root])
                if first_error is not None and all(j in metas for j in range(first_error + 1)):
                    break
        except BaseException:
            rocs.cleanup()
            c.cancel(meta_f + roc_f + [root])
            raise
        finally:
            pending.clear()
        if first_error is not None:
            rocs.cleanup()
            return {"metas": [metas[j] for j in range(first_error + 1)], "error": first_error}
        try:
            node = root.result()
        except BaseException:
            rocs.cleanup()
            raise
        return {"metas": [metas[j] for j in range(len(units))], "node": node, "rocs": rocs, "error": None}


class _RocMerger:
    """Every unit's ROC tables, merged here one blob at a time under this process's memory budget."""

    def __init__(self, models, roc_memory):
        self.models = models
        self.budget = MemoryBudget(roc_memory)
        self.tables: dict = {}
        self.bins: dict = {}  # id(RocAuc) -> the calibration bins its accumulator asks the final pass for

    def add(self, blob) -> None:
        if blob is None:
            return
        for key, roc in pickle.loads(blob).items():
            mine = self.tables.get(key)
            if mine is None:
                mine = self.tables[key] = RocAuc(self.models[key[0]].spec, self.budget)
            mine.merge(roc)

    def attach(self, m: int, acc) -> None:
        for key, a in _score_accs(acc):
            if a.spec.auc:
                a.roc = self.tables.get((m, key)) or RocAuc(a.spec, self.budget)
                # the bins the accumulator's finalize will ask for (class-wise calibration from the tables)
                self.bins[id(a.roc)] = a.calibration.inner if a._classwise_from_roc else None

    def compute(self) -> None:
        """Every table's final pass (its sort-merge, which releases the GIL), a thread per core, before finalize.

        A table's pass reads its runs a key range at a time (memory within the
        budget's share), so the threads stay within a few budgets together.
        """
        from concurrent.futures import ThreadPoolExecutor

        todo = [(roc, i, self.bins.get(id(roc))) for roc in self.tables.values() for i in range(len(roc.tables))]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
            done = list(pool.map(lambda job: job[0].tables[job[1]].result(bins=job[2]), todo))
        for (roc, i, b), res in zip(todo, done):
            roc.tables[i] = _Computed(res, b)

    def cleanup(self) -> None:
        self.budget.cleanup()


class _Computed:
    """A ROC table whose final pass is done: ``result()`` is what RocAuc.finalize asks of a table."""

    def __init__(self, res, bins):
        self.res, self.bins = res, bins

    def result(self, bins=None) -> dict:
        if bins is not self.bins:  # a programming error, never a user's: the pass ran with other bins
            raise RuntimeError("the ROC table's final pass ran with other calibration bins")
        return self.res


def connect(client, option: str = "client"):
    """``(client or None, the client to close or None)`` from a Client, an address, ``local:N``, ``sync`` or None.

    ``None`` is the current default ``distributed`` client, else this process;
    ``local:N`` starts a local cluster of N single-threaded worker processes
    (closed by :func:`disconnect`).
    """
    from .._errors import InvalidOptionError

    if client is None:
        try:
            from distributed import default_client
            return default_client(), None
        except (ImportError, ValueError):  # no distributed, or no client started: run here
            return None, None
    if isinstance(client, str):
        spec = client.strip()
        if spec == "sync":
            return None, None
        local = spec.startswith("local:")
        if local and not (spec[6:].isdigit() and int(spec[6:]) >= 1):
            raise InvalidOptionError(f"{option}: 'local:N' needs N >= 1 worker processes; got {client!r}")
        if not local and "://" not in spec:
            raise InvalidOptionError(f"{option} must be local:N (N worker processes here), a scheduler address such "
                                     f"as tcp://HOST:PORT, or sync; got {client!r}")
        try:
            import warnings

            from distributed import Client, LocalCluster
        except ImportError:
            raise InvalidOptionError(f"{option}: a Dask cluster needs dask.distributed: pip install "
                                     "'crossentropy[dask]'") from None
        if local:
            import logging

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "port 8787 is in use": another cluster's dashboard
                cluster = LocalCluster(n_workers=int(spec[6:]), threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
            try:
                c = Client(cluster)
            except BaseException:
                cluster.close()
                raise
            return c, c
        try:
            c = Client(spec)  # the connect timeout: distributed.comm.timeouts.connect
        except (OSError, TimeoutError, ValueError) as e:
            raise InvalidOptionError(f"{option}: cannot reach the Dask scheduler at {spec}: {e}") from None
        return c, c
    if hasattr(client, "submit") and hasattr(client, "compute"):
        return client, None
    raise InvalidOptionError(f"{option}: expected a distributed.Client, a scheduler address, 'local:N' or 'sync'; "
                             f"got {type(client).__name__}")


def disconnect(owned) -> None:
    """Close a client made by :func:`connect` (and its local cluster)."""
    if owned is None:
        return
    cluster = getattr(owned, "cluster", None)
    owned.close()
    if cluster is not None:
        cluster.close()


# ---------------------------------------------------------------------------------------------
# Errors: the first one in row order, with the state the CLI would have had
# ---------------------------------------------------------------------------------------------

def _resolve(metas, units, models, env, delayed, ex):
    """Raise the error the CLI would raise, if any; else the negative class learnt (or the layout's).

    Units run with the decoder state of the dataset's start; the CLI's one
    decoder carries what earlier parts taught it: the negative class of string
    binary labels, and the ``--by`` values already seen (at most
    ``MAX_SLICES``).  Where that state would change a unit's outcome, the unit
    is read again here with it.
    """
    model = models[0]
    initial = neg = model.layout.class_names[0]
    keys: dict = {}
    offset = 0
    for u, meta in zip(units, metas):
        mm = meta["models"][0]
        learnt = mm["negative"] if mm["negative"] != initial else None
        err = meta["error"]
        new = [k for k in mm["created"] if k not in keys]
        clash = learnt is not None and neg != initial and learnt != neg
        overflow = bool(keys) and (len(keys) + len(new) > MAX_SLICES or bool(err and err["overflow"]))
        if clash or overflow:
            _replay(u, models, env, delayed, ex, None if neg == initial else neg, list(keys), offset)
        if err is not None:
            _raise_info(err, offset)
        if learnt is not None and neg == initial:
            neg = learnt
        keys.update(dict.fromkeys(new))
        offset += meta["rows"]
    return neg


def _negative(model, metas, m):
    """A comparison's model: the negative class its units learnt (each unit learns alike or errs)."""
    initial = model.layout.class_names[0]
    return next((x["models"][m]["negative"] for x in metas if x["models"][m]["negative"] != initial), initial)


def _replay(unit, models, env, delayed, ex, neg, keys, offset):
    """Read one unit again here, with the CLI's decoder state and ``--by`` values; raise its error."""
    frames = [ex.compute(delayed[0][unit.index])] if models[0].frame else []
    meta, _, _ = run_unit(replace(unit, entry=[(neg, keys)]), models, replace(env, threads=False), *frames)
    if meta["error"] is not None:
        _raise_info(meta["error"], offset)
    raise RuntimeError("internal error: the unit read again met no error")  # pragma: no cover


def _raise_info(info, offset):
    row = info["row"]
    if row is not None and info["relative"]:
        row += offset
    raise PredictionFileError(info["path"], info["reason"], line=info["line"], row=row, column=info["column"])


def _check_fingerprints(metas, env):
    for meta in metas:
        if meta["fingerprint"] != env.fingerprint:
            from .._errors import InvalidOptionError
            raise InvalidOptionError(
                f"client: the Dask workers run other crossentropy code (fingerprint {meta['fingerprint']}) than this "
                f"process ({env.fingerprint}); install the same version everywhere")


def _serial_comparison(sources, report_options, base, reader, opts, by):
    """A comparison that met an error, read again by the CLI's serial reader: its exact error (or its report)."""
    return compare_datasets([os.fspath(s) for s in sources], base=base, **report_options, **reader, **opts, by=by)


def _unequal_rows(sources, dss, frame, counts, report_options, base, reader, opts):
    if not frame:
        return _serial_comparison(sources, report_options, base, reader, opts, opts.get("by"))
    totals = [sum(c) for c in counts]
    n = min(totals)
    short = dss[totals.index(n)]
    long_ = dss[next(i for i, t in enumerate(totals) if t > n)]
    raise PredictionFileError(short.name, f"has {n:,} rows but {long_.name} has more: model comparison needs the "
                              "same rows in the same order")


# ---------------------------------------------------------------------------------------------
# Finishing: the CLI's own finalize and report assembly
# ---------------------------------------------------------------------------------------------

def _finish(result, models, dss, specs, negatives, base, compare, by, ci, replicates, seed):
    metas, node, rocs = result["metas"], result["node"], result["rocs"]
    try:
        accs = node["accs"]
        for m, (model, ds) in enumerate(zip(models, dss)):
            ds.layout.class_names[0] = negatives[m]  # the CLI's decoder writes what it learnt into the layout
            ds.warnings.extend(_decoder_warnings(model, ds, metas, m))
            rocs.attach(m, accs[m])
        if node["rows"] == 0:
            raise PredictionFileError(dss[0].name, "no data rows")
        rocs.compute()
        reports = [acc.finalize(ds.layout.class_names, base) for acc, ds in zip(accs, dss)]
    finally:
        rocs.cleanup()
    if compare:
        return comparison_report(dss, accs, specs, reports, by=by, ci=ci, replicates=replicates, seed=seed)
    return finish_report(reports[0], dss[0], specs[0])


def _decoder_warnings(model: _Model, ds, metas, m) -> list:
    """The warnings of the CLI's one decoder at the end of the dataset (rows of probabilities off 1)."""
    dec = Decoder(model.name, ds.layout, model.opts)
    dec.bad_sums = sum(meta["models"][m]["bad_sums"] for meta in metas)
    offset = 0
    for meta in metas:
        first = meta["models"][m]["first_bad_sum"]
        if first is not None:
            where, s = first
            if model.frame and meta["relative"] and "row" in where:
                where = {"row": where["row"] + offset}
            dec.first_bad_sum = (where, s)
            break
        offset += meta["rows"]
    dec.path = model.name if model.frame else ds.parts[-1]  # the CLI's decoder names the part it read last
    return dec.finish()

