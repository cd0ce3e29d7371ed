"""The report's verdict: OK, WARN or ALERT, from everything the report found, with its causes.

A report must not say OK while it shows a problem. Each finding has a severity:

=====================  ==========================================================  ==========
finding                condition                                                   severity
=====================  ==========================================================  ==========
dataset drift          share of drifted columns >= ``drift_share``                 ALERT
column drift           the column's test says drift, PSI < :data:`MAJOR_PSI`       WARN
column drift, major    PSI >= :data:`MAJOR_PSI` (industry "major shift")           ALERT
new categories         current rows with values the reference never had            WARN, ALERT
                       (ALERT from :data:`NEW_CATEGORY_ALERT_SHARE` of rows)
failing quality rule   policy ``fail`` or ``quarantine``                            ALERT
                       policy ``warn``                                              WARN
prediction drift       the score column's test says drift                          ALERT
performance            a metric degraded beyond the tolerance                      ALERT
=====================  ==========================================================  ==========

The verdict is the highest severity found (OK when nothing is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAJOR_PSI",
    "NEW_CATEGORY_ALERT_SHARE",
    "Finding",
    "Verdict",
    "judge",
    "new_category_share",
]

#: PSI from which a shift is "major" (the common 0.1 / 0.25 bands; Evidently flags at 0.1).
MAJOR_PSI = 0.25
#: Share of current rows with a category unseen in the reference that raises an ALERT.
NEW_CATEGORY_ALERT_SHARE = 0.05
LEVELS = ("OK", "WARN", "ALERT")


@dataclass(frozen=True)
class Finding:
    """One problem: how severe, what kind, about what, and the numbers behind it."""

    severity: str  # WARN or ALERT
    kind: str
    subject: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "subject": self.subject,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Verdict:
    """The report's level and the findings behind it, most severe first."""

    level: str
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "findings": [f.to_dict() for f in self.findings]}


def new_category_share(column: Any) -> tuple[float, tuple[str, ...]]:
    """Share of current rows whose category the reference never had, and those categories.

    From the column's kept histogram (one bin per value for a categorical column); 0 when the
    column is numerical or its histogram was not kept.
    """
    if column.type != "cat" or not column.bins:
        return 0.0, ()
    new = [
        (label, cur)
        for label, ref, cur in zip(
            column.bins, column.reference_shares, column.current_shares, strict=True
        )
        if ref == 0 and cur > 0
    ]
    return float(sum(cur for _, cur in new)), tuple(label for label, _ in new)


def judge(
    *,
    drift: Any | None = None,
    prediction_drift: Any | None = None,
    degradations: Sequence[Any] = (),
    quality: Sequence[Any] = (),
) -> Verdict:
    """The verdict of a report's parts (each optional)."""
    findings: list[Finding] = []
    if drift is not None:
        if drift.dataset_drifted:
            findings.append(
                Finding(
                    "ALERT",
                    "dataset_drift",
                    "dataset",
                    f"{drift.number_drifted} of {len(drift.columns)} columns drifted "
                    f"({drift.share_drifted:.0%} >= {drift.drift_share:.0%})",
                )
            )
        for column in drift.columns:
            findings += _column_findings(column)
    if prediction_drift is not None and prediction_drift.drifted:
        findings.append(
            Finding(
                "ALERT",
                "prediction_drift",
                prediction_drift.column,
                f"{prediction_drift.method} {prediction_drift.score:.3g} "
                f"(threshold {prediction_drift.threshold:g})",
            )
        )
    for change in degradations:
        if change.degraded:
            findings.append(
                Finding(
                    "ALERT",
                    "performance",
                    change.metric,
                    f"{change.relative_change:+.1%} against the baseline",
                )
            )
    for rule in quality:
        if not rule.passed:
            severity = "WARN" if rule.policy == "warn" else "ALERT"
            detail = f": {rule.detail}" if rule.detail else ""
            findings.append(
                Finding(
                    severity,
                    "quality_rule",
                    rule.rule,
                    f"{rule.check} failed on {rule.failing} row(s) (policy {rule.policy}){detail}",
                )
            )
    findings.sort(key=lambda f: -LEVELS.index(f.severity))  # stable: input order within a level
    level = max((f.severity for f in findings), key=LEVELS.index, default="OK")
    return Verdict(level, tuple(findings))


def _column_findings(column: Any) -> list[Finding]:
    out = []
    psi = column.scores.get("psi", math.nan)
    if column.drifted:
        major = math.isfinite(psi) and psi >= MAJOR_PSI
        out.append(
            Finding(
                "ALERT" if major else "WARN",
                "column_drift",
                column.column,
                f"{column.method} {column.score:.3g} (threshold {column.threshold:g})"
                + (f", PSI {psi:.3g}" if math.isfinite(psi) else ""),
            )
        )
    share, values = new_category_share(column)
    if share > 0:
        shown = ", ".join(f"`{v}`" for v in values[:5]) + (" ..." if len(values) > 5 else "")
        out.append(
            Finding(
                "ALERT" if share >= NEW_CATEGORY_ALERT_SHARE else "WARN",
                "new_category",
                column.column,
                f"{share:.1%} of current rows have value(s) the reference never had: {shown}",
            )
        )
    return out
