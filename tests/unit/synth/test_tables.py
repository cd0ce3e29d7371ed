"""Shape, types and invariants of every generated table."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa

from raypipe.synth import (
    CHURN_LABELS_SCHEMA,
    CHURN_TRUTH_SCHEMA,
    EVENT_TYPES,
    EVENTS_SCHEMA,
    PLAYERS_SCHEMA,
    TelemetryConfig,
)
from tests.unit.synth.conftest import BASE


def test_schemas(base_tables: dict[str, pa.Table]) -> None:
    assert base_tables["players"].schema.equals(PLAYERS_SCHEMA)
    assert base_tables["events"].schema.equals(EVENTS_SCHEMA)
    assert base_tables["churn_labels"].schema.equals(CHURN_LABELS_SCHEMA)
    assert base_tables["churn_truth"].schema.equals(CHURN_TRUTH_SCHEMA)
    for name in ("players", "churn_labels", "churn_truth"):
        assert base_tables[name].num_rows == BASE.players


def test_players(base_tables: dict[str, pa.Table]) -> None:
    players = pl.from_arrow(base_tables["players"])
    assert players.null_count().sum_horizontal().item() == 0
    assert players["player_id"].is_unique().all()
    assert players["install_date"].min() >= BASE.start_date
    assert players["install_date"].max() < BASE.cutoff
    assert set(players["platform"].unique()) == {"ios", "android", "pc"}
    assert set(players["spender_segment"].unique()) == {"non_spender", "minnow", "dolphin", "whale"}
    assert abs(players["skill"].mean()) < 0.1


def test_every_event_type_occurs(base_tables: dict[str, pa.Table]) -> None:
    events = pl.from_arrow(base_tables["events"])
    assert set(events["event_type"].unique()) == set(EVENT_TYPES)
    assert events.null_count()["player_id"].item() == 0
    assert events.null_count()["ts"].item() == 0


def test_events_lie_in_the_history_and_after_install(base_tables: dict[str, pa.Table]) -> None:
    events = pl.from_arrow(base_tables["events"])
    players = pl.from_arrow(base_tables["players"])
    start = dt.datetime.combine(BASE.start_date, dt.time())
    cutoff = dt.datetime.combine(BASE.cutoff, dt.time())
    assert events["ts"].min() >= start
    assert events["ts"].max() < cutoff
    assert (events["ts"].dt.date() == events["event_date"]).all()
    joined = events.join(players.select("player_id", "install_date"), on="player_id")
    assert (joined["event_date"] >= joined["install_date"]).all()


def test_column_domains_follow_event_types(base_tables: dict[str, pa.Table]) -> None:
    events = pl.from_arrow(base_tables["events"])
    money = events["event_type"].is_in(["purchase", "refund"])
    levels = events["event_type"].is_in(["level_start", "level_complete", "level_fail"])
    assert (events["amount"].is_not_null() == money).all()
    assert (events["currency"].is_not_null() == money).all()
    assert (events["country"].is_not_null() == money).all()
    assert (events["is_fraud"].is_not_null() == money).all()
    assert (events["level"].is_not_null() == levels).all()
    assert (events.filter(money)["amount"] > 0).all()
    assert (events.filter(levels)["level"] >= 1).all()


def test_sessions_are_well_formed(base_tables: dict[str, pa.Table]) -> None:
    events = pl.from_arrow(base_tables["events"])
    starts = events.filter(pl.col("event_type") == "session_start")
    assert starts["session_id"].is_unique().all()
    assert (starts["session_id"] // 100_000 == starts["player_id"]).all()
    per_session = events.group_by("session_id").agg(
        starts=(pl.col("event_type") == "level_start").sum(),
        ends=pl.col("event_type").is_in(["level_complete", "level_fail"]).sum(),
        first=pl.col("event_type").sort_by("ts").first(),
        crashes=(pl.col("event_type") == "crash").sum(),
    )
    assert (per_session["starts"] == per_session["ends"]).all()
    assert (per_session["first"] == "session_start").all()
    assert (per_session["crashes"] <= 1).all()
    assert set(events["session_id"].unique()) == set(starts["session_id"])


def test_levels_progress_with_completions(base_tables: dict[str, pa.Table]) -> None:
    events = pl.from_arrow(base_tables["events"]).filter(pl.col("event_type") == "level_start")
    progress = events.sort("ts").group_by("player_id").agg(pl.col("level").diff().min())
    assert (progress["level"].drop_nulls() >= 0).all()


def test_tiny_config_works() -> None:
    from raypipe.synth import generate_shard

    tables = generate_shard(TelemetryConfig(players=1, days=1, seed=0), 0)
    assert tables["players"].num_rows == 1
    assert tables["events"].schema.equals(EVENTS_SCHEMA)
    assert np.isfinite(tables["churn_truth"].column("churn_probability").to_numpy()).all()
