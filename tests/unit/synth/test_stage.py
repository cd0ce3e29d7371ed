"""The ``synth.game_telemetry`` stage commits four tables and reports the Bayes AUC."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from raypipe.engine.inline import InlineBackend
from raypipe.io.dataset import read_dataset
from raypipe.stages.base import StageContext
from raypipe.synth import TABLES
from raypipe.synth.stage import GameTelemetryOptions, GameTelemetryStage


def test_stage_commits_every_table_and_reports_metrics(tmp_path: Path) -> None:
    executor = InlineBackend()
    context = StageContext(
        stage_name="events", data_dir=str(tmp_path), run_id="r", backend=executor
    )
    options = GameTelemetryOptions(
        players=2_500, days=20, seed=1, shard_players=1_000, partition_events_by=("event_date",)
    )
    result = GameTelemetryStage().run(context, {}, options)
    assert set(result.outputs) == set(TABLES) == set(GameTelemetryStage.outputs)
    assert executor.calls == ["synth.shard"]
    players = read_dataset(context.output_url("players"))
    assert players.num_rows == 2_500
    events = read_dataset(context.output_url("events"))
    assert events.num_rows == result.metrics["events"] > 0
    assert result.outputs["events"].partition_by == ("event_date",)
    assert result.metrics["players"] == 2_500
    assert result.metrics["shards"] == 3
    assert 0.1 < result.metrics["churn_rate"] < 0.5
    assert 0.75 < result.metrics["bayes_auc"] < 0.95
    assert result.rows_out == sum(m.rows for m in result.outputs.values())


def test_options_parse_dates_and_drift() -> None:
    options = GameTelemetryOptions.model_validate(
        {
            "players": 10,
            "days": 5,
            "cutoff": "2026-03-01",
            "drift": {"start_day": 2, "new_platform": "switch", "null_rate": {"amount": 0.1}},
        }
    )
    config = options.to_config()
    assert str(config.cutoff) == "2026-03-01"
    assert config.drift.new_platform == "switch"
    assert dict(config.drift.null_rate) == {"amount": 0.1}


@pytest.mark.parametrize(
    "bad",
    [
        {"players": 0},
        {"unknown": 1},
        {"drift": {"null_rate": {"nope": 0.1}}},
        {"drift": {"price_multiplier": -1}},
        {"include_future_days": -1},
    ],
)
def test_invalid_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GameTelemetryOptions.model_validate(bad)
