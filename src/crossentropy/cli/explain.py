"""``crossentropy explain``: the tutorial's computation, step by step, for any numbers.

Topics:

``tutorial`` (default)
    the tutorial's own examples: students passing or failing an exam under
    models A and B (binary), softmax of the scores 2, 1, −1, and fruit in
    containers (categorical), in base 10 as the tutorial computes them.
``binary``
    your probabilities (or linear scores, through the sigmoid) and 0/1 labels.
``categorical``
    your probability rows (or score rows, through the softmax) and labels.
``descent``
    gradient descent on the pass/fail data: the continuous loss falls at every
    step while the discrete error count stalls, which is why training needs a
    continuous loss.

Every total is also computed by the library (``binary_cross_entropy``,
``categorical_cross_entropy`` with ``reduction='sum'``), and the two must agree.

>>> from crossentropy.cli import main
>>> main(["explain", "categorical", "--scores", "2,1,-1", "--labels", "0", "--base", "e"])  # doctest: +ELLIPSIS
Softmax: scores -> probabilities...
cross-entropy (nats)            = 0.3490
...
0
"""

from __future__ import annotations

import io
import math
import sys

import numpy as np

from .. import activations as _act
from .. import binary as _binary
from .. import categorical as _categorical
from .._grad import value_and_grad
from ._common import CLIError, OutputTarget, need_matplotlib, parse_base, write_outputs

__all__ = ["add_parser", "run", "STUDENTS", "FRUIT"]

# The tutorial's students: A and B failed (y = 0), C and D passed (y = 1).
# It lists each model's probability of what actually happened.
STUDENTS = {
    "labels": [0, 0, 1, 1],
    "names": ["A", "B", "C", "D"],
    "models": {"A": [0.1, 0.7, 0.6, 0.2], "B": [0.8, 0.6, 0.7, 0.9]},
    "printed": {"A": 2.073, "B": 0.505},  # the tutorial's sums of truncated terms
}
# Fruit containers A, B, C: probabilities of orange, apple, lemon; the correct fruit.
FRUIT = {
    "classes": ["orange", "apple", "lemon"],
    "containers": ["A", "B", "C"],
    "probs": [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]],
    "labels": [0, 2, 2],
    "printed": 1.073,
}
SOFTMAX_SCORES = {"Blue": 2.0, "Green": 1.0, "Red": -1.0}

# Pass/fail students for `explain descent`: (hours of study, previous grade / 10).
# Not separable by the starting line, separable by the fitted one.
DESCENT_X = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 3.0], [5.0, 2.0], [6.0, 1.0], [1.0, 6.0], [4.0, 4.5],
                      [2.5, 6.5], [2.0, 8.0], [4.0, 7.0], [6.0, 6.0], [7.0, 8.0], [8.0, 4.0], [3.0, 9.0],
                      [5.5, 5.5], [7.5, 2.5]])
DESCENT_Y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.float64)
DESCENT_START = (np.array([0.4, 1.0]), -7.0)  # the line x2 = 7 - 0.4·x1: two students on the wrong side


def add_parser(sub) -> None:
    p = sub.add_parser(
        "explain", help="walk through cross-entropy step by step (the tutorial's examples by default)",
        description="Walks through cross-entropy: scores -> sigmoid/softmax probabilities -> product -> sum of "
                    "logs -> negative log, binary and categorical forms with every term shown.")
    p.add_argument("topic", nargs="?", choices=("tutorial", "binary", "categorical", "descent"), default=None,
                   help="default: tutorial, or binary/categorical from the numbers given")
    p.add_argument("--probs", metavar="P", help="binary: p(class 1) per sample '0.9,0.3'; categorical: rows "
                                                "separated by ';' '0.7,0.2,0.1;0.3,0.4,0.3'")
    p.add_argument("--scores", metavar="S", help="linear scores instead of probabilities (sigmoid/softmax)")
    p.add_argument("--labels", metavar="Y", help="binary: 0/1 per sample; categorical: class index or name per row")
    p.add_argument("--classes", metavar="NAMES", help="categorical class names 'orange,apple,lemon'")
    p.add_argument("--base", default="10", metavar="B",
                   help="logarithm base of the losses shown (as in 'score --base'): 10 (default here, as the "
                        "tutorial computes), e (nats), 2 (bits), or any number > 0 other than 1")
    p.add_argument("--plot", metavar="FILE.png", help="plot -log(p) with the samples marked (descent: the moving "
                                                       "decision line)")
    p.add_argument("--steps", type=int, default=80, metavar="N", help="descent: gradient steps (default 80)")
    p.add_argument("--lr", type=float, default=0.25, metavar="ETA", help="descent: learning rate (default 0.25)")
    p.add_argument("--every", type=int, default=None, metavar="K", help="descent: print every K-th step")
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------------------------

def _base(text):
    """``(base, log name, unit name)`` for the printed formulas."""
    b = parse_base(text)
    if b is None:
        return None, "ln", "nats"
    if b == 2.0:
        return 2.0, "log2", "bits"
    return b, f"log{b:g}", f"base {b:g}"


def _logs(b):
    if b is None:
        return "natural logarithms, ln: nats"
    if b == 2.0:
        return "base-2 logarithms, log2: bits"
    return f"base-{b:g} logarithms, log{b:g}"


def _log(x, b):
    return math.log(x) if b is None else math.log(x) / math.log(b)


def _numbers(text, what):
    try:
        vals = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise CLIError(f"{what}: expected comma-separated numbers; got {text!r}") from None
    if not vals:
        raise CLIError(f"{what}: no numbers given")
    if any(math.isnan(v) for v in vals):
        raise CLIError(f"{what}: NaN is not a number you can explain")
    return vals


def _rows(text, what):
    rows = [_numbers(r, what) for r in text.replace("/", ";").split(";") if r.strip()]
    if len({len(r) for r in rows}) != 1:
        raise CLIError(f"{what}: every row needs the same number of values; got {[len(r) for r in rows]}")
    return rows


def _g(x):
    """A number as the tutorial would write it (up to 4 decimals)."""
    return f"{x:.4f}".rstrip("0").rstrip(".") if abs(x) >= 1e-4 or x == 0 else f"{x:.3g}"


def run(args) -> int:
    b, logname, unit = _base(args.base)
    topic = args.topic
    if topic is None:
        if args.probs is None and args.scores is None:
            topic = "tutorial"
        else:
            text = args.probs if args.probs is not None else args.scores
            topic = "categorical" if (";" in text or "/" in text or args.classes) else "binary"
    if args.probs is not None and args.scores is not None:
        raise CLIError("give --probs or --scores, not both")
    if topic in ("tutorial", "descent") and (args.probs or args.scores or args.labels):
        raise CLIError(f"'{topic}' uses the tutorial's numbers; for your own use 'binary' or 'categorical'")
    plt = need_matplotlib() if args.plot else None
    if args.plot and not (args.plot == "-" or args.plot.lower().endswith(".png")):
        raise CLIError(f"--plot writes PNG; name the file *.png (got {args.plot!r})")
    target = OutputTarget(args.plot, "--plot") if args.plot else None
    out: list[str] = []
    marks: list[tuple[str, list[float]]] = []  # (label, [p_true...]) for the plot
    if topic == "tutorial":
        _tutorial(out, b, logname, unit, marks)
    elif topic == "binary":
        if args.labels is None:
            raise CLIError("binary: give --labels (0/1 per sample)")
        labels = _numbers(args.labels, "--labels")
        if any(v not in (0.0, 1.0) for v in labels):
            raise CLIError(f"--labels: binary labels are 0 or 1; got {args.labels!r}")
        if args.scores is not None:
            scores = _numbers(args.scores, "--scores")
            if len(scores) != len(labels):
                raise CLIError(f"{len(scores)} scores but {len(labels)} labels")
            probs = _sigmoid_section(out, scores)
        elif args.probs is not None:
            probs = _numbers(args.probs, "--probs")
        else:
            raise CLIError("binary: give --probs (p of class 1 per sample) or --scores")
        if len(probs) != len(labels):
            raise CLIError(f"{len(probs)} probabilities but {len(labels)} labels")
        _check_probs(probs, "--probs")
        ptrue = _binary_section(out, probs, [int(v) for v in labels], b, logname, unit, None)
        marks.append(("samples", ptrue))
    elif topic == "categorical":
        classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
        if args.scores is not None:
            srows = _rows(args.scores, "--scores")
            probs = [_softmax_section(out, r, classes) for r in srows]
        elif args.probs is not None:
            probs = _rows(args.probs, "--probs")
        else:
            raise CLIError("categorical: give --probs (one row per sample, rows separated by ';') or --scores")
        k = len(probs[0])
        if classes is None:
            classes = [str(i) for i in range(k)]
        if len(classes) != k:
            raise CLIError(f"--classes names {len(classes)} classes but each row has {k} values")
        if args.labels is None:
            raise CLIError("categorical: give --labels (the correct class of each row, index or name)")
        labels = []
        for t in args.labels.split(","):
            t = t.strip()
            if t in classes:
                labels.append(classes.index(t))
            elif t.isdigit() and int(t) < k:
                labels.append(int(t))
            else:
                raise CLIError(f"--labels: {t!r} is not a class ({', '.join(classes)}) or an index below {k}")
        if len(labels) != len(probs):
            raise CLIError(f"{len(probs)} rows but {len(labels)} labels")
        for r in probs:
            _check_probs(r, "--probs")
        ptrue = _categorical_section(out, probs, labels, classes, [f"sample {i + 1}" for i in range(len(probs))],
                                     b, logname, unit, None)
        marks.append(("samples", ptrue))
    else:
        return _descent(args, b, logname, unit, plt, target)
    text = "\n".join(out) + "\n"
    if target is not None:
        png = io.BytesIO()
        _plot_curve(plt, marks, b, logname, png)
        write_outputs([(target, png.getvalue())])
    sys.stdout.write(text)
    return 0


def _check_probs(ps, what):
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise CLIError(f"{what}: {p!r} is not a probability (outside [0, 1]); use --scores for linear scores")


def _sigmoid_section(out, scores):
    out.append("Sigmoid: linear scores -> probabilities,  sigma(s) = 1 / (1 + e^-s)")
    p = _act.sigmoid(np.asarray(scores, dtype=np.float64))
    for s, q in zip(scores, p.tolist()):
        out.append(f"  sigma({_g(s)}) = 1 / (1 + e^{_g(-s)}) = {q:.4f}")
    out.append("")
    return p.tolist()


def _softmax_section(out, scores, classes):
    names = classes or [str(i) for i in range(len(scores))]
    e = [math.exp(s) for s in scores]
    tot = math.fsum(e)
    p = _act.softmax(np.asarray(scores, dtype=np.float64)).tolist()
    out.append("Softmax: scores -> probabilities,  p_i = e^(s_i) / sum_j e^(s_j)")
    out.append("  " + " + ".join(f"e^{_g(s)}" for s in scores) + " = " + " + ".join(f"{v:.4f}" for v in e)
               + f" = {tot:.4f}")
    for n, s, v, q in zip(names, scores, e, p):
        out.append(f"  {n:<8} e^{_g(s)} / {tot:.4f} = {v:.4f} / {tot:.4f} = {q:.4f}")
    if any(s < 0 for s in scores) and math.fsum(scores) != 0:
        naive = [s / math.fsum(scores) for s in scores]
        out.append("  (dividing the raw scores by their sum instead gives " + ", ".join(f"{v:.3f}" for v in naive)
                   + ": a negative score gives a negative 'probability'; the exponential keeps every value > 0)")
    out.append("")
    return p


def _binary_section(out, probs, labels, b, logname, unit, printed):
    """Binary walk-through; returns p(what happened) per sample."""
    n = len(probs)
    ptrue = [p if y == 1 else 1.0 - p for p, y in zip(probs, labels)]
    out.append(f"Binary cross-entropy ({_logs(b)})")
    out.append("  sample  y   p(y=1)   p(what happened)        " + f"{logname}(p)   -{logname}(p)")
    for i, (p, y, q) in enumerate(zip(probs, labels, ptrue)):
        what = f"{_g(p)}" if y == 1 else f"1 - {_g(p)} = {_g(q)}"
        lg = _log(q, b) if q > 0 else -math.inf
        out.append(f"  {i + 1:>6}  {y}   {p:.4f}   {what:<22}  {lg:>9.4f}   {-lg:>9.4f}")
    prod = math.prod(ptrue)
    out.append(f"product of the probabilities     {' x '.join(_g(q) for q in ptrue)} = {prod:.6g}")
    logs = [_log(q, b) if q > 0 else -math.inf for q in ptrue]
    out.append(f"sum of the logs                  {' + '.join(f'({v:.4f})' for v in logs)} = {math.fsum(logs):.4f}")
    total = -math.fsum(logs)
    out.append(f"negative log = cross-entropy     {total:.4f}" + (f"   (= -{logname} of the product {prod:.6g})"
                                                                  if prod > 0 else ""))
    out.append(f"  formula, term by term: -[y {logname}(p) + (1 - y) {logname}(1 - p)]")
    y_arr = np.asarray(labels, dtype=np.float64)
    terms = _binary.binary_cross_entropy(np.asarray(probs, dtype=np.float64), y_arr, reduction="none",
                                         base=b).tolist()
    for i, (p, y, t) in enumerate(zip(probs, labels, terms)):
        out.append(f"  {i + 1:>6}: -[{y} x {logname}({_g(p)}) + {1 - y} x {logname}({_g(1 - p)})] = {t:.4f}")
    lib = float(_binary.binary_cross_entropy(np.asarray(probs, dtype=np.float64), y_arr, reduction="sum", base=b))
    out.append(f"  sum {lib:.4f}, mean {lib / n:.4f}   "
               f"(crossentropy.binary_cross_entropy(p, y, reduction='sum'|'mean', base={_basearg(b)}))")
    wrong = sum(1 for q in ptrue if q < 0.5)
    out.append(f"discrete error: {wrong} of {n} on the wrong side of 0.5")
    if printed is not None:
        out.append(f"  note: the tutorial prints {printed}; it adds terms cut to two or three decimals. "
                   f"Exact: {total:.4f}.")
    out.append("")
    return ptrue


def _basearg(b):
    return "None" if b is None else f"{b:g}"


def _categorical_section(out, probs, labels, classes, names, b, logname, unit, printed):
    out.append(f"Categorical cross-entropy ({_logs(b)})")
    w = max(len(c) for c in classes)
    out.append("  " + " " * w + "  " + "".join(f"{n:>13}" for n in names))
    for j, c in enumerate(classes):
        out.append(f"  {c:<{w}}  " + "".join(f"{r[j]:>13.4f}" for r in probs))
    out.append(f"  {'correct':<{w}}  " + "".join(f"{classes[y]:>13}" for y in labels))
    ptrue = [r[y] for r, y in zip(probs, labels)]
    prod = math.prod(ptrue)
    out.append(f"product of the correct probabilities  {' x '.join(_g(q) for q in ptrue)} = {prod:.6g}")
    logs = [_log(q, b) if q > 0 else -math.inf for q in ptrue]
    out.append(f"sum of the logs                       {' + '.join(f'({v:.4f})' for v in logs)} = "
               f"{math.fsum(logs):.4f}")
    total = -math.fsum(logs)
    out.append(f"cross-entropy ({unit})" + " " * max(1, 16 - len(unit)) + f"= {total:.4f}")
    out.append(f"  formula, term by term: -sum_i y_i {logname}(p_i), y = 1 for the correct class, 0 otherwise")
    P = np.asarray(probs, dtype=np.float64)
    Y = np.asarray(labels, dtype=np.int64)
    per = _categorical.categorical_cross_entropy(P, Y, reduction="none", base=b).tolist()
    for n, r, y, t in zip(names, probs, labels, per):
        parts = " + ".join(f"{int(j == y)} x {logname}({_g(q)})" for j, q in enumerate(r))
        out.append(f"  {n}: -({parts}) = {t:.4f}")
    lib = float(_categorical.categorical_cross_entropy(P, Y, reduction="sum", base=b))
    out.append(f"  sum {lib:.4f}, mean {lib / len(probs):.4f}   "
               f"(crossentropy.categorical_cross_entropy(p, y, reduction='sum'|'mean', base={_basearg(b)}))")
    wrong = int(np.count_nonzero(P.argmax(axis=1) != Y))
    out.append(f"discrete error: {wrong} of {len(probs)} where the most probable class is not the correct one")
    if printed is not None:
        out.append(f"  note: the tutorial prints {printed}; it adds terms cut (not rounded) to three decimals. Exact: {total:.4f}.")
    out.append("")
    return ptrue


def _tutorial(out, b, logname, unit, marks):
    out.append("The tutorial's examples, computed exactly")
    out.append("=" * 41)
    out.append("")
    out.append("1. Students: will they pass the exam?  Students A and B failed (y = 0), C and D passed (y = 1).")
    out.append("   The tutorial lists each model's probability of what actually happened; as p(pass) that is:")
    y = STUDENTS["labels"]
    is_tutorial_base = b == 10.0
    for m, pt in STUDENTS["models"].items():
        ppass = [q if t == 1 else round(1.0 - q, 12) for q, t in zip(pt, y)]
        out.append(f"   model {m}: p(pass) = {', '.join(_g(p) for p in ppass)}")
    out.append("")
    for m, pt in STUDENTS["models"].items():
        ppass = [q if t == 1 else round(1.0 - q, 12) for q, t in zip(pt, y)]
        out.append(f"Model {m}")
        ptrue = _binary_section(out, ppass, y, b, logname, unit,
                                STUDENTS["printed"][m] if is_tutorial_base else None)
        marks.append((f"students, model {m}", ptrue))
    out.append("2. From scores to probabilities (the tutorial's Blue = 2, Green = 1, Red = -1)")
    _softmax_section(out, list(SOFTMAX_SCORES.values()), list(SOFTMAX_SCORES))
    out.append("3. Fruit: which fruit is in each container?")
    ptrue = _categorical_section(out, FRUIT["probs"], FRUIT["labels"], FRUIT["classes"],
                                 [f"container {c}" for c in FRUIT["containers"]], b, logname, unit,
                                 FRUIT["printed"] if is_tutorial_base else None)
    marks.append(("fruit", ptrue))
    out.append("Lower is better: model B (every student on the right side) beats model A. Try your own numbers:")
    out.append("  crossentropy explain binary --probs 0.9,0.3,0.6,0.2 --labels 0,0,1,1")
    out.append("  crossentropy explain categorical --scores '2,1,-1' --labels 0 --classes blue,green,red")
    out.append("  crossentropy explain descent")


def _plot_curve(plt, marks, b, logname, path):
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    p = np.linspace(0.005, 1.0, 400)
    curve = -np.log(p) if b is None else -np.log(p) / math.log(b)
    ax.plot(p, curve, color="black", lw=1.5, label=f"-{logname}(p)")
    colors = ["#c44e52", "#4c72b0", "#55a868", "#8172b2", "#dd8452"]
    for (name, pts), c in zip(marks, colors * 10):
        pts = np.asarray(pts, dtype=np.float64)
        ok = pts > 0
        ys = -np.log(pts[ok]) if b is None else -np.log(pts[ok]) / math.log(b)
        ax.scatter(pts[ok], ys, s=45, color=c, zorder=3, edgecolor="black", label=name)
        for x, v in zip(pts[ok], ys):
            ax.annotate(f"{v:.3f}", (x, v), textcoords="offset points", xytext=(5, 4), fontsize=7, color=c)
    ax.set(xlabel="p = predicted probability of what actually happened", ylabel=f"loss -{logname}(p)",
           title="Cross-entropy of one sample: confident mistakes cost the most", xlim=(0, 1.02))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# descent
# ---------------------------------------------------------------------------------------------

def _descent(args, b, logname, unit, plt, target) -> int:
    if args.steps < 1 or args.steps > 100000 or not (args.lr > 0 and math.isfinite(args.lr)):
        raise CLIError("--steps must be in 1..100000 and --lr a positive number")
    X, y = DESCENT_X, DESCENT_Y
    w, c = DESCENT_START[0].copy(), float(DESCENT_START[1])
    every = args.every or max(1, args.steps // 16)
    out = ["Gradient descent on the pass/fail students (logistic regression: p(pass) = sigmoid(w1 x1 + w2 x2 + b))",
           f"loss = mean binary cross-entropy from the logits ({unit}); gradient from crossentropy.value_and_grad",
           f"{len(y)} students, learning rate {args.lr:g}, {args.steps} steps", "",
           f"  step   loss ({unit})   errors   w1        w2        b"]
    history = []
    lines = []
    for step in range(args.steps + 1):
        z = X @ w + c
        loss, g = value_and_grad(_binary.binary_cross_entropy_with_logits, z, y, reduction="mean", base=b)
        errors = int(np.count_nonzero((z > 0) != (y == 1)))
        history.append((step, float(loss), errors))
        lines.append((step, w.copy(), c))
        if step % every == 0 or step == args.steps:
            out.append(f"  {step:>4}   {float(loss):>10.6f}   {errors:>6}   {w[0]:>7.4f}   {w[1]:>7.4f}   {c:>7.4f}")
        if step == args.steps:
            break
        # dL/dw = X^T dL/dz, dL/db = sum dL/dz: the chain rule through z = Xw + b.
        w = w - args.lr * (X.T @ g)
        c = c - args.lr * float(np.sum(g))
    # Where did the discrete count stay flat while the loss kept falling?
    flat = sum(1 for (s0, l0, e0), (s1, l1, e1) in zip(history, history[1:]) if e1 == e0 and l1 < l0)
    down = sum(1 for (s0, l0, e0), (s1, l1, e1) in zip(history, history[1:]) if l1 < l0)
    out.append("")
    out.append(f"The loss fell in {down} of {args.steps} steps; the error count did not change in {flat} of them.")
    out.append("A small step rarely moves a student across the line, so the count of errors is flat almost")
    out.append("everywhere and its gradient is zero: it cannot say which way to move the line.  The")
    out.append("cross-entropy changes with every small move, so its gradient always points downhill.")
    first, last = history[0], history[-1]
    out.append(f"Start: {first[2]} misclassified, loss {first[1]:.4f}.  End: {last[2]} misclassified, "
               f"loss {last[1]:.4f}.")
    text = "\n".join(out) + "\n"
    if target is not None:
        png = io.BytesIO()
        _plot_descent(plt, X, y, lines, history, unit, png)
        write_outputs([(target, png.getvalue())])
    sys.stdout.write(text)
    return 0


def _plot_descent(plt, X, y, lines, history, unit, path):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    a1.scatter(X[y == 1, 0], X[y == 1, 1], color="#4c72b0", s=50, edgecolor="black", label="passed", zorder=3)
    a1.scatter(X[y == 0, 0], X[y == 0, 1], color="#c44e52", s=50, edgecolor="black", label="failed", zorder=3)
    xs = np.array([0.0, 10.0])
    n = len(lines)
    picks = sorted(set(np.linspace(0, n - 1, min(n, 8)).astype(int).tolist()))
    cmap = plt.get_cmap("viridis")
    for k, i in enumerate(picks):
        step, w, c = lines[i]
        if abs(w[1]) < 1e-12:
            continue
        a1.plot(xs, -(w[0] * xs + c) / w[1], color=cmap(k / max(len(picks) - 1, 1)), lw=1.2 + (i == n - 1),
                label=f"step {step}")
    a1.set(xlim=(0, 9), ylim=(0, 10), xlabel="x1: hours of study", ylabel="x2: previous grade / 10",
           title="The decision line moves with each step")
    a1.legend(fontsize=7, loc="upper right")
    steps = [h[0] for h in history]
    a2.plot(steps, [h[1] for h in history], color="black", label=f"cross-entropy ({unit})")
    a2.set(xlabel="step", ylabel=f"cross-entropy ({unit})", title="Continuous loss vs discrete error count")
    a3 = a2.twinx()
    a3.step(steps, [h[2] for h in history], where="post", color="#c44e52", label="misclassified")
    a3.set_ylabel("misclassified students", color="#c44e52")
    a3.set_ylim(bottom=0)
    a2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
