"""Stage kind ``features.stream``: each run processes the files landed since the last one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from raypipe.engine.inline import InlineBackend
from raypipe.features.store.online import Status, StoreConfig, open_store
from raypipe.features.streaming.stage import StreamOptions, StreamStage
from raypipe.io.dataset import read_dataset
from raypipe.stages.base import StageContext
from raypipe.stages.registry import load_stage


def _land(folder: Path, name: str, rows: list[tuple[int, int, float]]) -> None:
    ts = [dt.datetime(1970, 1, 1) + dt.timedelta(seconds=s) for _, s, _ in rows]
    frame = pl.DataFrame(
        {"player_id": [r[0] for r in rows], "ts": ts, "amount": [r[2] for r in rows]}
    )
    frame.write_parquet(folder / name)


def test_each_run_continues_from_the_stream_position(tmp_path: Path) -> None:
    landing, data_dir = tmp_path / "landing", str(tmp_path / "data")
    landing.mkdir()
    options = StreamOptions(
        folder=str(landing),
        kind="tumbling",
        key="player_id",
        value="amount",
        size="10s",
        lateness="2s",
        online={"kind": "sqlite"},
        namespace="purchases",
    )
    stage = StreamStage()

    def run(run_id: str):
        context = StageContext("purchases", data_dir, run_id, InlineBackend(), job_name="shop")
        result = stage.run(context, {}, options)
        windows = read_dataset(context.output_url("windows"))
        late = read_dataset(context.output_url("late"))
        return result, pl.from_arrow(windows), pl.from_arrow(late)

    _land(landing, "0001.parquet", [(1, 1, 1.0), (2, 3, 2.0), (1, 15, 4.0)])
    result, windows, late = run("r1")
    # Watermark 13s: [0s, 10s) of both players closes; [10s, 20s) of player 1 stays open.
    assert windows.select("key", "start", "count").rows() == [(1, 0, 1), (2, 0, 1)]
    assert late.height == 0 and result.metrics["position"] == 0

    _land(landing, "0002.parquet", [(1, 2, 9.0), (1, 24, 1.0)])  # ts 2s is late (<= 13s)
    result, windows, late = run("r2")
    assert result.metrics["files"] == 1 and result.metrics["events"] == 2
    assert windows.select("key", "start", "count", "sum").rows() == [(1, 10_000_000, 1, 4.0)]
    assert late["amount"].to_list() == [9.0]

    result, windows, late = run("r3")  # nothing landed: nothing processed twice
    assert result.metrics["files"] == 0 and windows.height == 0 and late.height == 0

    online = open_store(StoreConfig("sqlite", path=f"{data_dir}/online/online.sqlite"))
    try:
        [value] = online.read("purchases", ["1"])
    finally:
        online.close()
    assert value.status is Status.PRESENT and value.values["sum"] == 4.0


def test_the_stage_kind_is_registered_and_always_runs() -> None:
    assert load_stage("features.stream") is StreamStage
    assert StreamStage.always_runs


def test_the_driver_reruns_it_every_time_new_files_are_seen(tmp_path: Path) -> None:
    from raypipe.driver import RunOptions, run_job
    from raypipe.spec import load_job

    landing = tmp_path / "landing"
    landing.mkdir()
    spec = tmp_path / "stream.yaml"
    spec.write_text(
        f"name: shop\ndata_dir: {tmp_path / 'data'}\nstages:\n"
        "  purchases:\n    uses: features.stream\n"
        f"    with: {{folder: {landing}, kind: tumbling, key: player_id, value: amount, "
        "size: 10s}\n"
    )

    def run():
        record = run_job(
            load_job(spec, env={}),
            backend=InlineBackend(),
            driver_node=lambda: "node-0",
            options=RunOptions(),
        )
        return record.stages["purchases"]

    _land(landing, "0001.parquet", [(1, 1, 1.0), (1, 12, 1.0)])
    first = run()
    _land(landing, "0002.parquet", [(1, 25, 1.0)])
    second = run()  # same options, no inputs: a cached stage would miss the new file
    assert not second.cached
    assert (first.metrics["files"], second.metrics["files"]) == (1, 1)
    assert second.metrics["windows_closed"] == 1  # [10s, 20s) closed by the watermark 25s
