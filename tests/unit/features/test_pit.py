"""Point-in-time join: Feast's golden cases and a property test against a brute-force oracle."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.errors import SchemaError
from raypipe.features.pit import FeatureTable, pit_join, pit_join_partitioned

T0 = dt.datetime(2026, 1, 1)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def table(rows, *, ttl=None, created=True, name="fv") -> FeatureTable:
    data = pl.DataFrame(
        rows,
        schema={
            "k": pl.Int64,
            "ts": pl.Datetime("us"),
            "created": pl.Datetime("us"),
            "x": pl.Int64,
        },
        orient="row",
    )
    return FeatureTable(name, data, ("k",), "ts", "created" if created else None, ttl, ("x",))


def entity(rows) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"k": pl.Int64, "event_timestamp": pl.Datetime("us")}, orient="row"
    )


def test_inclusive_upper_bound_and_ttl_edges() -> None:
    ttl = dt.timedelta(hours=5)
    features = table([(1, at(0), None, 10)], ttl=ttl)
    rows = entity([(1, at(0)), (1, at(5)), (1, at(5) + dt.timedelta(microseconds=1)), (1, at(-1))])
    assert pit_join(rows, [features])["x"].to_list() == [10, 10, None, None]


def test_no_ttl_looks_back_forever() -> None:
    features = table([(1, at(-5 * 365 * 24), None, 7)], ttl=dt.timedelta(0))
    assert pit_join(entity([(1, at(0))]), [features])["x"].to_list() == [7]


def test_ties_broken_by_created_time_and_null_created_loses() -> None:
    features = table([(1, at(0), at(11), 2), (1, at(0), at(10), 1), (1, at(0), None, 3)])
    assert pit_join(entity([(1, at(1))]), [features])["x"].to_list() == [2]


def test_entity_rows_kept_duplicates_and_order_preserved() -> None:
    features = table([(1, at(0), None, 5), (2, at(3), None, 6)])
    rows = entity([(2, at(4)), (1, at(1)), (None, at(1)), (3, at(9)), (1, at(1)), (1, None)])
    out = pit_join(rows, [features])
    assert out["k"].to_list() == rows["k"].to_list()
    assert out["x"].to_list() == [6, 5, None, None, 5, None]


def test_match_across_hour_boundary_in_many_partitions() -> None:
    features = table([(k, at(0) - dt.timedelta(seconds=1), None, k) for k in range(20)])
    rows = entity([(k, at(0) + dt.timedelta(seconds=1)) for k in range(20)])
    out = pit_join_partitioned(rows, [features], partitions=7)
    assert out["x"].to_list() == list(range(20))


def test_two_views_full_feature_names_and_clash() -> None:
    a = table([(1, at(0), None, 1)], name="a")
    b = table([(1, at(0), None, 2)], name="b", ttl=dt.timedelta(hours=1))
    out = pit_join(entity([(1, at(2))]), [a, b], full_feature_names=True)
    assert out.columns == ["k", "event_timestamp", "a__x", "b__x"]
    assert out.row(0)[2:] == (1, None)
    with pytest.raises(SchemaError, match="clashes"):
        pit_join(entity([(1, at(2))]), [a, b])


def test_tz_aware_times_in_different_zones_are_compared_in_utc() -> None:
    utc = dt.UTC
    features = table([(1, at(0), None, 1), (1, at(2), None, 2)])
    features = FeatureTable(
        "fv",
        features.data.with_columns(
            pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Tokyo")
        ),
        ("k",),
        "ts",
        "created",
        None,
        ("x",),
    )
    tz = dt.timezone(dt.timedelta(hours=2))
    rows = pl.DataFrame(
        {
            "k": [1, 1],
            "event_timestamp": [dt.datetime(2026, 1, 1, 3, tzinfo=tz), at(2).replace(tzinfo=utc)],
        }
    )
    assert pit_join(rows, [features])["x"].to_list() == [1, 2]  # 03:00+02 is 01:00 UTC


def test_naive_and_aware_times_are_refused_with_both_named() -> None:
    features = table([(1, at(0), None, 1)])
    rows = pl.DataFrame({"k": [1], "event_timestamp": [at(1).replace(tzinfo=dt.UTC)]})
    with pytest.raises(SchemaError, match=r"tz-aware.*`event_timestamp`.*naive.*`ts`") as err:
        pit_join(rows, [features])
    assert "Hint:" in str(err.value)


def oracle(rows: list, feats: list, ttl: dt.timedelta | None) -> list:
    """Feast's ROW_NUMBER() semantics, by brute force."""
    out = []
    for key, when in rows:
        if key is None or when is None:
            out.append(None)
            continue
        best = None
        for index, (k, ts, created, x) in enumerate(feats):
            if k != key or ts is None or ts > when or (ttl and ts < when - ttl):
                continue
            rank = (ts, created is not None, created or T0, index)
            if best is None or rank > best[0]:
                best = (rank, x)
        out.append(None if best is None else best[1])
    return out


keys = st.one_of(st.none(), st.integers(0, 4))
times = st.one_of(st.none(), st.integers(0, 12).map(at))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(keys, times), max_size=25),
    feats=st.lists(
        st.tuples(keys, times, times, st.one_of(st.none(), st.integers(0, 99))), max_size=30
    ),
    ttl_hours=st.one_of(st.none(), st.integers(0, 6)),
    partitions=st.integers(1, 5),
)
def test_matches_brute_force_oracle(rows, feats, ttl_hours, partitions) -> None:
    ttl = None if ttl_hours is None else dt.timedelta(hours=ttl_hours)
    features = table(feats, ttl=ttl)
    expected = oracle(rows, feats, ttl)
    assert pit_join(entity(rows), [features])["x"].to_list() == expected
    split = pit_join_partitioned(entity(rows), [features], partitions=partitions)
    assert split["x"].to_list() == expected
