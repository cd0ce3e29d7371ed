"""Window semantics in batch and the incremental state: parity on out-of-order batches."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from raypipe.errors import SpecError
from raypipe.features.streaming import WindowSpec, WindowState, batch_windows


def _events(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "player_id": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "amount": [r[2] for r in rows],
            "event_id": list(range(len(rows))),
        },
        schema={"player_id": pl.Int64, "ts": pl.Int64, "amount": pl.Float64, "event_id": pl.Int64},
    )


def spec(kind: str, **kw: int) -> WindowSpec:
    return WindowSpec(kind, "player_id", "ts", "amount", **kw)  # type: ignore[arg-type]


def test_tumbling_windows_are_half_open_and_epoch_aligned() -> None:
    got = batch_windows(
        _events([(1, 0, 1.0), (1, 9, 2.0), (1, 10, 4.0), (2, 25, 8.0)]), spec("tumbling", size=10)
    )
    assert got.rows() == [
        (1, 0, 10, 2, 3.0, 1.0, 2.0, 1.5),
        (1, 10, 20, 1, 4.0, 4.0, 4.0, 4.0),
        (2, 20, 30, 1, 8.0, 8.0, 8.0, 8.0),
    ]


def test_sliding_windows_match_polars_group_by_dynamic() -> None:
    rng = random.Random(1)
    rows = [(rng.randint(1, 3), rng.randint(0, 200), float(rng.randint(0, 9))) for _ in range(80)]
    events = _events(rows)
    got = batch_windows(events, spec("sliding", size=30, slide=10))
    frame = events.with_columns(pl.col("ts").cast(pl.Datetime("us"))).sort("player_id", "ts")
    want = (
        frame.group_by_dynamic(
            "ts",
            every="10us",
            period="30us",
            closed="left",
            group_by="player_id",
            start_by="window",
        )
        .agg(pl.len().cast(pl.Int64).alias("count"), pl.col("amount").sum().alias("sum"))
        .select(
            pl.col("player_id").alias("key"),
            pl.col("ts").cast(pl.Int64).alias("start"),
            "count",
            "sum",
        )
        .sort("key", "start")
    )
    # Polars starts each key's windows at its first event's boundary; Flink and Spark (and
    # raypipe) also report the earlier windows that contain the first events.
    first = events.group_by(pl.col("player_id").alias("key")).agg(
        (pl.col("ts").min() - pl.col("ts").min() % 10).alias("first_start")
    )
    same = got.join(first, on="key").filter(pl.col("start") >= pl.col("first_start"))
    assert_frame_equal(same.select("key", "start", "count", "sum"), want)
    assert (got.height - same.height) == 2 * first.height  # the two windows before each first


def test_sessions_merge_overlapping_and_adjacent_events() -> None:
    got = batch_windows(
        _events([(1, 0, 1.0), (1, 5, 1.0), (1, 11, 1.0), (1, 30, 1.0)]), spec("session", gap=5)
    )
    # 0 and 5 touch (5 <= 0 + 5); 11 is 6 after 5: a new session.
    assert got.select("start", "end", "count").rows() == [(0, 10, 2), (11, 16, 1), (30, 35, 1)]


def test_spec_problems_are_reported() -> None:
    with pytest.raises(SpecError, match="divides"):
        spec("sliding", size=30, slide=7)
    with pytest.raises(SpecError, match="gap"):
        spec("session")
    assert (
        WindowSpec.parse(
            "sliding",
            key="k",
            timestamp="t",
            value="v",
            size="1h",
            slide="5m",
            allowed_lateness="30s",
        ).slide
        == 300_000_000
    )


def test_late_events_are_returned_and_windows_close_at_the_watermark() -> None:
    state = WindowState(spec("tumbling", size=10, allowed_lateness=6))
    closed, late = state.process(_events([(1, 3, 1.0), (1, 14, 1.0)]), 14, position=0)
    assert closed.height == 0 and late.height == 0  # watermark 8: [0, 10) still open
    closed, late = state.process(_events([(1, 9, 2.0), (1, 16, 1.0)]), 16, position=1)
    assert late.height == 0  # 9 > watermark 8: on time, counted in [0, 10)
    assert closed.select("start", "count", "sum").rows() == [(0, 2, 3.0)]  # watermark 10
    closed, late = state.process(_events([(1, 10, 5.0), (1, 11, 1.0)]), 16, position=2)
    assert late["ts"].to_list() == [10]  # at or before watermark 10: late, kept aside
    assert state.flush().select("start", "count").rows() == [(10, 3)]


def test_replayed_batches_are_not_counted_twice_after_a_restart() -> None:
    window = spec("sliding", size=20, slide=10, allowed_lateness=10)
    state = WindowState(window)
    state.process(_events([(1, 5, 1.0), (2, 7, 2.0)]), 7, position=0)
    checkpoint = state.to_bytes()
    state.process(_events([(1, 12, 4.0)]), 12, position=1)  # then the actor dies
    restored = WindowState.from_bytes(window, checkpoint)
    closed, _ = restored.process(_events([(1, 5, 1.0), (2, 7, 2.0)]), 7, position=0)  # replay
    assert closed.height == 0 and restored.open_windows == 2  # panes [0, 10) of keys 1 and 2
    restored.process(_events([(1, 12, 4.0)]), 12, position=1)
    assert_frame_equal(restored.flush(), state.flush())


SPECS = [
    spec("tumbling", size=10, allowed_lateness=7),
    spec("sliding", size=30, slide=10, allowed_lateness=12),
    spec("session", gap=6, allowed_lateness=9),
    spec("session", gap=4, allowed_lateness=0),
]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 300), st.integers(0, 9)),
        min_size=1,
        max_size=120,
    ),
    window=st.sampled_from(SPECS),
    seed=st.integers(0, 2**16),
    batches=st.integers(1, 12),
)
def test_incremental_equals_batch_for_every_on_time_event(rows, window, seed, batches) -> None:
    events = _events([(k, t, float(v)) for k, t, v in rows])
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=seed)
    size = max(1, -(-shuffled.height // batches))
    state = WindowState(window)
    closed, late, newest = [], [], None
    for position, start in enumerate(range(0, shuffled.height, size)):
        batch = shuffled.slice(start, size)
        newest = max(newest or 0, int(batch["ts"].max()))
        got, lost = state.process(batch, newest, position)
        closed.append(got)
        late.append(lost)
    closed.append(state.flush())
    assert state.open_windows == 0
    late_ids = pl.concat(late)["event_id"]
    on_time = events.filter(~pl.col("event_id").is_in(late_ids.to_list()))
    want = batch_windows(on_time, window)
    assert_frame_equal(pl.concat(closed).sort("key", "start"), want)


def test_in_order_stream_has_no_late_events() -> None:
    state = WindowState(spec("tumbling", size=10, allowed_lateness=0))
    for position, ts in enumerate(range(0, 50, 3)):
        _, late = state.process(_events([(1, ts, 1.0)]), ts, position)
        assert late.height == 0


def test_datetime_timestamps() -> None:
    events = pl.DataFrame(
        {
            "player_id": [1, 1],
            "ts": [dt.datetime(2026, 1, 1, 0, 0, 30), dt.datetime(2026, 1, 1, 0, 1, 30)],
            "amount": [1.0, 2.0],
        }
    )
    got = batch_windows(
        events,
        WindowSpec.parse("tumbling", key="player_id", timestamp="ts", value="amount", size="1m"),
    )
    assert got["count"].to_list() == [1, 1]
    assert got["start"][0] == int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()) * 10**6
