"""As-of features: left-closed windows checked against a brute-force oracle."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.errors import SpecError
from raypipe.features.asof import compute_features
from raypipe.features.views import Aggregate, Derived, FeatureView

T0 = dt.datetime(2026, 1, 10)
TYPES = ("login", "purchase", "ad")


def at(hours: int) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


VIEW = FeatureView(
    name="activity",
    entities=("player_id",),
    timestamp="ts",
    features=(
        Aggregate("n_all", "count"),
        Aggregate("n_purchase_1d", "count", window="1d", where='event_type == "purchase"'),
        Aggregate("spend_2d", "sum", column="amount", window="2d"),
        Aggregate("mean_2d", "mean", column="amount", window="2d"),
        Aggregate("std_life", "std", column="amount"),
        Aggregate("max_1d", "max", column="amount", window="1d"),
        Aggregate("min_1d", "min", column="amount", window="1d"),
        Aggregate("types_2d", "count_distinct", column="event_type", window="2d"),
        Aggregate("last_type", "last", column="event_type"),
        Aggregate("hours_since", "time_since_last", unit="h"),
        Derived("share_1d", "safe_div(n_purchase_1d, n_all)"),
    ),
)


def oracle(events: list, key, cutoff) -> dict:
    def rows(window_h):
        return [
            e
            for e in events
            if e[0] == key
            and e[1] is not None
            and e[1] < cutoff
            and (window_h is None or e[1] >= cutoff - dt.timedelta(hours=window_h))
        ]

    def values(window_h):
        return [e[3] for e in rows(window_h) if e[3] is not None]

    life, d1, d2 = rows(None), rows(24), rows(48)
    amounts2 = values(48)
    amounts_life = values(None)
    n_purchase = sum(1 for e in d1 if e[2] == "purchase")
    last = max(enumerate(life), key=lambda p: (p[1][1], p[0]))[1] if life else None
    return {
        "n_all": len(life),
        "n_purchase_1d": n_purchase,
        "spend_2d": sum(amounts2),
        "mean_2d": statistics.fmean(amounts2) if amounts2 else None,
        "std_life": statistics.stdev(amounts_life) if len(amounts_life) > 1 else None,
        "max_1d": max(values(24), default=None),
        "min_1d": min(values(24), default=None),
        "types_2d": len({e[2] for e in d2 if e[2] is not None}),
        "last_type": last[2] if last else None,
        "hours_since": (cutoff - max(e[1] for e in life)).total_seconds() / 3600 if life else None,
        "share_1d": None if not life else n_purchase / len(life),
    }


def frame(events: list) -> pl.DataFrame:
    return pl.DataFrame(
        events,
        orient="row",
        schema={
            "player_id": pl.Int64,
            "ts": pl.Datetime("us"),
            "event_type": pl.String,
            "amount": pl.Float64,
        },
    )


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


event = st.tuples(
    st.one_of(st.none(), st.integers(0, 3)),
    st.one_of(st.none(), st.integers(-80, 80).map(at)),
    st.one_of(st.none(), st.sampled_from(TYPES)),
    st.one_of(st.none(), st.integers(-5, 50).map(float)),
)


@settings(max_examples=120, deadline=None)
@given(
    events=st.lists(event, max_size=40),
    labels=st.lists(st.tuples(st.integers(0, 4), st.integers(-48, 48).map(at)), max_size=12),
)
def test_per_row_cutoffs_match_oracle(events, labels) -> None:
    entities = pl.DataFrame(
        labels, orient="row", schema={"player_id": pl.Int64, "cutoff": pl.Datetime("us")}
    )
    out = compute_features(frame(events), [VIEW], entities)
    assert out.select("player_id", "cutoff").rows() == labels
    for row, (key, cutoff) in zip(out.iter_rows(named=True), labels, strict=True):
        expected = oracle(events, key, cutoff)
        for name, value in expected.items():
            assert close(row[name], value), (name, key, cutoff, row[name], value)


@settings(max_examples=60, deadline=None)
@given(events=st.lists(event, max_size=40), cut=st.integers(-48, 48))
def test_single_cutoff_matches_per_row_cutoffs(events, cut) -> None:
    players = pl.DataFrame({"player_id": [0, 1, 2, 3, 4]})
    one = compute_features(frame(events), [VIEW], players, cutoff=at(cut))
    per_row = compute_features(frame(events), [VIEW], players.with_columns(cutoff=pl.lit(at(cut))))
    assert one.equals(per_row.drop("cutoff"))


def test_event_at_cutoff_is_excluded_and_window_start_included() -> None:
    events = frame(
        [
            (1, at(0), "purchase", 1.0),
            (1, at(-24), "purchase", 2.0),
            (1, at(-24) - dt.timedelta(microseconds=1), "purchase", 4.0),
        ]
    )
    out = compute_features(events, [VIEW], pl.DataFrame({"player_id": [1]}), cutoff=at(0))
    assert out["n_purchase_1d"].to_list() == [1]
    assert out["max_1d"].to_list() == [2.0]


def test_errors_name_view_and_feature() -> None:
    bad = FeatureView(
        "bad",
        ("player_id",),
        "ts",
        (
            Aggregate("a", "sum", column="event_type"),
            Aggregate("b", "count", where="nope == 1"),
            Aggregate("c", "count", window="7x"),
            Aggregate("d", "median", column="amount"),
            Derived("e", "a + missing"),
        ),
    )
    with pytest.raises(SpecError) as info:
        compute_features(frame([]), [bad], pl.DataFrame({"player_id": [1]}), cutoff=at(0))
    text = "\n".join(info.value.problems)
    assert "view `bad` feature `a`" in text and "must be num" in text
    assert "view `bad` feature `b`" in text and "unknown name `nope`" in text
    assert "feature `c`" in text and "window `7x`" in text
    assert "feature `d`" in text and "unknown aggregation `median`" in text
    assert "feature `e`" in text and "unknown name `missing`" in text
