"""Build telemetry with injected regressions, their detection, explanation and scoring."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from raypipe.buildqa import Telemetry, detect, naive_findings, score_findings
from raypipe.buildqa.stage import BuildQaOptions, BuildQaStage
from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError
from raypipe.io.dataset import read_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.stages.registry import load_stage
from raypipe.synth.builds import (
    BuildConfig,
    BuildTelemetryOptions,
    BuildTelemetryStage,
    generate_build_shard,
    injected_regressions,
)


def _hand_telemetry(crash_device_b: float) -> pa.Table:
    """Two builds, two devices, two levels, 1000 sessions per cell per day, 2 days."""
    rows = []
    for day in (0, 1):
        for build in ("a", "b"):
            for device in ("x", "y"):
                for level in (1, 2):
                    rate = 0.01 * (crash_device_b if build == "b" and device == "y" else 1.0)
                    rows.append(
                        {
                            "day": day,
                            "build": build,
                            "device_family": device,
                            "level": level,
                            "sessions": 1000,
                            "crashes": int(1000 * rate),
                        }
                    )
    return pa.Table.from_pylist(rows)


def _telemetry(table: pa.Table) -> Telemetry:
    return Telemetry.from_table(
        table,
        build_column="build",
        time_column="day",
        dimensions=["device_family", "level"],
        counts=["sessions", "crashes"],
    )


def test_a_device_regression_is_explained_away_from_the_levels() -> None:
    found = detect(_telemetry(_hand_telemetry(8.0)), exposure="sessions", outcomes=["crashes"])
    assert [f.key for f in found] == [("b", "crashes", "device_family", "y")]
    assert found[0].rate == pytest.approx(0.08)
    assert found[0].baseline_rate == pytest.approx(0.01)
    assert found[0].days_to_detect == 0
    # the naive rule also blames both levels (each holds half of device y's sessions)
    naive = naive_findings(
        _telemetry(_hand_telemetry(8.0)), exposure="sessions", outcomes=["crashes"]
    )
    assert ("b", "crashes", "level", "1") in naive and len(naive) == 3
    assert detect(_telemetry(_hand_telemetry(1.2)), exposure="sessions", outcomes=["crashes"]) == []


def test_missing_columns_are_named() -> None:
    with pytest.raises(DataError, match="`crashes`"):
        Telemetry.from_table(
            pa.table({"day": [0], "build": ["a"], "sessions": [1]}),
            build_column="build",
            time_column="day",
            dimensions=[],
            counts=["sessions", "crashes"],
        )


def test_score_findings() -> None:
    injected = [("b", "crashes", "d", "y"), ("c", "stalls", "l", "3")]
    scores = score_findings([("b", "crashes", "d", "y"), ("b", "crashes", "l", "1")], injected)
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5


def test_generator_is_deterministic_and_injects_where_it_says() -> None:
    config = BuildConfig(players=3_000, seed=3, shard_players=1_500)
    first = generate_build_shard(config, 1)["telemetry"]
    assert first.equals(generate_build_shard(config, 1)["telemetry"])
    regressions = injected_regressions(config)
    assert len(regressions) == 3 and all(r.build >= 2 for r in regressions)
    assert len({r.build for r in regressions}) == 3


def test_stage_finds_the_injected_regressions(tmp_path: Path) -> None:
    data = StageContext("telemetry", str(tmp_path), "r", InlineBackend())
    generated = BuildTelemetryStage().run(
        data, {}, BuildTelemetryOptions(players=20_000, seed=3, shard_players=10_000)
    )
    assert data.executor.calls == ["synth.build_shard"]
    inputs = {k: DatasetInput(data.output_url(k), m) for k, m in generated.outputs.items()}
    context = StageContext("detect", str(tmp_path), "r", InlineBackend())
    result = BuildQaStage().run(context, inputs, BuildQaOptions())
    assert result.metrics["detector"]["recall"] == 1.0
    assert result.metrics["detector"]["precision"] == 1.0
    assert result.metrics["naive_baseline"]["precision"] < 0.2
    assert result.metrics["quality"] == {
        "metric": "f1",
        "value": 1.0,
        "truth": 1.0,
        "baseline": result.metrics["naive_baseline"]["f1"],
    }
    assert result.metrics["days_to_detect"]["max"] <= 3
    findings = read_dataset(context.output_url("findings")).to_pylist()
    assert [row["rank"] for row in findings] == [1, 2, 3]
    weights = [row["weight"] for row in findings]
    assert weights == sorted(weights, reverse=True) and weights[-1] > 0
    assert all("performance fell in `build=" in row["action"] for row in findings)


def test_kinds_are_registered() -> None:
    assert load_stage("synth.build_telemetry") is BuildTelemetryStage
    assert load_stage("buildqa.detect") is BuildQaStage
