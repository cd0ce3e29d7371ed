"""How the feature build computes: masks only where rows are selected, one task per CPU."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from raypipe.engine.inline import InlineBackend
from raypipe.features.asof import EVERY_ROW, compile_view, compute_features
from raypipe.features.build import FeatureBuild, run_feature_build
from raypipe.features.views import Aggregate, FeatureView
from raypipe.io.dataset import DatasetWriter, read_dataset, write_dataset

T0 = dt.datetime(2026, 1, 10)
SCHEMA = {
    "player_id": pl.Int64,
    "ts": pl.Datetime("us"),
    "event_type": pl.String,
    "amount": pl.Float64,
}

LIFETIME = FeatureView(
    name="life",
    entities=("player_id",),
    timestamp="ts",
    features=(
        Aggregate("n", "count"),
        Aggregate("spend", "sum", column="amount"),
        Aggregate("n_amounts", "count", column="amount"),
        Aggregate("hours_since", "time_since_last", unit="h"),
        Aggregate("n_ad", "count", where='event_type == "ad"'),
        Aggregate("spend_buy", "sum", column="amount", where='event_type == "buy"'),
        Aggregate("mean_not_ad", "mean", column="amount", where='event_type != "ad"'),
        Aggregate("n_1d", "count", window="1d"),
    ),
)


def test_lifetime_aggregates_without_where_use_no_mask() -> None:
    compiled = compile_view(LIFETIME, SCHEMA)
    # n_ad, spend_buy, mean_not_ad and n_1d need a mask; n, spend, n_amounts and hours_since
    # aggregate the view's rows as they are (no all-true mask column, no filter pass).
    assert len(compiled.masks) == 4
    plain = [str(expr) for expr in compiled.aggregations[:4]]
    assert not any("filter" in text or "__m" in text for text in plain), plain
    assert EVERY_ROW not in dict(compiled.masks)


def _oracle(rows: list, key: int, cutoff: dt.datetime) -> dict:
    life = [r for r in rows if r[0] == key and r[1] is not None and r[1] < cutoff]
    amounts = [r[3] for r in life if r[3] is not None]
    buy = [r[3] for r in life if r[2] == "buy" and r[3] is not None]
    not_ad = [r[3] for r in life if r[2] is not None and r[2] != "ad" and r[3] is not None]
    day = [r for r in life if r[1] >= cutoff - dt.timedelta(days=1)]
    return {
        "n": len(life),
        "spend": sum(amounts),
        "n_amounts": len(amounts),
        "hours_since": (
            (cutoff - max(r[1] for r in life)).total_seconds() / 3600 if life else None
        ),
        "n_ad": sum(1 for r in life if r[2] == "ad"),
        "spend_buy": sum(buy),
        "mean_not_ad": sum(not_ad) / len(not_ad) if not_ad else None,
        "n_1d": len(day),
    }


event = st.tuples(
    st.one_of(st.none(), st.integers(0, 3)),
    st.one_of(st.none(), st.integers(-60, 60).map(lambda h: T0 + dt.timedelta(hours=h))),
    st.one_of(st.none(), st.sampled_from(("ad", "buy", "login"))),
    st.one_of(st.none(), st.integers(-5, 50).map(float)),
)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(event, max_size=40), cut=st.integers(-48, 48))
def test_lifetime_and_conditional_aggregates_match_oracle(rows, cut) -> None:
    cutoff = T0 + dt.timedelta(hours=cut)
    players = pl.DataFrame({"player_id": [0, 1, 2, 3, 4]})
    events = pl.DataFrame(rows, orient="row", schema=SCHEMA)
    out = compute_features(events, [LIFETIME], players, cutoff=cutoff)
    for row in out.iter_rows(named=True):
        for name, value in _oracle(rows, row["player_id"], cutoff).items():
            got = row[name]
            if value is None or got is None:
                assert got is None and value is None, (name, row, value)
            else:
                assert abs(got - value) <= 1e-9 * max(1.0, abs(value)), (name, row, value)


class _TwoCpus(InlineBackend):
    parallelism = 2


def test_default_is_one_task_per_cpu_over_whole_files(tmp_path: Path) -> None:
    events = pl.DataFrame(
        {
            "player_id": [p for p in range(8) for _ in range(3)],
            "ts": [T0 - dt.timedelta(hours=h) for _ in range(8) for h in (1, 5, 30)],
            "event_type": ["ad", "buy", "login"] * 8,
            "amount": [float(i) for i in range(24)],
        }
    ).to_arrow()
    writer = DatasetWriter(str(tmp_path / "events"))
    entries = [
        e
        for part in range(4)  # four clusters of two players each
        for e in writer.write(events.slice(part * 6, 6), part=part)
    ]
    writer.commit(entries, metadata={"clustered_by": ["player_id"]}, schema=events.schema)
    write_dataset(str(tmp_path / "players"), pl.DataFrame({"player_id": range(8)}).to_arrow())
    build = FeatureBuild(
        events_url=str(tmp_path / "events"),
        views=(LIFETIME,),
        entities_url=str(tmp_path / "players"),
        keys=("player_id",),
        out=DatasetWriter(str(tmp_path / "out")),
        cutoff=T0,
        entity_columns=("player_id",),
    )
    result = run_feature_build(build, _TwoCpus())
    assert result.tasks == 2 and not result.shuffled
    assert len(result.manifest.files) == 2  # one output file per task
    got = pl.from_arrow(read_dataset(str(tmp_path / "out"))).sort("player_id").drop("cutoff")
    direct = compute_features(
        pl.from_arrow(events), [LIFETIME], pl.DataFrame({"player_id": range(8)}), cutoff=T0
    )
    assert_frame_equal(got, direct, check_dtypes=False)


def test_shuffle_scratch_is_raypipe_owned_and_a_users_look_alike_folder_is_kept(
    tmp_path: Path,
) -> None:
    events = pl.DataFrame(
        {
            "player_id": [p for p in range(6) for _ in range(2)],
            "ts": [T0 - dt.timedelta(hours=h) for _ in range(6) for h in (1, 30)],
            "event_type": ["ad", "buy"] * 6,
            "amount": [float(i) for i in range(12)],
        }
    ).to_arrow()
    write_dataset(str(tmp_path / "events"), events)
    write_dataset(str(tmp_path / "players"), pl.DataFrame({"player_id": range(6)}).to_arrow())
    mine = tmp_path / "out_shuffle"  # a user's folder that happens to have the old scratch name
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    build = FeatureBuild(
        events_url=str(tmp_path / "events"),
        views=(LIFETIME,),
        entities_url=str(tmp_path / "players"),
        keys=("player_id",),
        out=DatasetWriter(str(tmp_path / "out")),
        cutoff=T0,
        entity_columns=("player_id",),
    )
    result = run_feature_build(build, _TwoCpus(), clustered=False)
    assert result.shuffled
    assert (mine / "notes.txt").read_text() == "keep me"
    assert not [p for p in (tmp_path / "out").rglob("*") if "shuffle" in p.name]
    got = pl.from_arrow(read_dataset(str(tmp_path / "out"))).sort("player_id").drop("cutoff")
    direct = compute_features(
        pl.from_arrow(events), [LIFETIME], pl.DataFrame({"player_id": range(6)}), cutoff=T0
    )
    assert_frame_equal(got, direct, check_dtypes=False)
