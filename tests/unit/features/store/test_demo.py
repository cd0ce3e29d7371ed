"""The churn job's serving path in-process: scoring set -> materialize -> `features get`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from raypipe.cli.main import main
from raypipe.engine.inline import InlineBackend
from raypipe.features.stage import ScoringSetOptions, ScoringSetStage
from raypipe.features.store.stage import MaterializeOptions, MaterializeStage
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.io.manifest import read_manifest
from raypipe.spec import load_job
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.synth.config import TelemetryConfig
from raypipe.synth.generate import generate_shard

REPO = Path(__file__).resolve().parents[4]


def test_churn_job_declares_the_materialize_stage() -> None:
    job = load_job(REPO / "jobs" / "churn.yaml")
    stage = next(s for s in job.stages if s.name == "materialize")
    assert stage.kind == "features.materialize" and stage.options.view == "churn_player"


def test_scoring_set_served_online(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = TelemetryConfig(players=120, days=10, seed=5, shard_players=120)
    shard = generate_shard(config, 0)
    inputs = {}
    for name in ("events", "players"):
        writer = DatasetWriter(str(tmp_path / name))
        manifest = writer.commit(
            writer.write(shard[name], 0), metadata={"cutoff": config.cutoff.isoformat()}
        )
        inputs[name] = DatasetInput(str(tmp_path / name), manifest)
    data_dir = str(tmp_path / "data")
    scoring = StageContext("scoring_features", data_dir, "r", InlineBackend())
    ScoringSetStage().run(scoring, inputs, ScoringSetOptions(player_columns=["country"]))
    url = scoring.output_url("scoring_set")
    context = StageContext("materialize", data_dir, "r", InlineBackend())
    options = MaterializeOptions(view="churn_player", timestamp="cutoff", max_age="3650d")
    result = MaterializeStage().run(
        context, {"data": DatasetInput(url, read_manifest(url))}, options
    )
    assert result.metrics["written"] == 120
    assert result.metrics["consistency_checked"] == 100
    assert result.metrics["consistency_mismatches"] == 0
    offline = pl.from_arrow(read_dataset(url)).filter(pl.col("player_id") == 42).row(0, named=True)
    main(["features", "get", "churn_player", "--entity", "42", "--data-dir", data_dir, "--json"])
    [online] = json.loads(capsys.readouterr().out)
    assert online["status"] == "PRESENT"
    assert online["values"]["country"] == offline["country"]
    assert online["values"]["sessions_7d"] == offline["sessions_7d"]
    assert len(online["values"]) == len(offline) - 2  # every column but the key and cutoff
