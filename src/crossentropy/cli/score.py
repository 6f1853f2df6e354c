"""``crossentropy score``: cross-entropy and friends for a prediction file of any size.

>>> from crossentropy.cli import main
>>> main(["score", "--json", "--worst", "0"])  # doctest: +ELLIPSIS
{...
  "cross_entropy": {
    "nats": 0.1140...
0
"""

from __future__ import annotations

import json
import math
import os
import sys
from importlib import resources

from ..io import DEFAULT_CHUNK_ROWS, FORMATS, PredictionFile
from ..metrics import ScoreAccumulator
from ._common import CLIError, OutputFiles, Progress, json_ready, need_matplotlib, parse_base

__all__ = ["add_parser", "run", "EXAMPLES", "example_path", "render_text"]

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
        "score", help="score a prediction file (the bundled example when no file is given)",
        description="Cross-entropy (nats, bits), perplexity, accuracy, per-class loss, worst samples and calibration "
                    "of a prediction file, streamed in bounded memory. Formats: " + ", ".join(FORMATS) + ".")
    p.add_argument("file", nargs="?", help="prediction file; omitted: the bundled example (see --example)")
    p.add_argument("--example", choices=sorted(EXAMPLES), default=None,
                   help="score a bundled example instead of a file (default with no file: digits)")
    g = p.add_argument_group("layout (detected when not given; the report says what was detected)")
    g.add_argument("--format", choices=FORMATS, help="file format (default: from the extension or the content)")
    g.add_argument("--label", metavar="COLUMN", help="label column")
    g.add_argument("--columns", metavar="C1,C2,...", help="prediction columns in class order, or one list column")
    kind = g.add_mutually_exclusive_group()
    kind.add_argument("--logits", dest="logits", action="store_const", const=True, help="predictions are logits")
    kind.add_argument("--probs", dest="logits", action="store_const", const=False,
                      help="predictions are probabilities")
    g.add_argument("--classes", metavar="N1,N2,...", help="class names in column order (multi-class)")
    g.add_argument("--positive", metavar="VALUE", help="label value of class 1 (binary)")
    g.add_argument("--delimiter", metavar="CHAR", help="CSV field separator (default ',' or tab for .tsv)")
    g.add_argument("--unnormalized", choices=("warn", "error", "ignore"), default="warn",
                   help="multi-class probability rows not summing to 1: warn (default), error or ignore")
    g.add_argument("--sum-tolerance", type=float, default=1e-6, metavar="TOL",
                   help="allowed |row sum - 1| (default 1e-6)")
    r = p.add_argument_group("report")
    r.add_argument("--compat", choices=("exact", "sklearn", "keras"), default="exact",
                   help="exact -log p (default); sklearn: clip at the dtype's eps like sklearn.metrics.log_loss; "
                        "keras: clip at 1e-7 (and renormalise rows) like Keras")
    r.add_argument("--base", default=None, metavar="B", help="also report the loss in base B (e.g. 10)")
    r.add_argument("--bins", type=int, default=10, metavar="N", help="calibration bins (default 10)")
    r.add_argument("--worst", type=int, default=5, metavar="K", help="list the K worst samples (default 5)")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    r.add_argument("--plot", metavar="FILE.png", help="write a reliability diagram and loss histogram")
    x = p.add_argument_group("streaming")
    x.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, metavar="N",
                   help=f"rows per chunk (default {DEFAULT_CHUNK_ROWS}); the result does not depend on it")
    pg = x.add_mutually_exclusive_group()
    pg.add_argument("--progress", dest="progress", action="store_const", const=True,
                    help="show a progress bar on stderr (default: only when stderr is a terminal)")
    pg.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.set_defaults(run=run)


def _split(text):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def run(args) -> int:
    if args.file is not None and args.example is not None:
        raise CLIError("give a file or --example, not both")
    if args.bins < 1 or args.worst < 0 or args.chunk_rows < 1:
        raise CLIError("--bins and --chunk-rows must be >= 1 and --worst >= 0")
    base = parse_base(args.base) if args.base is not None else None
    plt = need_matplotlib() if args.plot else None  # fail before the long part, not after
    if args.plot and not args.plot.lower().endswith(".png"):
        raise CLIError(f"--plot writes PNG; name the file *.png (got {args.plot!r})")
    if args.file is None:
        name = args.example or "digits"
        path, source = example_path(name), f"bundled example '{name}': {EXAMPLES[name][1]}"
    else:
        path, source = args.file, None
    pf = PredictionFile(path, format=args.format, label=args.label, columns=_split(args.columns), logits=args.logits,
                        classes=_split(args.classes), positive=args.positive, delimiter=args.delimiter,
                        chunk_rows=args.chunk_rows, unnormalized=args.unnormalized,
                        sum_tolerance=args.sum_tolerance)
    lay = pf.layout
    acc = ScoreAccumulator(lay.n_classes, binary=lay.binary, n_bins=args.bins, top_k=args.worst,
                           class_names=lay.class_names)
    compat = None if args.compat == "exact" else args.compat
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = Progress(bool(show), f"scoring {os.path.basename(path)}")
    try:
        for b in pf:
            acc.update_scores(b.scores, b.labels, logits=lay.logits, compat=compat, rows=b.rows, lines=b.lines)
            bar.update(*pf.progress(), acc.n)
    finally:
        bar.close()
    # Class names may have been completed while reading (a binary negative label).
    acc.class_names = list(lay.class_names)
    report = acc.result(base=base)
    report = {"file": path, **({"source": source} if source else {}), "detected": lay.describe(),
              "compat": args.compat, **report}
    for w in pf.warnings:
        print(f"crossentropy: warning: {w}", file=sys.stderr)
    text = json.dumps(json_ready(report), indent=2) + "\n" if args.json else render_text(report, base)
    with OutputFiles() as out:
        if args.plot:
            _plot(plt, report, base, out.temp(args.plot))
        if args.output:
            with open(out.temp(args.output), "w", encoding="utf-8") as f:
                f.write(text)
        out.commit()
    if not args.output:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _unit(base):
    if base is None:
        return "nats", 1.0
    if base == 2.0:
        return "bits", math.log(2.0)
    return f"base-{base:g}", math.log(base)


def _f(x, digits=4):
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def render_text(r: dict, base=None) -> str:
    """The human-readable report (what ``crossentropy score`` prints by default)."""
    d = r["detected"]
    unit, scale = _unit(base)
    out = []
    add = out.append
    add(f"file          {r['file']}")
    if r.get("source"):
        add(f"              ({r['source']})")
    cols = d["prediction_columns"]
    shown = cols[0] if len(cols) == 1 else f"{cols[0]}..{cols[-1]}"
    if d["list_column"]:
        shown += f" (list of {d['n_classes']})"
    how = d["how"]
    add(f"detected      format {d['format']}; label column '{d['label_column']}' ({how['label']})")
    add(f"              predictions {shown}: {how['columns']}")
    add(f"              {d['input']} ({how['input']}); {how['task']}")
    if d["task"] == "multiclass":
        cls = d["classes"]
        add(f"              classes {', '.join(cls[:12])}{', ...' if len(cls) > 12 else ''}")
    if r["compat"] != "exact":
        add(f"compat        {r['compat']} (probabilities clipped as {r['compat']} does)")
    add("")
    ce = r["cross_entropy"]
    extra = "".join(f"   {_f(v)} {k.replace('base', 'base-')}" for k, v in ce.items() if k.startswith("base"))
    add(f"samples                 {r['n_samples']:,}")
    add(f"cross-entropy           {_f(ce['nats'])} nats   {_f(ce['bits'])} bits{extra}")
    add(f"perplexity              {_f(r['perplexity'])}")
    add(f"accuracy                {r['accuracy'] * 100:.2f}%   ({r['misclassified']:,} misclassified: the discrete "
        "error)")
    nce = r["normalized_cross_entropy"]
    if r["task"] == "binary":
        add(f"base rate (class 1)     {r['base_rate']:.4f}")
        add(f"normalised CE           {_f(nce)}   (loss / entropy of the base rate, "
            f"{_f(r['prior_entropy_nats'])} nats; < 1 beats always predicting the base rate)")
    else:
        add(f"normalised CE           {_f(nce)}   (loss / entropy of the class frequencies, "
            f"{_f(r['prior_entropy_nats'])} nats)")
    cal = r["calibration"]
    add(f"calibration error       {_f(cal['ece'])}   (ECE, {cal['kind']}, {len(cal['bins'])} bins)")
    add("")
    add(f"per class       count   loss ({unit})   accuracy")
    for c in r["per_class"]:
        loss = None if c["loss_nats"] is None else c["loss_nats"] / scale
        accu = "-" if c["accuracy"] is None else f"{c['accuracy'] * 100:.1f}%"
        add(f"  {c['class'][:12]:<12} {c['count']:>7,}   {_f(loss):>11}   {accu:>8}")
    if r["worst"]:
        add("")
        where = "line" if r["worst"][0]["line"] is not None else "row"
        add(f"worst {len(r['worst'])} samples")
        add(f"  {where:>8}  label         predicted     p(label)   loss ({unit})")
        for w in r["worst"]:
            pos = w["line"] if w["line"] is not None else w["row"]
            add(f"  {pos:>8}  {w['label'][:12]:<12}  {w['predicted'][:12]:<12}  {w['p_true']:.3g}".ljust(50)
                + f"   {_f(w['loss_nats'] / scale)}")
    add("")
    conf_name, acc_name = ("mean p(1)", "freq(1)") if r["task"] == "binary" else ("confidence", "accuracy")
    add(f"reliability     count   {conf_name:>10}   {acc_name:>8}      gap")
    for b in cal["bins"]:
        rng = f"[{b['lo']:.2f},{b['hi']:.2f}{']' if b['hi'] >= 1 else ')'}"
        if b["count"]:
            add(f"  {rng:<12} {b['count']:>7,}   {b['confidence']:>10.4f}   {b['accuracy']:>8.4f}   "
                f"{b['accuracy'] - b['confidence']:+.4f}")
        else:
            add(f"  {rng:<12} {0:>7}")
    return "\n".join(out) + "\n"


def _plot(plt, r: dict, base, path: str) -> None:
    import numpy as np

    unit, scale = _unit(base)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    cal = r["calibration"]
    bins = cal["bins"]
    width = bins[0]["hi"] - bins[0]["lo"]
    centers = [b["lo"] + width / 2 for b in bins if b["count"]]
    accs = [b["accuracy"] for b in bins if b["count"]]
    confs = [b["confidence"] for b in bins if b["count"]]
    a1.bar(centers, accs, width=width * 0.9, color="#4c72b0", edgecolor="black", label="observed")
    a1.bar(centers, confs, width=width * 0.9, fill=False, edgecolor="#c44e52", hatch="//", lw=1.2,
           label="mean predicted")
    a1.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    xlabel, ylabel = (("predicted probability of class 1", "observed frequency of class 1") if r["task"] == "binary"
                      else ("confidence (top-label probability)", "accuracy"))
    a1.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel,
           title=f"Reliability diagram (ECE {cal['ece']:.4f})")
    a1.legend(loc="upper left", fontsize=8)
    h = r["loss_histogram"]
    edges = np.asarray(h["edges_nats"]) / scale
    counts = np.asarray(h["counts"])
    last = int(np.flatnonzero(counts)[-1]) if counts.any() else 0
    k = min(max(last + 1, 10), len(edges) - 1)
    a2.bar(edges[:k], counts[:k], width=np.diff(edges)[:k], align="edge", color="#55a868", edgecolor="none")
    if counts[-1]:
        a2.annotate(f"{counts[-1]} samples ≥ {edges[-1]:.3g}", xy=(0.98, 0.95), xycoords="axes fraction",
                    ha="right", va="top", fontsize=8)
    mean = r["cross_entropy"]["nats"] / scale
    a2.axvline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.4f}")
    a2.set(xlabel=f"per-sample loss −log p(label) ({unit})", ylabel="samples",
           title=f"Loss histogram ({r['n_samples']:,} samples)")
    a2.set_yscale("symlog", linthresh=1)
    a2.legend(fontsize=8)
    fig.suptitle(os.path.basename(r["file"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
