"""Column profiles merge exactly: partitions merged equal the whole table profiled at once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.engine.inline import InlineBackend
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.validation.profile_stage import ProfileOptions, ProfileStage
from raypipe.validation.profiling import read_profile_table
from raypipe.validation.stats import (
    SKETCH_K,
    ColumnProfile,
    merge_profiles,
    profile_column,
    profile_table,
    with_histogram,
)

floats = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6), st.sampled_from([math.nan, math.inf, -math.inf])
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), floats), min_size=0, max_size=80),
    st.integers(min_value=0, max_value=80),
)
def test_merged_float_profile_equals_whole(values: list[float | None], cut: int) -> None:
    whole = pa.array(values, pa.float64())
    cut = min(cut, len(values))
    merged = merge_profiles(
        [profile_column("x", whole.slice(0, cut)), profile_column("x", whole.slice(cut))]
    )
    direct = profile_column("x", whole)
    finite = np.array([v for v in values if v is not None and math.isfinite(v)])
    assert merged.rows == len(values)
    assert merged.nulls == sum(v is None for v in values)
    assert merged.nans == sum(v is not None and math.isnan(v) for v in values)
    assert merged.n == len(finite) == direct.n
    if len(finite):
        assert merged.min == finite.min() and merged.max == finite.max()
        assert merged.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-6)
    if len(finite) > 1:
        assert merged.variance == pytest.approx(np.var(finite, ddof=1), rel=1e-7, abs=1e-6)
    assert merged.distinct == direct.distinct
    assert dict(merged.values or ()) == dict(direct.values or ())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), max_size=60))
def test_string_profile_counts_values(values: list[str | None]) -> None:
    parts = [pa.array(values[i::3], pa.string()) for i in range(3)]
    merged = merge_profiles(profile_column("c", part) for part in parts)
    present = [v for v in values if v is not None]
    assert merged.kind == "categorical"
    assert merged.distinct == len(set(present))
    assert dict(merged.values or ()) == {v: present.count(v) for v in set(present)}
    if present:
        assert merged.top_values(1)[0][1] == max(present.count(v) for v in set(present))


def test_distinct_estimate_is_close_above_sketch_size() -> None:
    values = pa.array(np.arange(50_000, dtype=np.int64))
    parts = [profile_column("id", values.slice(i, 10_000)) for i in range(0, 50_000, 10_000)]
    merged = merge_profiles(parts)
    assert len(merged.sketch) == SKETCH_K and not merged.distinct_is_exact
    assert merged.distinct == pytest.approx(50_000, rel=0.15)
    assert merged.values is None  # more than VALUE_CAP distinct values


def test_histograms_on_shared_edges_sum_to_whole() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=1_000)
    edges = tuple(np.linspace(data.min(), data.max(), 11))
    parts = [
        with_histogram(profile_column("x", pa.array(chunk)), pa.array(chunk), edges)
        for chunk in np.array_split(data, 4)
    ]
    merged = merge_profiles(parts)
    assert merged.histogram == tuple(np.histogram(data, bins=np.asarray(edges))[0])
    assert sum(merged.histogram) == 1_000


def test_round_trip_through_dict() -> None:
    profile = profile_column("x", pa.array([1.0, 2.0, None, 2.0]))
    again = ColumnProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile


def _write_inputs(tmp_path: Path) -> dict[str, DatasetInput]:
    rng = np.random.default_rng(0)
    events = pa.table(
        {
            "day": pa.array(np.repeat(np.arange(4), 250)),
            "amount": pa.array(
                [
                    None if i % 10 == 0 else float(v)
                    for i, v in enumerate(rng.exponential(3.0, 1_000))
                ]
            ),
            "event_type": pa.array(rng.choice(["a", "b", "c"], 1_000)),
            "ts": pa.array(np.arange(1_000) * 1_000_000, pa.timestamp("us")),
        }
    )
    players = pa.table({"player_id": pa.array(np.arange(300)), "flag": pa.array([True] * 300)})
    inputs = {}
    for name, table, parts in (("events", events, ("day",)), ("players", players, ())):
        url = str(tmp_path / name)
        manifest = write_dataset(url, table, partition_by=parts)
        inputs[name] = DatasetInput(url, manifest)
    return inputs


def test_profile_stage_profiles_every_input(tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path)
    executor = InlineBackend()
    context = StageContext(
        stage_name="profile", data_dir=str(tmp_path), run_id="r", backend=executor
    )
    result = ProfileStage().run(context, inputs, ProfileOptions())
    assert result.metrics["events.rows"] == 1_000
    assert result.metrics["events.nulls"] == 100
    assert result.metrics["players.rows"] == 300 and result.metrics["players.nulls"] == 0
    assert executor.calls.count("profile:events") == 1
    table = read_dataset(context.output_url("profile"))
    rows = {(r["table"], r["column"]): r for r in table.to_pylist()}
    amount = rows[("events", "amount")]
    assert amount["nulls"] == 100 and amount["null_fraction"] == pytest.approx(0.1)
    assert (
        json.loads(amount["histogram"])["counts"]
        and sum(json.loads(amount["histogram"])["counts"]) == 900
    )
    assert rows[("events", "event_type")]["distinct"] == 3
    assert rows[("events", "day")]["distinct"] == 4  # partition column restored
    assert rows[("events", "ts")]["min"] == "1970-01-01 00:00:00"
    reference = read_profile_table(table)
    assert reference["events"].version == inputs["events"].version
    assert reference["events"].columns["amount"].n == 900
    assert ProfileStage.accepts_any_inputs and ProfileStage.outputs == ("profile",)


def test_the_same_data_in_any_row_order_gives_the_same_profile() -> None:
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "country": pa.array(rng.choice(["US", "DE", "BR", "JP"], 500)),
            "level": pa.array(rng.integers(0, 40, 500)),
        }
    )
    shuffled = table.take(pa.array(rng.permutation(500)))
    assert {name: p.to_dict() for name, p in profile_table(table).items()} == {
        name: p.to_dict() for name, p in profile_table(shuffled).items()
    }
