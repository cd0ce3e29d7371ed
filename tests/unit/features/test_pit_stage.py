"""The distributed point-in-time join stage equals the in-memory join, order included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from raypipe.engine.inline import InlineBackend
from raypipe.errors import SchemaError
from raypipe.features.pit import FeatureTable, pit_join
from raypipe.features.pit_stage import PitJoinOptions, PitJoinStage
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, StageContext

T0 = dt.datetime(2026, 1, 1)


def _write(url: str, frame: pl.DataFrame, files: int) -> DatasetInput:
    writer = DatasetWriter(url)
    step = -(-frame.height // files)
    entries = [
        e
        for i in range(files)
        for e in writer.write(frame.slice(i * step, step).to_arrow(), part=i)
    ]
    return DatasetInput(url, writer.commit(entries, schema=frame.to_arrow().schema))


def test_stage_matches_in_memory_join(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 400
    entity = pl.DataFrame(
        {
            "k": pl.Series(rng.integers(0, 30, n)).scatter([3, 50], None),
            "event_timestamp": [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(0, 240, n)],
            "label": rng.random(n) < 0.5,
        }
    )
    entity = pl.concat([entity, entity.head(20)])  # duplicates
    features = pl.DataFrame(
        {
            "k": rng.integers(0, 35, 900),
            "event_timestamp": [
                T0 + dt.timedelta(hours=int(h)) for h in rng.integers(-50, 240, 900)
            ],
            "created": [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(0, 5, 900)],
            "x": rng.normal(size=900),
        }
    )
    inputs = {
        "entities": _write(str(tmp_path / "e"), entity, 3),
        "features": _write(str(tmp_path / "f"), features, 4),
    }
    options = PitJoinOptions(
        keys=["k"],
        created_timestamp="created",
        ttl="2d",
        partitions=3,
        name="fv",
        full_feature_names=True,
    )
    context = StageContext("pit", str(tmp_path / "out"), "run", InlineBackend())
    PitJoinStage().run(context, inputs, options)
    got = pl.from_arrow(read_dataset(context.output_url("joined")))
    want = pit_join(
        entity,
        [
            FeatureTable(
                "fv", features, ("k",), "event_timestamp", "created", dt.timedelta(days=2), ("x",)
            )
        ],
        full_feature_names=True,
    )
    assert_frame_equal(got, want)
    assert not (tmp_path / "out" / "datasets" / "pit" / "joined_shuffle").exists()


def test_missing_column_fails_before_tasks(tmp_path: Path) -> None:
    frame = pl.DataFrame({"k": [1], "event_timestamp": [T0]})
    inputs = {
        "entities": _write(str(tmp_path / "e"), frame, 1),
        "features": _write(str(tmp_path / "f"), frame, 1),
    }
    context = StageContext("pit", str(tmp_path / "out"), "run", InlineBackend())
    with pytest.raises(SchemaError, match="lacks column"):
        PitJoinStage().run(context, inputs, PitJoinOptions(keys=["k"], features=["nope"]))
    assert context.executor.calls == []


def test_stage_with_pandas_written_nanosecond_times_does_not_leak(tmp_path: Path) -> None:
    """pandas writes datetime64[ns]; a row 1-999 ns after the entity time must not be joined."""
    pd = pytest.importorskip("pandas")
    base = pd.Timestamp("2026-01-01 00:00:00")
    entity = pd.DataFrame({"k": [1, 2, 3], "event_timestamp": [base, base, base]})
    features = pd.DataFrame(
        {
            "k": [1, 1, 2, 2, 3],
            "event_timestamp": [
                base - pd.Timedelta(1, "ns"),
                base + pd.Timedelta(1, "ns"),
                base,
                base + pd.Timedelta(999, "ns"),
                base + pd.Timedelta(500, "ns"),
            ],
            "x": [10, 11, 20, 21, 30],
        }
    )
    for frame in (entity, features):  # pandas' classic default (recent pandas may infer us)
        frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[ns]")

    def write(url: str, frame) -> DatasetInput:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        assert table.schema.field("event_timestamp").type == pa.timestamp("ns")
        writer = DatasetWriter(url)
        return DatasetInput(url, writer.commit(writer.write(table, part=0), schema=table.schema))

    inputs = {
        "entities": write(str(tmp_path / "e"), entity),
        "features": write(str(tmp_path / "f"), features),
    }
    context = StageContext("pit", str(tmp_path / "out"), "run", InlineBackend())
    PitJoinStage().run(context, inputs, PitJoinOptions(keys=["k"], partitions=2))
    got = pl.from_arrow(read_dataset(context.output_url("joined")))
    assert got["x"].to_list() == [10, 20, None]
    assert got.schema["event_timestamp"] == pl.Datetime("ns")
