"""Stream partitions in-process: sinks, online push, restarts without double counting."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from raypipe.features.store.online import Status, StoreConfig, open_store
from raypipe.features.streaming import WindowSpec, batch_windows
from raypipe.features.streaming.operator import InlineStreamBackend, StreamConfig, StreamRunner

SPEC = WindowSpec("tumbling", "player_id", "ts", "amount", size=10, allowed_lateness=5)


def _batches() -> list[pl.DataFrame]:
    rows = [
        [(1, 1, 1.0), (2, 3, 2.0), (3, 12, 1.0)],
        [(1, 8, 4.0), (2, 25, 1.0)],
        [(1, 2, 9.0), (3, 14, 1.0), (1, 31, 1.0)],
        [(2, 40, 3.0), (3, 33, 2.0)],
    ]
    return [
        pl.DataFrame(
            b, schema={"player_id": pl.Int64, "ts": pl.Int64, "amount": pl.Float64}, orient="row"
        )
        for b in rows
    ]


def _read(folder: Path) -> pl.DataFrame:
    files = sorted(folder.rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def _run(out: Path, store: StoreConfig | None, kill_after: int | None = None) -> StreamRunner:
    config = StreamConfig(SPEC, str(out), partitions=3, store=store, namespace="w")
    runner = StreamRunner(config, InlineStreamBackend(config))
    for index, batch in enumerate(_batches()):
        if kill_after is not None and index == kill_after:
            # A new process: every operator reloads its checkpoint; the runner resumes.
            runner = StreamRunner(config, InlineStreamBackend(config))
            runner.feed(_batches()[index - 1], position=index - 1)  # a replayed batch: ignored
        runner.feed(batch)
    runner.finish()
    return runner


def test_stream_equals_batch_and_sends_late_events_aside(tmp_path: Path) -> None:
    store = StoreConfig("sqlite", path=str(tmp_path / "online.sqlite"))
    runner = _run(tmp_path / "out", store)
    late = _read(tmp_path / "out" / "late")
    # The third batch arrives at watermark 20 (newest 25 - 5): ts 2 and 14 are late.
    assert sorted(late.rows()) == [(1, 2, 9.0), (3, 14, 1.0)]
    assert runner.late == 2 and runner.open_windows == 0 and runner.events == 10
    every = pl.concat(_batches())
    on_time = every.join(late, on=["player_id", "ts", "amount"], how="anti")
    got = _read(tmp_path / "out" / "windows").sort("key", "start")
    assert_frame_equal(got, batch_windows(on_time, SPEC))
    online = open_store(store).read("w", ["1", "2", "9"])
    assert [v.status for v in online] == [Status.PRESENT, Status.PRESENT, Status.NOT_FOUND]
    assert online[0].values["start"] == 30 and online[1].values["sum"] == 3.0


def test_a_restart_resumes_from_the_checkpoint_without_double_counting(tmp_path: Path) -> None:
    _run(tmp_path / "once", None)
    _run(tmp_path / "killed", None, kill_after=2)
    for sink in ("windows", "late"):
        assert_frame_equal(_read(tmp_path / "killed" / sink), _read(tmp_path / "once" / sink))


def test_folder_source_processes_new_files_once(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    config = StreamConfig(SPEC, str(tmp_path / "out"), partitions=2)
    runner = StreamRunner(config, InlineStreamBackend(config))
    batches = _batches()
    for index, batch in enumerate(batches[:2]):
        batch.write_parquet(landing / f"{index:04d}.parquet")
    assert runner.run_folder(str(landing)) == 2
    assert runner.run_folder(str(landing)) == 0
    for index, batch in enumerate(batches[2:], start=2):
        batch.write_parquet(landing / f"{index:04d}.parquet")
    resumed = StreamRunner(config, InlineStreamBackend(config))  # e.g. the next poll's process
    assert resumed.run_folder(str(landing)) == 2
    resumed.finish()
    reference = tmp_path / "reference"
    _run(reference, None)
    assert_frame_equal(
        _read(tmp_path / "out" / "windows").sort("key", "start"),
        _read(reference / "windows").sort("key", "start"),
    )


def test_early_results_are_replaced_by_the_final_ones(tmp_path: Path) -> None:
    store = StoreConfig("sqlite", path=str(tmp_path / "online.sqlite"))
    config = StreamConfig(
        SPEC, str(tmp_path / "out"), partitions=1, store=store, namespace="e", early_results=True
    )
    runner = StreamRunner(config, InlineStreamBackend(config))
    batch = pl.DataFrame({"player_id": [1, 1], "ts": [1, 3], "amount": [1.0, 2.0]})
    runner.feed(batch)
    [early] = open_store(store).read("e", ["1"])
    assert early.values["count"] == 2 and early.values["end"] == 10  # window [0, 10) still open
    runner.feed(batch.with_columns(pl.Series("ts", [4, 40])))  # closes [0, 10) with 3 events
    final = open_store(store).read("e", ["1"])[0].values
    assert final["start"] == 40 and final["count"] == 1  # the newest window, early, wins
    closed = _read(tmp_path / "out" / "windows")
    assert closed.select("start", "count").rows() == [(0, 3)]
