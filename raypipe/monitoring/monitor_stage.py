"""The ``monitor.report`` stage: drift, model performance, fairness, explanations -> report.

Inputs: ``reference`` (labelled, scored rows, e.g. ``train.holdout``) and ``current`` (scored
rows, e.g. ``inference.score``'s ``scores``; ``shap_*`` columns feed the SHAP summary).
Optional: ``current_labels`` (keys + label, once labels arrive), ``reference_features`` and
``current_features`` (feature drift; also supply the group columns), ``reference_groups`` and
``current_groups`` (tables with the keys and the fairness group columns, e.g. ``players``),
``quality`` (the ``results`` of a ``data.check`` stage, for the causes of an alert).
Outputs: ``report`` (artifact: ``report.html``, ``report.json``) and ``drift`` (one row per
column).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
from pydantic import Field

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = [
    "MonitorReportOptions",
    "MonitorReportStage",
    "build_report",
    "drift_table",
    "report_path",
]

logger = logging.getLogger(__name__)


class MonitorReportOptions(StageOptions):
    """Options of ``monitor.report``."""

    label: str = "churned"
    score: str = "score"
    keys: list[str] = Field(default_factory=lambda: ["player_id"])
    groups: list[str] = Field(default_factory=lambda: ["country", "platform"])
    time_column: str | None = None
    every: str = "1w"
    chunks: int = Field(default=10, ge=1, le=1000)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    tolerance: float = Field(default=0.05, ge=0)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    drift_columns: list[str] | None = None
    exclude_columns: list[str] = Field(default_factory=list)
    llm_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    title: str = "raypipe monitoring report"


def drift_table(report: Any) -> pa.Table:
    """One row per column of a :class:`~raypipe.monitoring.drift.DriftReport`."""
    rows = []
    for c in report.columns:
        data = c.to_dict()
        rows.append(
            {
                "column": c.column,
                "type": c.type,
                "method": c.method,
                "score": data["score"],
                "threshold": c.threshold,
                "drifted": c.drifted,
                "reference_rows": c.reference_rows,
                "current_rows": c.current_rows,
                "n_unique": c.n_unique,
                "scores": json.dumps(data["scores"]),
            }
        )
    schema = pa.schema(
        [
            ("column", pa.string()),
            ("type", pa.string()),
            ("method", pa.string()),
            ("score", pa.float64()),
            ("threshold", pa.float64()),
            ("drifted", pa.bool_()),
            ("reference_rows", pa.int64()),
            ("current_rows", pa.int64()),
            ("n_unique", pa.int64()),
            ("scores", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def report_path(url: str, manifest: Any) -> str:
    """Where the committed ``report.html`` of the artifact at ``url`` lies."""
    from raypipe.io.fs import join_url

    for entry in manifest.files:
        if entry.path.endswith("report.html"):
            return join_url(url, entry.path)
    return join_url(url, "report.html")


def _frame(
    source: DatasetInput, storage: Any, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    from raypipe.io.dataset import read_dataset

    table = read_dataset(source.url, columns=columns, storage_options=storage)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _attach(frame: pl.DataFrame, extra: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Left-join the columns of ``extra`` that ``frame`` lacks, on ``keys``."""
    on = [k for k in keys if k in frame.columns and k in extra.columns]
    wanted = [c for c in extra.columns if c not in frame.columns]
    if not on or not wanted:
        return frame
    extra = extra.select([*on, *wanted]).unique(subset=on, keep="first")
    return frame.join(extra, on=on, how="left")


def build_report(
    inputs: Mapping[str, DatasetInput],
    options: MonitorReportOptions,
    executor: Any,
    *,
    run_id: str = "",
    storage: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """The monitoring report (and feature drift, or ``None``) of the stage's inputs."""
    from raypipe.monitoring.drift import drift_columns
    from raypipe.monitoring.drift_run import run_drift
    from raypipe.monitoring.model_monitor import MonitorSpec, run_model_monitoring
    from raypipe.validation.checking import RuleResult

    keys = list(options.keys)
    reference = _frame(inputs["reference"], storage)
    current = _frame(inputs["current"], storage)
    if "current_labels" in inputs:
        labels = _frame(inputs["current_labels"], storage)
        current = _attach(
            current,
            labels.select([c for c in labels.columns if c in (*keys, options.label)]),
            keys,
        )
    wanted_groups = [g for g in options.groups if g not in current.columns]
    drift = None
    datasets = {
        role: f"{inputs[role].url} (version {inputs[role].version[:12]})"
        for role in ("reference", "current")
    }
    if "reference_features" in inputs and "current_features" in inputs:
        ref_in, cur_in = inputs["reference_features"], inputs["current_features"]
        skip = {*keys, options.label, options.score, *options.exclude_columns}
        names = options.drift_columns or [
            c
            for c in drift_columns(ref_in.manifest.schema)
            if c in cur_in.manifest.schema.names and c not in skip and not c.startswith("shap_")
        ]
        roles = {
            **dict.fromkeys(keys, "id"),
            options.label: "label",
            options.score: "prediction",
            **dict.fromkeys(options.exclude_columns, "excluded"),
        }
        drift = run_drift(
            ref_in.url,
            ref_in.manifest,
            cur_in.url,
            cur_in.manifest,
            executor,
            columns=names,
            drift_share=options.drift_share,
            storage_options=storage,
            roles=roles,
        )
        datasets = {
            "reference": f"{ref_in.url} (version {ref_in.version[:12]})",
            "current": f"{cur_in.url} (version {cur_in.version[:12]})",
        }
        if wanted_groups:
            cur_cols = [c for c in (*keys, *wanted_groups) if c in cur_in.manifest.schema.names]
            ref_cols = [c for c in (*keys, *options.groups) if c in ref_in.manifest.schema.names]
            current = _attach(current, _frame(cur_in, storage, cur_cols), keys)
            reference = _attach(reference, _frame(ref_in, storage, ref_cols), keys)
    for name in ("reference_groups", "current_groups"):
        if name in inputs:
            schema = inputs[name].manifest.schema.names
            frame = _frame(
                inputs[name], storage, [c for c in (*keys, *options.groups) if c in schema]
            )
            if name == "reference_groups":
                reference = _attach(reference, frame, keys)
            else:
                current = _attach(current, frame, keys)
    quality: list[RuleResult] = []
    if "quality" in inputs:
        for row in _frame(inputs["quality"], storage).to_dicts():
            quality.append(
                RuleResult(
                    rule=row["rule"],
                    check=row["check"],
                    policy=row["policy"],
                    passed=row["passed"],
                    failing=row["failing"],
                    detail=row["detail"] or "",
                    rows=int(row.get("rows") or 0),
                    column=row.get("column") or "",
                )
            )
    spec = MonitorSpec(
        label=options.label,
        score=options.score,
        keys=tuple(keys),
        groups=tuple(options.groups),
        time_column=options.time_column,
        every=options.every,
        chunks=options.chunks,
        threshold=options.threshold,
        tolerance=options.tolerance,
        llm_url=options.llm_url,
        llm_model=options.llm_model,
        title=options.title,
        metadata={
            "run": run_id,
            **{f"{name} version": source.version[:12] for name, source in inputs.items()},
        },
    )
    report = run_model_monitoring(
        reference, current, spec, drift=drift, quality=quality, datasets=datasets
    )
    return report, drift


class MonitorReportStage(Stage[MonitorReportOptions]):
    """Monitor a scored period against the reference and commit the report."""

    kind = "monitor.report"
    options = MonitorReportOptions
    inputs: ClassVar[tuple[str, ...]] = ("reference", "current")
    optional_inputs: ClassVar[tuple[str, ...]] = (
        "current_labels",
        "reference_features",
        "current_features",
        "reference_groups",
        "current_groups",
        "quality",
    )
    outputs: ClassVar[tuple[str, ...]] = ("report", "drift")

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: MonitorReportOptions,
    ) -> StageResult:
        from raypipe.io.dataset import write_dataset
        from raypipe.monitoring.drift import summarize
        from raypipe.monitoring.report import write_report

        storage = dict(context.storage_options) or None
        report, drift = build_report(
            inputs, options, context.executor, run_id=context.run_id, storage=storage
        )
        report_manifest = write_report(
            context.output_url("report"), report, storage_options=storage
        )
        drift_report = drift if drift is not None else summarize([], options.drift_share, 0, 0)
        drift_manifest = write_dataset(
            context.output_url("drift"), drift_table(drift_report), storage_options=storage
        )
        metrics: dict[str, Any] = {
            "level": report.verdict.level,
            "alert": report.alert,
            "report": report_path(context.output_url("report"), report_manifest),
            "prediction_drift": report.prediction_drift.drifted,
        }
        if drift is not None:
            metrics |= {
                "dataset_drifted": drift.dataset_drifted,
                "share_drifted": round(drift.share_drifted, 4),
            }
        if report.estimated_current:
            metrics["estimated_roc_auc"] = round(report.estimated_current["roc_auc"], 4)
        if report.current_metrics:
            metrics["roc_auc"] = round(report.current_metrics["roc_auc"], 4)
        if report.baseline:
            metrics["baseline_roc_auc"] = round(report.baseline["roc_auc"], 4)
        if report.causes:
            metrics["top_cause"] = f"{report.causes[0].kind}: {report.causes[0].subject}"
        return StageResult(
            outputs={"report": report_manifest, "drift": drift_manifest},
            metrics=metrics,
            rows_in=sum(source.rows for source in inputs.values()),
            rows_out=drift_manifest.rows,
        )
