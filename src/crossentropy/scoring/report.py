"""The report, rendered: plain text (the default), JSON, Markdown and self-contained HTML.

Every renderer draws from the same tables (:func:`summary_rows`,
:func:`per_class_table`, …), so the four formats always say the same thing.
Losses are stored in nats; ``base`` chooses the logarithm base in which loss
figures are shown (``None``: nats, 2: bits, 10, …) — the same meaning as in
``crossentropy explain``.  JSON keeps full precision and writes non-finite
numbers as the strings ``"inf"``, ``"-inf"``, ``"nan"``.  The HTML report
inlines its charts as SVG and its style sheet, so it is one file with no
outside references.
"""

from __future__ import annotations

import json
import math
import os
from html import escape

from . import _svg

__all__ = ["render", "render_text", "render_json", "render_markdown", "render_html", "json_ready", "plot_png",
           "REPORT_FORMATS"]

REPORT_FORMATS = ("text", "json", "md", "html")


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

def json_ready(obj):
    """Replace non-finite floats by the strings ``"inf"``/``"-inf"``/``"nan"`` (strict JSON has none).

    >>> json_ready({"a": [1.0, float("inf")]})
    {'a': [1.0, 'inf']}
    """
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def unit(base):
    """``(name, ln(base))`` of the unit in which losses are shown.

    >>> unit(None), unit(2.0)[0], unit(10.0)[0]
    (('nats', 1.0), 'bits', 'base-10')
    """
    if base is None:
        return "nats", 1.0
    if base == 2.0:
        return "bits", math.log(2.0)
    return f"base-{base:g}", math.log(base)


def f(x, digits=4) -> str:
    """A number for the text report: ``-`` for missing, ``inf``/``nan`` spelled out.

    >>> f(None), f(float("inf")), f(0.123456), f(1.5e300)
    ('-', 'inf', '0.1235', '1.5000e+300')
    """
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if abs(x) >= 1e9:
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}"


def pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.2f}%"


def _big_exp(log10: float) -> str:
    """``10^log10`` written out when it overflows a double.

    >>> _big_exp(400.4), _big_exp(4.3e307)
    ('≈2.5119e+400', '≈10^4.3e+307')
    """
    if log10 >= 1e15:  # the mantissa is lost in the exponent's rounding
        return f"≈10^{log10:.4g}"
    e = math.floor(log10)
    return f"≈{10 ** (log10 - e):.4f}e+{e}"


def _perplexity(r) -> str:
    p = r["perplexity"]
    if isinstance(p, float) and math.isinf(p) and math.isfinite(r.get("perplexity_log10", math.nan)):
        return _big_exp(r["perplexity_log10"]) + " (beyond the float range)"
    return f(p)


def _ci(r, key, scale=1.0, as_pct=False) -> str:
    ci = r.get("ci")
    if not ci or key not in ci:
        return ""
    lo, hi = ci[key]
    if as_pct:
        return f"[{pct(lo)}, {pct(hi)}] {ci['level'] * 100:g}% CI"
    return f"[{f(lo / scale)}, {f(hi / scale)}] {ci['level'] * 100:g}% CI"


# ---------------------------------------------------------------------------------------------
# Tables shared by every format
# ---------------------------------------------------------------------------------------------

def detection_lines(r) -> list:
    d = r["detected"]
    how = d["how"]
    cols = d["prediction_columns"]
    shown = cols[0] if len(cols) == 1 else f"{cols[0]}..{cols[-1]}"
    if d["list_column"]:
        shown += f" (list of {d['n_classes']})"
    out = [f"format {d['format']}; label column '{d['label_column']}' ({how['label']})",
           f"predictions {shown}: {how['columns']}",
           f"{d['input']} ({how['input']}); {how['task']}"]
    if "delimiter" in how:
        out.append(f"delimiter {how['delimiter']}")
    if d.get("weight_column"):
        out.append(f"sample weights '{d['weight_column']}': {how.get('weight', '')}")
    elif "weight" in how:
        out.append(f"sample weights {how['weight']}")
    if d.get("by_column"):
        out.append(f"slices by '{d['by_column']}'")
    if d["task"] == "multiclass":
        cls = d["classes"]
        out.append(f"classes {', '.join(cls[:12])}{', ...' if len(cls) > 12 else ''}")
    return out


def summary_rows(r, base=None) -> list:
    """``(figure, value, note)`` rows of the headline figures."""
    u, scale = unit(base)
    ce = r["cross_entropy"]
    rows = []
    n = f"{r['n_samples']:,}"
    if "weight_total" in r:
        n += f"   (sample weights total {r['weight_total']:,.6g})"
    rows.append(("samples", n, ""))
    extra = "".join(f"   {f(v)} {k.replace('base', 'base-')}" for k, v in ce.items() if k.startswith("base"))
    ci_key = "cross_entropy_nats" if base is None else ("cross_entropy_bits" if base == 2.0
                                                         else f"cross_entropy_base{base:g}")
    rows.append(("cross-entropy", f"{f(ce['nats'])} nats   {f(ce['bits'])} bits{extra}",
                 _ci(r, ci_key) + (f" ({u})" if _ci(r, ci_key) and base is not None else "")))
    rows.append(("perplexity", _perplexity(r), _ci(r, "perplexity")))
    rows.append(("accuracy", pct(r["accuracy"]), f"({r['misclassified']:,} misclassified: the discrete error)"
                 + ("   " + _ci(r, "accuracy", as_pct=True) if _ci(r, "accuracy") else "")))
    if r.get("top_k_accuracy"):
        rows.append(("top-k accuracy", "   ".join(f"top-{k} {pct(v)}" for k, v in r["top_k_accuracy"].items()),
                     "(label among the k most probable classes)"))
    brier_note = "(mean (p - y)^2)" if r["n_classes"] == 2 else "(mean sum over classes of (p_k - y_k)^2)"
    rows.append(("Brier score", f(r["brier"]), brier_note + ("   " + _ci(r, "brier") if _ci(r, "brier") else "")))
    roc = r.get("roc_auc")
    if roc is not None:
        if r["task"] == "binary":
            rows.append(("ROC AUC", f(roc["auc"]), ""))
        else:
            note = "(one-vs-rest)"
            if roc.get("undefined"):
                note += f"; undefined for {len(roc['undefined'])} class(es) without positives or negatives"
            rows.append(("ROC AUC", f"{f(roc['macro'])} macro   {f(roc['weighted'])} weighted", note))
    if r["task"] == "binary":
        rows.append(("base rate (class 1)", f(r["base_rate"]), ""))
        rows.append(("normalised CE", f(r["normalized_cross_entropy"]),
                     f"(loss / entropy of the base rate, {f(r['prior_entropy_nats'])} nats; < 1 beats always "
                     "predicting the base rate)"))
    else:
        rows.append(("normalised CE", f(r["normalized_cross_entropy"]),
                     f"(loss / entropy of the class frequencies, {f(r['prior_entropy_nats'])} nats)"))
    cal = r["calibration"]
    rows.append(("calibration error", f"{f(cal['ece'])} ECE   {f(cal['mce'])} MCE",
                 f"({cal['kind']}, {len(cal['bins'])} bins)"))
    rows.append(("class-wise calibration", f"{f(cal['classwise_ece'])} ECE   {f(cal['classwise_mce'])} MCE",
                 "(each class's probability vs its frequency, averaged over classes)"))
    prf = r["precision_recall_f1"]
    rows.append(("precision / recall / F1",
                 f"macro {f(prf['macro']['precision'])} / {f(prf['macro']['recall'])} / {f(prf['macro']['f1'])}",
                 f"weighted {f(prf['weighted']['precision'])} / {f(prf['weighted']['recall'])} / "
                 f"{f(prf['weighted']['f1'])}"))
    return rows


def per_class_table(r: dict, base: float | None = None) -> tuple[list, list]:
    u, scale = unit(base)
    head = ["class", "count"] + (["weight"] if "weight_total" in r else []) + [f"loss ({u})", "precision", "recall",
                                                                              "F1"]
    aucs = None
    roc = r.get("roc_auc")
    if roc is not None and r["task"] == "multiclass":
        aucs = roc["per_class"]
        head.append("AUC")
    head.append("ECE")
    rows = []
    for i, c in enumerate(r["per_class"]):
        loss = None if c["loss_nats"] is None else c["loss_nats"] / scale
        row = [c["class"], f"{c['count']:,}"] + ([f"{c['weight']:,.6g}"] if "weight_total" in r else []) + [
            f(loss), f(c["precision"]), f(c["recall"]), f(c["f1"])]
        if aucs is not None:
            row.append(f(aucs[i]))
        row.append(f(c["ece"]))
        rows.append(row)
    return head, rows


def worst_table(r, base=None):
    u, scale = unit(base)
    ws = r.get("worst") or []
    if not ws:
        return None, []
    where = "line" if ws[0]["line"] is not None else "row"
    head = (["file"] if any("file" in w for w in ws) else []) + [where, "label", "predicted", "p(label)",
                                                                 f"loss ({u})"]
    rows = []
    for w in ws:
        pos = w["line"] if w["line"] is not None else w["row"]
        rows.append(([w.get("file", "")] if "file" in head else []) + [
            f"{pos}", w["label"], w["predicted"], f"{w['p_true']:.3g}", f(w["loss_nats"] / scale)])
    return head, rows


def reliability_table(r: dict) -> tuple[list, list]:
    cal = r["calibration"]
    conf, acc = ("mean p(1)", "freq(1)") if r["task"] == "binary" else ("confidence", "accuracy")
    head = ["bin", "count", conf, acc, "gap"]
    rows = []
    for i, b in enumerate(cal["bins"]):
        rng = f"{'[' if i == 0 else '('}{b['lo']:.2f},{b['hi']:.2f}]"
        if b["count"]:
            rows.append([rng, f"{b['count']:,}", f"{b['confidence']:.4f}", f"{b['accuracy']:.4f}",
                         f"{b['accuracy'] - b['confidence']:+.4f}"])
        else:
            rows.append([rng, "0", "", "", ""])
    return head, rows


def confusion_table(r, limit=20):
    cm = r.get("confusion_matrix")
    if cm is None or len(cm["classes"]) > limit:
        return None, []
    names = cm["classes"]
    head = ["true \\ predicted"] + [n[:8] for n in names]
    rows = [[names[i][:12]] + [f"{v:,}" for v in row] for i, row in enumerate(cm["matrix"])]
    return head, rows


def slices_table(r, base=None):
    sl = r.get("slices")
    if not sl:
        return None, []
    u, scale = unit(base)
    binary = r["task"] == "binary"
    head = ["slice", "samples", f"cross-entropy ({u})", "accuracy", "Brier", "ROC AUC" + ("" if binary else " (macro)"),
            "ECE"]
    with_ci = any("ci" in s for s in sl.values())
    if with_ci:
        head.insert(3, "CI")
    rows = []
    for key, s in sl.items():
        roc = s.get("roc_auc")
        auc = None if roc is None else (roc["auc"] if binary else roc["macro"])
        row = [key, f"{s['n_samples']:,}", f(s["cross_entropy"]["nats"] / scale), pct(s["accuracy"]), f(s["brier"]),
               f(auc), f(s["calibration"]["ece"])]
        if with_ci:
            lo, hi = s["ci"]["cross_entropy_nats"] if "ci" in s else (None, None)
            row.insert(3, f"[{f(None if lo is None else lo / scale)}, {f(None if hi is None else hi / scale)}]")
        rows.append(row)
    return head, rows


def _model_name(m) -> str:
    return os.path.basename(m["file"]) or m["file"]


def comparison_tables(rep, base=None):
    """The side-by-side figures and the differences against the first model."""
    u, scale = unit(base)
    models = rep["models"]
    names = [_model_name(m) for m in models]
    head = ["figure"] + names

    def auc(m):
        roc = m.get("roc_auc")
        return None if roc is None else (roc["auc"] if m["task"] == "binary" else roc["macro"])
    rows = [["samples"] + [f"{m['n_samples']:,}" for m in models],
            [f"cross-entropy ({u})"] + [f(m["cross_entropy"]["nats"] / scale) for m in models],
            ["perplexity"] + [_perplexity(m) for m in models],
            ["accuracy"] + [pct(m["accuracy"]) for m in models],
            ["Brier score"] + [f(m["brier"]) for m in models],
            ["ROC AUC" + ("" if models[0]["task"] == "binary" else " (macro)")] + [f(auc(m)) for m in models],
            ["ECE"] + [f(m["calibration"]["ece"]) for m in models],
            ["normalised CE"] + [f(m["normalized_cross_entropy"]) for m in models]]
    lvl = rep["ci"]["level"]
    dhead = ["model (vs " + names[0] + ")", f"Δ cross-entropy ({u}) [{lvl * 100:g}% CI]", "p", "Δ accuracy [CI]",
             "p", "Δ Brier [CI]", "p"]
    drows = []
    for c in rep["comparison"]:
        ce, ac, br = c["cross_entropy_nats"], c["accuracy"], c["brier"]
        drows.append([os.path.basename(c["file"]),
                      f"{_signed(ce['difference'] / scale)} [{_signed(ce['ci'][0] / scale)}, "
                      f"{_signed(ce['ci'][1] / scale)}]", _p(ce["p_value"]),
                      f"{_signed(ac['difference'] * 100, 2)}% [{_signed(ac['ci'][0] * 100, 2)}, "
                      f"{_signed(ac['ci'][1] * 100, 2)}]", _p(ac["p_value"]),
                      f"{_signed(br['difference'])} [{_signed(br['ci'][0])}, {_signed(br['ci'][1])}]",
                      _p(br["p_value"])])
    return (head, rows), (dhead, drows)


def _signed(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return f(x)
    return f"{x:+.{digits}f}"


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"{p:.4f}" if p >= 1e-4 else f"<{1e-4:g}"


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

def _text_table(head, rows, indent="  ") -> list:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    out = []
    for row in [head] + rows:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append((indent + "   ".join(cells)).rstrip())
    return out


def _text_single(r, base) -> list:
    out = [f"file          {r['file']}" + (f"   ({r['parts']} parts)" if r.get("parts") else "")]
    if r.get("source"):
        out.append(f"              ({r['source']})")
    det = detection_lines(r)
    out.append(f"detected      {det[0]}")
    out.extend(f"              {line}" for line in det[1:])
    if r["compat"] != "exact":
        out.append(f"compat        {r['compat']} (probabilities clipped as {r['compat']} does)")
    out.append("")
    for name, value, note in summary_rows(r, base):
        out.append(f"{name:<24}{value}" + (f"   {note}" if note else ""))
    out.append("")
    head, rows = per_class_table(r, base)
    out.append("per class")
    out.extend(_text_table(head, rows))
    head, rows = confusion_table(r)
    if head:
        out.append("")
        out.append("confusion matrix (rows: true class, columns: predicted class)")
        out.extend(_text_table(head, rows))
    head, rows = worst_table(r, base)
    if head:
        out.append("")
        out.append(f"worst {len(rows)} samples")
        out.extend(_text_table(head, rows))
    out.append("")
    out.append("reliability (" + r["calibration"]["kind"] + ")")
    out.extend(_text_table(*reliability_table(r)))
    head, rows = slices_table(r, base)
    if head:
        out.append("")
        out.append(f"slices by '{r['detected']['by_column']}'")
        out.extend(_text_table(head, rows))
    return out


def render_text(r: dict, base=None) -> str:
    """The human-readable report (what ``crossentropy score`` prints by default)."""
    if "models" in r:
        (h1, r1), (h2, r2) = comparison_tables(r, base)
        out = [f"comparing {len(r['models'])} models on the same {r['models'][0]['n_samples']:,} rows", ""]
        for m in r["models"]:
            name = _model_name(m)
            out.append(name + ("" if name == m["file"] else f": {m['file']}"))
            out.append("  " + "; ".join(detection_lines(m)[:3]))
        out.append("")
        out.extend(_text_table(h1, r1))
        out.append("")
        out.append(f"differences from {_model_name(r['models'][0])} (paired bootstrap, {r['ci']['replicates']} "
                   f"replicates, seed {r['ci']['seed']}; p: two-sided)")
        out.extend(_text_table(h2, r2))
        return "\n".join(out) + "\n"
    return "\n".join(_text_single(r, base)) + "\n"


# ---------------------------------------------------------------------------------------------
# JSON and Markdown
# ---------------------------------------------------------------------------------------------

def render_json(r: dict) -> str:
    return json.dumps(json_ready(r), indent=2, allow_nan=False) + "\n"


def _md_table(head, rows) -> list:
    def cell(x):
        return str(x).replace("|", "\\|")
    return ["| " + " | ".join(cell(h) for h in head) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"] + \
        ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def render_markdown(r: dict, base=None) -> str:
    """The report as GitHub-flavoured Markdown (headings and pipe tables)."""
    out = []
    if "models" in r:
        (h1, r1), (h2, r2) = comparison_tables(r, base)
        out += [f"# Model comparison ({len(r['models'])} models, {r['models'][0]['n_samples']:,} rows)", ""]
        out += [f"* `{_model_name(m)}`: {'; '.join(detection_lines(m)[:3])}" for m in r["models"]] + [""]
        out += _md_table(h1, r1) + ["", f"## Differences from `{_model_name(r['models'][0])}`", "",
                                    f"Paired bootstrap, {r['ci']['replicates']} replicates, seed {r['ci']['seed']}; "
                                    "p-values two-sided.", ""]
        out += _md_table(h2, r2)
        return "\n".join(out) + "\n"
    out += [f"# Cross-entropy report: `{r['file']}`", ""]
    out += [f"* {line}" for line in detection_lines(r)] + [""]
    out += _md_table(["figure", "value", "note"], [list(x) for x in summary_rows(r, base)]) + [""]
    out += ["## Per class", ""] + _md_table(*per_class_table(r, base)) + [""]
    head, rows = confusion_table(r)
    if head:
        out += ["## Confusion matrix", "", "Rows: true class; columns: predicted class.", ""] + \
            _md_table(head, rows) + [""]
    head, rows = worst_table(r, base)
    if head:
        out += [f"## Worst {len(rows)} samples", ""] + _md_table(head, rows) + [""]
    out += ["## Reliability", "", r["calibration"]["kind"] + ".", ""] + _md_table(*reliability_table(r)) + [""]
    head, rows = slices_table(r, base)
    if head:
        out += [f"## Slices by `{r['detected']['by_column']}`", ""] + _md_table(head, rows) + [""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1100px;
       color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f3f8; } td:first-child, th:first-child { text-align: left; }
table#summary td, table#summary th { text-align: left; }
ul.detected { font-size: 13px; color: #444; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plot { border: 1px solid #ddd; }
.note { color: #666; font-size: 12px; }
"""


def _html_table(head: list, rows: list, ident: str | None = None) -> str:
    i = f' id="{escape(ident)}"' if ident else ""
    h = "".join(f"<th>{escape(str(x))}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{i}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _html_plots_single(r, base) -> str:
    u, scale = unit(base)
    cal = r["calibration"]
    xl, yl = (("predicted probability of class 1", "observed frequency of class 1") if r["task"] == "binary"
              else ("confidence (top-label probability)", "accuracy"))
    plots = [_svg.reliability([(_model_name(r), cal["bins"])], f"Reliability (ECE {f(cal['ece'])})", xl, yl,
                              "plot-reliability")]
    h = r["loss_histogram"]
    edges = [e / scale for e in h["edges_nats"]]
    plots.append(_svg.histogram(edges, h["counts"], r["cross_entropy"]["nats"] / scale,
                                f"Per-sample loss ({r['n_samples']:,} rows)", f"-log p(label) ({u})",
                                "plot-histogram"))
    roc = r.get("roc_auc")
    if roc is not None:
        if r["task"] == "binary":
            c = roc["curves"][0]
            plots.append(_svg.roc([(f"AUC {f(roc['auc'])}", c["fpr"], c["tpr"])], "ROC curve", "plot-roc"))
        else:
            names = r["detected"]["classes"]
            series = [(f"{names[k]} ({f(roc['per_class'][k], 3)})", c["fpr"], c["tpr"])
                      for k, c in enumerate(roc["curves"][:10])]
            plots.append(_svg.roc(series, f"ROC one-vs-rest (macro AUC {f(roc['macro'])})", "plot-roc"))
    cm = r.get("confusion_matrix")
    if cm is not None and len(cm["classes"]) <= 50:
        plots.append(_svg.heatmap(cm["matrix"], cm["classes"], "Confusion matrix", "plot-confusion"))
    return '<div class="plots">' + "".join(plots) + "</div>"


def render_html(r: dict, base=None) -> str:
    """One self-contained HTML page: tables plus inline SVG charts."""
    parts = []
    if "models" in r:
        (h1, r1), (h2, r2) = comparison_tables(r, base)
        title = f"Model comparison: {', '.join(_model_name(m) for m in r['models'])}"
        parts.append(f"<h1>{escape(title)}</h1>")
        parts.append('<ul class="detected">' + "".join(
            f"<li><b>{escape(_model_name(m))}</b>: {escape('; '.join(detection_lines(m)[:3]))}</li>"
            for m in r["models"]) + "</ul>")
        parts.append("<h2>Figures</h2>" + _html_table(h1, r1, "summary"))
        parts.append(f"<h2>Differences from {escape(_model_name(r['models'][0]))}</h2>"
                     f'<p class="note">Paired bootstrap, {r["ci"]["replicates"]} replicates, seed '
                     f'{r["ci"]["seed"]}; p-values two-sided.</p>' + _html_table(h2, r2, "differences"))
        m0 = r["models"][0]
        xl, yl = (("predicted probability of class 1", "observed frequency of class 1") if m0["task"] == "binary"
                  else ("confidence (top-label probability)", "accuracy"))
        plots = [_svg.reliability([(_model_name(m), m["calibration"]["bins"]) for m in r["models"]], "Reliability",
                                  xl, yl, "plot-reliability")]
        if m0.get("roc_auc") is not None and m0["task"] == "binary":
            plots.append(_svg.roc([(f"{_model_name(m)} ({f(m['roc_auc']['auc'])})", m["roc_auc"]["curves"][0]["fpr"],
                                    m["roc_auc"]["curves"][0]["tpr"]) for m in r["models"]], "ROC curves", "plot-roc"))
        parts.append("<h2>Charts</h2><div class=\"plots\">" + "".join(plots) + "</div>")
        for m in r["models"]:
            parts.append(f"<h2>{escape(_model_name(m))}: per class</h2>" + _html_table(*per_class_table(m, base)))
    else:
        parts.append(f"<h1>Cross-entropy report: {escape(os.path.basename(r['file']) or r['file'])}</h1>")
        parts.append(f'<p class="note">{escape(r["file"])}</p>')
        parts.append('<ul class="detected">' + "".join(f"<li>{escape(x)}</li>" for x in detection_lines(r)) +
                     "</ul>")
        parts.append("<h2>Summary</h2>" + _html_table(["figure", "value", "note"],
                                                      [list(x) for x in summary_rows(r, base)], "summary"))
        parts.append("<h2>Charts</h2>" + _html_plots_single(r, base))
        parts.append("<h2>Per class</h2>" + _html_table(*per_class_table(r, base), "per-class"))
        head, rows = confusion_table(r, limit=50)
        if head:
            parts.append("<h2>Confusion matrix</h2>" + _html_table(head, rows, "confusion"))
        head, rows = worst_table(r, base)
        if head:
            parts.append(f"<h2>Worst {len(rows)} samples</h2>" + _html_table(head, rows, "worst"))
        parts.append("<h2>Reliability</h2>" + _html_table(*reliability_table(r), "reliability"))
        head, rows = slices_table(r, base)
        if head:
            parts.append(f"<h2>Slices by {escape(r['detected']['by_column'])}</h2>" + _html_table(head, rows, "slices"))
    title = "crossentropy report"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) +
            '\n<p class="note">Generated by crossentropy score.</p></body></html>\n')


def render(r: dict, fmt: str = "text", base=None) -> str:
    """The report in ``fmt``: ``'text'``, ``'json'``, ``'md'`` or ``'html'``."""
    if fmt == "json":
        return render_json(r)
    if fmt == "md":
        return render_markdown(r, base)
    if fmt == "html":
        return render_html(r, base)
    return render_text(r, base)


# ---------------------------------------------------------------------------------------------
# PNG (matplotlib), for --plot
# ---------------------------------------------------------------------------------------------

def plot_png(plt, r: dict, base, path) -> None:
    """A reliability diagram and a loss histogram (of the first model), written to ``path`` as PNG."""
    import numpy as np

    if "models" in r:
        r = r["models"][0]
    u, scale = unit(base)
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
    a1.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, title=f"Reliability diagram (ECE {cal['ece']:.4f})")
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
    if math.isfinite(mean):
        a2.axvline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.4f}")
    a2.set(xlabel=f"per-sample loss −log p(label) ({u})", ylabel="samples",
           title=f"Loss histogram ({r['n_samples']:,} samples)")
    a2.set_yscale("symlog", linthresh=1)
    if math.isfinite(mean):
        a2.legend(fontsize=8)
    fig.suptitle(os.path.basename(r["file"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
