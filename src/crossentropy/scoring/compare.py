"""Several models scored on the same rows, side by side, with paired bootstrap tests.

``crossentropy score a.parquet b.parquet ...`` reads the files in lockstep,
row by row: every file must hold the same rows in the same order — the same
number of rows, the same label on each row (and the same id, when every file
has an ``id`` column) — or the comparison stops with the first row that
differs.  Each model gets its full report; each model after the first gets
the difference of its cross-entropy, accuracy and Brier score from the
first's, with a **paired** bootstrap interval and p-value: the Poisson
weights of a row are the same for every model (they depend only on the
seed, the row and the replicate; see :mod:`.bootstrap`), so each replicate
compares the models on the same resample.  The p-value is two-sided, from the
replicate differences re-centred on 0 (:func:`~.bootstrap.paired_p_value`).

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> a, b = os.path.join(d, "a.csv"), os.path.join(d, "b.csv")
>>> _ = open(a, "w").write("label,p\\n1,0.9\\n0,0.2\\n1,0.7\\n0,0.4\\n")
>>> _ = open(b, "w").write("label,p\\n1,0.6\\n0,0.4\\n1,0.6\\n0,0.5\\n")
>>> r = compare_datasets([a, b], replicates=200)
>>> [round(m["cross_entropy"]["nats"], 4) for m in r["models"]]
[0.299, 0.5564]
>>> c = r["comparison"][0]["cross_entropy_nats"]
>>> round(c["difference"], 4), c["ci"][0] < c["difference"] < c["ci"][1]
(0.2574, True)
"""

from __future__ import annotations

import numpy as np

from .accumulators import Batch, RowError, ScoreAccumulator, SlicedAccumulator
from .bootstrap import paired_p_value, percentile_interval
from .dataset import Predictions, finish_report, spec_for
from .errors import PredictionFileError
from .roc import MemoryBudget

__all__ = ["compare_datasets", "paired_differences", "open_models", "comparison_report", "lockstep"]


class _Stream:
    """A dataset's batches, re-cut to any number of rows on demand."""

    def __init__(self, ds: Predictions):
        self.ds = ds
        self.it = ds.batches()
        self.pieces: list = []
        self.rows = 0
        self.done = False

    def fill(self, need: int) -> None:
        while self.rows < need and not self.done:
            try:
                b = next(self.it)
            except StopIteration:
                self.done = True
                return
            if len(b):
                self.pieces.append(b)
                self.rows += len(b)

    def take(self, m: int) -> Batch:
        out, got = [], 0
        while got < m:
            b = self.pieces[0]
            k = min(m - got, len(b))
            if k == len(b):
                out.append(self.pieces.pop(0))
            else:
                out.append(b.take(slice(0, k)))
                self.pieces[0] = b.take(slice(k, None))
            got += k
        self.rows -= m
        return out[0] if len(out) == 1 else _concat(out)


def _concat(parts) -> Batch:
    def cat(name):
        vals = [getattr(p, name) for p in parts]
        return None if vals[0] is None else np.concatenate(vals)
    first = parts[0]
    return Batch(np.concatenate([p.scores for p in parts]), np.concatenate([p.labels for p in parts]),
                 cat("weights"), cat("rows"), cat("lines"), first.part, cat("by"), cat("ids"))


def _where(ds, b, i):
    name = ds.part_name(b.part)
    loc = f"line {int(b.lines[i])}" if b.lines is not None else f"row {int(b.rows[i]) + 1}"
    return name, loc


def paired_differences(ref_acc, ref_report, acc, report) -> dict:
    """``other − reference`` for cross-entropy, accuracy and Brier: difference, paired CI, p-value."""
    ra, rb = ref_acc.boot.replicates(), acc.boot.replicates()
    lvl = ref_acc.spec.ci
    out = {}
    for key, name in (("loss", "cross_entropy_nats"), ("hit", "accuracy"), ("brier", "brier")):
        if key == "loss":
            va, vb = ref_report["cross_entropy"]["nats"], report["cross_entropy"]["nats"]
        else:
            va, vb = ref_report[name], report[name]
        diff = vb - va
        d = rb[key] - ra[key]
        lo, hi = percentile_interval(d, lvl)
        out[name] = {"difference": diff, "ci": [lo, hi], "p_value": paired_p_value(d, diff)}
    return out


def compare_datasets(paths, *, compat=None, base=None, n_bins=10, top_k=None, worst=5, auc=True, ci=0.95,
                     replicates=1000, seed=0, on_batch=None, **open_options) -> dict:
    """Score several prediction datasets of the same rows; see the module docstring."""
    by = open_options.pop("by", None)
    dss = open_models(paths, by, **open_options)
    try:
        budget = MemoryBudget()
        specs = [spec_for(ds.layout, compat=compat, n_bins=n_bins, top_k=top_k, worst=worst, auc=auc, ci=ci,
                          replicates=replicates, seed=seed) for ds in dss]
        accs = [(SlicedAccumulator(s, budget) if by else ScoreAccumulator(s, budget, threads=True)) for s in specs]
        n = 0
        try:
            for batches in lockstep(dss):
                m = len(batches[0])
                if by:
                    for b in batches[1:]:
                        b.by = batches[0].by
                for ds, acc, b in zip(dss, accs, batches):
                    try:
                        acc.update(b)
                    except RowError as e:
                        raise PredictionFileError(ds.part_name(b.part), str(e), column=e.column,
                                                  **ds.locate(b, e.index)) from None
                n += m
                if on_batch is not None:
                    on_batch(dss[0], n)
            if n == 0:
                raise PredictionFileError(dss[0].name, "no data rows")
            reports = [acc.finalize(ds.layout.class_names, base) for acc, ds in zip(accs, dss)]
        finally:
            for acc in accs:
                if isinstance(acc, ScoreAccumulator):
                    acc.close()
            budget.cleanup()
        return comparison_report(dss, accs, specs, reports, by=by, ci=ci, replicates=replicates, seed=seed)
    finally:
        for ds in dss:
            ds.close()


def lockstep(dss):
    """The models' rows side by side: lists of batches of the same rows, checked to be the same rows.

    ``dss`` are datasets with ``batches()``, ``part_name()``, ``name`` and
    ``layout`` (:class:`~.dataset.Predictions`).
    """
    streams = [_Stream(ds) for ds in dss]
    n = 0
    while True:
        streams[0].fill(1)
        want = max(streams[0].rows, 1)
        for s in streams:
            s.fill(want)
        m = min(s.rows for s in streams)
        if m == 0:
            ended = [s for s in streams if s.rows == 0 and s.done]
            longer = [s for s in streams if s.rows > 0]
            if longer:
                short, long_ = ended[0], longer[0]
                raise PredictionFileError(short.ds.name, f"has {n:,} rows but {long_.ds.name} has more: "
                                          "model comparison needs the same rows in the same order (to score "
                                          "parts of one dataset, pass their folder or a quoted glob)")
            return
        batches = [s.take(m) for s in streams]
        _check_same_rows(dss, batches)
        yield batches
        n += m


def open_models(paths, by=None, **open_options) -> list:
    """The models' datasets opened (ids read; ``by`` on the first only), checked to predict the same classes."""
    dss = []
    try:
        for i, p in enumerate(paths):
            dss.append(Predictions(p, ids=True, by=by if i == 0 else None, **open_options))
        ref = dss[0].layout
        for ds in dss[1:]:
            lay = ds.layout
            if (lay.binary, lay.n_classes) != (ref.binary, ref.n_classes):
                task = "binary" if lay.binary else "multi-class"
                raise PredictionFileError(ds.name, f"has {lay.n_classes} classes ({task}) but {dss[0].name} has "
                                          f"{ref.n_classes}: models compared must predict the same classes")
            if not ref.binary and list(lay.class_names) != list(ref.class_names):
                raise PredictionFileError(ds.name, f"predicts the classes {', '.join(lay.class_names[:8])} but "
                                          f"{dss[0].name} predicts {', '.join(ref.class_names[:8])}; name them "
                                          "alike (--classes) or put the columns in the same order")
    except BaseException:
        for ds in dss:
            ds.close()
        raise
    return dss


def comparison_report(dss, accs, specs, reports, *, by, ci, replicates, seed) -> dict:
    """The comparison's result from the models' finished accumulators and their finalized reports."""
    models = [finish_report(r, ds, s) for r, ds, s in zip(reports, dss, specs)]
    comparison = []
    ref_acc = accs[0].overall if by else accs[0]
    for acc, ds, r in zip(accs[1:], dss[1:], models[1:]):
        a = acc.overall if by else acc
        entry = {"file": ds.name, "reference": dss[0].name,
                 **paired_differences(ref_acc, models[0], a, r)}
        if by:
            entry["slices"] = {}
            for key, sub in acc.slices.items():
                ref_sub = accs[0].slices.get(key)
                if ref_sub is not None and sub.boot is not None:
                    entry["slices"][key] = paired_differences(ref_sub, models[0]["slices"][key], sub,
                                                              r["slices"][key])
        comparison.append(entry)
    return {"models": models, "comparison": comparison,
            "ci": {"level": ci, "replicates": replicates, "seed": seed,
                   "method": "paired Poisson bootstrap (same row weights for every model), percentile "
                             "intervals, two-sided p-value from the re-centred replicates"}}


def _check_same_rows(dss, batches) -> None:
    ref = batches[0]
    for ds, b in zip(dss[1:], batches[1:]):
        diff = np.flatnonzero(b.labels != ref.labels)
        if diff.size:
            i = int(diff[0])
            name, loc = _where(ds, b, i)
            rname, rloc = _where(dss[0], ref, i)
            got = ds.layout.class_names[int(b.labels[i])]
            want = dss[0].layout.class_names[int(ref.labels[i])]
            raise PredictionFileError(name, f"{loc}: label {got!r} differs from {want!r} at {rname} {rloc}: model "
                                      "comparison needs the same rows in the same order")
        if b.ids is not None and ref.ids is not None:
            diff = np.flatnonzero(b.ids != ref.ids)
            if diff.size:
                i = int(diff[0])
                name, loc = _where(ds, b, i)
                rname, rloc = _where(dss[0], ref, i)
                raise PredictionFileError(name, f"{loc}: id {b.ids[i]!r} differs from {ref.ids[i]!r} at {rname} "
                                          f"{rloc}: model comparison needs the same rows in the same order")
