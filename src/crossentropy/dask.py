"""Distributed scoring on Dask: ``crossentropy score``'s report for datasets spread over a cluster.

:func:`score` returns the dict :func:`crossentropy.scoring.score_dataset`
returns — the report ``crossentropy score --json`` prints, plus its
``warnings`` — to the last bit, whatever the partitioning: each partition is
scored on a worker into the CLI's exact, mergeable accumulators, the states
are merged in a tree on the workers, and the report is finalized here.  How
the work is cut, how ROC tables and their spills cross processes, and what
decides the errors: :mod:`crossentropy.scoring._dask` and ``docs/cli.md``
(*Distributed scoring (Dask)*).  The command line: ``crossentropy score
DATASET --dask local:N`` or ``--dask tcp://HOST:PORT``.

Needs ``pip install 'crossentropy[dask]'`` (``dask[dataframe]`` and
``distributed``); ``dask`` is imported only when a function here runs.

>>> from crossentropy.cli.score import example_path
>>> from crossentropy.scoring import score_dataset
>>> r = score(example_path("digits"), client="sync", worst=2)  # "sync": here, partition after partition
>>> r == score_dataset(example_path("digits"), worst=2)
True
>>> round(r["cross_entropy"]["nats"], 4), r["n_samples"]
(0.114, 450)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["score"]


def score(source: str | os.PathLike[str] | Any | Sequence[str | os.PathLike[str] | Any], *, client: Any = None,
          name: str | Sequence[str] | None = None, format: str | None = None, delimiter: str | None = None,
          chunk_rows: int | None = None, csv_engine: str = "auto", label: str | None = None,
          columns: Sequence[str] | None = None, logits: bool | None = None, classes: Sequence[str] | None = None,
          positive: str | None = None, weight: str | None = None, by: str | None = None, unnormalized: str = "warn",
          sum_tolerance: float = 1e-6, compat: str | None = None, base: float | None = None, n_bins: int = 10,
          top_k: Sequence[int] | None = None, worst: int = 5, auc: bool = True, ci: float | None = None,
          replicates: int = 1000, seed: int = 0, roc_memory: int | None = None, split_row_groups: bool = True,
          on_progress: Callable[[int, int, int], object] | None = None) -> dict[str, Any]:
    """Score a prediction dataset on a Dask cluster: the CLI's report, bit for bit.

    ``source``
        a path the CLI reads (a file, a directory of part files, a glob
        such as ``'preds/part-*.parquet'``; any format ``crossentropy score``
        reads), or a Dask DataFrame; a list of two or more of them compares
        models on the same rows (as ``crossentropy score a b``; ``ci``
        then defaults to 0.95).
    ``client``
        a ``distributed.Client``; a scheduler address (``'tcp://HOST:PORT'``);
        ``'local:N'`` (a local cluster of N single-threaded worker processes,
        closed at the end); ``'sync'`` (no cluster: the partitions one after
        another in this process, the same code and bits); ``None``: the
        current default client, else ``'sync'``.
    ``name``
        what a Dask DataFrame is called in the report and its errors
        (default ``'dataframe'``; a list for several).
    ``roc_memory``
        bytes of ROC tables each process keeps in memory before spilling to
        its temporary folder (default ``CROSSENTROPY_ROC_MEMORY`` or 32 MiB);
        the result does not depend on it.
    ``split_row_groups``
        cut Parquet parts of more than 2^20 rows at row groups into several
        tasks (default True).
    ``on_progress(done, total, rows)``
        called as partitions finish.

    Every other option means what it means for
    :func:`crossentropy.scoring.score_dataset` and the CLI (``label``,
    ``columns``, ``logits``, ``classes``, ``positive``, ``weight``, ``by``,
    ``compat``, ``base``, ``n_bins``, ``top_k``, ``worst``, ``auc``, ``ci``,
    ``replicates``, ``seed``, …).  Detection looks at the same fixed sample as
    the CLI (the first 1000 rows of the dataset, in order).  Bad data raises
    :class:`crossentropy.scoring.PredictionFileError` with the location the CLI
    gives (a file's line or row; a DataFrame's global row).
    """
    from .scoring import _dask

    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    if not sources:
        from ._errors import InvalidOptionError
        raise InvalidOptionError("source: give a path or a Dask DataFrame (a list of two or more compares models)")
    return _dask.run(sources, client=client, name=name, format=format, delimiter=delimiter, chunk_rows=chunk_rows,
                     csv_engine=csv_engine, label=label, columns=columns, logits=logits, classes=classes,
                     positive=positive, weight=weight, by=by, unnormalized=unnormalized, sum_tolerance=sum_tolerance,
                     compat=compat, base=base, n_bins=n_bins, top_k=top_k, worst=worst, auc=auc, ci=ci,
                     replicates=replicates, seed=seed, roc_memory=roc_memory, split_row_groups=split_row_groups,
                     on_progress=on_progress)
