"""Monitoring: drift, model performance (real and estimated), fairness, explanations, reports."""

from __future__ import annotations

from raypipe.monitoring.anomaly import Cause, SegmentDrop, ask_model, explain_alert
from raypipe.monitoring.cbpe import CBPE
from raypipe.monitoring.drift import (
    ColumnDrift,
    DriftReport,
    choose_method,
    column_drift,
    detect_drift,
)
from raypipe.monitoring.drift_run import run_drift
from raypipe.monitoring.fairness import FairnessReport, fairness_by_group
from raypipe.monitoring.model_monitor import MonitorSpec, run_model_monitoring
from raypipe.monitoring.performance import (
    calibration_points,
    classification_metrics,
    degradation,
    performance_by_window,
)
from raypipe.monitoring.report import MonitoringReport, render_html, report_json, write_report
from raypipe.monitoring.verdict import Finding, Verdict, judge

__all__ = [
    "CBPE",
    "Cause",
    "ColumnDrift",
    "DriftReport",
    "FairnessReport",
    "Finding",
    "MonitorSpec",
    "MonitoringReport",
    "SegmentDrop",
    "Verdict",
    "ask_model",
    "calibration_points",
    "choose_method",
    "classification_metrics",
    "column_drift",
    "degradation",
    "detect_drift",
    "explain_alert",
    "fairness_by_group",
    "judge",
    "performance_by_window",
    "render_html",
    "report_json",
    "run_drift",
    "run_model_monitoring",
    "write_report",
]
