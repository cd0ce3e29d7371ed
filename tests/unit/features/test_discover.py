"""Discovery end to end on generated telemetry (in-process), with a planted leak."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml

from raypipe.engine.inline import InlineBackend
from raypipe.features.discover_stage import DiscoverOptions, DiscoverStage
from raypipe.features.spec import parse_views
from raypipe.io.artifacts import read_artifact_file
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.synth.config import TelemetryConfig
from raypipe.synth.generate import generate_shard


def test_discover_stage_selects_reports_and_flags_leakage(tmp_path: Path) -> None:
    config = TelemetryConfig(players=600, days=20, seed=11, shard_players=300)
    shards = [generate_shard(config, index) for index in range(config.shards)]
    inputs = {}
    for name, table in (("events", "events"), ("labels", "churn_labels"), ("players", "players")):
        writer = DatasetWriter(str(tmp_path / name))
        entries = []
        for index, shard in enumerate(shards):
            data = shard[table]
            if name == "players":  # plant a leak: an attribute equal to the label
                labels = pl.from_arrow(shard["churn_labels"])
                data = (
                    pl.from_arrow(data)
                    .join(
                        labels.select("player_id", leak_score=pl.col("churned").cast(pl.Float64)),
                        on="player_id",
                    )
                    .to_arrow()
                )
            entries += writer.write(data, index)
        inputs[name] = DatasetInput(
            str(tmp_path / name),
            writer.commit(
                entries, metadata={"clustered_by": ["player_id"]} if name == "events" else {}
            ),
        )
    context = StageContext("discover", str(tmp_path / "out"), "run", InlineBackend())
    options = DiscoverOptions(k=6, max_types=4, windows=["1d", "7d", "14d"])
    result = DiscoverStage().run(context, inputs, options)
    assert result.metrics["candidates"] > 40
    assert len(result.metrics["selected_features"]) == 6
    assert "player_leak_score" in result.metrics["leakage"]
    assert "player_leak_score" not in result.metrics["selected_features"]
    candidates = read_dataset(context.output_url("candidates"))
    assert candidates.num_rows == config.players
    report = context.output_url("report")
    page = read_artifact_file(report, "report.html").decode()
    assert "<svg" in page and "Likely leakage" in page and "player_leak_score" in page
    selection = json.loads(read_artifact_file(report, "selection.json"))
    assert selection["selected"] == result.metrics["selected_features"]
    views_yaml = read_artifact_file(report, "selected_views.yaml").decode()
    views = parse_views(yaml.safe_load(views_yaml))
    view_names = {name for view in views for name in view.feature_names}
    terms = set(selection["entity_terms_selected"])
    assert set(selection["selected"]) - terms <= view_names
