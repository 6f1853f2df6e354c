"""Everything ``crossentropy score`` reports, as small mergeable state objects.

A report is built from chunks of decoded rows (:class:`Batch`).  Each figure
has its own accumulator with the same three methods:

``update(rows, weights)``
    add a chunk (``rows`` is the :class:`RowMetrics` computed once per chunk);
``merge(other)``
    add another accumulator's state (from another chunk range, partition or
    machine), in any order;
``finalize()``
    the figures, as plain JSON-ready values (``inf``/``nan`` aside).

Every sum is exact (:mod:`.exact`), every count an integer, every ROC table a
sorted exact count per distinct score (:mod:`.roc`), the bootstrap keyed on
global row numbers (:mod:`.bootstrap`); so the report is **bit-identical for
any chunk size, partitioning and merge order**, and every state pickles
(Dask ships it between workers).  :class:`ScoreAccumulator` composes them;
:class:`SlicedAccumulator` adds one per value of a ``--by`` column.

With sample weights (``spec.weighted``), every mean, rate, bin and table is
weighted (``Σ w·x / Σ w``, as scikit-learn's ``sample_weight``); the counts of
rows are still reported next to the weight totals.

>>> import numpy as np
>>> spec = ScoreSpec(n_classes=3, class_names=("a", "b", "c"))
>>> acc = ScoreAccumulator(spec)
>>> acc.update(Batch(np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]), np.array([0, 2, 2])))
>>> r = acc.finalize()
>>> round(r["cross_entropy"]["nats"], 6), r["accuracy"], r["misclassified"], round(r["brier"], 6)
(0.825646, 0.3333333333333333, 2, 0.5)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast
from dataclasses import dataclass, replace

import numpy as np

from .bootstrap import ReplicateSums, percentile_interval
from .exact import ExactSums
from .roc import MemoryBudget, RocTable, _packed_fit

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["ScoreSpec", "Batch", "RowMetrics", "RowError", "row_metrics", "ScoreAccumulator",
           "SlicedAccumulator", "LossStats", "Confusion", "Calibration", "TopK", "WorstK", "RocAuc",
           "BootstrapStats", "LOSS_HIST_EDGES", "entropy_of_frequencies", "MAX_SLICES"]

# Histogram of per-sample losses (nats) for plots: 0.1-nat bins up to 10 nats
# (p ≥ 4.5e-5), then one overflow bin that also holds infinite losses.
LOSS_HIST_EDGES = np.linspace(0.0, 10.0, 101)
MAX_SLICES = 1000
FULL_CONFUSION_MAX = 256  # classes up to which the full confusion matrix is kept
_ROW_ELEMENTS = 1 << 18  # rows × classes per internal step (bounds the temporaries: ~2 MiB each)


class RowError(ValueError):
    """A row that cannot be scored; ``index`` is its position in the batch."""

    def __init__(self, message, index, column=None):
        super().__init__(message)
        self.index, self.column = int(index), column


@dataclass(frozen=True)
class ScoreSpec:
    """What to compute: the task and the report options (one spec per report)."""

    n_classes: int
    binary: bool = False
    class_names: tuple = ()
    logits: bool = False
    compat: str | None = None  # None (exact), 'sklearn' or 'keras'
    weighted: bool = False
    n_bins: int = 10
    top_k: tuple | None = None  # default: (2, 3, 5) below the class count
    worst: int = 5
    auc: bool = True
    ci: float | None = None  # confidence level of the bootstrap intervals; None: no bootstrap
    replicates: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2; got {self.n_classes}")
        if self.binary and self.n_classes != 2:
            raise ValueError(f"a binary task has 2 classes; got n_classes={self.n_classes}")
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(str(i) for i in range(self.n_classes)))
        if self.top_k is None:
            ks = () if self.binary else tuple(k for k in (2, 3, 5) if k < self.n_classes)
            object.__setattr__(self, "top_k", ks)

    @property
    def bootstrap(self) -> bool:
        return self.ci is not None


@dataclass
class Batch:
    """One chunk of decoded rows.

    ``scores``: ``(n,)`` (binary: probability or logit of class 1) or
    ``(n, K)``; ``labels``: class indices; ``weights``: sample weights or
    ``None``; ``rows``: global 0-based row numbers (default ``0 … n-1``);
    ``lines``: line numbers in a text file, if any; ``part``: index of the
    part file of a dataset; ``by``: slice keys (strings) for ``--by``.
    """

    scores: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None = None
    rows: np.ndarray | None = None
    lines: np.ndarray | None = None
    part: int = 0
    by: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self):
        if self.rows is None:
            self.rows = np.arange(len(self.labels), dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def take(self, sel) -> "Batch":
        """The rows ``sel`` (a mask, slice or index array) as a new batch."""
        def t(a):
            return None if a is None else a[sel]
        return Batch(self.scores[sel], self.labels[sel], t(self.weights), t(self.rows), t(self.lines), self.part,
                     t(self.by), t(self.ids))


def entropy_of_frequencies(counts) -> float:
    """Entropy (nats) of the empirical distribution with these counts (or weights).

    The denominator of normalised cross-entropy: the loss of a model that
    always predicts the base rate(s).

    >>> round(entropy_of_frequencies([50, 50]), 6)  # ln 2
    0.693147
    >>> entropy_of_frequencies([10, 0])
    0.0
    """
    c = np.asarray(counts, dtype=np.float64)
    n = math.fsum(c.tolist())
    if n == 0:
        return math.nan
    f = c[c > 0] / n
    return float(-math.fsum((f * np.log(f)).tolist()))


# ---------------------------------------------------------------------------------------------
# Per-row quantities (computed once per chunk, shared by every accumulator)
# ---------------------------------------------------------------------------------------------

@dataclass
class RowMetrics:
    """Per-row quantities of one chunk (all ``(n,)`` unless noted)."""

    labels: np.ndarray
    loss: np.ndarray  # −log p(label), nats
    pred: np.ndarray  # predicted class (argmax, first on ties; binary: p > 0.5 or logit > 0)
    p_true: np.ndarray  # probability of the label
    conf: np.ndarray  # binary: p(class 1); multi-class: top-label probability
    conf_hit: np.ndarray  # binary: label is 1; multi-class: prediction is right
    brier: np.ndarray  # Σ_k (p_k − [k = label])² for K ≥ 3; (p1 − y)² for two classes
    probs_t: np.ndarray  # (K, n) class probabilities, class-major (binary: p0, p1)
    auc_scores: np.ndarray  # binary: the raw score; multi-class: the (K, n) probabilities
    rank: np.ndarray | None  # number of classes ranked above the label (ties: lower index first)
    rows: np.ndarray
    lines: np.ndarray | None
    part: int


def row_metrics(spec: ScoreSpec, batch: Batch) -> RowMetrics:
    """Every per-row quantity of ``batch``, from the library's own functions.

    Probabilities: ``-log p`` (``binary_cross_entropy``; the label's
    probability for multi-class, the same value ``categorical_cross_entropy``
    computes); logits: ``log_softmax`` / ``log_sigmoid``.  ``--compat``
    modes call ``binary_cross_entropy`` / ``categorical_cross_entropy`` with
    ``compat=``.  A NaN loss (a row of logits that are all ``-inf``) raises
    :class:`RowError`.
    """
    from .. import activations as act
    from .. import binary as bce
    from .. import categorical as cce

    x = np.asarray(batch.scores, dtype=np.float64)
    y = np.asarray(batch.labels, dtype=np.int64)
    n = y.size
    idx = np.arange(n)
    with np.errstate(all="ignore"):
        if spec.binary:
            t = y.astype(np.float64)
            if spec.logits:
                p1, p0 = act.sigmoid(x), act.sigmoid(-x)  # sigmoid(-x), not 1 - sigmoid(x): exact for large x
                if spec.compat == "sklearn":
                    loss = bce.binary_cross_entropy(p1, t, reduction="none", compat="sklearn")
                else:
                    # −log σ(x) for label 1, −log σ(−x) = −log(1 − σ(x)) for label 0.
                    loss = np.where(y == 1, -act.log_sigmoid(x), -act.log_sigmoid(-x))
                pred = (x > 0.0).astype(np.int64)  # sigmoid(z) rounds to 0.5 for tiny z > 0
            else:
                p1, p0 = x, 1.0 - x
                loss = bce.binary_cross_entropy(x, t, reduction="none", compat=spec.compat)
                pred = (x > 0.5).astype(np.int64)
            loss = np.asarray(loss, dtype=np.float64)
            # (cast: with Any arguments numpy's stubs pick where's one-argument overload)
            p_true = cast(np.ndarray, np.where(y == 1, p1, p0))
            probs_t = np.stack([p0, p1])
            conf, conf_hit = p1, y == 1
            d = p1 - t
            brier = d * d
            auc_scores, rank = x, None
        else:
            if spec.logits:
                x = np.ascontiguousarray(x)  # row-major: the softmax's sums then add in one order whatever the source
                logp = act.log_softmax(x, axis=-1)
                probs = act.softmax(x, axis=-1)
                if spec.compat == "sklearn":
                    loss = cce.categorical_cross_entropy(probs, y, reduction="none", compat="sklearn")
                else:
                    loss = -logp[idx, y]
            else:
                probs = x
                if spec.compat is None:
                    loss = -np.log(x[idx, y])
                else:  # row-major, so that Keras's renormalisation adds in one order whatever the source
                    loss = cce.categorical_cross_entropy(np.ascontiguousarray(x), y, reduction="none",
                                                         compat=spec.compat)
            loss = np.asarray(loss, dtype=np.float64)
            pred = np.argmax(x, axis=1)
            p_true = probs[idx, y]
            conf = probs[idx, pred]
            conf_hit = pred == y
            probs_t = probs.T if probs.T.flags.c_contiguous else np.ascontiguousarray(probs.T)  # class-major
            # Σ_k (p_k − [k = y])², one class at a time: a fixed order of additions per row.
            d = probs_t.copy()
            d[y, idx] -= 1.0
            brier = d[0] * d[0]
            for k in range(1, spec.n_classes):
                brier += d[k] * d[k]
            if spec.n_classes == 2:
                brier *= 0.5  # two classes: (p1 - y)^2, the binary Brier score (scikit-learn's convention)
            auc_scores = probs_t
            rank = None
            if spec.top_k:
                # Classes ranked above the label: higher scores, and equal scores of a lower index.
                xy = x[idx, y][:, None]
                rank = np.count_nonzero(x > xy, axis=1)
                eq = x == xy
                if np.count_nonzero(eq) > n:  # a tie besides the label itself
                    rank += np.count_nonzero(eq & (np.arange(spec.n_classes)[None, :] < y[:, None]), axis=1)
    bad = np.isnan(loss)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RowError("the loss is NaN: every logit of this row is -inf (the softmax is 0/0)", i)
    rows = cast(np.ndarray, batch.rows)  # never None after Batch.__post_init__
    return RowMetrics(y, loss, pred, p_true, conf, conf_hit, brier, probs_t, auc_scores, rank, rows,
                      batch.lines, batch.part)


def _hist_bins(loss):
    """``searchsorted(LOSS_HIST_EDGES, loss, 'right') - 1`` clipped to the bins (last: >= 10 nats and inf)."""
    last = len(LOSS_HIST_EDGES) - 1
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.minimum(loss * 10.0, float(last))  # edges are k/10: bin floor(10 loss), checked near the edges
    b = t.astype(np.intp)
    near = np.abs(t - np.rint(t)) <= 1e-13
    if near.any():
        i = np.flatnonzero(near)
        b[i] = np.searchsorted(LOSS_HIST_EDGES, loss[i], side="right") - 1
    np.clip(b, 0, last, out=b)
    return b


def _w(values, weights):
    """``w·x`` with rows of weight 0 contributing exactly 0 (also when x is inf)."""
    v = np.asarray(values, dtype=np.float64)
    if weights is None:
        return v
    with np.errstate(invalid="ignore"):
        out = v * weights
    out[weights == 0] = 0.0
    return out


# ---------------------------------------------------------------------------------------------
# The accumulators
# ---------------------------------------------------------------------------------------------

class LossStats:
    """Mean loss overall and per true class (exact sums), and the loss histogram."""

    def __init__(self, spec: ScoreSpec):
        self.k = spec.n_classes
        self.total = ExactSums()
        self.per_class = ExactSums(self.k)
        self.hist = np.zeros(len(LOSS_HIST_EDGES), dtype=np.int64)

    def update(self, r: RowMetrics, w) -> None:
        wl = _w(r.loss, w)
        self.total.add(wl)
        self.per_class.add(wl, r.labels)
        self.hist += np.bincount(_hist_bins(r.loss), minlength=len(LOSS_HIST_EDGES))

    def merge(self, o: "LossStats") -> None:
        self.total.merge(o.total)
        self.per_class.merge(o.per_class)
        self.hist += o.hist

    def finalize(self, conf: "Confusion") -> dict:
        if conf.weighted:
            mean = self.total.ratio(conf.weight_total)
            per = self.per_class.ratios(conf.true_weights)
        else:
            mean = self.total.mean(conf.n)
            per = self.per_class.ratios(conf.true_counts())
        return {"mean": mean, "per_class": per,
                "histogram": {"edges_nats": LOSS_HIST_EDGES.tolist(), "counts": self.hist.tolist()}}


class Confusion:
    """Rows (and weights) per (true class, predicted class): accuracy, class counts, P/R/F1.

    Up to ``FULL_CONFUSION_MAX`` classes the full matrix is kept; above, only
    the per-class true positives, true counts and predicted counts.
    """

    # The weighted state: ExactSums when the spec is weighted, else absent or None
    # (a flag-dependent invariant mypy cannot express, hence Any).
    weights: Any
    w_tp: Any
    w_true: Any
    w_pred: Any
    weight_total: Any
    w_correct: Any
    _cache: ExactSums | None

    def __init__(self, spec: ScoreSpec):
        self.k = spec.n_classes
        self.weighted = spec.weighted
        self.full = self.k <= FULL_CONFUSION_MAX
        self.n = 0
        self.correct = 0
        if self.full:
            self.counts = np.zeros(self.k * self.k, dtype=np.int64)
            self.weights = ExactSums(self.k * self.k) if self.weighted else None
        else:
            self.tp = np.zeros(self.k, dtype=np.int64)
            self.true = np.zeros(self.k, dtype=np.int64)
            self.predicted = np.zeros(self.k, dtype=np.int64)
            if self.weighted:
                self.w_tp, self.w_true, self.w_pred = ExactSums(self.k), ExactSums(self.k), ExactSums(self.k)
        self.weight_total = ExactSums() if self.weighted else None
        self.w_correct = ExactSums() if self.weighted else None
        self._cache = None

    def update(self, r: RowMetrics, w) -> None:
        self._cache = None
        y, p = r.labels, r.pred
        hit = y == p
        self.n += int(y.size)
        self.correct += int(np.count_nonzero(hit))
        if self.full:
            cell = y * self.k + p
            self.counts += np.bincount(cell, minlength=self.k * self.k)
            if self.weighted:
                self.weights.add(w, cell)
        else:
            self.tp += np.bincount(y[hit], minlength=self.k)
            self.true += np.bincount(y, minlength=self.k)
            self.predicted += np.bincount(p, minlength=self.k)
            if self.weighted:
                self.w_tp.add(w[hit], y[hit])
                self.w_true.add(w, y)
                self.w_pred.add(w, p)
        if self.weighted:
            self.weight_total.add(w)
            self.w_correct.add(w[hit])

    def merge(self, o: "Confusion") -> None:
        self._cache = None
        self.n += o.n
        self.correct += o.correct
        if self.full:
            self.counts += o.counts
            if self.weighted:
                self.weights.merge(o.weights)
        else:
            self.tp += o.tp
            self.true += o.true
            self.predicted += o.predicted
            if self.weighted:
                self.w_tp.merge(o.w_tp)
                self.w_true.merge(o.w_true)
                self.w_pred.merge(o.w_pred)
        if self.weighted:
            self.weight_total.merge(o.weight_total)
            self.w_correct.merge(o.w_correct)

    def true_counts(self) -> np.ndarray:
        return self.counts.reshape(self.k, self.k).sum(axis=1) if self.full else self.true

    @property
    def true_weights(self) -> ExactSums:
        """Per true class: the exact weight sums (weighted reports)."""
        if not self.full:
            return self.w_true
        if self._cache is None:
            self._cache = _row_sums(self.weights, self.k)
        return self._cache

    def finalize(self) -> dict:
        k = self.k
        names = list(range(k))
        if self.full:
            cm = self.counts.reshape(k, k)
            tp, true, pred = np.diag(cm).copy(), cm.sum(axis=1), cm.sum(axis=0)
        else:
            cm, tp, true, pred = None, self.tp, self.true, self.predicted
        if self.weighted:
            if self.full:
                wcm = np.array(self.weights.values()).reshape(k, k)
                wtp = np.diag(wcm).copy()
                wtrue = np.array(_row_sums(self.weights, k).values())
                wpred = np.array(_row_sums(self.weights, k, axis=1).values())
            else:
                wcm = None
                wtp = np.array(self.w_tp.values())
                wtrue = np.array(self.w_true.values())
                wpred = np.array(self.w_pred.values())
            accuracy = self.w_correct.ratio(self.weight_total)
            total_w = self.weight_total.value()
        else:
            wcm, wtp, wtrue, wpred = cm, tp, true, pred
            accuracy = self.correct / self.n if self.n else math.nan
            total_w = float(self.n)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(wpred > 0, wtp / np.where(wpred > 0, wpred, 1), np.nan)
            recall = np.where(wtrue > 0, wtp / np.where(wtrue > 0, wtrue, 1), np.nan)
            f1 = np.where((precision + recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
            f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
        support = np.asarray(wtrue, dtype=np.float64)

        def avg(v, weighted):
            m = ~np.isnan(v)
            if not m.any():
                return None
            if weighted:
                s = support[m].sum()
                return float(np.dot(v[m], support[m]) / s) if s else None
            return float(v[m].mean())
        per_class = [{"index": i, "count": int(true[i]), "weight": float(wtrue[i]) if self.weighted else None,
                      "predicted": int(pred[i]), "true_positives": int(tp[i]),
                      "precision": _none(precision[i]), "recall": _none(recall[i]), "f1": _none(f1[i])}
                     for i in names]
        out = {"n": self.n, "correct": self.correct, "accuracy": accuracy, "weight_total": total_w,
               "per_class": per_class,
               "macro": {"precision": avg(precision, False), "recall": avg(recall, False), "f1": avg(f1, False)},
               "weighted": {"precision": avg(precision, True), "recall": avg(recall, True), "f1": avg(f1, True)},
               "class_weights": np.asarray(wtrue, dtype=np.float64).tolist()}
        if cm is not None:
            out["matrix"] = cm.tolist()
            if self.weighted and wcm is not None:
                out["weighted_matrix"] = wcm.tolist()
        return out


def _row_sums(sums: ExactSums, k: int, axis: int = 0) -> ExactSums:
    """Exact sums over the rows (axis 0: per true class) or columns of a flattened k×k matrix of sums."""
    out = ExactSums(k)
    # Re-group the cells' exact state: cell (i, j) goes to group i (axis 0) or j (axis 1).
    out._base, out._added = sums._base, sums._added
    h = sums._hi.reshape(k, k, -1)
    lw = sums._lo.reshape(k, k, -1)
    ax = 1 if axis == 0 else 0
    out._hi, out._lo = h.sum(axis=ax), lw.sum(axis=ax)
    out._fixed = sums._fixed.reshape(k, k, 3).sum(axis=ax)
    if sums._carry is not None:
        c = np.array(sums._carry, dtype=object).reshape(k, k)
        out._carry = [int(v) for v in c.sum(axis=ax)]
    for name in ("_posinf", "_neginf", "_nan"):
        setattr(out, name, getattr(sums, name).reshape(k, k).sum(axis=ax))
    return out


def _none(v):
    v = float(v)
    return None if math.isnan(v) else v


class Calibration:
    """Reliability bins (ECE, MCE) and class-wise bins (class-wise ECE and MCE).

    Bins are scikit-learn's (``calibration_curve(strategy='uniform')``): edges
    ``linspace(0, 1, n_bins + 1)``, a value on an inner edge goes to the lower
    bin.  Binary: p(class 1) against the frequency of class 1; multi-class:
    the top-label confidence against accuracy.  Class-wise: for each class k,
    p_k against the frequency of class k, ECE averaged over classes.
    """

    # Flag-dependent state (mypy cannot express it, hence Any): ``weight`` and
    # ``c_weight`` are ExactSums when weighted, else None; ``c_hits`` is ExactSums
    # when weighted, else an int64 count array.
    weight: Any
    c_hits: Any
    c_weight: Any

    def __init__(self, spec: ScoreSpec):
        self.nb, self.k, self.weighted = spec.n_bins, spec.n_classes, spec.weighted
        self.inner = np.linspace(0.0, 1.0, self.nb + 1)[1:-1]
        self.count = np.zeros(self.nb, dtype=np.int64)
        self.conf = ExactSums(self.nb)
        self.hits = ExactSums(self.nb)
        self.weight = ExactSums(self.nb) if self.weighted else None
        g = self.k * self.nb
        self.c_count = np.zeros(g, dtype=np.int64)
        self.c_conf = ExactSums(g)
        self.c_hits = np.zeros(g, dtype=np.int64) if not self.weighted else ExactSums(g)
        self.c_weight = ExactSums(g) if self.weighted else None

    def bin(self, v):
        """``searchsorted(inner_edges, v, side='left')``: by arithmetic, exact searches only near edges."""
        v = np.asarray(v)
        t = v * self.nb
        b = t.astype(np.intp)  # floor: every value is >= 0
        # Only where v·nb is within a few ulps of a whole number can the product's
        # rounding (or a value on an edge, which goes to the lower bin) misplace it.
        near = np.abs(t - np.rint(t)) <= 8e-16 * self.nb
        np.minimum(b, self.nb - 1, out=b)
        if near.any():
            idx = np.flatnonzero(near)
            b.flat[idx] = np.searchsorted(self.inner, v.flat[idx], side="left")
        return b

    def update(self, r: RowMetrics, w) -> None:
        self.update_top(r, w)
        self.update_classwise(r, w)

    def update_classwise(self, r: RowMetrics, w) -> None:
        """Class-wise: every (class, row) probability in its class's bins."""
        P = r.probs_t  # (K, n)
        n = P.shape[1]
        cb = self.bin(P)
        cb += (np.arange(self.k) * self.nb)[:, None]  # (K, n) group indices
        self.c_count += np.bincount(cb.ravel(), minlength=self.k * self.nb)
        gy = cb[r.labels, np.arange(n)]
        if self.weighted:
            W = np.broadcast_to(w[None, :], P.shape)
            self.c_conf.add(_w(P, W).ravel(), cb.ravel())
            self.c_hits.add(w, gy)
            self.c_weight.add(W.ravel(), cb.ravel())
        else:
            self.c_conf.add(P.ravel(), cb.ravel())
            self.c_hits += np.bincount(gy, minlength=self.k * self.nb)

    def set_classwise(self, count, hits, conf: ExactSums) -> None:
        """Replace the class-wise state (unweighted) by one counted elsewhere: the ROC tables' final pass
        over each class's sorted probabilities gives the same counts and exact sums."""
        self.c_count = np.asarray(count, dtype=np.int64)
        self.c_hits = np.asarray(hits, dtype=np.int64)
        self.c_conf = conf

    def update_top(self, r: RowMetrics, w) -> None:
        b = self.bin(r.conf)
        self.count += np.bincount(b, minlength=self.nb)
        self.conf.add(_w(r.conf, w), b)
        hit = np.asarray(r.conf_hit, dtype=np.float64)
        self.hits.add(_w(hit, w), b)
        if self.weighted:
            self.weight.add(w, b)

    def merge(self, o: "Calibration") -> None:
        self.count += o.count
        self.conf.merge(o.conf)
        self.hits.merge(o.hits)
        self.c_count += o.c_count
        self.c_conf.merge(o.c_conf)
        if self.weighted:
            self.weight.merge(o.weight)
            self.c_hits.merge(o.c_hits)
            self.c_weight.merge(o.c_weight)
        else:
            self.c_hits += o.c_hits

    def _table(self, count, conf, hits, weight, total):
        """Per bin: count, mean confidence, frequency; and ECE / MCE from them."""
        den = weight if self.weighted else count
        confs = conf.ratios(den)
        if isinstance(hits, ExactSums):
            freqs = hits.ratios(den)
        else:
            freqs = [int(h) / int(c) if c else math.nan for h, c in zip(hits, count)]
        wts = weight.values() if self.weighted else [float(c) for c in count]
        terms = []
        mce = 0.0
        rows = []
        for i in range(len(count)):
            c = int(count[i])
            if c and wts[i] > 0:
                gap = abs(freqs[i] - confs[i])
                terms.append(wts[i] / total * gap)
                mce = max(mce, gap)
            rows.append((c, wts[i], confs[i] if c else None, freqs[i] if c else None))
        return rows, math.fsum(terms), mce

    def finalize(self, total_weight: float) -> dict:
        rows, ece, mce = self._table(self.count, self.conf, self.hits, self.weight, total_weight)
        bins = [{"lo": i / self.nb, "hi": (i + 1) / self.nb, "count": c,
                 **({"weight": wt} if self.weighted else {}), "confidence": cf, "accuracy": fr}
                for i, (c, wt, cf, fr) in enumerate(rows)]
        per_class = []
        eces, mces = [], []
        for k in range(self.k):
            s = slice(k * self.nb, (k + 1) * self.nb)
            cnt = self.c_count[s]
            conf, hits = _subsums(self.c_conf, s), (self.c_hits[s] if not self.weighted
                                                    else _subsums(self.c_hits, s))
            wt = _subsums(self.c_weight, s) if self.weighted else None
            _, e, m = self._table(cnt, conf, hits, wt, total_weight)
            eces.append(e)
            mces.append(m)
            per_class.append({"ece": e, "mce": m})
        return {"ece": ece, "mce": mce, "bins": bins,
                "classwise_ece": math.fsum(eces) / self.k if total_weight else math.nan,
                "classwise_mce": max(mces) if mces else math.nan, "per_class": per_class}


def _subsums(s: ExactSums, sl: slice) -> ExactSums:
    """The groups ``sl`` of ``s`` as their own :class:`ExactSums` (a view of the exact state)."""
    out = ExactSums(sl.stop - sl.start)
    out._base, out._added = s._base, s._added
    out._hi, out._lo = s._hi[sl], s._lo[sl]
    out._fixed = s._fixed[sl]
    out._carry = None if s._carry is None else s._carry[sl]
    out._posinf, out._neginf, out._nan = s._posinf[sl], s._neginf[sl], s._nan[sl]
    return out


class TopK:
    """Top-k accuracy: the label among the k highest scores (ties: the lower class index ranks first)."""

    w_hits: Any  # a list of ExactSums when weighted, else None

    def __init__(self, spec: ScoreSpec):
        self.ks = tuple(spec.top_k or ())
        self.weighted = spec.weighted
        self.hits = np.zeros(len(self.ks), dtype=np.int64)
        self.w_hits = [ExactSums() for _ in self.ks] if self.weighted else None

    def update(self, r: RowMetrics, w) -> None:
        if r.rank is None:
            return
        for i, k in enumerate(self.ks):
            hit = r.rank < k
            self.hits[i] += int(np.count_nonzero(hit))
            if self.weighted:
                self.w_hits[i].add(w[hit])

    def merge(self, o: "TopK") -> None:
        self.hits += o.hits
        if self.weighted:
            for a, b in zip(self.w_hits, o.w_hits):
                a.merge(b)

    def finalize(self, conf: Confusion) -> dict:
        out = {}
        for i, k in enumerate(self.ks):
            if self.weighted:
                out[str(k)] = self.w_hits[i].ratio(conf.weight_total)
            else:
                out[str(k)] = int(self.hits[i]) / conf.n if conf.n else math.nan
        return out


class WorstK:
    """The K rows of largest loss (ties: the earlier row), with where to find them."""

    def __init__(self, spec: ScoreSpec):
        self.k = spec.worst
        self.items: list = []  # (loss, row, part, line, label, pred, p_true, weight)

    def update(self, r: RowMetrics, w) -> None:
        if not self.k or r.loss.size == 0:
            return
        k = min(self.k, r.loss.size)
        if r.loss.size > 4 * k:
            cand = np.argpartition(-r.loss, k - 1)[:k]
            thr = r.loss[cand].min()
            cand = np.flatnonzero(r.loss >= thr)  # every tie of the k-th value, for a row-order tie break
        else:
            cand = np.arange(r.loss.size)
        order = cand[np.lexsort((r.rows[cand], -r.loss[cand]))][:k]
        for i in order.tolist():
            self.items.append((float(r.loss[i]), int(r.rows[i]), int(r.part),
                               None if r.lines is None else int(r.lines[i]), int(r.labels[i]), int(r.pred[i]),
                               float(r.p_true[i]), None if w is None else float(w[i])))
        self._trim()

    def _trim(self) -> None:
        self.items.sort(key=lambda t: (-t[0], t[1]))
        del self.items[self.k:]

    def merge(self, o: "WorstK") -> None:
        self.items.extend(o.items)
        self._trim()

    def finalize(self, class_names) -> list:
        return [{"row": t[1] + 1, "part": t[2], "line": t[3], "label": class_names[t[4]],
                 "predicted": class_names[t[5]], "p_true": t[6], "loss_nats": t[0],
                 **({"weight": t[7]} if t[7] is not None else {})} for t in self.items]


class RocAuc:
    """ROC AUC: binary on the raw score; multi-class one-vs-rest per class, macro and prevalence-weighted."""

    def __init__(self, spec: ScoreSpec, budget: MemoryBudget | None = None):
        self.binary, self.weighted = spec.binary, spec.weighted
        n = 1 if spec.binary else spec.n_classes
        self.tables = [RocTable(weighted=spec.weighted, budget=budget) for _ in range(n)]

    def update(self, r: RowMetrics, w) -> None:
        if self.binary:
            self.tables[0].update(r.auc_scores, r.labels == 1, w)
        elif not self.weighted and _packed_fit(r.auc_scores):  # probabilities: checked once for every class
            for k, t in enumerate(self.tables):
                t.add_packed(r.auc_scores[k], r.labels == k)
        else:
            for k, t in enumerate(self.tables):
                t.update(r.auc_scores[k], r.labels == k, w)

    def merge(self, o: "RocAuc") -> None:
        for a, b in zip(self.tables, o.tables):
            a.merge(b)

    def finalize(self, bins=None, threads: bool = False) -> dict:
        """The AUCs and curves; with ``bins`` (multi-class, unweighted), also ``'classwise'``: per (class,
        bin) the rows, the rows of that class and the exact sum of its probabilities, as flat arrays.

        ``threads``: the tables' final passes (one sort each) run two at a time.
        """
        def one(t):
            return t.result(bins=bins)
        if threads and len(self.tables) > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="crossentropy-roc") as pool:
                res = list(pool.map(one, self.tables))
        else:
            res = [one(t) for t in self.tables]
        if self.binary:
            return {"auc": res[0]["auc"], "curves": [res[0]["curve"]]}
        aucs = [r["auc"] for r in res]
        prev = np.array([r["n_pos"] for r in res], dtype=np.float64)
        ok = [i for i, a in enumerate(aucs) if a is not None]
        macro = math.fsum(aucs[i] for i in ok) / len(ok) if ok else None
        wsum = math.fsum(prev[i] for i in ok)
        weighted = math.fsum(aucs[i] * prev[i] for i in ok) / wsum if ok and wsum else None
        out: dict[str, Any] = {"macro": macro, "weighted": weighted, "per_class": aucs,
               "undefined": [i for i, a in enumerate(aucs) if a is None], "curves": [r["curve"] for r in res]}
        if bins is not None:
            tallies = [r["bins"] for r in res]
            sums = ExactSums.from_exact([v for t in tallies for v in t.sums._exact_all()])
            for g, t in enumerate(tallies):  # a non-finite score (general tables only) decides its bin's sum
                nb = t.count.size
                sums._posinf[g * nb:(g + 1) * nb] = t.sums._posinf
                sums._neginf[g * nb:(g + 1) * nb] = t.sums._neginf
                sums._nan[g * nb:(g + 1) * nb] = t.sums._nan
            out["classwise"] = (np.concatenate([t.count for t in tallies]), np.concatenate([t.pos for t in tallies]),
                                sums)
        return out


class BootstrapStats:
    """Poisson-bootstrap replicates of the headline figures (see :mod:`.bootstrap`).

    Statistics per replicate: the weighted loss, hits and Brier sums, and the
    weight sum when rows are weighted (else the replicate's row count).
    """

    NAMES = ("loss", "hit", "brier")

    def __init__(self, spec: ScoreSpec):
        self.weighted = spec.weighted
        self.sums = ReplicateSums(spec.replicates, seed=spec.seed, n_stats=3 + int(spec.weighted))

    def update(self, r: RowMetrics, w) -> None:
        cols = [_w(r.loss, w), _w((r.pred == r.labels).astype(np.float64), w), _w(r.brier, w)]
        if self.weighted:
            cols.append(np.asarray(w, dtype=np.float64))
        self.sums.add(r.rows, np.stack(cols, axis=1))

    def merge(self, o: "BootstrapStats") -> None:
        self.sums.merge(o.sums)

    def replicates(self) -> dict:
        den = 3 if self.weighted else None
        return {name: self.sums.means(i, den) for i, name in enumerate(self.NAMES)}


class ScoreAccumulator:
    """The whole report for one model: every accumulator above, fed once per chunk.

    >>> import numpy as np
    >>> spec = ScoreSpec(n_classes=2, binary=True)
    >>> a, b, whole = ScoreAccumulator(spec), ScoreAccumulator(spec), ScoreAccumulator(spec)
    >>> p, y = np.array([0.9, 0.3, 0.6, 0.2]), np.array([0, 0, 1, 1])
    >>> a.update(Batch(p[:1], y[:1])); b.update(Batch(p[1:], y[1:], rows=np.arange(1, 4)))
    >>> whole.update(Batch(p, y)); b.merge(a)
    >>> b.finalize() == whole.finalize()
    True
    """

    def __init__(self, spec: ScoreSpec, budget: MemoryBudget | None = None, *, threads: bool = False):
        self.spec = spec
        self.threads = bool(threads)  # per-class work (ROC tables, class-wise bins) beside the rest
        self._pool: ThreadPoolExecutor | None = None
        self.loss = LossStats(spec)
        self.confusion = Confusion(spec)
        self.brier = ExactSums()
        self.calibration = Calibration(spec)
        self.topk = TopK(spec)
        self.worst = WorstK(spec)
        self.roc = RocAuc(spec, budget) if spec.auc else None
        # Multi-class, unweighted: the class-wise calibration bins come from the ROC tables' final
        # pass (each class's probabilities, sorted: a bin is a slice), not from every chunk.
        self._classwise_from_roc = self.roc is not None and not spec.binary and not spec.weighted
        self.boot = BootstrapStats(spec) if spec.bootstrap else None

    @property
    def n(self) -> int:
        return self.confusion.n

    def update(self, batch: Batch) -> None:
        """Score one chunk (split internally so that temporaries stay small)."""
        n = len(batch)
        step = max(1, _ROW_ELEMENTS // max(self.spec.n_classes, 1))
        for s in range(0, n, step):
            part = batch if n <= step else batch.take(slice(s, s + step))
            try:
                r = row_metrics(self.spec, part)
            except RowError as e:
                raise RowError(str(e), e.index + s, e.column) from None
            self.update_rows(r, part.weights)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pool"] = None
        return state

    def _per_class(self, r: RowMetrics, w) -> None:
        if not self._classwise_from_roc:
            self.calibration.update_classwise(r, w)
        if self.roc is not None:
            self.roc.update(r, w)

    def update_rows(self, r: RowMetrics, w) -> None:
        """Add per-row quantities already computed by :func:`row_metrics`.

        With ``threads=True`` the per-class work (one sort per class for the ROC
        tables, the class-wise bins) runs in a helper thread beside the rest;
        NumPy releases the GIL in both, and each accumulator is still fed the
        chunks in order, so the result is the same bits.
        """
        if w is not None:
            w = np.asarray(w, dtype=np.float64)
        job = None
        if self.threads:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossentropy-score")
            job = self._pool.submit(self._per_class, r, w)
        try:
            self.loss.update(r, w)
            self.confusion.update(r, w)
            self.brier.add(_w(r.brier, w))
            self.calibration.update_top(r, w)
            self.topk.update(r, w)
            self.worst.update(r, w)
            if self.boot is not None:
                self.boot.update(r, w)
        finally:
            if job is not None:
                job.result()
        if job is None:
            self._per_class(r, w)

    def close(self) -> None:
        """Stop the helper thread (if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def merge(self, other: "ScoreAccumulator") -> None:
        """Add ``other`` (same spec), in any order."""
        if other.spec != self.spec:
            raise ValueError("cannot merge accumulators of different specs")
        self.loss.merge(other.loss)
        self.confusion.merge(other.confusion)
        self.brier.merge(other.brier)
        self.calibration.merge(other.calibration)
        self.topk.merge(other.topk)
        self.worst.merge(other.worst)
        # equal specs: other has a ROC table and replicates exactly when self has
        if self.roc is not None and other.roc is not None:
            self.roc.merge(other.roc)
        if self.boot is not None and other.boot is not None:
            self.boot.merge(other.boot)

    def finalize(self, class_names=None, base=None) -> dict:
        """The report (a dict; floats may be ``inf``/``nan``).

        ``class_names`` overrides the spec's (a binary negative label learnt
        while reading); ``base`` adds the loss in that logarithm base.
        """
        spec = self.spec
        names = list(class_names if class_names is not None else spec.class_names)
        conf = self.confusion.finalize()
        n = conf["n"]
        W = conf["weight_total"]
        loss = self.loss.finalize(self.confusion)
        mean = loss["mean"]
        ce = {"nats": mean, "bits": mean / math.log(2.0)}
        if base is not None and float(base) not in (2.0, math.e):
            ce[f"base{float(base):g}"] = mean / math.log(float(base))
        prior = conf["class_weights"] if spec.weighted else [c["count"] for c in conf["per_class"]]
        h_prior = entropy_of_frequencies(prior)
        roc = None
        if self.roc is not None:
            roc = self.roc.finalize(bins=self.calibration.inner if self._classwise_from_roc else None,
                                    threads=self.threads)
            if self._classwise_from_roc:
                self.calibration.set_classwise(*roc.pop("classwise"))
        cal = self.calibration.finalize(W)
        per_class = []
        for i, c in enumerate(conf["per_class"]):
            per_class.append({"class": names[i], "index": i, "count": c["count"],
                              **({"weight": c["weight"]} if spec.weighted else {}),
                              "loss_nats": None if not c["count"] else loss["per_class"][i],
                              "accuracy": c["recall"], "precision": c["precision"], "recall": c["recall"],
                              "f1": c["f1"], "ece": cal["per_class"][i]["ece"]})
        if spec.weighted:
            brier = self.brier.ratio(self.confusion.weight_total)
        else:
            brier = self.brier.mean(n)
        out = {
            "n_samples": n,
            "task": "binary" if spec.binary else "multiclass",
            "n_classes": spec.n_classes,
            "cross_entropy": ce,
            "perplexity": _exp(mean),
            "perplexity_log10": mean / math.log(10.0) if n else math.nan,
            "accuracy": conf["accuracy"],
            "misclassified": n - conf["correct"],
            "normalized_cross_entropy": (mean / h_prior) if n and h_prior > 0 else None,
            "prior_entropy_nats": h_prior,
            "brier": brier,
            "top_k_accuracy": self.topk.finalize(self.confusion),
            "precision_recall_f1": {"macro": conf["macro"], "weighted": conf["weighted"]},
            "per_class": per_class,
            "worst": self.worst.finalize(names),
            "calibration": {
                "kind": "probability of class 1 vs frequency of class 1" if spec.binary
                else "top-label confidence vs accuracy",
                "ece": cal["ece"] if n else math.nan, "mce": cal["mce"] if n else math.nan,
                "classwise_ece": cal["classwise_ece"], "classwise_mce": cal["classwise_mce"],
                "bins": cal["bins"]},
            "loss_histogram": loss["histogram"],
        }
        if spec.weighted:
            out["weight_total"] = W
        if "matrix" in conf:
            out["confusion_matrix"] = {"classes": names, "matrix": conf["matrix"]}
            if spec.weighted:
                out["confusion_matrix"]["weighted_matrix"] = conf["weighted_matrix"]
        if self.roc is not None:
            out["roc_auc"] = roc
        if spec.binary:
            if spec.weighted:
                out["base_rate"] = conf["class_weights"][1] / W if W else math.nan
            else:
                out["base_rate"] = conf["per_class"][1]["count"] / n if n else math.nan
        if self.boot is not None:
            out["ci"] = self._intervals(out)
        return out

    def _intervals(self, out) -> dict:
        # called only when the spec asks for intervals: both are set
        reps = cast(BootstrapStats, self.boot).replicates()
        lvl = cast(float, self.spec.ci)
        ce_lo, ce_hi = percentile_interval(reps["loss"], lvl)
        ci = {"level": lvl, "replicates": self.spec.replicates, "seed": self.spec.seed,
              "method": "percentile, Poisson bootstrap keyed on (seed, row, replicate)",
              "cross_entropy_nats": [ce_lo, ce_hi],
              "cross_entropy_bits": [ce_lo / math.log(2.0), ce_hi / math.log(2.0)],
              "perplexity": [_exp(ce_lo), _exp(ce_hi)],
              "accuracy": list(percentile_interval(reps["hit"], lvl)),
              "brier": list(percentile_interval(reps["brier"], lvl))}
        for k, v in out["cross_entropy"].items():
            if k.startswith("base"):
                b = float(k[4:])
                ci[f"cross_entropy_{k}"] = [ce_lo / math.log(b), ce_hi / math.log(b)]
        return ci


def _exp(x: float) -> float:
    """exp that gives inf instead of raising past the float range (perplexity above ~e^709.78)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


class SlicedAccumulator:
    """The overall report plus one :class:`ScoreAccumulator` per value of the ``--by`` column."""

    def __init__(self, spec: ScoreSpec, budget: MemoryBudget | None = None, slice_spec: ScoreSpec | None = None):
        self.spec = spec
        self.slice_spec = slice_spec or replace(spec, worst=min(spec.worst, 3))
        self.budget = budget
        self.overall = ScoreAccumulator(spec, budget)
        self.slices: dict = {}

    def update(self, batch: Batch) -> None:
        self.overall.update(batch)
        if batch.by is None or len(batch) == 0:
            return
        keys, inv = np.unique(np.asarray(batch.by, dtype=object).astype(str), return_inverse=True)
        for i, key in enumerate(keys.tolist()):
            acc = self.slices.get(key)
            if acc is None:
                if len(self.slices) >= MAX_SLICES:
                    raise RowError(f"more than {MAX_SLICES} distinct values in the --by column; slice by a "
                                   "column with fewer values", int(np.flatnonzero(inv == i)[0]))
                acc = self.slices[key] = ScoreAccumulator(self.slice_spec, self.budget)
            acc.update(batch.take(inv == i))

    def merge(self, other: "SlicedAccumulator") -> None:
        self.overall.merge(other.overall)
        for key, acc in other.slices.items():
            if key in self.slices:
                self.slices[key].merge(acc)
            else:
                self.slices[key] = acc

    def finalize(self, class_names=None, base=None) -> dict:
        out = self.overall.finalize(class_names, base)
        out["slices"] = {k: self.slices[k].finalize(class_names, base) for k in sorted(self.slices, key=_natural)}
        return out


def _natural(s: str):
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)
