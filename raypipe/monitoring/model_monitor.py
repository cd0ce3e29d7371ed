"""Model monitoring over two periods: performance (actual and CBPE-estimated), degradation,
prediction drift, fairness by group, SHAP summary, and the ranked causes of an alert.

A functional core over polars frames: ``reference`` holds labels and scores (e.g. the training
holdout), ``current`` holds scores and, once they arrive, labels.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from raypipe.monitoring.anomaly import SegmentDrop, ask_model, explain_alert
from raypipe.monitoring.cbpe import CBPE
from raypipe.monitoring.drift import column_drift, sample_of
from raypipe.monitoring.fairness import fairness_by_group
from raypipe.monitoring.performance import (
    DEFAULT_TOLERANCE,
    calibration_points,
    classification_metrics,
    degradation,
    performance_by_window,
)
from raypipe.monitoring.report import MonitoringReport
from raypipe.monitoring.verdict import judge

__all__ = ["MonitorSpec", "SHAP_PREFIX", "run_model_monitoring"]

logger = logging.getLogger(__name__)

SHAP_PREFIX = "shap_"


@dataclass(frozen=True)
class MonitorSpec:
    """What to monitor and how (defaults fit the churn job)."""

    label: str = "churned"
    score: str = "score"
    keys: tuple[str, ...] = ("player_id",)
    groups: tuple[str, ...] = ("country", "platform")
    time_column: str | None = None
    every: str = "1w"
    chunks: int = 10
    threshold: float = 0.5
    tolerance: float = DEFAULT_TOLERANCE
    llm_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    title: str = "raypipe monitoring report"
    metadata: dict[str, Any] = field(default_factory=dict)


def _labels(frame: pl.DataFrame, spec: MonitorSpec) -> pl.DataFrame:
    if spec.label not in frame.columns:
        return frame.clear()
    return frame.filter(pl.col(spec.label).is_not_null() & pl.col(spec.score).is_not_null())


def _arrays(frame: pl.DataFrame, spec: MonitorSpec) -> tuple[np.ndarray, np.ndarray]:
    y = frame.get_column(spec.label).cast(pl.Int64).to_numpy()
    p = frame.get_column(spec.score).cast(pl.Float64).to_numpy()
    return y, p


def run_model_monitoring(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    spec: MonitorSpec,
    *,
    drift: Any | None = None,
    quality: Sequence[Any] = (),
    datasets: Mapping[str, str] | None = None,
) -> MonitoringReport:
    """Compare ``current`` with ``reference`` and assemble the report's content."""
    ref = _labels(reference, spec)
    if ref.height == 0:
        from raypipe.errors import DataError

        raise DataError(
            f"the reference has no rows with both `{spec.label}` and `{spec.score}`",
            hint="use a labelled, scored reference such as the training holdout",
        )
    y_ref, p_ref = _arrays(ref, spec)
    baseline = classification_metrics(y_ref, p_ref, spec.threshold)
    cbpe = CBPE(threshold=spec.threshold, chunks=spec.chunks).fit(y_ref, p_ref)
    scores = current.get_column(spec.score).cast(pl.Float64).drop_nulls().to_numpy()
    estimated_current = cbpe.estimate(scores)
    estimated = [
        (f"chunk {i}", cbpe.estimate(chunk))
        for i, chunk in enumerate(np.array_split(scores, spec.chunks))
        if len(chunk)
    ]
    labelled = _labels(current, spec)
    performance, calibration, current_metrics = [], [], None
    if labelled.height:
        performance = performance_by_window(
            labelled,
            label=spec.label,
            score=spec.score,
            time_column=spec.time_column,
            every=spec.every,
            chunks=spec.chunks,
            threshold=spec.threshold,
        )
        y_cur, p_cur = _arrays(labelled, spec)
        current_metrics = classification_metrics(y_cur, p_cur, spec.threshold)
        calibration = calibration_points(y_cur, p_cur)
    judged = current_metrics or estimated_current
    degradations = degradation(
        judged,
        baseline,
        tolerance=spec.tolerance,
        metrics=("roc_auc", "accuracy", "f1")
        if current_metrics is None
        else ("roc_auc", "accuracy", "f1", "brier"),
    )
    prediction_drift = column_drift(
        spec.score,
        sample_of(ref.get_column(spec.score).to_arrow())[0],
        sample_of(current.get_column(spec.score).to_arrow())[0],
        numerical=True,
    )
    fairness, segments = [], []
    fair_frame = labelled if labelled.height else ref
    for group in spec.groups:
        if group not in fair_frame.columns:
            logger.info("fairness: no column `%s`; skipped", group)
            continue
        y, p = _arrays(fair_frame, spec)
        keys = fair_frame.get_column(group).cast(pl.String).fill_null("<null>").to_numpy()
        fairness.append(fairness_by_group(group, y, p >= spec.threshold, keys))
        if labelled.height:
            segments += _segment_drops(labelled, ref, group, spec)
    importance, rows = _shap(current, spec)
    causes = []
    verdict = judge(
        drift=drift, prediction_drift=prediction_drift, degradations=degradations, quality=quality
    )
    if verdict.level != "OK":
        causes = explain_alert(
            drift=drift,
            importance=dict(importance) or None,
            segments=segments,
            quality=quality,
            rows=current.height,
        )
    summary = (
        ask_model(spec.llm_url, causes, model=spec.llm_model) if spec.llm_url and causes else None
    )
    return MonitoringReport(
        title=spec.title,
        drift=drift,
        prediction_drift=prediction_drift,
        performance=performance,
        estimated=estimated,
        estimated_band=cbpe.band("roc_auc"),
        baseline=baseline,
        current_metrics=current_metrics,
        estimated_current=estimated_current,
        degradations=degradations,
        calibration=calibration,
        fairness=fairness,
        importance=importance,
        row_explanations=rows,
        causes=causes,
        summary=summary,
        quality=quality,
        metadata=dict(spec.metadata),
        datasets=dict(datasets or {}),
    )


def _segment_drops(
    current: pl.DataFrame, reference: pl.DataFrame, group: str, spec: MonitorSpec
) -> list[SegmentDrop]:
    out: list[SegmentDrop] = []
    if group not in reference.columns:
        return out
    for (value,), part in current.group_by(group):
        base_part = reference.filter(pl.col(group) == value)
        if part.height < 50 or base_part.height < 50:
            continue
        now = classification_metrics(*_arrays(part, spec), spec.threshold)["roc_auc"]
        base = classification_metrics(*_arrays(base_part, spec), spec.threshold)["roc_auc"]
        if np.isfinite(now) and np.isfinite(base) and (now - base) / base < -spec.tolerance:
            out.append(
                SegmentDrop(f"{group}={value}", "roc_auc", base, now, part.height / current.height)
            )
    return out


def _shap(
    current: pl.DataFrame, spec: MonitorSpec
) -> tuple[list[tuple[str, float]], list[dict[str, Any]]]:
    columns = [c for c in current.columns if c.startswith(SHAP_PREFIX) and c != "shap_bias"]
    if not columns:
        return [], []
    names = [c[len(SHAP_PREFIX) :] for c in columns]
    values = current.select(columns).cast(pl.Float64).fill_null(0.0).to_numpy()
    from raypipe.monitoring.explain import global_importance, top_features

    importance = global_importance(values, names)
    head = current.head(10)
    tops = top_features(values[:10], names)
    key = next((k for k in spec.keys if k in head.columns), None)
    rows = [
        {"id": str(head.get_column(key)[i]) if key else str(i), "top": top}
        for i, top in enumerate(tops)
    ]
    return importance, rows
