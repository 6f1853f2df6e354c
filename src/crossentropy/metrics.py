"""Streaming, mergeable scoring of predictions: cross-entropy and friends.

A prediction file can be larger than memory, so :class:`ScoreAccumulator`
consumes it chunk by chunk and keeps only fixed-size state: exact sums, integer
counts, a fixed-bin histogram and a bounded list of the worst samples.  Two
accumulators fed disjoint parts of the data :meth:`~ScoreAccumulator.merge`
into the accumulator of the whole.

Why exact sums rather than plain Kahan/Neumaier compensation?  A compensated
running sum still depends on the order in which values meet, so the result of
a vectorised chunk would change with the chunk size.  :class:`ExactSum` takes
compensation to its limit: its state is a short list of non-overlapping floats
whose *exact* sum is the exact sum of everything added (the error-free
expansion behind :func:`math.fsum`).  Its value is that exact sum correctly
rounded once, so the report is bitwise identical for any chunk size and any
merge order.

Per-sample losses come from the library's own functions
(:func:`~crossentropy.cross_entropy`,
:func:`~crossentropy.categorical_cross_entropy`,
:func:`~crossentropy.binary_cross_entropy` and
:func:`~crossentropy.binary_cross_entropy_with_logits`), always in nats; other
units are the nats mean divided by ``ln(base)`` once, at the end.

>>> import numpy as np
>>> from crossentropy.metrics import score_arrays
>>> r = score_arrays(np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]), np.array([0, 2, 2]))
>>> round(r["cross_entropy"]["nats"], 6), r["accuracy"], r["misclassified"]
(0.825646, 0.3333333333333333, 2)
"""

from __future__ import annotations

import math

import numpy as np

from . import activations as _act
from . import binary as _binary
from . import categorical as _categorical
from ._errors import InvalidOptionError, ShapeMismatchError

__all__ = ["ExactSum", "ScoreAccumulator", "sample_losses", "score_arrays", "entropy_of_frequencies",
           "LOSS_HIST_EDGES"]

# Histogram of per-sample losses (nats) for the plot: 0.1-nat bins up to 10
# nats (p ≥ 4.5e-5), then one overflow bin that also holds infinite losses.
# Fixed edges keep the histogram mergeable and independent of the chunk size.
LOSS_HIST_EDGES = np.linspace(0.0, 10.0, 101)

_MAX_EXPANSION = 64  # an exact double sum never needs more than ~40 parts


def _expansion(terms: list) -> list:
    """Non-overlapping floats whose exact sum equals the exact sum of ``terms``.

    Each round takes the correctly rounded remainder (``math.fsum`` is exact
    inside), so the parts shrink by at least 2**-53 per round and the loop ends
    once the remainder is exactly zero.
    """
    parts: list = []
    rest = list(terms)
    while len(parts) < _MAX_EXPANSION:
        s = math.fsum(rest)
        if s == 0.0:
            break
        parts.append(s)
        rest.append(-s)
    return parts


class ExactSum:
    """A running sum of floats that is exact until it is read.

    Infinite terms are counted apart (``inf - inf`` would poison the exact
    part); NaN terms are the caller's error and must be rejected before.

    >>> s = ExactSum(); s.add([1e16, 1.0, -1e16]); s.add([0.1] * 10)
    >>> s.value  # plain left-to-right float addition gives 1.9999999999999998
    2.0
    >>> t = ExactSum(); t.add([0.1] * 10); t.add([1e16, 1.0, -1e16])
    >>> t.value == s.value
    True
    """

    __slots__ = ("_parts", "_pos_inf", "_neg_inf")

    def __init__(self) -> None:
        self._parts: list = []
        self._pos_inf = 0
        self._neg_inf = 0

    def add(self, values) -> None:
        """Add every value of an iterable (or NumPy array) of floats."""
        a = np.asarray(values, dtype=np.float64).ravel()
        if a.size == 0:
            return
        fin = np.isfinite(a)
        if not fin.all():
            self._pos_inf += int(np.count_nonzero(a == np.inf))
            self._neg_inf += int(np.count_nonzero(a == -np.inf))
            a = a[fin]
        self._parts = _expansion(self._parts + a.tolist())

    def merge(self, other: "ExactSum") -> None:
        """Add everything ``other`` holds (exactly)."""
        self._parts = _expansion(self._parts + other._parts)
        self._pos_inf += other._pos_inf
        self._neg_inf += other._neg_inf

    @property
    def value(self) -> float:
        """The exact sum, rounded once to the nearest float."""
        if self._pos_inf and self._neg_inf:
            return math.nan
        if self._pos_inf:
            return math.inf
        if self._neg_inf:
            return -math.inf
        return math.fsum(self._parts)


def _grouped_exact_add(sums: list, groups: np.ndarray, values: np.ndarray) -> None:
    """``sums[g].add(values[groups == g])`` for every group, in one sort."""
    if values.size == 0:
        return
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    v = values[order]
    cuts = np.flatnonzero(np.diff(g)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [g.size]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        sums[int(g[s])].add(v[s:e])


def entropy_of_frequencies(counts) -> float:
    """Entropy (nats) of the empirical distribution with these counts.

    The denominator of normalised cross-entropy: the loss of a model that
    always predicts the base rate(s).

    >>> round(entropy_of_frequencies([50, 50]), 6)  # ln 2
    0.693147
    >>> entropy_of_frequencies([10, 0])
    0.0
    """
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return math.nan
    f = c[c > 0] / n
    return float(-math.fsum((f * np.log(f)).tolist()))


def sample_losses(scores, labels, *, logits: bool, binary: bool, compat: str | None = None):
    """Per-sample cross-entropy (nats) and the probabilities it came from.

    ``scores`` is ``(n,)`` for a binary task (probability or logit of class 1)
    or ``(n, K)``; ``labels`` holds class indices.  ``compat`` is ``None``
    (exact), ``'sklearn'`` (clip at the dtype's eps, as
    :func:`sklearn.metrics.log_loss`) or ``'keras'`` (clip at 1e-7; Keras also
    renormalises multi-class rows).  Keras computes from-logits losses exactly,
    so ``'keras'`` changes nothing for logits; scikit-learn only takes
    probabilities, so ``'sklearn'`` on logits scores their softmax/sigmoid.

    Returns ``(loss, probs)`` with ``probs`` the probability of class 1
    (binary) or the ``(n, K)`` distribution.

    >>> import numpy as np
    >>> loss, p = sample_losses(np.array([0.0, 2.0]), np.array([1, 0]), logits=True, binary=True)
    >>> loss.round(6).tolist(), p.round(6).tolist()
    ([0.693147, 2.126928], [0.5, 0.880797])
    """
    if compat not in (None, "sklearn", "keras"):
        raise InvalidOptionError(f"compat must be None, 'sklearn' or 'keras'; got {compat!r}")
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if binary:
        if x.ndim != 1 or x.shape != y.shape:
            raise ShapeMismatchError(f"binary scores must be (n,) like the labels; got {x.shape} and {y.shape}")
        t = y.astype(np.float64)
        if logits:
            p = _act.sigmoid(x)
            if compat == "sklearn":
                loss = _binary.binary_cross_entropy(p, t, reduction="none", compat="sklearn")
            else:
                loss = _binary.binary_cross_entropy_with_logits(x, t, reduction="none")
        else:
            p = x
            loss = _binary.binary_cross_entropy(x, t, reduction="none", compat=compat)
        return np.asarray(loss, dtype=np.float64), p
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ShapeMismatchError(f"multi-class scores must be (n, K) with n labels; got {x.shape} and {y.shape}")
    if logits:
        p = _act.softmax(x, axis=-1)
        if compat == "sklearn":
            loss = _categorical.categorical_cross_entropy(p, y, reduction="none", compat="sklearn")
        else:
            loss = _categorical.cross_entropy(x, y, reduction="none")
    else:
        p = x
        loss = _categorical.categorical_cross_entropy(x, y, reduction="none", compat=compat)
    return np.asarray(loss, dtype=np.float64), p


class ScoreAccumulator:
    """Everything ``crossentropy score`` reports, accumulated chunk by chunk.

    ``n_classes`` is 2 for a binary task (``binary=True``: one score column,
    the probability of class 1).  Feed chunks with :meth:`update` (or the
    convenience :meth:`update_scores`), combine partial results with
    :meth:`merge`, read the report with :meth:`result`.

    Calibration: for a binary task the reliability table bins the predicted
    probability of class 1 against the observed frequency of class 1; for a
    multi-class task it bins the top-label confidence against accuracy.  ECE
    is ``Σ_b (n_b / N)·|accuracy_b − confidence_b|`` over ``n_bins`` equal
    bins of [0, 1].

    >>> import numpy as np
    >>> a = ScoreAccumulator(2, binary=True)
    >>> a.update_scores(np.array([0.9, 0.3, 0.6, 0.2]), np.array([0, 0, 1, 1]), logits=False)
    >>> r = a.result(base=10)
    >>> round(r["cross_entropy"]["base10"] * 4, 4), r["misclassified"]  # the tutorial's model A
    (2.0757, 2)
    """

    def __init__(self, n_classes: int, *, binary: bool = False, n_bins: int = 10, top_k: int = 5,
                 class_names=None) -> None:
        if n_classes < 2:
            raise InvalidOptionError(f"n_classes must be at least 2; got {n_classes}")
        if binary and n_classes != 2:
            raise InvalidOptionError(f"a binary task has 2 classes; got n_classes={n_classes}")
        if n_bins < 1 or top_k < 0:
            raise InvalidOptionError(f"n_bins must be >= 1 and top_k >= 0; got {n_bins}, {top_k}")
        self.n_classes = int(n_classes)
        self.binary = bool(binary)
        self.n_bins = int(n_bins)
        self.top_k = int(top_k)
        self.class_names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
        self.n = 0
        self.correct = 0
        self.loss_sum = ExactSum()
        self.class_loss = [ExactSum() for _ in range(self.n_classes)]
        self.class_count = np.zeros(self.n_classes, dtype=np.int64)
        self.class_correct = np.zeros(self.n_classes, dtype=np.int64)
        self.bin_count = np.zeros(self.n_bins, dtype=np.int64)
        self.bin_hits = np.zeros(self.n_bins, dtype=np.int64)
        self.bin_conf = [ExactSum() for _ in range(self.n_bins)]
        self.hist = np.zeros(len(LOSS_HIST_EDGES), dtype=np.int64)  # last bin: >= 10 nats
        self.worst: list = []  # (loss, row, line, label, predicted, p_true), worst first

    # -- feeding -----------------------------------------------------------------------------

    def update_scores(self, scores, labels, *, logits: bool, compat=None, rows=None, lines=None) -> None:
        """Score one chunk of raw scores (see :func:`sample_losses`) and add it.

        ``rows`` are the samples' 1-based row numbers (default: continuing the
        count); ``lines`` their line numbers in a text file, if any.

        >>> import numpy as np
        >>> a = ScoreAccumulator(3)
        >>> a.update_scores(np.array([[2.0, 1.0, -1.0]]), np.array([0]), logits=True)
        >>> round(a.result()["cross_entropy"]["nats"], 6)
        0.349012
        """
        y = np.asarray(labels, dtype=np.int64)
        loss, p = sample_losses(scores, y, logits=logits, binary=self.binary, compat=compat)
        x = np.asarray(scores, dtype=np.float64)
        if self.binary:
            # Logits decide by sign: sigmoid(z) rounds to 0.5 for tiny z > 0.
            pred = (x > 0.0) if logits else (p > 0.5)
            pred = pred.astype(np.int64)
            p_true = np.where(y == 1, p, 1.0 - p)
            calib_x, calib_hit = p, (y == 1)
        else:
            pred = np.argmax(p if not logits else x, axis=1)
            p_true = np.take_along_axis(p, y[:, None], axis=1)[:, 0]
            calib_x = np.take_along_axis(p, pred[:, None], axis=1)[:, 0]
            calib_hit = pred == y
        if rows is None:
            rows = np.arange(self.n + 1, self.n + 1 + y.size, dtype=np.int64)
        self.update(loss, y, pred, p_true, calib_x, calib_hit, rows, lines)

    def update(self, loss, labels, predicted, p_true, calib_x, calib_hit, rows, lines=None) -> None:
        """Add one chunk of already-computed per-sample quantities (all ``(n,)``)."""
        loss = np.asarray(loss, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        pred = np.asarray(predicted, dtype=np.int64)
        n = int(y.size)
        if n == 0:
            return
        hit = pred == y
        self.n += n
        self.correct += int(np.count_nonzero(hit))
        self.loss_sum.add(loss)
        self.class_count += np.bincount(y, minlength=self.n_classes)
        self.class_correct += np.bincount(y[hit], minlength=self.n_classes)
        _grouped_exact_add(self.class_loss, y, loss)
        cx = np.asarray(calib_x, dtype=np.float64)
        b = np.minimum((cx * self.n_bins).astype(np.int64), self.n_bins - 1)
        b = np.maximum(b, 0)
        self.bin_count += np.bincount(b, minlength=self.n_bins)
        self.bin_hits += np.bincount(b[np.asarray(calib_hit, dtype=bool)], minlength=self.n_bins)
        _grouped_exact_add(self.bin_conf, b, cx)
        h = np.searchsorted(LOSS_HIST_EDGES, loss, side="right") - 1
        self.hist += np.bincount(np.clip(h, 0, len(LOSS_HIST_EDGES) - 1), minlength=len(LOSS_HIST_EDGES))
        if self.top_k:
            rows = np.asarray(rows, dtype=np.int64)
            k = min(self.top_k, n)
            # Candidates: the k largest losses of the chunk; ties broken by
            # row so that the final list does not depend on chunk boundaries.
            order = np.lexsort((rows, -loss))[:k]
            ptrue = np.asarray(p_true, dtype=np.float64)
            for i in order.tolist():
                self.worst.append((float(loss[i]), int(rows[i]), None if lines is None else int(lines[i]),
                                   int(y[i]), int(pred[i]), float(ptrue[i])))
            self._trim_worst()

    def _trim_worst(self) -> None:
        self.worst.sort(key=lambda w: (-w[0], w[1]))
        del self.worst[self.top_k:]

    def merge(self, other: "ScoreAccumulator") -> None:
        """Add the state of ``other`` (same task, classes and bins) to this one.

        >>> import numpy as np
        >>> p, y = np.array([0.9, 0.3, 0.6, 0.2]), np.array([0, 0, 1, 1])
        >>> a, b, whole = (ScoreAccumulator(2, binary=True) for _ in range(3))
        >>> a.update_scores(p[:1], y[:1], logits=False); b.update_scores(p[1:], y[1:], logits=False, rows=[2, 3, 4])
        >>> whole.update_scores(p, y, logits=False); a.merge(b)
        >>> a.result() == whole.result()
        True
        """
        if (other.n_classes, other.binary, other.n_bins) != (self.n_classes, self.binary, self.n_bins):
            raise InvalidOptionError("cannot merge accumulators of different tasks, class counts or bins")
        self.n += other.n
        self.correct += other.correct
        self.loss_sum.merge(other.loss_sum)
        for s, o in zip(self.class_loss, other.class_loss):
            s.merge(o)
        self.class_count += other.class_count
        self.class_correct += other.class_correct
        self.bin_count += other.bin_count
        self.bin_hits += other.bin_hits
        for s, o in zip(self.bin_conf, other.bin_conf):
            s.merge(o)
        self.hist += other.hist
        self.worst.extend(other.worst)
        self._trim_worst()

    # -- reading -----------------------------------------------------------------------------

    def result(self, base=None) -> dict:
        """The report as a plain dict (JSON-ready apart from ``inf``/``nan``).

        ``base`` adds a ``'base<b>'`` entry (e.g. ``base=10`` → ``'base10'``)
        next to nats and bits.
        """
        n = self.n
        mean = self.loss_sum.value / n if n else math.nan
        ce = {"nats": mean, "bits": mean / math.log(2.0)}
        if base is not None and str(base) not in ("e", "2", "bits", "2.0"):
            b = float(base)
            ce[f"base{b:g}"] = mean / math.log(b)
        h_prior = entropy_of_frequencies(self.class_count)
        per_class = []
        for c in range(self.n_classes):
            cnt = int(self.class_count[c])
            per_class.append({
                "class": self.class_names[c],
                "index": c,
                "count": cnt,
                "loss_nats": self.class_loss[c].value / cnt if cnt else None,
                "accuracy": int(self.class_correct[c]) / cnt if cnt else None,
            })
        bins = []
        ece = ExactSum()
        for i in range(self.n_bins):
            cnt = int(self.bin_count[i])
            conf = self.bin_conf[i].value / cnt if cnt else None
            acc = int(self.bin_hits[i]) / cnt if cnt else None
            if cnt:
                ece.add([cnt / n * abs(acc - conf)])
            bins.append({"lo": i / self.n_bins, "hi": (i + 1) / self.n_bins, "count": cnt,
                         "confidence": conf, "accuracy": acc})
        worst = [{"row": w[1], "line": w[2], "label": self.class_names[w[3]],
                  "predicted": self.class_names[w[4]], "p_true": w[5], "loss_nats": w[0]} for w in self.worst]
        out = {
            "n_samples": n,
            "task": "binary" if self.binary else "multiclass",
            "n_classes": self.n_classes,
            "cross_entropy": ce,
            "perplexity": math.exp(mean) if n else math.nan,
            "accuracy": self.correct / n if n else math.nan,
            "misclassified": n - self.correct,
            "normalized_cross_entropy": (mean / h_prior) if n and h_prior > 0 else None,
            "prior_entropy_nats": h_prior,
            "per_class": per_class,
            "worst": worst,
            "calibration": {
                "kind": "probability of class 1 vs frequency of class 1" if self.binary
                else "top-label confidence vs accuracy",
                "ece": ece.value if n else math.nan,
                "bins": bins,
            },
            "loss_histogram": {"edges_nats": LOSS_HIST_EDGES.tolist(), "counts": self.hist.tolist()},
        }
        if self.binary:
            out["base_rate"] = int(self.class_count[1]) / n if n else math.nan
        return out


def score_arrays(scores, labels, *, logits: bool = False, compat=None, base=None, n_bins: int = 10,
                 top_k: int = 5, class_names=None) -> dict:
    """Score whole in-memory arrays: ``(n,)`` → binary, ``(n, K)`` → multi-class.

    >>> import numpy as np
    >>> r = score_arrays(np.array([0.8, 0.6]), np.array([1, 0]))
    >>> r["task"], round(r["cross_entropy"]["bits"], 6), r["misclassified"]
    ('binary', 0.821928, 1)
    """
    x = np.asarray(scores, dtype=np.float64)
    binary = x.ndim == 1
    acc = ScoreAccumulator(2 if binary else x.shape[1], binary=binary, n_bins=n_bins, top_k=top_k,
                           class_names=class_names)
    acc.update_scores(x, labels, logits=logits, compat=compat)
    return acc.result(base=base)
