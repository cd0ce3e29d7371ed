"""The feature stages on generated telemetry, in-process: clustered and shuffled agree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from raypipe.engine.inline import InlineBackend
from raypipe.errors import SpecError
from raypipe.features.asof import compute_features
from raypipe.features.defaults import default_views
from raypipe.features.stage import (
    ScoringSetOptions,
    ScoringSetStage,
    TrainingSetOptions,
    TrainingSetStage,
)
from raypipe.io.dataset import DatasetWriter, read_dataset, write_dataset
from raypipe.io.manifest import read_manifest
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.synth.config import TelemetryConfig
from raypipe.synth.generate import generate_shard

CONFIG = TelemetryConfig(players=300, days=20, seed=3, shard_players=100)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetInput]:
    root = tmp_path_factory.mktemp("synth")
    shards = [generate_shard(CONFIG, index) for index in range(CONFIG.shards)]
    inputs = {}
    for name, clustered in (
        ("events", True),
        ("labels", False),
        ("players", False),
        ("events_unclustered", False),
    ):
        table_name = {"labels": "churn_labels", "events_unclustered": "events"}.get(name, name)
        url = str(root / name)
        writer = DatasetWriter(url, target_file_bytes=40_000)
        entries = [e for i, shard in enumerate(shards) for e in writer.write(shard[table_name], i)]
        metadata = {"cutoff": CONFIG.cutoff.isoformat()}
        if clustered:
            metadata["clustered_by"] = ["player_id"]
        inputs[name] = DatasetInput(url, writer.commit(entries, metadata=metadata))
    return inputs


def context(tmp_path: Path, name: str) -> StageContext:
    return StageContext(name, str(tmp_path), "run-1", InlineBackend())


def expected(data, entities: pl.DataFrame, **kwargs) -> pl.DataFrame:
    events = pl.from_arrow(read_dataset(data["events"].url))
    return compute_features(events, default_views(), entities, **kwargs)


def test_training_set_clustered_and_shuffled_agree_with_direct(data, tmp_path: Path) -> None:
    labels = pl.from_arrow(read_dataset(data["labels"].url))
    want = expected(data, labels)
    outputs = {}
    for mode, events in (("yes", data["events"]), ("no", data["events_unclustered"])):
        ctx = context(tmp_path / mode, "train")
        options = TrainingSetOptions(clustered=mode, partitions=3)
        result = TrainingSetStage().run(
            ctx, {"events": events, "labels": data["labels"], "players": data["players"]}, options
        )
        assert result.metrics["shuffled"] is (mode == "no")
        got = pl.from_arrow(read_dataset(ctx.output_url("training_set")))
        assert got.columns[:2] == ["player_id", "cutoff"]
        assert got.columns[-2:] == ["tenure_days", "churned"]
        assert got.height == labels.height
        outputs[mode] = got.sort("player_id")
        check = want.sort("player_id")
        assert_frame_equal(outputs[mode].select(check.columns), check, rel_tol=1e-9)
    assert_frame_equal(outputs["yes"], outputs["no"], rel_tol=1e-9)
    assert not (tmp_path / "no" / "datasets" / "train" / "training_set_shuffle").exists()


def test_label_rows_without_events_are_kept(data, tmp_path: Path) -> None:
    extra = pl.DataFrame(
        {
            "player_id": [10_000, 10_001],
            "cutoff": [dt.datetime(2026, 1, 1)] * 2,
            "churned": [True, False],
        }
    )
    labels = pl.concat([pl.from_arrow(read_dataset(data["labels"].url)), extra])
    url = str(tmp_path / "labels_plus")
    entity = DatasetInput(url, write_dataset(url, labels.to_arrow()))
    ctx = context(tmp_path, "train")
    TrainingSetStage().run(ctx, {"events": data["events"], "labels": entity}, TrainingSetOptions())
    got = pl.from_arrow(read_dataset(ctx.output_url("training_set")))
    assert got.height == labels.height
    row = got.filter(pl.col("player_id") == 10_000).row(0, named=True)
    assert row["sessions_7d"] == 0 and row["days_since_last"] is None


def test_scoring_set_uses_recorded_cutoff(data, tmp_path: Path) -> None:
    ctx = context(tmp_path, "score")
    ScoringSetStage().run(
        ctx,
        {"events": data["events"], "players": data["players"]},
        ScoringSetOptions(player_columns=["platform"]),
    )
    got = pl.from_arrow(read_dataset(ctx.output_url("scoring_set")))
    assert got.height == CONFIG.players
    assert set(got["cutoff"].to_list()) == {dt.datetime(2026, 1, 1)}
    assert "platform" in got.columns and "tenure_days" in got.columns
    players = pl.from_arrow(read_dataset(data["players"].url)).select("player_id")
    want = expected(data, players, cutoff=dt.datetime(2026, 1, 1))
    assert_frame_equal(
        got.sort("player_id").select(want.columns), want.sort("player_id"), rel_tol=1e-9
    )
    meta = read_manifest(ctx.output_url("scoring_set")).metadata
    assert meta["clustered_by"] == ["player_id"] and "sessions_7d" in meta["features"]


def test_bad_view_fails_before_any_task(data, tmp_path: Path) -> None:
    options = TrainingSetOptions.model_validate(
        {
            "views": [
                {
                    "name": "v",
                    "entities": ["player_id"],
                    "features": [{"name": "x", "agg": "sum", "column": "platform"}],
                }
            ]
        }
    )
    ctx = context(tmp_path, "train")
    with pytest.raises(SpecError, match="view `v` feature `x`"):
        TrainingSetStage().run(ctx, {"events": data["events"], "labels": data["labels"]}, options)
    assert ctx.executor.calls == []


@pytest.mark.parametrize("clustered", ["yes", "no"])
def test_null_keys_duplicates_and_many_cutoffs(tmp_path: Path, clustered: str) -> None:
    day = dt.datetime(2026, 1, 1)
    hours = [dt.timedelta(hours=h) for h in range(0, 200, 7)]
    writer = DatasetWriter(str(tmp_path / "events"))
    entries = []
    for part, players in enumerate(([1, 2, None], [3, 4, None])):  # null keys in both files
        rows = [
            (
                p,
                day + h,
                "purchase" if i % 3 else "session_start",
                float(i),
                i % 5,
                (day + h).date(),
            )
            for p in players
            for i, h in enumerate(hours)
        ]
        frame = pl.DataFrame(
            rows,
            orient="row",
            schema={
                "player_id": pl.Int64,
                "ts": pl.Datetime("us"),
                "event_type": pl.String,
                "amount": pl.Float64,
                "level": pl.Int32,
                "event_date": pl.Date,
            },
        )
        entries += writer.write(frame.to_arrow(), part=part)
    events = DatasetInput(
        str(tmp_path / "events"), writer.commit(entries, metadata={"clustered_by": ["player_id"]})
    )
    labels = pl.DataFrame(
        {
            "player_id": [1, 1, 1, None, 3, 9, 4, 2],
            "cutoff": [day + dt.timedelta(days=d) for d in (3, 3, 8, 3, 1, 3, 30, 0)],
            "churned": [True, True, False, False, True, False, True, False],
        }
    )
    url = str(tmp_path / "labels")
    label_input = DatasetInput(url, write_dataset(url, labels.to_arrow()))
    ctx = context(tmp_path / clustered, "train")
    TrainingSetStage().run(
        ctx,
        {"events": events, "labels": label_input},
        TrainingSetOptions(clustered=clustered, partitions=2),
    )
    got = pl.from_arrow(read_dataset(ctx.output_url("training_set")))
    want = compute_features(pl.from_arrow(read_dataset(events.url)), default_views(), labels)
    key = ["player_id", "cutoff", "churned"]
    assert got.height == labels.height
    assert_frame_equal(
        got.sort(key, nulls_last=True).select(want.columns),
        want.sort(key, nulls_last=True),
        rel_tol=1e-9,
    )


def test_scoring_cutoff_with_time_zone_is_converted_to_utc(data, tmp_path: Path) -> None:
    outputs = []
    for name, cutoff in (("naive", "2025-12-25T00:00:00"), ("aware", "2025-12-25T02:00:00+02:00")):
        ctx = context(tmp_path / name, "score")
        ScoringSetStage().run(
            ctx,
            {"events": data["events"], "players": data["players"]},
            ScoringSetOptions(cutoff=cutoff),
        )
        outputs.append(pl.from_arrow(read_dataset(ctx.output_url("scoring_set"))).sort("player_id"))
    assert_frame_equal(outputs[0], outputs[1])
    assert outputs[0]["cutoff"][0] == dt.datetime(2025, 12, 25)


@pytest.mark.parametrize("clustered", ["yes", "no"])
def test_pruned_time_range_gives_same_features(tmp_path: Path, clustered: str) -> None:
    day = dt.datetime(2026, 1, 1)
    view = {
        "name": "short",
        "entities": ["player_id"],
        "features": [
            {"name": "n_1d", "agg": "count", "window": "1d"},
            {"name": "amount_7d", "agg": "sum", "column": "amount", "window": "7d"},
            {"name": "first_seen", "agg": "min", "column": "ts", "window": "7d"},
        ],
    }
    rows = [
        (p, day + dt.timedelta(hours=h), float(h))
        for p in range(6)
        for h in range(-20 * 24, 20 * 24, 5 + p)
    ]
    events_frame = pl.DataFrame(
        rows,
        orient="row",
        schema={"player_id": pl.Int64, "ts": pl.Datetime("us"), "amount": pl.Float64},
    )
    writer = DatasetWriter(str(tmp_path / "events"))
    entries = writer.write(events_frame.filter(pl.col("player_id") < 3).to_arrow(), part=0)
    entries += writer.write(events_frame.filter(pl.col("player_id") >= 3).to_arrow(), part=1)
    events = DatasetInput(
        str(tmp_path / "events"), writer.commit(entries, metadata={"clustered_by": ["player_id"]})
    )
    labels = pl.DataFrame(
        {
            "player_id": [0, 1, 2, 3, 4, 5, 0],
            "cutoff": [day + dt.timedelta(days=d) for d in (0, 1, 2, 3, 4, 5, 5)],
            "churned": [True] * 7,
        }
    )
    url = str(tmp_path / "labels")
    label_input = DatasetInput(url, write_dataset(url, labels.to_arrow()))
    ctx = context(tmp_path / clustered, "train")
    options = TrainingSetOptions.model_validate({"views": [view], "clustered": clustered})
    TrainingSetStage().run(ctx, {"events": events, "labels": label_input}, options)
    got = pl.from_arrow(read_dataset(ctx.output_url("training_set")))
    want = compute_features(events_frame, options.feature_views(), labels)
    key = ["player_id", "cutoff"]
    assert_frame_equal(got.sort(key).select(want.columns), want.sort(key))


@pytest.mark.parametrize("clustered", ["yes", "no"])
def test_nanosecond_events_and_cutoffs_are_exact_through_the_stage(
    tmp_path: Path, clustered: str
) -> None:
    """datetime[ns] events and cutoffs (pandas' default): no event after its cutoff counts, and
    the 1d window keeps its left edge to the nanosecond, also where the time range is pruned."""
    base = 1_767_225_600 * 10**9  # 2026-01-01 in ns
    day = 86_400 * 10**9
    offsets = [-day - 1, -day, -500, -1, 0, 1, 999]  # around a cutoff at base
    events_frame = pl.DataFrame(
        {
            "player_id": [1] * len(offsets),
            "ts": pl.Series([base + o for o in offsets]).cast(pl.Datetime("ns")),
            "amount": [float(i) for i in range(len(offsets))],
        }
    )
    writer = DatasetWriter(str(tmp_path / "events"))
    events = DatasetInput(
        str(tmp_path / "events"),
        writer.commit(
            writer.write(events_frame.to_arrow(), part=0), metadata={"clustered_by": ["player_id"]}
        ),
    )
    labels = pl.DataFrame({"player_id": [1, 1], "churned": [True, False]}).with_columns(
        pl.Series("cutoff", [base, base + 1]).cast(pl.Datetime("ns"))
    )
    url = str(tmp_path / "labels")
    label_input = DatasetInput(url, write_dataset(url, labels.to_arrow()))
    view = {
        "name": "v",
        "entities": ["player_id"],
        "features": [
            {"name": "n_1d", "agg": "count", "window": "1d"},
            {"name": "n_all", "agg": "count"},
        ],
    }
    options = TrainingSetOptions.model_validate({"views": [view], "clustered": clustered})
    ctx = context(tmp_path / clustered, "train")
    TrainingSetStage().run(ctx, {"events": events, "labels": label_input}, options)
    got = pl.from_arrow(read_dataset(ctx.output_url("training_set"))).sort("cutoff")
    assert got.schema["cutoff"] == pl.Datetime("ns")
    # at base: -day, -500, -1 in the 1d window; all four before it in total
    # at base + 1 ns: the event at 0 joins; -day is now 1 ns too old for the window
    assert got["n_1d"].to_list() == [3, 3]
    assert got["n_all"].to_list() == [4, 5]
