"""Point-in-time joins and as-of windows are exact at every time unit (s, ms, us, ns) and zone.

Times are drawn as integer nanoseconds near hour and window boundaries (offsets of 0, ±1 ns,
±999 ns, ±1 us), stored at each side's own unit (floored, as a writer would), and checked against
brute-force oracles over those integers.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.errors import SchemaError
from raypipe.features.asof import compute_features
from raypipe.features.pit import FeatureTable, pit_join, pit_join_partitioned
from raypipe.features.views import Aggregate, FeatureView

BASE = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z in ns
HOUR = 3_600 * 10**9
PER_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
UNITS = ("s", "ms", "us", "ns", "ns")  # nanoseconds twice: where truncation bites


def column(values: list[int | None], unit: str, tz: str | None = None) -> pl.Series:
    """Nanosecond integers stored at ``unit`` (floored), through Arrow like a Parquet reader."""
    stored = [None if v is None else v // PER_NS[unit] for v in values]
    return pl.Series(pl.from_arrow(pa.array(stored, pa.timestamp(unit, tz))))


def stored(value: int | None, unit: str) -> int | None:
    return None if value is None else value // PER_NS[unit] * PER_NS[unit]


JITTER = st.sampled_from([0, 1, -1, 999, -999, 1_000, -1_000, 500, 10**9])
TIMES = st.one_of(st.none(), st.builds(lambda h, j: BASE + h * HOUR + j, st.integers(0, 2), JITTER))
KEYS = st.one_of(st.none(), st.integers(0, 2))


def test_feature_row_one_to_999_ns_after_the_entity_time_is_not_joined() -> None:
    """Regression: ns columns were cut to microseconds, so these rows leaked from the future."""
    after = [1, 2, 500, 998, 999]
    features = pl.DataFrame({"k": [1] * 6, "x": [0, *after]}).with_columns(
        column([BASE, *(BASE + d for d in after)], "ns").alias("ts")
    )
    entity = pl.DataFrame({"k": [1]}).with_columns(column([BASE], "ns").alias("event_timestamp"))
    table = FeatureTable("fv", features, ("k",), "ts", None, None, ("x",))
    assert pit_join(entity, [table])["x"].to_list() == [0]
    coarse = entity.with_columns(column([BASE], "us").alias("event_timestamp"))
    assert pit_join(coarse, [table])["x"].to_list() == [0]


def pit_oracle(rows, feats, ttl_ns):
    out = []
    for key, when in rows:
        best = None
        for index, (k, ts, x) in enumerate(feats):
            if key is None or when is None or k != key or ts is None or ts > when:
                continue
            if ttl_ns and ts < when - ttl_ns:
                continue
            if best is None or (ts, index) > best[0]:
                best = ((ts, index), x)
        out.append(None if best is None else best[1])
    return out


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(KEYS, TIMES), max_size=12),
    feats=st.lists(st.tuples(KEYS, TIMES, st.integers(0, 99)), max_size=16),
    units=st.tuples(st.sampled_from(UNITS), st.sampled_from(UNITS)),
    ttl_hours=st.one_of(st.none(), st.integers(0, 2)),
    partitions=st.integers(1, 3),
)
def test_pit_join_matches_oracle_at_every_unit(rows, feats, units, ttl_hours, partitions) -> None:
    entity_unit, feature_unit = units
    entity = pl.DataFrame({"k": [r[0] for r in rows]}, schema={"k": pl.Int64}).with_columns(
        column([r[1] for r in rows], entity_unit).alias("event_timestamp")
    )
    data = pl.DataFrame(
        {"k": [f[0] for f in feats], "x": [f[2] for f in feats]},
        schema={"k": pl.Int64, "x": pl.Int64},
    ).with_columns(column([f[1] for f in feats], feature_unit).alias("ts"))
    ttl = None if ttl_hours is None else dt.timedelta(hours=ttl_hours)
    table = FeatureTable("fv", data, ("k",), "ts", None, ttl, ("x",))
    expected = pit_oracle(
        [(k, stored(t, entity_unit)) for k, t in rows],
        [(k, stored(t, feature_unit), x) for k, t, x in feats],
        None if ttl_hours is None else ttl_hours * HOUR,
    )
    assert pit_join(entity, [table])["x"].to_list() == expected
    split = pit_join_partitioned(entity, [table], partitions=partitions)
    assert split["x"].to_list() == expected


VIEW = FeatureView(
    name="activity",
    entities=("k",),
    timestamp="ts",
    features=(
        Aggregate("n_all", "count"),
        Aggregate("n_1h", "count", window="1h"),
        Aggregate("sum_2h", "sum", column="x", window="2h"),
        Aggregate("last_x", "last", column="x"),
    ),
)


def window_oracle(events, key, cutoff):
    def rows(hours):
        return [
            e
            for e in events
            if e[0] == key
            and e[1] is not None
            and e[1] < cutoff
            and (hours is None or e[1] >= cutoff - hours * HOUR)
        ]

    life = rows(None)
    last = max(enumerate(life), key=lambda p: (p[1][1], p[0]))[1] if life else None
    return (len(life), len(rows(1)), sum(e[2] for e in rows(2)), last[2] if last else None)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(KEYS, TIMES, st.integers(0, 99)), max_size=16),
    cutoffs=st.lists(st.tuples(st.integers(0, 2), TIMES), min_size=1, max_size=8),
    units=st.tuples(st.sampled_from(UNITS), st.sampled_from(UNITS)),
)
def test_asof_windows_match_oracle_at_every_unit(events, cutoffs, units) -> None:
    event_unit, cutoff_unit = units
    frame = pl.DataFrame(
        {"k": [e[0] for e in events], "x": [e[2] for e in events]},
        schema={"k": pl.Int64, "x": pl.Int64},
    ).with_columns(column([e[1] for e in events], event_unit).alias("ts"))
    entities = pl.DataFrame({"k": [c[0] for c in cutoffs]}, schema={"k": pl.Int64}).with_columns(
        column([c[1] for c in cutoffs], cutoff_unit).alias("cutoff")
    )
    out = compute_features(frame, [VIEW], entities)
    kept = [(k, stored(t, event_unit), x) for k, t, x in events]
    for (key, cutoff), got in zip(cutoffs, out.select(VIEW.feature_names).rows(), strict=True):
        if cutoff is None:
            assert got == (0, 0, 0, None)
            continue
        assert got == window_oracle(kept, key, stored(cutoff, cutoff_unit))


def test_window_edges_are_exact_to_the_nanosecond() -> None:
    hour = BASE + HOUR
    times = [hour - 1, BASE - 1, BASE, BASE + 1]  # the 1h window of `hour` is [BASE, hour)
    frame = pl.DataFrame({"k": [1] * 4, "x": [1, 2, 3, 4]}).with_columns(
        column(times, "ns").alias("ts")
    )
    entities = pl.DataFrame({"k": [1, 1]}).with_columns(
        column([hour, hour - 1], "ns").alias("cutoff")
    )
    out = compute_features(frame, [VIEW], entities)
    assert out["n_1h"].to_list() == [3, 3]  # at hour - 1 ns, BASE - 1 is still 1h + 1 ns old
    assert out["n_all"].to_list() == [4, 3]
    scalar = compute_features(
        frame, [VIEW], pl.DataFrame({"k": [1]}), cutoff=dt.datetime(2026, 1, 1, 1)
    )
    assert scalar["n_1h"].to_list() == [3]


def test_tz_aware_events_and_cutoffs_agree_across_zones_and_mixing_is_refused() -> None:
    frame = pl.DataFrame({"k": [1, 1], "x": [1, 2]}).with_columns(
        column([BASE, BASE + HOUR], "ns", "Asia/Tokyo").alias("ts")
    )
    entities = pl.DataFrame({"k": [1]}).with_columns(
        column([BASE + HOUR], "us", "America/New_York").alias("cutoff")
    )
    assert compute_features(frame, [VIEW], entities)["n_all"].to_list() == [1]
    naive = entities.with_columns(pl.col("cutoff").dt.replace_time_zone(None))
    with pytest.raises(SchemaError, match="tz-aware"):
        compute_features(frame, [VIEW], naive)
