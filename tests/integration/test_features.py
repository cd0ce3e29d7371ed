"""The feature stages as Ray tasks: same output as in-process, both partitioning paths."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from raypipe.engine.inline import InlineBackend
from raypipe.features.stage import TrainingSetOptions, TrainingSetStage
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.synth.config import TelemetryConfig
from raypipe.synth.generate import generate_shard

pytestmark = pytest.mark.ray


def _inputs(root: Path, clustered: bool) -> dict[str, DatasetInput]:
    config = TelemetryConfig(players=400, days=15, seed=5, shard_players=100)
    shards = [generate_shard(config, index) for index in range(config.shards)]
    inputs = {}
    for name, table in (("events", "events"), ("labels", "churn_labels")):
        writer = DatasetWriter(str(root / name))
        entries = [e for i, shard in enumerate(shards) for e in writer.write(shard[table], i)]
        metadata = {"clustered_by": ["player_id"]} if clustered and name == "events" else {}
        inputs[name] = DatasetInput(str(root / name), writer.commit(entries, metadata=metadata))
    return inputs


@pytest.mark.parametrize("clustered", [True, False])
def test_training_set_on_ray_equals_inline(ray_executor, tmp_path: Path, clustered: bool) -> None:
    inputs = _inputs(tmp_path / "in", clustered)
    outputs = []
    for name, executor in (("ray", ray_executor), ("inline", InlineBackend())):
        context = StageContext("train", str(tmp_path / name), "run", executor)
        result = TrainingSetStage().run(context, inputs, TrainingSetOptions(partitions=3))
        assert result.metrics["shuffled"] is (not clustered)
        outputs.append(
            pl.from_arrow(read_dataset(context.output_url("training_set"))).sort("player_id")
        )
    assert outputs[0].height == 400
    assert_frame_equal(outputs[0], outputs[1], rel_tol=1e-9)


def test_point_in_time_join_stage_on_ray(ray_executor, tmp_path: Path) -> None:
    import datetime as dt

    from raypipe.features.pit_stage import PitJoinOptions, PitJoinStage

    t0 = dt.datetime(2026, 1, 1)
    hours = (5, 1, 9, 1, 2)
    entity = pl.DataFrame(
        {"k": [3, 1, 2, 1, None], "event_timestamp": [t0 + dt.timedelta(hours=h) for h in hours]}
    )
    features = pl.DataFrame(
        {
            "k": [1, 1, 2, 3],
            "event_timestamp": [t0, t0 + dt.timedelta(hours=2), t0, t0],
            "x": [10, 20, 30, 40],
        }
    )
    inputs = {}
    for name, frame in (("entities", entity), ("features", features)):
        writer = DatasetWriter(str(tmp_path / name))
        entries = writer.write(frame.head(2).to_arrow(), 0) + writer.write(
            frame.slice(2).to_arrow(), 1
        )
        inputs[name] = DatasetInput(str(tmp_path / name), writer.commit(entries))
    context = StageContext("pit", str(tmp_path / "out"), "run", ray_executor)
    PitJoinStage().run(context, inputs, PitJoinOptions(keys=["k"], ttl="8h", partitions=3))
    got = pl.from_arrow(read_dataset(context.output_url("joined")))
    assert got["k"].to_list() == [3, 1, 2, 1, None]
    assert got["x"].to_list() == [40, 10, None, 10, None]
