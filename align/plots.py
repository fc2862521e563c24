"""Small, dependency-free SVG charts for the run report: line charts over steps and a metric across stages.

The report must be one self-contained HTML file that opens anywhere (no CDN, no matplotlib), so the
charts are drawn here as inline SVG strings. Every text that reaches the SVG is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
W, H = 360, 210
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 30, 46  # the plot area's margins: room for tick labels and the legend
# inside every chart, so a chart saved as its own .svg file (the Markdown report links them) looks the same
STYLE = ("<style>text{font:11px system-ui,-apple-system,'Segoe UI',sans-serif;fill:#374151}"
         ".ct{font-size:12.5px;font-weight:600;fill:#111827}.pa{fill:#fff;stroke:#d1d5db}"
         ".gl{stroke:#eef0f3}.yt{text-anchor:end;fill:#6b7280}.xt{fill:#6b7280}.end{text-anchor:end}"
         ".mid{text-anchor:middle}.vl{text-anchor:middle;font-weight:600}.bad{fill:#dc2626}"
         ".bd{stroke:#dc2626;stroke-dasharray:4 3}</style>")


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def tick(v: float) -> str:
    """A short axis label: 0.25, 1.2e-05, 3400."""
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"


def _axis(values: Sequence[float]) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) that cover the values."""
    lo, hi = min(values), max(values)
    if lo == hi:  # a flat series still needs a visible band
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    lo, hi = lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05  # no point (or value label) on the frame
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    first = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - first) / step - 1e-9)
    return [first + i * step for i in range(n + 1)]


def _tick_labels(ticks: list[float]) -> list[str]:
    step = ticks[1] - ticks[0]
    if max(abs(ticks[0]), abs(ticks[-1])) >= 1e5 or step < 1e-4:
        return [tick(v) for v in ticks]
    exp = math.floor(math.log10(step) + 1e-9)
    decimals = max(0, -exp) + (1 if round(step / 10 ** exp, 6) == 2.5 else 0)
    return ["0" if abs(v) < step / 1e6 else f"{v:.{decimals}f}" for v in ticks]


def _frame(title: str, ticks: list[float], body: list[str], footer: list[str]) -> str:
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>', STYLE,
           f'<text x="{LEFT}" y="18" class="ct">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="pa"/>']
    for i, label in enumerate(_tick_labels(ticks)):
        y = TOP + ph - ph * i / (len(ticks) - 1)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" class="gl"/>')
        out.append(f'<text x="{LEFT - 5}" y="{y + 3.5:.1f}" class="yt">{escape(label)}</text>')
    return "\n".join(out + body + footer + ["</svg>"])


def line_chart(title: str, series: dict[str, Sequence[tuple[float, float]]]) -> str:
    """An SVG line chart of named (x, y) series; non-finite points are dropped, a lone point is a dot."""
    clean = {name: [(x, y) for x, y in pts if _finite(x) and _finite(y)] for name, pts in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    if not clean:
        return ""
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    xlo, xhi = min(xs), max(xs)
    xhi = xhi if xhi > xlo else xlo + 1
    ticks = _axis(ys)
    ylo, yhi = ticks[0], ticks[-1]
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - xlo) / (xhi - xlo) * pw

    def py(y: float) -> float:
        return TOP + ph - (y - ylo) / (yhi - ylo) * ph

    body = []
    for i, pts in enumerate(clean.values()):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted(pts)
        if len(pts) == 1:
            body.append(f'<circle cx="{px(pts[0][0]):.1f}" cy="{py(pts[0][1]):.1f}" r="3" fill="{color}"/>')
        else:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
    footer = [f'<text x="{LEFT}" y="{TOP + ph + 14}" class="xt">{escape(tick(xlo))}</text>',
              f'<text x="{LEFT + pw}" y="{TOP + ph + 14}" class="xt end">step {escape(tick(xhi))}</text>']
    footer += _legend(list(clean), TOP + ph + 32)
    return _frame(title, ticks, body, footer)


def _legend(names: list[str], y: float) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        label = name if len(name) <= 28 else name[:27] + "\u2026"
        if x > LEFT and x + 14 + 6.2 * len(label) > W:
            break  # the rest would not fit; the chart title still names the family
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 1}" class="lg">{escape(label)}</text>')
        x += 14 + 6.2 * len(label) + 12
    return out


def rows_chart(title: str, points: Sequence[tuple[str, float | None, bool]], bound: float | None = None) -> str:
    """A metric across rows (baseline, stages): (row, value, gate failed) as dots joined by a line, the value
    above each dot, a failed gate in red, and a gate's bound as a dashed line."""
    values = [v for _, v, _ in points if _finite(v)]
    if not values:
        return ""
    ticks = _axis(values + ([bound] if _finite(bound) else []))  # type: ignore[list-item]
    ylo, yhi = ticks[0], ticks[-1]
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = pw / len(points)

    def py(y: float) -> float:
        return TOP + ph - (y - ylo) / (yhi - ylo) * ph

    body, line = [], []
    if _finite(bound):
        body.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(bound):.1f}" y2="{py(bound):.1f}" class="bd"/>')
    for i, (row, v, failed) in enumerate(points):
        x = LEFT + step * (i + 0.5)
        name = row if len(row) <= 12 else row[:11] + "\u2026"
        body.append(f'<text x="{x:.1f}" y="{TOP + ph + 15}" class="xt mid">{escape(name)}</text>')
        if not _finite(v):
            continue
        y = py(v)
        line.append(f"{x:.1f},{y:.1f}")
        color = "#dc2626" if failed else PALETTE[0]
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
        body.append(f'<text x="{x:.1f}" y="{y - 8:.1f}" class="vl{" bad" if failed else ""}">{escape(tick(v))}</text>')
    if len(line) > 1:
        body.insert(0, f'<polyline points="{" ".join(line)}" fill="none" stroke="#93c5fd" stroke-width="1.5"/>')
    return _frame(title, ticks, body, [])
