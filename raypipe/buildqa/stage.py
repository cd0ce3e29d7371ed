"""The ``buildqa.detect`` stage: ranked build regressions with causes, scored against the truth.

Input ``telemetry``: counts per (time, build, dimensions…): an exposure (sessions) and outcome
counts (crashes, stalls, …): the generator's, or a studio's own through ``ingest``. Optional
``builds`` (build, release day); otherwise a build's release is the first day it is seen.
Optional ``regressions`` (build, metric, dimension, value): the injected truth, for precision,
recall and time to detect. Each finding is explained with
:func:`raypipe.monitoring.anomaly.explain_alert` (a segment whose outcome-free rate fell, weighed
by its share of the build's sessions), and the findings are written ranked by that weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.buildqa.detect import Finding, Telemetry, detect, naive_findings, score_findings
from raypipe.evaluation.quality import quality
from raypipe.monitoring.anomaly import SegmentDrop, explain_alert
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["BuildQaOptions", "BuildQaStage", "explained"]

FINDINGS_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int32()),
        pa.field("build", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("dimension", pa.string()),
        pa.field("value", pa.string()),
        pa.field("baseline_rate", pa.float64()),
        pa.field("rate", pa.float64()),
        pa.field("ratio", pa.float64()),
        pa.field("z", pa.float64()),
        pa.field("sessions", pa.int64()),
        pa.field("first_day", pa.int64()),
        pa.field("days_to_detect", pa.int64()),
        pa.field("weight", pa.float64()),
        pa.field("evidence", pa.string()),
        pa.field("action", pa.string()),
    ]
)


class BuildQaOptions(StageOptions):
    """Options of ``buildqa.detect``."""

    build_column: str = "build"
    time_column: str = "day"
    dimensions: list[str] = Field(default_factory=lambda: ["device_family", "level"], min_length=1)
    exposure: str = "sessions"
    outcomes: list[str] = Field(
        default_factory=lambda: ["crashes", "stalls", "slow_sessions"], min_length=1
    )
    alpha: float = Field(default=0.01, gt=0, lt=1)
    min_ratio: float = Field(default=1.5, ge=1)
    min_sessions: int = Field(default=200, ge=1)


def explained(findings: list[Finding]) -> list[dict[str, Any]]:
    """Findings as rows, each with its cause (weight, evidence, action), heaviest first."""
    rows: list[dict[str, Any]] = []
    for finding in findings:
        [cause] = explain_alert(
            segments=[
                SegmentDrop(
                    segment=f"build={finding.build}, {finding.dimension}={finding.value}",
                    metric=f"{finding.outcome}-free session rate",
                    baseline=1.0 - finding.baseline_rate,
                    current=1.0 - finding.rate,
                    share=finding.share,
                )
            ]
        )
        rows.append(
            {
                "build": finding.build,
                "outcome": finding.outcome,
                "dimension": finding.dimension,
                "value": finding.value,
                "baseline_rate": finding.baseline_rate,
                "rate": finding.rate,
                "ratio": finding.ratio,
                "z": finding.z,
                "sessions": finding.sessions,
                "first_day": finding.first_day,
                "days_to_detect": finding.days_to_detect,
                "weight": cause.weight,
                "evidence": f"{cause.evidence}; {finding.outcome} x{finding.ratio:.1f} "
                f"(z = {finding.z:.1f})",
                "action": f"{cause.action}; compare build {finding.build} with the previous "
                f"one on {finding.dimension}={finding.value}",
            }
        )
    rows.sort(key=lambda row: -row["weight"])
    return [{"rank": index + 1, **row} for index, row in enumerate(rows)]


class BuildQaStage(Stage[BuildQaOptions]):
    """Detect, explain and rank the regressions of every build."""

    kind = "buildqa.detect"
    options = BuildQaOptions
    inputs: ClassVar[tuple[str, ...]] = ("telemetry",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("builds", "regressions")
    outputs: ClassVar[tuple[str, ...]] = ("findings",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: BuildQaOptions
    ) -> StageResult:
        from raypipe.io.dataset import read_dataset, write_dataset

        storage = dict(context.storage_options)
        table = read_dataset(inputs["telemetry"].url, storage_options=storage)
        releases = None
        if "builds" in inputs:
            builds = read_dataset(inputs["builds"].url, storage_options=storage)
            releases = dict(
                zip(
                    builds.column(options.build_column).to_pylist(),
                    builds.column("release_day").to_pylist(),
                    strict=True,
                )
            )
        telemetry = Telemetry.from_table(
            table,
            build_column=options.build_column,
            time_column=options.time_column,
            dimensions=options.dimensions,
            counts=[options.exposure, *options.outcomes],
            releases=releases,
        )
        findings = detect(
            telemetry,
            exposure=options.exposure,
            outcomes=options.outcomes,
            alpha=options.alpha,
            min_ratio=options.min_ratio,
            min_sessions=options.min_sessions,
        )
        rows = explained(findings)
        manifest = write_dataset(
            context.output_url("findings"),
            pa.Table.from_pylist(rows, schema=FINDINGS_SCHEMA),
            storage_options=storage,
        )
        metrics: dict[str, Any] = {
            "telemetry_rows": table.num_rows,
            "builds": len(telemetry.builds),
            "findings": len(rows),
            "top_findings": [
                {
                    k: row[k]
                    for k in (
                        "rank",
                        "build",
                        "outcome",
                        "dimension",
                        "value",
                        "ratio",
                        "days_to_detect",
                    )
                }
                for row in rows[:10]
            ],
        }
        if "regressions" in inputs:
            truth = read_dataset(inputs["regressions"].url, storage_options=storage).to_pylist()
            injected = [(r["build"], r["metric"], r["dimension"], str(r["value"])) for r in truth]
            detector = score_findings([f.key for f in findings], injected)
            naive = score_findings(
                naive_findings(
                    telemetry,
                    exposure=options.exposure,
                    outcomes=options.outcomes,
                    min_ratio=options.min_ratio,
                    min_sessions=options.min_sessions,
                ),
                injected,
            )
            delays = {f.key: f.days_to_detect for f in findings}
            detected = [delays[key] for key in injected if key in delays]
            metrics.update(
                detector=detector,
                naive_baseline=naive,
                days_to_detect={
                    "mean": float(np.mean(detected)) if detected else None,
                    "max": int(max(detected)) if detected else None,
                    "per_regression": [
                        {"regression": "/".join(key), "days": delays.get(key)} for key in injected
                    ],
                },
                quality=quality("f1", detector["f1"], 1.0, naive["f1"]),
            )
        return StageResult(
            outputs={"findings": manifest},
            metrics=metrics,
            rows_in=table.num_rows,
            rows_out=len(rows),
        )
