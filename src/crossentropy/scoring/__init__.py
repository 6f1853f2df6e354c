"""Scoring prediction files: the engine behind ``crossentropy score``.

The path of a prediction file through this package, top to bottom:

* :mod:`.readers` — bytes in (files, ``-``, FIFOs, gzip/bz2/xz/zstd,
  directories and globs of parts) and rows out, one module per format
  (:mod:`~.readers.csv`, :mod:`~.readers.parquet`, :mod:`~.readers.npy`,
  :mod:`~.readers.jsonl`);
* :mod:`.layout` — which column is what, decided from a fixed sample, and
  every chunk checked against it;
* :mod:`.dataset` — the two glued together, and :func:`score_dataset`;
* :mod:`.accumulators` — every figure as a small exact, mergeable state
  (:mod:`.exact` sums, :mod:`.roc` tables, :mod:`.bootstrap` replicates);
* :mod:`.compare` — several models on the same rows, with paired bootstrap;
* :mod:`.report` — text, JSON, Markdown and self-contained HTML.

>>> import numpy as np
>>> r = score_arrays(np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]), np.array([0, 2, 2]))
>>> round(r["cross_entropy"]["nats"], 6), r["accuracy"], r["misclassified"]
(0.825646, 0.3333333333333333, 2)
"""

from __future__ import annotations

import numpy as np

from .accumulators import Batch, ScoreAccumulator, ScoreSpec, SlicedAccumulator
from .compare import compare_datasets
from .dataset import Predictions, score_dataset
from .errors import PredictionFileError
from .exact import ExactSums

__all__ = ["PredictionFileError", "Predictions", "score_dataset", "compare_datasets", "score_arrays", "ScoreSpec", "ScoreAccumulator",
           "SlicedAccumulator", "Batch", "ExactSums"]


def score_arrays(scores, labels, *, logits: bool = False, weights=None, compat=None, base=None, n_bins: int = 10,
                 worst: int = 5, class_names=None, ci=None, replicates=1000, seed=0) -> dict:
    """Score in-memory arrays: ``(n,)`` → binary (p or logit of class 1), ``(n, K)`` → multi-class.

    >>> import numpy as np
    >>> r = score_arrays(np.array([0.8, 0.6]), np.array([1, 0]))
    >>> r["task"], round(r["cross_entropy"]["bits"], 6), r["misclassified"]
    ('binary', 0.821928, 1)
    """
    x = np.asarray(scores, dtype=np.float64)
    binary = x.ndim == 1
    k = 2 if binary else x.shape[1]
    spec = ScoreSpec(n_classes=k, binary=binary, logits=logits, compat=compat, weighted=weights is not None,
                     n_bins=n_bins, worst=worst, class_names=tuple(class_names or ()), ci=ci,
                     replicates=replicates, seed=seed)
    acc = ScoreAccumulator(spec)
    acc.update(Batch(x, np.asarray(labels, dtype=np.int64),
                     None if weights is None else np.asarray(weights, dtype=np.float64)))
    return acc.finalize(base=base)
