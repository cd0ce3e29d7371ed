"""Small inline-SVG charts for the report: no JavaScript library, no network, any browser.

Each function returns one ``<svg class="plot">`` element as text. Values are escaped; the
charts are deliberately plain (bars, lines, a reliability diagram) and readable when printed.
Every chart says what it shows: a title and both axis labels are required arguments. The legend
sits under the title, so rotated x labels at the bottom never run into it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["bar_chart", "hbar_chart", "line_chart", "scatter_line_chart"]

WIDTH, HEIGHT = 560, 270
#: Top: title (y 15) and legend (y 22-32); bottom: rotated tick labels, then the x-axis label.
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 62, 12, 42, 74
LEGEND_Y = 23
COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")


def _open(
    title: str, kind: str, height: int = HEIGHT, *, x_label: str = "", y_label: str = ""
) -> list[str]:
    out = [
        f'<svg class="plot" data-plot="{escape(kind)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{WIDTH / 2}" y="15" text-anchor="middle" class="t">{escape(title)}</text>',
    ]
    if x_label:
        out.append(
            f'<text x="{PAD_LEFT + (WIDTH - PAD_LEFT - PAD_RIGHT) / 2:.1f}" y="{height - 6}" '
            f'text-anchor="middle" class="l x-label">{escape(x_label)}</text>'
        )
    if y_label:
        middle = PAD_TOP + (height - PAD_TOP - PAD_BOTTOM) / 2
        out.append(
            f'<text x="12" y="{middle:.1f}" text-anchor="middle" class="l y-label" '
            f'transform="rotate(-90 12 {middle:.1f})">{escape(y_label)}</text>'
        )
    return out


def _legend(names: Sequence[str], y: float = LEGEND_Y) -> list[str]:
    out = []
    for i, name in enumerate(names):
        x = PAD_LEFT + i * 170
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{COLORS[i % 6]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9}" class="l">{escape(name)}</text>')
    return out


def _y_axis(low: float, high: float, height: int) -> list[str]:
    out = []
    plot_h = height - PAD_TOP - PAD_BOTTOM
    for i in range(5):
        value = low + (high - low) * i / 4
        y = height - PAD_BOTTOM - plot_h * i / 4
        out.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
        )
        out.append(
            f'<text x="{PAD_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" class="a">'
            f"{value:.3g}</text>"
        )
    return out


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    kind: str = "bars",
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series (e.g. reference, current)."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    high = max(values, default=1.0) or 1.0
    out = _open(title, kind, x_label=x_label, y_label=y_label)
    out += _y_axis(0.0, high, HEIGHT)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    group_w = plot_w / max(1, len(labels))
    bar_w = group_w * 0.8 / max(1, len(series))
    for j, (name, vs) in enumerate(series.items()):
        for i, value in enumerate(vs):
            v = value if math.isfinite(value) else 0.0
            h = plot_h * v / high
            x = PAD_LEFT + i * group_w + group_w * 0.1 + j * bar_w
            y = HEIGHT - PAD_BOTTOM - h
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[j % 6]}"><title>{escape(name)} '
                f"{escape(str(labels[i]))}: {value:.4g}</title></rect>"
            )
    step = max(1, math.ceil(len(labels) / 12))
    for i in range(0, len(labels), step):
        x = PAD_LEFT + (i + 0.5) * group_w
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 12}" text-anchor="end" class="a" '
            f'transform="rotate(-30 {x:.1f} {HEIGHT - PAD_BOTTOM + 12})">'
            f"{escape(str(labels[i])[:16])}</text>"
        )
    out += _legend(list(series))
    out.append("</svg>")
    return "".join(out)


def hbar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    kind: str,
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Horizontal bars, largest first (SHAP summary, ranked causes, feature scores)."""
    top = 26
    height = top + 20 * max(1, len(labels)) + 34
    high = max((abs(v) for v in values), default=1.0) or 1.0
    left = 170
    out = [
        f'<svg class="plot" data-plot="{escape(kind)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{WIDTH / 2}" y="15" text-anchor="middle" class="t">{escape(title)}</text>',
        f'<text x="{left + (WIDTH - left - 70) / 2:.1f}" y="{height - 8}" text-anchor="middle" '
        f'class="l x-label">{escape(x_label)}</text>',
        f'<text x="{left - 6}" y="{top - 4}" text-anchor="end" class="l y-label">'
        f"{escape(y_label)}</text>",
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + 4 + 20 * i
        w = (WIDTH - left - 70) * abs(value) / high
        out.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" class="a">'
            f"{escape(str(label)[:26])}</text>"
        )
        out.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="15" '
            f'fill="{COLORS[0]}"><title>{escape(str(label))}: {value:.4g}</title></rect>'
        )
        out.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}" class="a">{value:.3g}</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    kind: str = "lines",
    band: tuple[float, float] | None = None,
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Lines over ordered x labels (time windows); an optional horizontal band (alert range)."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    if band is not None:
        values += [band[0], band[1]]
    low, high = min(values, default=0.0), max(values, default=1.0)
    if high == low:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    out = _open(title, kind, x_label=x_label, y_label=y_label)
    out += _y_axis(low, high, HEIGHT)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def xy(i: int, v: float) -> tuple[float, float]:
        x = PAD_LEFT + plot_w * (i + 0.5) / max(1, len(x_labels))
        return x, HEIGHT - PAD_BOTTOM - plot_h * (v - low) / (high - low)

    if band is not None:
        _, y_top = xy(0, band[1])
        _, y_bottom = xy(0, band[0])
        out.append(
            f'<rect x="{PAD_LEFT}" y="{y_top:.1f}" width="{plot_w}" '
            f'height="{max(0.5, y_bottom - y_top):.1f}" fill="#54a24b" opacity="0.12"/>'
        )
    for j, (_name, vs) in enumerate(series.items()):
        points = [xy(i, v) for i, v in enumerate(vs) if v is not None and math.isfinite(v)]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f'<polyline class="line" points="{path}" fill="none" '
                f'stroke="{COLORS[j % 6]}" stroke-width="2"/>'
            )
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS[j % 6]}"/>')
    step = max(1, math.ceil(len(x_labels) / 10))
    for i in range(0, len(x_labels), step):
        x, _ = xy(i, low)
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="middle" '
            f'class="a">{escape(str(x_labels[i])[:12])}</text>'
        )
    out += _legend(list(series))
    out.append("</svg>")
    return "".join(out)


def scatter_line_chart(
    title: str, points: Sequence[tuple[float, float]], kind: str = "calibration"
) -> str:
    """A reliability diagram: predicted vs observed on [0, 1], with the diagonal."""
    out = _open(title, kind, x_label="mean predicted probability", y_label="observed positive rate")
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    out += _y_axis(0.0, 1.0, HEIGHT)

    def xy(x: float, y: float) -> tuple[float, float]:
        return PAD_LEFT + plot_w * x, HEIGHT - PAD_BOTTOM - plot_h * y

    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    out.append(
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    coords = [xy(x, y) for x, y in points]
    if coords:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(
            f'<polyline class="line" points="{path}" fill="none" stroke="{COLORS[0]}" '
            'stroke-width="2"/>'
        )
        for (x, y), (px, py) in zip(coords, points, strict=True):
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS[0]}">'
                f"<title>predicted {px:.3f}, observed {py:.3f}</title></circle>"
            )
    for i in range(6):
        x, _ = xy(i / 5, 0)
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="middle" '
            f'class="a">{i / 5:.1f}</text>'
        )
    out += _legend(["observed rate by predicted bin"])
    out.append("</svg>")
    return "".join(out)
