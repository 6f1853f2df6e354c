"""``crossentropy score``: the report a data scientist expects, for a prediction file of any size.

One file (or ``-``, a directory of parts, a quoted glob) gives its report;
several files give each model's report side by side with paired bootstrap
tests against the first.  See ``docs/cli.md``.

>>> from crossentropy.cli import main
>>> main(["score", "--json", "--worst", "0"])  # doctest: +ELLIPSIS
{...
  "cross_entropy": {
    "nats": 0.1140...
0
"""

from __future__ import annotations

import io
import math
import os
import sys
from importlib import resources

from ._common import CLIError, OutputTarget, Progress, need_matplotlib, parse_base, write_outputs

__all__ = ["add_parser", "run", "EXAMPLES", "example_path", "INPUT_FORMATS", "REPORT_FORMATS"]

INPUT_FORMATS = ("csv", "tsv", "parquet", "npy", "npz", "jsonl")
REPORT_FORMATS = ("text", "json", "md", "html")

# Bundled examples: held-out predictions of real models (scripts/make_example.py).
EXAMPLES = {
    "digits": ("digits_logreg.csv",
               "held-out predictions of a logistic regression on scikit-learn's 8x8 digits (10 classes)"),
    "breast-cancer": ("breast_cancer_logreg.csv",
                      "held-out logits of a logistic regression on the Wisconsin breast cancer data (binary)"),
}


def example_path(name: str) -> str:
    """The path of a bundled example file.

    >>> os.path.basename(example_path("digits"))
    'digits_logreg.csv'
    """
    return str(resources.files("crossentropy") / "data" / EXAMPLES[name][0])


def add_parser(sub) -> None:
    p = sub.add_parser(
        "score", help="score prediction files (the bundled example when none is given)",
        description="Cross-entropy (nats, bits), perplexity, accuracy, top-k accuracy, Brier score, ROC AUC, "
                    "calibration (ECE, MCE, class-wise), per-class precision/recall/F1, confusion matrix, worst "
                    "samples, bootstrap confidence intervals and slices, streamed in bounded memory. Several files: "
                    "the models compared on the same rows, with paired bootstrap tests against the first. "
                    "Inputs: " + ", ".join(INPUT_FORMATS) + " (gzip/bz2/xz/zstd too), '-' for stdin, a directory "
                    "or a quoted glob of part files.")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="prediction file(s); none: the bundled example (see --example); two or more: compare models")
    p.add_argument("--example", choices=sorted(EXAMPLES), default=None,
                   help="score a bundled example instead of a file (default with no file: digits)")
    g = p.add_argument_group("layout (detected when not given; the report says what was detected)")
    g.add_argument("--input-format", choices=INPUT_FORMATS, dest="input_format",
                   help="file format (default: from the extension or the content)")
    g.add_argument("--label", metavar="COLUMN", help="label column")
    g.add_argument("--columns", metavar="C1,C2,...", help="prediction columns in class order, or one list column")
    kind = g.add_mutually_exclusive_group()
    kind.add_argument("--logits", dest="logits", action="store_const", const=True, help="predictions are logits")
    kind.add_argument("--probs", dest="logits", action="store_const", const=False,
                      help="predictions are probabilities")
    g.add_argument("--classes", metavar="N1,N2,...", help="class names in column order (multi-class)")
    g.add_argument("--positive", metavar="VALUE", help="label value of class 1 (binary)")
    g.add_argument("--weight", metavar="COLUMN",
                   help="sample-weight column (default: a column named weight or sample_weight; 'none' ignores it)")
    g.add_argument("--by", metavar="COLUMN", help="also report each slice of the rows by the values of COLUMN")
    g.add_argument("--delimiter", metavar="CHAR",
                   help="CSV field separator (default: sniffed among , ; tab |; 'tab' for a tab)")
    g.add_argument("--unnormalized", choices=("warn", "error", "ignore"), default="warn",
                   help="multi-class probability rows not summing to 1: warn (default), error or ignore")
    g.add_argument("--sum-tolerance", type=float, default=1e-6, metavar="TOL",
                   help="allowed |row sum - 1| (default 1e-6)")
    r = p.add_argument_group("report")
    r.add_argument("--compat", choices=("exact", "sklearn", "keras"), default="exact",
                   help="exact -log p (default); sklearn: clip at the dtype's eps like sklearn.metrics.log_loss; "
                        "keras: clip at 1e-7 (and renormalise rows) like Keras")
    r.add_argument("--base", default=None, metavar="B",
                   help="logarithm base of the losses shown (as in 'explain --base'): e (nats, the default here), "
                        "2 (bits), 10, or any number > 0 other than 1; JSON always has nats and bits")
    r.add_argument("--bins", type=int, default=10, metavar="N", help="calibration bins (default 10)")
    r.add_argument("--worst", type=int, default=5, metavar="K", help="list the K worst samples (default 5)")
    r.add_argument("--top-k", metavar="K1,K2,...", help="top-k accuracies to report (default 2,3,5 below the "
                                                        "number of classes)")
    r.add_argument("--no-auc", dest="auc", action="store_false",
                   help="skip ROC AUC (saves the sorting and the temporary disk it needs on huge files)")
    r.add_argument("--ci", type=float, default=None, metavar="LEVEL",
                   help="bootstrap confidence intervals at this level (e.g. 0.95) for cross-entropy, accuracy and "
                        "Brier; default for model comparison: 0.95")
    r.add_argument("--replicates", type=int, default=1000, metavar="B", help="bootstrap replicates (default 1000)")
    r.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    r.add_argument("--format", dest="report_format", metavar="{text,json,md,html}",
                   help="report format: text (default), json, md (Markdown) or html (one self-contained file)")
    r.add_argument("--json", action="store_true", help="print the report as JSON (same as --format json)")
    r.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    r.add_argument("--plot", metavar="FILE.png", help="write a reliability diagram and loss histogram (PNG)")
    x = p.add_argument_group("streaming")
    x.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows per chunk (default: about a million values); the result does not depend on it")
    x.add_argument("--csv-engine", choices=("auto", "arrow", "python"), default="auto",
                   help="CSV parser: auto (Arrow for files over 1 MiB when pyarrow is installed), arrow or python; "
                        "the result does not depend on it")
    x.add_argument("--dask", metavar="local:N|tcp://HOST:PORT",
                   help="score on a Dask cluster: local:N starts N single-threaded worker processes here, "
                        "tcp://HOST:PORT uses a running scheduler; the report is the same to the last bit "
                        "(needs pip install 'crossentropy[dask]')")
    pg = x.add_mutually_exclusive_group()
    pg.add_argument("--progress", dest="progress", action="store_const", const=True,
                    help="show a progress bar on stderr (default: only when stderr is a terminal)")
    pg.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.set_defaults(run=run)


def _split(text):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _report_format(args, warn):
    fmt = args.report_format
    if fmt is not None:
        fmt = fmt.strip().lower()
        if fmt in INPUT_FORMATS:
            # The old meaning of --format: the input format (kept one release, with a warning).
            if args.input_format is None:
                args.input_format = fmt
            warn(f"--format {fmt} names an input format: use --input-format {fmt} (--format now chooses the "
                 "report format: text, json, md or html)")
            fmt = None
        elif fmt == "markdown":
            fmt = "md"
        elif fmt not in REPORT_FORMATS:
            from ._common import _close
            near = _close(fmt, REPORT_FORMATS + INPUT_FORMATS)
            raise CLIError(f"--format must be text, json, md or html; got {args.report_format!r}"
                           + (f"; did you mean {near!r}?" if near else ""))
    if args.json:
        if fmt not in (None, "json"):
            raise CLIError(f"--json and --format {fmt} disagree; give one of them")
        fmt = "json"
    return fmt or "text"


def _check_options(args):
    if args.bins < 1:
        raise CLIError(f"--bins must be at least 1; got {args.bins}")
    if args.worst < 0:
        raise CLIError(f"--worst must be 0 or more; got {args.worst}")
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise CLIError(f"--chunk-rows must be at least 1; got {args.chunk_rows}")
    if args.ci is not None and not (0.0 < args.ci < 1.0):
        raise CLIError(f"--ci must be a level between 0 and 1 (e.g. 0.95); got {args.ci:g}")
    if not 1 <= args.replicates <= 100000:
        raise CLIError(f"--replicates must be between 1 and 100000; got {args.replicates}")
    if args.seed < 0:
        raise CLIError(f"--seed must be 0 or more; got {args.seed}")
    if not (args.sum_tolerance >= 0 and math.isfinite(args.sum_tolerance)):
        raise CLIError(f"--sum-tolerance must be a finite number >= 0; got {args.sum_tolerance:g}")
    top = None
    if args.top_k is not None:
        try:
            top = tuple(int(t) for t in _split(args.top_k))
        except ValueError:
            raise CLIError(f"--top-k must be whole numbers separated by commas; got {args.top_k!r}") from None
        if not top or any(k < 1 for k in top):
            raise CLIError(f"--top-k values must be at least 1; got {args.top_k!r}")
    delim = args.delimiter
    if delim is not None:
        delim = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}.get(
            delim.lower(), delim)
        if len(delim) != 1:
            raise CLIError("--delimiter must be one character (or tab, comma, semicolon, pipe); got "
                           f"{args.delimiter!r}")
    return top, delim


def _score_on_dask(spec, paths, ci, bar, report_options, open_options) -> dict:
    """The report (or comparison) computed on a Dask cluster (``--dask``): the same dict as without."""
    from ..scoring import _dask

    client, owned = _dask.connect(spec, option="--dask")
    try:
        return _dask.run(paths, client=client, ci=ci, on_progress=lambda done, total, rows: bar.update(
            done, total, rows), **report_options, **open_options)
    finally:
        _dask.disconnect(owned)


def run(args) -> int:
    warnings: list[str] = []
    fmt = _report_format(args, warnings.append)
    top_k, delimiter = _check_options(args)
    base = parse_base(args.base) if args.base is not None else None
    if args.files and args.example is not None:
        raise CLIError("give files or --example, not both")
    plt = need_matplotlib() if args.plot else None  # fail before the long part, not after
    if args.plot and not (args.plot == "-" or args.plot.lower().endswith(".png")):
        raise CLIError(f"--plot writes PNG; name the file *.png (got {args.plot!r})")
    out_target = OutputTarget(args.output, "--output") if args.output else OutputTarget("-", "--output")
    plot_target = OutputTarget(args.plot, "--plot") if args.plot else None
    if plot_target is not None and plot_target.same_as(out_target):
        raise CLIError("--plot and the report would go to the same place; give them different files")
    if args.files:
        paths, source = list(args.files), None
    else:
        name = args.example or "digits"
        paths, source = [example_path(name)], f"bundled example '{name}': {EXAMPLES[name][1]}"
    open_options = dict(format=args.input_format, delimiter=delimiter, chunk_rows=args.chunk_rows,
                        csv_engine=args.csv_engine, label=args.label, columns=_split(args.columns),
                        logits=args.logits, classes=_split(args.classes), positive=args.positive, weight=args.weight,
                        by=args.by, unnormalized=args.unnormalized, sum_tolerance=args.sum_tolerance)
    report_options = dict(compat=None if args.compat == "exact" else args.compat, base=base, n_bins=args.bins,
                          top_k=top_k, worst=args.worst, auc=args.auc, replicates=args.replicates, seed=args.seed)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    label = os.path.basename(paths[0]) if len(paths) == 1 else f"{len(paths)} models"
    bar = Progress(bool(show), f"scoring {label}")

    def on_batch(ds, n):
        done, total = ds.progress()
        bar.update(done, total, n)

    for w in warnings:
        print(f"crossentropy: warning: {w}", file=sys.stderr)
    try:
        if args.dask is not None:
            report = _score_on_dask(args.dask, paths, args.ci, bar, report_options, open_options)
            if len(paths) == 1:
                if source:
                    report = {"file": report["file"], "source": source,
                              **{k: v for k, v in report.items() if k != "file"}}
                warns = report.pop("warnings", [])
            else:
                warns = [w for m in report["models"] for w in m.pop("warnings", [])]
        elif len(paths) == 1:
            from ..scoring.dataset import score_dataset
            report = score_dataset(paths[0], ci=args.ci, on_batch=on_batch, **report_options, **open_options)
            if source:
                report = {"file": report["file"], "source": source, **{k: v for k, v in report.items() if k != "file"}}
            warns = report.pop("warnings", [])
        else:
            from ..scoring.compare import compare_datasets
            report = compare_datasets(paths, ci=0.95 if args.ci is None else args.ci, on_batch=on_batch,
                                      **report_options, **open_options)
            warns = [w for m in report["models"] for w in m.pop("warnings", [])]
    finally:
        bar.close()
    for w in warns:
        print(f"crossentropy: warning: {w}", file=sys.stderr)
    from ..scoring.report import plot_png, render

    text = render(report, fmt, base)
    items = [(out_target, text.encode("utf-8"))]
    if plot_target is not None:
        png = io.BytesIO()
        plot_png(plt, report, base, png)
        items.insert(0, (plot_target, png.getvalue()))
    write_outputs(items)
    return 0
