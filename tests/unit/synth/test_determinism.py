"""Same config, same data, bit for bit, whoever runs the shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.io.dataset import read_dataset
from raypipe.synth import TABLES, DriftConfig, TelemetryConfig, generate_shard, run_generate

SMALL = TelemetryConfig(players=1_500, days=20, seed=3, shard_players=500)


class ReversedThreadExecutor:
    """Runs tasks in reverse order on threads: another schedule, another parallelism."""

    parallelism = 3

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], *, name: str, **_: Any
    ) -> list[Any]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {item: pool.submit(fn, item) for item in reversed(list(items))}
        return [futures[item].result() for item in items]


def test_same_seed_gives_identical_tables() -> None:
    first = generate_shard(SMALL, 1)
    second = generate_shard(SMALL, 1)
    for name in TABLES:
        assert first[name].equals(second[name]), name


def test_other_seed_or_shard_gives_other_data() -> None:
    base = generate_shard(SMALL, 0)
    other_seed = generate_shard(
        TelemetryConfig(players=1_500, days=20, seed=4, shard_players=500), 0
    )
    other_shard = generate_shard(SMALL, 1)
    assert not base["events"].equals(other_seed["events"])
    assert not base["players"].column("skill").equals(other_shard["players"].column("skill"))


def test_player_ids_are_global_and_contiguous() -> None:
    ids = pa.concat_arrays(
        [
            generate_shard(SMALL, index)["players"].column("player_id").combine_chunks()
            for index in range(SMALL.shards)
        ]
    )
    assert ids.to_pylist() == list(range(SMALL.players))


def test_last_shard_is_partial() -> None:
    config = TelemetryConfig(players=1_100, days=10, seed=3, shard_players=500)
    assert config.shards == 3
    assert generate_shard(config, 2)["players"].num_rows == 100
    with pytest.raises(IndexError):
        generate_shard(config, 3)


def test_committed_data_does_not_depend_on_the_executor(tmp_path: Any) -> None:
    inline = run_generate(SMALL, str(tmp_path / "a"), InlineBackend())
    threaded = run_generate(SMALL, str(tmp_path / "b"), ReversedThreadExecutor())
    for name in TABLES:
        assert inline[name].version == threaded[name].version, name
        assert [f.sha256 for f in inline[name].files] == [f.sha256 for f in threaded[name].files]
        left = read_dataset(str(tmp_path / "a" / name))
        right = read_dataset(str(tmp_path / "b" / name))
        assert left.equals(right), name
    assert inline["players"].rows == SMALL.players


def test_drift_leaves_days_before_its_start_unchanged() -> None:
    start_day = 12
    drift = DriftConfig(
        start_day=start_day,
        new_platform="switch",
        price_multiplier=2.0,
        null_rate={"amount": 0.5, "platform": 0.2},
    )
    plain = generate_shard(SMALL, 0)["events"]
    drifted = generate_shard(
        TelemetryConfig(players=1_500, days=20, seed=3, shard_players=500, drift=drift), 0
    )["events"]
    boundary = pa.scalar(SMALL.start_date.toordinal() - 719_163 + start_day, pa.int32()).cast(
        pa.date32()
    )

    def before(table: pa.Table) -> pa.Table:
        # Refunds of earlier purchases can land after the start; the sessions themselves cannot.
        keep = pc.and_(
            pc.less(table.column("event_date"), boundary),
            pc.not_equal(table.column("event_type"), "refund"),
        )
        return table.filter(keep)

    assert before(plain).num_rows > 0
    assert before(plain).equals(before(drifted))
    assert not plain.equals(drifted)
