"""A prediction dataset, top to bottom: files → sample → layout → checked batches → report.

1. :func:`~.readers.expand_dataset` lists the part files (one file, ``-``, a
   directory or a glob) and :func:`~.readers.open_reader` opens each in its
   format;
2. the first ``HEAD_ROWS`` rows of the dataset (the fixed sample) go to
   :func:`~.layout.detect_layout`;
3. every chunk of every part goes through :class:`~.layout.Decoder` (checked,
   numbered with dataset-wide row numbers) into :class:`~.accumulators.Batch`
   es;
4. :func:`score_dataset` feeds them to a :class:`~.accumulators.ScoreAccumulator`
   (or :class:`~.accumulators.SlicedAccumulator` for ``--by``) and returns the
   report.

>>> import os, tempfile
>>> d = tempfile.mkdtemp(); f = os.path.join(d, "pred.csv")
>>> _ = open(f, "w").write("label,p0,p1\\n0,0.8,0.2\\n1,0.4,0.6\\n")
>>> ds = Predictions(f)
>>> ds.layout.label, ds.layout.columns, ds.layout.logits, ds.layout.binary
('label', ['p0', 'p1'], False, False)
>>> [(b.scores.tolist(), b.labels.tolist()) for b in ds.batches()]
[([[0.8, 0.2], [0.4, 0.6]], [0, 1])]
>>> round(score_dataset(f)["cross_entropy"]["nats"], 6)  # (-ln 0.8 - ln 0.6) / 2
0.366985
"""

from __future__ import annotations

import os

from .accumulators import RowError, ScoreAccumulator, ScoreSpec, SlicedAccumulator
from .errors import PredictionFileError
from .layout import Decoder, LayoutOptions, detect_layout
from .readers import HEAD_ROWS, RawChunk, expand_dataset, open_reader
from .roc import MemoryBudget

__all__ = ["Predictions", "score_dataset", "spec_for"]


class Predictions:
    """A prediction dataset opened for streaming; :meth:`batches` yields checked batches.

    Options: ``format``, ``delimiter``, ``chunk_rows`` (``None``: about 2^20
    values per chunk), ``csv_engine`` (``'auto'``, ``'arrow'``, ``'python'``)
    and the layout options of :class:`~.layout.LayoutOptions` as keywords
    (``label``, ``columns``, ``logits``, ``classes``, ``positive``,
    ``weight``, ``by``, ``ids``, ``unnormalized``, ``sum_tolerance``).
    ``warnings`` collects what to tell the user.
    """

    def __init__(self, path, *, format=None, delimiter=None, chunk_rows=None, csv_engine="auto", **layout_options):
        self.path = str(path)
        self.name = "<stdin>" if self.path == "-" else self.path
        self.opts = LayoutOptions(**layout_options)
        self.format, self.delimiter, self.chunk_rows, self.csv_engine = format, delimiter, chunk_rows, csv_engine
        self.parts = expand_dataset(self.path)
        self.warnings: list = []
        self._readers: list = []
        self._current = None
        try:
            heads, names, need = [], None, HEAD_ROWS
            for part in self.parts:
                r = self._open(part)
                if names is None:
                    names, self.first = r.names, r
                elif r.names != names:
                    self._check_names(r, names)
                h = r.head(need)
                heads.append(h)
                need -= h.n
                if need <= 0:
                    break
            head = RawChunk.concat([h for h in heads if h.n] or heads[:1])
            self.names = names
            self.layout, warnings = detect_layout(self.first.path, self.first.format, names, head, self.opts)
            self.warnings.extend(warnings)
            if getattr(self.first, "sniffed", False) and self.first.delimiter != ",":
                self.layout.reasons["delimiter"] = f"sniffed {self.first.delimiter!r}"
            self.decoder = Decoder(self.first.path, self.layout, self.opts)
        except BaseException:
            self.close()
            raise

    def _open(self, part):
        r = open_reader(part, format=self.format, delimiter=self.delimiter, chunk_rows=self.chunk_rows,
                        csv_engine=self.csv_engine)
        self._readers.append(r)
        return r

    def _check_names(self, r, names):
        missing = [n for n in names if n not in r.names]
        if missing:
            raise PredictionFileError(r.path, f"this part lacks column(s) {', '.join(map(repr, missing))} of "
                                      f"{self.parts[0]} (every part of a dataset needs the same columns)")

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    def batches(self):
        """Every row of every part, checked, as :class:`~.accumulators.Batch` es (dataset-wide row numbers)."""
        plan = self.layout.plan()
        offset = 0
        opened = {r_part: r for r_part, r in zip(self.parts, self._readers)}
        for i, part in enumerate(self.parts):
            r = opened.get(part) or self._open(part)
            if r is not self.first:
                self._check_names(r, self.names)
            self._current = (i, r)
            self.decoder.path = r.path
            types = {n: t for n, t in getattr(r, "head_types", {}).items() if plan.get(n) == "label"}
            n = 0
            for raw in r.chunks(plan, types):
                if raw.n == 0:
                    continue
                yield self.decoder.decode(raw, offset, i)
                n = raw.first_row + raw.n
            offset += n
            r.close()
        self._current = None
        self.warnings.extend(self.decoder.finish())

    def locate(self, batch, i: int) -> dict:
        """Where row ``i`` of a batch is, as keywords for :class:`PredictionFileError` (with the part's name)."""
        where = {"line": int(batch.lines[i])} if batch.lines is not None else {"row": int(batch.rows[i]) + 1}
        return where

    def part_name(self, part: int) -> str:
        return "<stdin>" if self.parts[part] == "-" else self.parts[part]

    def progress(self):
        """``(done, total, unit)`` of the part being read; ``unit`` is ``'bytes'`` or ``'rows'``."""
        if self._current is None:
            return 0, None
        i, r = self._current
        done, total = r.progress()
        if len(self.parts) > 1:
            # Whole parts count as equal shares.
            frac = (done / total) if total else 0.0
            return i + frac, len(self.parts)
        return done, total

    def close(self) -> None:
        for r in self._readers:
            try:
                r.close()
            except Exception:  # a damaged file may fail again on close: nothing left to release
                pass
        self._readers = []


def spec_for(layout, **options) -> ScoreSpec:
    """The :class:`~.accumulators.ScoreSpec` of a layout plus report options."""
    return ScoreSpec(n_classes=layout.n_classes, binary=layout.binary, class_names=tuple(layout.class_names),
                     logits=layout.logits, weighted=layout.weight is not None, **options)


def score_dataset(path, *, compat=None, base=None, n_bins=10, top_k=None, worst=5, auc=True, ci=None,
                  replicates=1000, seed=0, on_batch=None, **open_options) -> dict:
    """Open ``path`` (see :class:`Predictions`), score every row, return the report dict.

    ``on_batch(predictions, n_rows_so_far)`` is called after each batch
    (progress bars).  Errors are :class:`~.errors.PredictionFileError` with
    the file, line or row, and column.
    """
    ds = Predictions(path, **open_options)
    try:
        spec = spec_for(ds.layout, compat=compat, n_bins=n_bins, top_k=top_k, worst=worst, auc=auc, ci=ci,
                        replicates=replicates, seed=seed)
        budget = MemoryBudget()
        acc = SlicedAccumulator(spec, budget) if ds.layout.by else ScoreAccumulator(spec, budget, threads=True)
        n = 0
        try:
            for b in ds.batches():
                try:
                    acc.update(b)
                except RowError as e:
                    raise PredictionFileError(ds.part_name(b.part), str(e), column=e.column,
                                              **ds.locate(b, e.index)) from None
                n += len(b)
                if on_batch is not None:
                    on_batch(ds, n)
            if n == 0:
                raise PredictionFileError(ds.name, "no data rows")
            report = acc.finalize(ds.layout.class_names, base)
        finally:
            if isinstance(acc, ScoreAccumulator):
                acc.close()
            budget.cleanup()
        return finish_report(report, ds, spec)
    finally:
        ds.close()


def finish_report(report: dict, ds: Predictions, spec: ScoreSpec) -> dict:
    """Add the file, the detected layout and the warnings to a report; name parts in the worst list."""
    for w in report.get("worst", []):
        part = w.pop("part", 0)
        if ds.n_parts > 1:
            w["file"] = os.path.basename(ds.part_name(part))
    for sub in report.get("slices", {}).values():
        for w in sub.get("worst", []):
            part = w.pop("part", 0)
            if ds.n_parts > 1:
                w["file"] = os.path.basename(ds.part_name(part))
    out = {"file": ds.name, **({"parts": len(ds.parts)} if ds.n_parts > 1 else {}), "detected": ds.layout.describe(),
           "compat": spec.compat or "exact", **report}
    out["warnings"] = list(ds.warnings)
    return out
