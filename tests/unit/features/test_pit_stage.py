"""The distributed point-in-time join stage equals the in-memory join, order included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from raypipe.engine.inline import InlineExecutor
from raypipe.errors import SchemaError
from raypipe.features.pit import FeatureTable, pit_join
from raypipe.features.pit_stage import PitJoinOptions, PitJoinStage
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, StageContext

T0 = dt.datetime(2026, 1, 1)


def _write(url: str, frame: pl.DataFrame, files: int) -> DatasetInput:
    writer = DatasetWriter(url)
    step = -(-frame.height // files)
    entries = [e for i in range(files) for e in writer.write(frame.slice(i * step, step)
                                                            .to_arrow(), part=i)]
    return DatasetInput(url, writer.commit(entries, schema=frame.to_arrow().schema))


def test_stage_matches_in_memory_join(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 400
    entity = pl.DataFrame({
        "k": pl.Series(rng.integers(0, 30, n)).scatter([3, 50], None),
        "event_timestamp": [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(0, 240, n)],
        "label": rng.random(n) < 0.5,
    })
    entity = pl.concat([entity, entity.head(20)])  # duplicates
    features = pl.DataFrame({
        "k": rng.integers(0, 35, 900),
        "event_timestamp": [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(-50, 240, 900)],
        "created": [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(0, 5, 900)],
        "x": rng.normal(size=900),
    })
    inputs = {"entities": _write(str(tmp_path / "e"), entity, 3),
              "features": _write(str(tmp_path / "f"), features, 4)}
    options = PitJoinOptions(keys=["k"], created_timestamp="created", ttl="2d",
                             partitions=3, name="fv", full_feature_names=True)
    context = StageContext("pit", str(tmp_path / "out"), "run", InlineExecutor())
    PitJoinStage().run(context, inputs, options)
    got = pl.from_arrow(read_dataset(context.output_url("joined")))
    want = pit_join(entity, [FeatureTable("fv", features, ("k",), "event_timestamp", "created",
                                          dt.timedelta(days=2), ("x",))],
                    full_feature_names=True)
    assert_frame_equal(got, want)
    assert not (tmp_path / "out" / "datasets" / "pit" / "joined_shuffle").exists()


def test_missing_column_fails_before_tasks(tmp_path: Path) -> None:
    frame = pl.DataFrame({"k": [1], "event_timestamp": [T0]})
    inputs = {"entities": _write(str(tmp_path / "e"), frame, 1),
              "features": _write(str(tmp_path / "f"), frame, 1)}
    context = StageContext("pit", str(tmp_path / "out"), "run", InlineExecutor())
    with pytest.raises(SchemaError, match="lacks column"):
        PitJoinStage().run(context, inputs, PitJoinOptions(keys=["k"], features=["nope"]))
    assert context.executor.calls == []
