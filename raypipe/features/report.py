"""The selection report: one self-contained HTML page with bar charts of the selection scores,
the importance table and an inline SVG correlation heatmap (no plotting library, no external
assets)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import numpy as np

from raypipe.features.selection import FeatureScore
from raypipe.monitoring import svg

__all__ = ["correlation_svg", "render_selection_html", "score_charts"]

#: Features per bar chart (the best by that score).
CHART_FEATURES = 20
CELL = 14
LABEL_WIDTH = 220

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:right}th{background:#f3f3f3}td.n{text-align:left;font-family:monospace}
tr.sel td{background:#eef7ee}tr.leak td{background:#fde8e8}tr.drop td{color:#999}
.note{color:#555;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:12px}svg.plot{border:1px solid #eee;max-width:100%;
height:auto}svg .t{font-size:13px;font-weight:600}svg .a{font-size:10px;fill:#555}
svg .l{font-size:11px}
"""


def score_charts(scores: Sequence[FeatureScore], limit: int = CHART_FEATURES) -> str:
    """Horizontal bar charts of the best ``limit`` features by each selection score."""
    charts = []
    measures: tuple[tuple[str, Callable[[FeatureScore], float | None], str], ...] = (
        (
            "mutual information with the label",
            lambda s: s.mutual_information,
            "mutual information (nats)",
        ),
        (
            "score of the feature alone",
            lambda s: s.single_feature_score,
            "ROC AUC (or |Spearman r|) of the feature alone",
        ),
        ("|L1 coefficient|", lambda s: s.l1_coefficient, "|coefficient| (standardised)"),
    )
    for title, value, axis in measures:
        ranked = sorted(
            ((s, v) for s in scores if (v := value(s)) is not None), key=lambda item: -abs(item[1])
        )
        top = ranked[:limit]
        if not top:
            continue
        shown = f"top {len(top)} of {len(ranked)}" if len(ranked) > len(top) else "all"
        charts.append(
            svg.hbar_chart(
                f"{title} ({shown} features)",
                [s.name + (" *" if s.selected else "") for s, _ in top],
                [float(abs(v)) for _, v in top],
                kind="feature-score",
                x_label=axis,
                y_label="feature (* selected)",
            )
        )
    return f"<div class='charts'>{''.join(charts)}</div>" if charts else ""


def _color(r: float) -> str:
    """Diverging blue (-1) / white (0) / red (+1)."""
    if not np.isfinite(r):
        return "#cccccc"
    r = max(-1.0, min(1.0, r))
    fade = int(255 * (1 - abs(r)))
    return f"#ff{fade:02x}{fade:02x}" if r >= 0 else f"#{fade:02x}{fade:02x}ff"


def correlation_svg(matrix: np.ndarray, names: Sequence[str]) -> str:
    """An SVG heatmap of a correlation matrix; each cell has a tooltip with the pair and r."""
    n = len(names)
    size = LABEL_WIDTH + n * CELL + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'font-size="10" font-family="monospace" role="img" '
        f'aria-label="correlation heatmap">'
    ]
    for i, name in enumerate(names):
        label = html.escape(name)
        y = LABEL_WIDTH + i * CELL + CELL - 3
        parts.append(f'<text x="{LABEL_WIDTH - 4}" y="{y}" text-anchor="end">{label}</text>')
        x = LABEL_WIDTH + i * CELL + CELL - 3
        parts.append(
            f'<text x="{x}" y="{LABEL_WIDTH - 4}" transform="rotate(-90 {x} '
            f'{LABEL_WIDTH - 4})">{label}</text>'
        )
    for i in range(n):
        for j in range(n):
            r = float(matrix[i, j])
            tip = html.escape(f"{names[i]} ~ {names[j]}: r = {r:.3f}")
            parts.append(
                f'<rect x="{LABEL_WIDTH + j * CELL}" y="{LABEL_WIDTH + i * CELL}" '
                f'width="{CELL}" height="{CELL}" fill="{_color(r)}">'
                f"<title>{tip}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_selection_html(
    scores: Sequence[FeatureScore],
    correlation: np.ndarray,
    names: Sequence[str],
    *,
    title: str = "raypipe feature selection",
    summary: dict[str, object] | None = None,
    heatmap_limit: int = 40,
) -> str:
    """The report page: summary, importance table (selected first), heatmap of the
    ``heatmap_limit`` best-ranked features."""
    rank = {s.name: s.consensus_rank for s in scores if s.consensus_rank is not None}
    shown = sorted(range(len(names)), key=lambda i: rank.get(names[i], 10**9))[:heatmap_limit]
    shown.sort(key=lambda i: rank.get(names[i], 10**9))
    heat_names = [names[i] for i in shown]
    heat = correlation[np.ix_(shown, shown)] if shown else np.empty((0, 0))
    ordered = sorted(
        scores, key=lambda s: (s.consensus_rank is None, s.consensus_rank or 0, s.name)
    )
    rows = []
    for s in ordered:
        css = (
            "sel"
            if s.selected
            else "leak"
            if s.status == "leakage"
            else "drop"
            if s.status == "dropped"
            else ""
        )
        rows.append(
            f'<tr class="{css}"><td class="n">{html.escape(s.name)}</td>'
            f"<td>{'yes' if s.selected else ''}</td><td>{html.escape(s.status)}</td>"
            f"<td>{_fmt(s.consensus_rank)}</td><td>{_fmt(s.mutual_information)}</td>"
            f"<td>{_fmt(s.mi_rank)}</td><td>{_fmt(s.rfe_rank)}</td>"
            f"<td>{_fmt(s.l1_coefficient)}</td><td>{_fmt(s.l1_rank)}</td>"
            f"<td>{_fmt(s.single_feature_score, 3)}</td>"
            f'<td class="n">{html.escape(s.reason)}</td></tr>'
        )
    leaks = [s.name for s in scores if s.status == "leakage"]
    facts = dict(summary or {})
    facts.update(
        {
            "candidates": len(scores),
            "selected": sum(s.selected for s in scores),
            "flagged as leakage": len(leaks),
        }
    )
    summary_html = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in facts.items()
    )
    warning = (
        f'<p class="note"><b>Likely leakage:</b> {html.escape(", ".join(leaks))} '
        "alone predict the label almost perfectly; check they are known before the "
        "cutoff.</p>"
        if leaks
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<ul>{summary_html}</ul>{warning}
<h2>Selection scores</h2>
{score_charts(scores)}
<h2>Importance</h2>
<p class="note">Ranks: mutual information, recursive feature elimination, L1 coefficient; the
consensus is their mean rank. Single = AUC (or |Spearman r|) of the feature alone.</p>
<table><thead><tr><th>feature</th><th>selected</th><th>status</th><th>consensus</th>
<th>MI</th><th>MI rank</th><th>RFE rank</th><th>|L1 coef|</th><th>L1 rank</th><th>single</th>
<th>reason</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
<h2>Correlation of the {len(heat_names)} best-ranked features</h2>
{correlation_svg(heat, heat_names)}
</body></html>
"""
