"""Small hand-written SVG charts for the HTML report (no plotting library needed).

Each function returns one ``<svg>`` element as a string, sized in CSS pixels,
with axes, ticks, labels and a title; the HTML report inlines them, so the
file stays self-contained.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["reliability", "histogram", "roc", "heatmap", "PALETTE"]

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd")
_W, _H = 460, 360
_L, _R, _T, _B = 58, 16, 34, 48


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if abs(x) < 1e4 else f"{x:.3g}"


class _Frame:
    def __init__(self, title, xlabel, ylabel, xlim, ylim, ident, w=_W, h=_H):
        self.w, self.h = w, h
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(ident)}" class="plot" width="{w}" '
                      f'height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}">',
                      f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
                      f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
                      f'{escape(title)}</text>',
                      f'<text x="{(_L + w - _R) / 2}" y="{h - 10}" text-anchor="middle" font-size="12">'
                      f'{escape(xlabel)}</text>',
                      f'<text x="14" y="{(_T + h - _B) / 2}" text-anchor="middle" font-size="12" '
                      f'transform="rotate(-90 14 {(_T + h - _B) / 2})">{escape(ylabel)}</text>']

    def X(self, x):
        return _L + (x - self.x0) / ((self.x1 - self.x0) or 1) * (self.w - _L - _R)

    def Y(self, y):
        return self.h - _B - (y - self.y0) / ((self.y1 - self.y0) or 1) * (self.h - _T - _B)

    def axes(self, xticks, yticks, ylog=False):
        p = self.parts
        x_a, x_b, y_a, y_b = _L, self.w - _R, self.h - _B, _T
        p.append(f'<rect x="{x_a}" y="{y_b}" width="{x_b - x_a}" height="{y_a - y_b}" fill="none" stroke="#333"/>')
        for t in xticks:
            x = self.X(t)
            p.append(f'<line x1="{x:.1f}" y1="{y_a}" x2="{x:.1f}" y2="{y_a + 4}" stroke="#333"/>'
                     f'<text x="{x:.1f}" y="{y_a + 16}" text-anchor="middle" font-size="10">{_num(t)}</text>')
        for t in yticks:
            y = self.Y(t)
            label = _num(10 ** t if ylog else t)
            p.append(f'<line x1="{x_a - 4}" y1="{y:.1f}" x2="{x_a}" y2="{y:.1f}" stroke="#333"/>'
                     f'<line x1="{x_a}" y1="{y:.1f}" x2="{x_b}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{x_a - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">{label}</text>')

    def polyline(self, xs, ys, color, width=2.0, dash=None, label=None):
        pts = " ".join(f"{self.X(x):.1f},{self.Y(y):.1f}" for x, y in zip(xs, ys))
        d = f' stroke-dasharray="{dash}"' if dash else ""
        cls = f' class="series" data-label="{escape(label)}"' if label else ""
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{d}{cls}/>')

    def rect(self, x0, y0, x1, y1, fill, stroke="none", cls="bar", title=None, opacity=1.0):
        xa, xb = sorted((self.X(x0), self.X(x1)))
        ya, yb = sorted((self.Y(y0), self.Y(y1)))
        t = f"<title>{escape(title)}</title>" if title else ""
        self.parts.append(f'<rect class="{cls}" x="{xa:.1f}" y="{ya:.1f}" width="{max(xb - xa, 0.5):.1f}" '
                          f'height="{max(yb - ya, 0.0):.1f}" fill="{fill}" fill-opacity="{opacity}" '
                          f'stroke="{stroke}">{t}</rect>')

    def legend(self, items, lower_right=False):
        y = (self.h - _B - 8 - 14 * len(items)) if lower_right else _T + 8
        for label, color in items:
            x = (self.w - _R - 150) if lower_right else _L + 10
            self.parts.append(f'<rect x="{x}" y="{y}" width="12" height="8" fill="{color}"/>'
                              f'<text x="{x + 16}" y="{y + 8}" font-size="10">{escape(label)}</text>')
            y += 14

    def done(self) -> str:
        return "".join(self.parts) + "</svg>"


def _ticks(a, b, n=5):
    return [a + (b - a) * i / n for i in range(n + 1)]


def reliability(series, title, xlabel, ylabel, ident) -> str:
    """Reliability diagram: per model, (bin centre, mean confidence, frequency, count) bars and a line."""
    f = _Frame(title, xlabel, ylabel, (0.0, 1.0), (0.0, 1.0), ident)
    f.axes(_ticks(0, 1), _ticks(0, 1))
    f.polyline([0, 1], [0, 1], "#888", 1.0, "4 3")
    legend = []
    for k, (name, bins) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        full = [b for b in bins if b["count"] and b["confidence"] is not None]
        if len(series) == 1:
            for b in full:
                f.rect(b["lo"], 0.0, b["hi"], b["accuracy"], color, "#222", "bar",
                       f"{b['lo']:.2f}-{b['hi']:.2f}: {b['count']} rows, confidence {b['confidence']:.3f}, "
                       f"observed {b['accuracy']:.3f}", 0.85)
                f.rect(b["lo"], b["accuracy"], b["hi"], b["confidence"], "#c44e52", "none", "gap", None, 0.35)
        f.polyline([b["confidence"] for b in full], [b["accuracy"] for b in full], color, 2.0, label=name)
        legend.append((name, color))
    if len(series) > 1:
        f.legend(legend)
    return f.done()


def histogram(edges, counts, mean, title, xlabel, ident) -> str:
    """Loss histogram on a log10(1 + count) scale, the mean marked."""
    last = max((i for i, c in enumerate(counts) if c), default=0)
    k = min(max(last + 1, 10), len(edges) - 1)
    top = math.log10(1 + max(counts[:k] + [counts[-1]] if counts else [1]))
    f = _Frame(title, xlabel, "rows (log scale)", (edges[0], edges[k]), (0.0, max(top, 1.0)), ident)
    f.axes(_ticks(edges[0], edges[k]), list(range(int(max(top, 1.0)) + 1)), ylog=True)
    for i in range(k):
        if counts[i]:
            f.rect(edges[i], 0.0, edges[i + 1], math.log10(1 + counts[i]), "#55a868", "none", "bar",
                   f"{edges[i]:.2f}-{edges[i + 1]:.2f}: {counts[i]} rows")
    if mean is not None and math.isfinite(mean) and edges[0] <= mean <= edges[k]:
        f.polyline([mean, mean], [0.0, max(top, 1.0)], "#222", 1.5, "5 3")
    if counts and counts[-1]:
        f.parts.append(f'<text x="{f.w - _R - 4}" y="{_T + 14}" text-anchor="end" font-size="10">'
                       f'{counts[-1]} rows beyond {edges[-1]:g} (incl. inf)</text>')
    return f.done()


def roc(series, title, ident) -> str:
    """ROC curves: ``series`` of ``(label, fpr list, tpr list)``."""
    f = _Frame(title, "false positive rate", "true positive rate", (0.0, 1.0), (0.0, 1.0), ident)
    f.axes(_ticks(0, 1), _ticks(0, 1))
    f.polyline([0, 1], [0, 1], "#888", 1.0, "4 3")
    legend = []
    for k, (label, fpr, tpr) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        if fpr:
            f.polyline(fpr, tpr, color, 2.0, label=label)
            legend.append((label, color))
    f.legend(legend[:10], lower_right=True)
    return f.done()


def heatmap(matrix, names, title, ident) -> str:
    """Confusion matrix as coloured cells (row-normalised shade, counts printed when they fit)."""
    k = len(names)
    size = min(34, max(8, 400 // max(k, 1)))
    left, top = 70, 40
    w, h = left + size * k + 20, top + size * k + 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(ident)}" class="plot" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>',
             f'<text x="{left + size * k / 2}" y="{h - 8}" text-anchor="middle" font-size="12">predicted class</text>',
             f'<text x="12" y="{top + size * k / 2}" text-anchor="middle" font-size="12" '
             f'transform="rotate(-90 12 {top + size * k / 2})">true class</text>']
    for i in range(k):
        tot = sum(matrix[i]) or 1
        for j in range(k):
            v = matrix[i][j]
            share = v / tot
            r, g, b = (int(255 - share * (255 - c)) for c in ((40, 90, 160) if i == j else (196, 78, 82)))
            parts.append(f'<rect class="cell" x="{left + j * size}" y="{top + i * size}" width="{size}" '
                         f'height="{size}" fill="rgb({r},{g},{b})" stroke="#fff"><title>true {escape(names[i])}, '
                         f'predicted {escape(names[j])}: {v}</title></rect>')
            if size >= 24 and v:
                parts.append(f'<text x="{left + j * size + size / 2}" y="{top + i * size + size / 2 + 4}" '
                             f'text-anchor="middle" font-size="9">{v}</text>')
        if size >= 14:
            parts.append(f'<text x="{left - 4}" y="{top + i * size + size / 2 + 4}" text-anchor="end" '
                         f'font-size="10">{escape(names[i][:8])}</text>')
            parts.append(f'<text x="{left + i * size + size / 2}" y="{top + k * size + 14}" text-anchor="middle" '
                         f'font-size="10">{escape(names[i][:4])}</text>')
    return "".join(parts) + "</svg>"
