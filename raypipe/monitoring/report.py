"""The monitoring report: one self-contained HTML page (inline SVG, no network) and its JSON.

Sections appear when their data is there: summary and likely causes, drift table and reference
vs current histograms, performance over time (actual and CBPE-estimated, with the alert band),
calibration, fairness by group, SHAP summary, data-quality results. A small script checks each
plot has drawn (non-empty bounding box) and records the count in ``<body data-plots-rendered>``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from raypipe.monitoring import svg
from raypipe.monitoring.verdict import Verdict, judge
from raypipe.redaction import redact_record

__all__ = ["MonitoringReport", "render_html", "report_json", "write_report"]

MAX_HISTOGRAMS = 12
LEVEL_CSS = {"OK": "ok", "WARN": "warn", "ALERT": "bad"}


@dataclass(frozen=True)
class MonitoringReport:
    """Everything the page shows; every part optional."""

    title: str = "raypipe monitoring report"
    drift: Any | None = None
    prediction_drift: Any | None = None
    performance: Sequence[Any] = ()
    estimated: Sequence[tuple[str, Mapping[str, float]]] = ()
    estimated_band: tuple[float, float] | None = None
    baseline: Mapping[str, float] | None = None
    current_metrics: Mapping[str, float] | None = None
    estimated_current: Mapping[str, float] | None = None
    degradations: Sequence[Any] = ()
    calibration: Sequence[tuple[float, float, int]] = ()
    fairness: Sequence[Any] = ()
    importance: Sequence[tuple[str, float]] = ()
    row_explanations: Sequence[Mapping[str, Any]] = ()
    causes: Sequence[Any] = ()
    summary: str | None = None
    quality: Sequence[Any] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: The compared datasets by role (``reference``, ``current``): "url (version v)".
    datasets: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The page and its JSON are read by people: a presigned URL's signature or a password in
        # a dataset's URL never reaches them (issue 13.8).
        object.__setattr__(self, "datasets", redact_record(dict(self.datasets)))
        object.__setattr__(self, "metadata", redact_record(dict(self.metadata)))

    @property
    def verdict(self) -> Verdict:
        """OK / WARN / ALERT from drift, new categories, quality rules and performance."""
        return judge(
            drift=self.drift,
            prediction_drift=self.prediction_drift,
            degradations=self.degradations,
            quality=self.quality,
        )

    @property
    def alert(self) -> bool:
        return self.verdict.level == "ALERT"


def report_json(report: MonitoringReport) -> dict[str, Any]:
    """The report's data as JSON-ready values."""
    cleaned: dict[str, Any] = _clean(
        {
            "title": report.title,
            "level": report.verdict.level,
            "alert": report.alert,
            "verdict": report.verdict.to_dict(),
            "datasets": dict(report.datasets),
            "metadata": dict(report.metadata),
            "drift": report.drift.to_dict() if report.drift is not None else None,
            "prediction_drift": report.prediction_drift.to_dict()
            if report.prediction_drift is not None
            else None,
            "performance": [
                {"window": w.window, "rows": w.rows, **dict(w.metrics)} for w in report.performance
            ],
            "estimated_performance": [{"window": n, **dict(m)} for n, m in report.estimated],
            "estimated_band_roc_auc": report.estimated_band,
            "baseline": report.baseline,
            "current": report.current_metrics,
            "estimated_current": report.estimated_current,
            "degradation": [d.to_dict() for d in report.degradations],
            "calibration": [
                {"predicted": p, "observed": o, "rows": n} for p, o, n in report.calibration
            ],
            "fairness": [f.to_dict() for f in report.fairness],
            "shap_importance": [{"feature": n, "mean_abs_shap": v} for n, v in report.importance],
            "row_explanations": list(report.row_explanations),
            "causes": [c.to_dict() for c in report.causes],
            "summary": report.summary,
            "quality": [_quality_dict(r) for r in report.quality],
        }
    )
    return cleaned


def _quality_dict(result: Any) -> dict[str, Any]:
    return {
        "rule": result.rule,
        "check": result.check,
        "policy": result.policy,
        "passed": result.passed,
        "failing": result.failing,
        "detail": result.detail,
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#f6f7f9}
header{background:#1f2a44;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header .meta{opacity:.8;font-size:12px;margin-top:4px}
main{padding:16px 28px;max-width:1240px}
section{background:#fff;border-radius:8px;padding:14px 18px;margin:14px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:17px;margin:2px 0 10px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #e3e5ea;border-radius:6px;
padding:8px 12px;min-width:150px}.card b{display:block;font-size:20px}
.bad{color:#c0392b}.ok{color:#1e8449}.warn{color:#b9770e}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:4px 8px;
border-bottom:1px solid #eceef2;text-align:left}th{background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}
svg.plot{background:#fff;border:1px solid #eceef2;border-radius:4px;max-width:100%;height:auto}
svg .t{font-size:13px;font-weight:600}svg .a{font-size:10px;fill:#555}svg .l{font-size:11px}
svg .g{stroke:#eee}
ol li{margin-bottom:6px}
"""

SCRIPT = """
(function(){
  var plots = document.querySelectorAll('svg.plot'), drawn = 0;
  plots.forEach(function(p){
    var box = p.getBBox();
    var marks = p.querySelectorAll('rect.bar, polyline.line, circle').length;
    if (box.width > 0 && box.height > 0 && marks > 0) { drawn++; p.setAttribute('data-drawn','1'); }
  });
  document.body.setAttribute('data-plots', String(plots.length));
  document.body.setAttribute('data-plots-rendered', String(drawn));
})();
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}g}"
    return escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            css = ' class="num"' if numeric else ""
            cells.append(f"<td{css}>{value if isinstance(value, _Html) else _fmt(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class _Html(str):
    """Text already escaped."""


def _summary(report: MonitoringReport) -> str:
    cards = []
    if report.drift is not None:
        d = report.drift
        css = "bad" if d.dataset_drifted else "ok"
        cards.append(
            f'<div class="card">dataset drift<b class="{css}">'
            f"{'drifted' if d.dataset_drifted else 'no drift'}</b>"
            f"{d.number_drifted}/{len(d.columns)} columns ({d.share_drifted:.0%})</div>"
        )
    if report.prediction_drift is not None:
        p = report.prediction_drift
        css = "bad" if p.drifted else "ok"
        cards.append(
            f'<div class="card">prediction drift<b class="{css}">'
            f"{'drifted' if p.drifted else 'no drift'}</b>{escape(p.method)} "
            f"{_fmt(p.score, 3)} (threshold {p.threshold:g})</div>"
        )
    for name, metrics in (
        ("baseline ROC AUC", report.baseline),
        ("current ROC AUC", report.current_metrics),
        ("estimated ROC AUC (CBPE)", report.estimated_current),
    ):
        if metrics and "roc_auc" in metrics:
            cards.append(f'<div class="card">{name}<b>{_fmt(metrics["roc_auc"], 3)}</b></div>')
    for d in report.degradations:
        css = "bad" if d.degraded else "ok"
        cards.append(
            f'<div class="card">{escape(d.metric)} vs baseline<b class="{css}">'
            f"{d.relative_change:+.1%}</b>{'degraded' if d.degraded else 'within tolerance'}</div>"
        )
    verdict = report.verdict
    status = f'<b class="{LEVEL_CSS[verdict.level]}" id="verdict">{verdict.level}</b>'
    out = [f"<section><h2>Summary: {status}</h2><div class='cards'>{''.join(cards)}</div>"]
    if verdict.findings:
        items = "".join(
            f'<li><b class="{LEVEL_CSS[f.severity]}">{f.severity}</b> '
            f"{escape(f.kind.replace('_', ' '))}: <b>{escape(f.subject)}</b> - "
            f"{escape(f.evidence)}</li>"
            for f in verdict.findings[:20]
        )
        more = len(verdict.findings) - 20
        tail = f"<p>... and {more} more in report.json</p>" if more > 0 else ""
        out.append(f"<h2>Why {verdict.level}</h2><ul class='findings'>{items}</ul>{tail}")
    else:
        out.append("<p>No drift, new category, failing rule or degradation was found.</p>")
    if report.causes:
        items = "".join(
            f"<li><b>{escape(c.kind.replace('_', ' '))}: {escape(c.subject)}</b> "
            f"(weight {c.weight:.3g}) - {escape(c.evidence)}<br><i>What to do:</i> "
            f"{escape(c.action)}</li>"
            for c in report.causes[:10]
        )
        out.append(f"<h2>Likely causes, most likely first</h2><ol>{items}</ol>")
    if report.summary:
        out.append(f"<h2>Assistant summary</h2><p>{escape(report.summary)}</p>")
    out.append("</section>")
    return "".join(out)


def _drift_section(report: MonitoringReport) -> str:
    drift = report.drift
    if drift is None:
        return ""
    rows = []
    for c in sorted(drift.columns, key=lambda c: (not c.drifted, c.column)):
        verdict = _Html('<b class="bad">drift</b>' if c.drifted else '<span class="ok">ok</span>')
        rows.append(
            [
                c.column,
                c.type,
                c.method,
                c.score,
                c.threshold,
                verdict,
                c.scores.get("psi"),
                c.scores.get("jensenshannon"),
                c.scores.get("js_divergence_log2"),
                c.scores.get("hellinger"),
                c.note,
            ]
        )
    table = _table(
        [
            "column",
            "type",
            "method",
            "score",
            "threshold",
            "drifted",
            "PSI",
            "JS distance (ln)",
            "JS divergence (log2)",
            "Hellinger",
            "note",
        ],
        rows,
    )
    charts = []
    with_bins = sorted((c for c in drift.columns if c.bins), key=_drift_strength)
    shown = with_bins[:MAX_HISTOGRAMS]
    for column in shown:
        charts.append(
            svg.bar_chart(
                f"{column.column}: share of rows ({'drift' if column.drifted else 'no drift'})",
                column.bins,
                {"reference": column.reference_shares, "current": column.current_shares},
                kind="histogram",
                x_label=f"{column.column} ({'bin' if column.type == 'num' else 'value'})",
                y_label="share of rows",
            )
        )
    note = _histogram_note(drift, shown, with_bins)
    if report.prediction_drift is not None and report.prediction_drift.bins:
        p = report.prediction_drift
        charts.insert(
            0,
            svg.bar_chart(
                f"prediction ({p.method} {p.score:.3g}, {'drift' if p.drifted else 'no drift'})",
                p.bins,
                {"reference": p.reference_shares, "current": p.current_shares},
                kind="histogram",
                x_label=f"{p.column} (bin)",
                y_label="share of rows",
            ),
        )
    compared = ""
    if report.datasets:
        compared = (
            "<p class='datasets'>"
            + "; ".join(
                f"{escape(role)}: <code>{escape(name)}</code>"
                for role, name in report.datasets.items()
            )
            + "</p>"
        )
    skipped = ""
    if getattr(drift, "skipped", ()):
        listed = ", ".join(f"<code>{escape(n)}</code> ({escape(r)})" for n, r in drift.skipped)
        skipped = (
            f"<p>Not tested (not features): {listed}. Name them in the columns to test to "
            "include them.</p>"
        )
    return (
        f"<section><h2>Data drift (dataset drifts at {drift.drift_share:.0%} of columns)</h2>"
        f"{compared}{skipped}{table}<h2>Reference vs current</h2>{note}"
        f"<div class='grid'>{''.join(charts)}</div></section>"
    )


def _drift_strength(column: Any) -> tuple[bool, float, str]:
    """Sort key, most drifted first: drifted columns, then by PSI (then by name)."""
    psi = column.scores.get("psi", math.nan)
    return (not column.drifted, -psi if math.isfinite(psi) else 0.0, column.column)


def _histogram_note(drift: Any, shown: Sequence[Any], with_bins: Sequence[Any]) -> str:
    """Which histograms are shown, and why the others are not."""
    total = len(drift.columns)
    without = total - len(with_bins)
    parts = [
        f"{len(shown)} of {total} column histograms shown, most drifted first (drifted columns, "
        "then by PSI)"
    ]
    if len(with_bins) > len(shown):
        hidden = [c.column for c in with_bins[len(shown) :]]
        listed = ", ".join(hidden[:10]) + (" ..." if len(hidden) > 10 else "")
        parts.append(f"not drawn, less drifted: {escape(listed)}")
    if without:
        parts.append(
            f"{without} column(s) have too many distinct values for a histogram (see the table)"
        )
    return f"<p class='histogram-note'>{'; '.join(parts)}.</p>"


def _performance_section(report: MonitoringReport) -> str:
    parts = []
    windows = [w.window for w in report.performance]
    estimated = dict(report.estimated)
    labels = list(dict.fromkeys([*windows, *estimated]))
    if labels:
        actual = {w.window: w.metrics.get("roc_auc") for w in report.performance}
        series = {"actual ROC AUC": [actual.get(x) for x in labels]}
        if estimated:
            series["estimated ROC AUC (CBPE)"] = [
                estimated.get(x, {}).get("roc_auc") for x in labels
            ]
        parts.append(
            svg.line_chart(
                "ROC AUC over time",
                labels,
                series,
                kind="performance",
                band=report.estimated_band,
                x_label="time window",
                y_label="ROC AUC",
            )
        )
        acc = {
            "actual accuracy": [
                next((w.metrics.get("accuracy") for w in report.performance if w.window == x), None)
                for x in labels
            ]
        }
        if estimated:
            acc["estimated accuracy (CBPE)"] = [
                estimated.get(x, {}).get("accuracy") for x in labels
            ]
        parts.append(
            svg.line_chart(
                "accuracy over time",
                labels,
                acc,
                kind="performance",
                x_label="time window",
                y_label="accuracy",
            )
        )
    if report.calibration:
        parts.append(
            svg.scatter_line_chart(
                "calibration (current, labelled)", [(p, o) for p, o, _ in report.calibration]
            )
        )
    if not parts:
        return ""
    rows = [
        [
            w.window,
            w.rows,
            w.metrics.get("roc_auc"),
            w.metrics.get("accuracy"),
            w.metrics.get("f1"),
            w.metrics.get("brier"),
        ]
        for w in report.performance
    ]
    table = _table(["window", "rows", "ROC AUC", "accuracy", "F1", "Brier"], rows) if rows else ""
    return (
        f"<section><h2>Model performance</h2><div class='grid'>{''.join(parts)}</div>"
        f"{table}</section>"
    )


def _fairness_section(report: MonitoringReport) -> str:
    if not report.fairness:
        return ""
    out = ["<section><h2>Fairness by group</h2><div class='grid'>"]
    rows = []
    for f in report.fairness:
        labels = [g.group for g in f.groups]
        out.append(
            svg.bar_chart(
                f"{f.feature}: rates by group",
                labels,
                {
                    "selection rate": [g.selection_rate for g in f.groups],
                    "TPR": [g.tpr for g in f.groups],
                    "FPR": [g.fpr for g in f.groups],
                },
                kind="fairness",
                x_label=f"{f.feature} (group)",
                y_label="rate",
            )
        )
        rows.append(
            [
                f.feature,
                f.demographic_parity_difference,
                f.demographic_parity_ratio,
                f.equalized_odds_difference,
                f.equalized_odds_ratio,
            ]
        )
    out.append("</div>")
    out.append(
        _table(
            [
                "feature",
                "DP difference",
                "DP ratio (4/5 rule: >= 0.8)",
                "EO difference",
                "EO ratio",
            ],
            rows,
        )
    )
    out.append("</section>")
    return "".join(out)


def _shap_section(report: MonitoringReport) -> str:
    if not report.importance:
        return ""
    top = list(report.importance)[:20]
    chart = svg.hbar_chart(
        f"top {len(top)} features by mean |SHAP|",
        [n for n, _ in top],
        [v for _, v in top],
        kind="shap",
        x_label="mean |SHAP value| (margin units)",
        y_label="feature",
    )
    rows = [
        [r.get("id", ""), ", ".join(f"{n} {v:+.3f}" for n, v in r.get("top", []))]
        for r in report.row_explanations[:10]
    ]
    table = _table(["row", "top features (SHAP)"], rows) if rows else ""
    return f"<section><h2>Explanations</h2>{chart}{table}</section>"


def _quality_section(report: MonitoringReport) -> str:
    if not report.quality:
        return ""
    rows = [
        [
            r.rule,
            r.check,
            r.policy,
            _Html('<span class="ok">pass</span>' if r.passed else '<b class="bad">fail</b>'),
            r.failing,
            r.detail,
        ]
        for r in report.quality
    ]
    return (
        "<section><h2>Data quality</h2>"
        + _table(["rule", "check", "policy", "result", "failing", "detail"], rows)
        + "</section>"
    )


def render_html(report: MonitoringReport) -> str:
    """The whole page as one string: no external scripts, styles, fonts or images."""
    generated = report.metadata.get("generated_at") or dt.datetime.now(dt.timezone.utc).isoformat(
        timespec="seconds"
    )
    meta = " | ".join(
        f"{escape(str(k))}: {escape(str(v))}"
        for k, v in report.metadata.items()
        if k != "generated_at"
    )
    body = "".join(
        [
            _summary(report),
            _drift_section(report),
            _performance_section(report),
            _fairness_section(report),
            _shap_section(report),
            _quality_section(report),
        ]
    )
    data = json.dumps(report_json(report)).replace("</", "<\\/")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(report.title)}</h1>{_datasets_line(report)}"
        f"<div class='meta'>generated {generated}"
        f"{' | ' + meta if meta else ''}</div></header><main>{body}</main>"
        f"<script type='application/json' id='report-data'>{data}</script>"
        f"<script>{SCRIPT}</script></body></html>"
    )


def _datasets_line(report: MonitoringReport) -> str:
    if not report.datasets:
        return ""
    return (
        "<div class='meta datasets'>"
        + " vs ".join(
            f"{escape(role)} <b>{escape(name)}</b>" for role, name in report.datasets.items()
        )
        + "</div>"
    )


def write_report(url: str, report: MonitoringReport, *, storage_options: Any = None) -> Any:
    """Commit ``report.html`` and ``report.json`` as an artifact at ``url``."""
    from raypipe.io.artifacts import write_artifact

    files = {
        "report.html": render_html(report).encode(),
        "report.json": json.dumps(report_json(report), indent=1).encode(),
    }
    return write_artifact(
        url,
        files,
        metadata={"alert": report.alert, "level": report.verdict.level},
        storage_options=storage_options,
    )
