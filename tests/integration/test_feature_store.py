"""The feature store on Ray: materialization tasks writing one SQLite file, stream actors that
are killed mid-stream and resume from their checkpoints."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import ray
from polars.testing import assert_frame_equal

from raypipe.features.store.materialize import materialize
from raypipe.features.store.online import Status, StoreConfig, open_store
from raypipe.features.store.registry import ServedView
from raypipe.features.streaming import WindowSpec
from raypipe.features.streaming.operator import InlineStreamBackend, StreamConfig, StreamRunner
from raypipe.io.dataset import write_dataset

pytestmark = pytest.mark.ray


def test_materialize_on_ray_tasks(ray_executor, tmp_path: Path) -> None:
    start = dt.datetime(2026, 1, 1)
    rows = [
        (p, start + dt.timedelta(hours=h), float(p * 1000 + h))
        for p in range(200)
        for h in range(0, 96, 7)
    ]
    source = str(tmp_path / "source")
    write_dataset(
        source,
        pa.table(
            {
                "player_id": pa.array([r[0] for r in rows], pa.int64()),
                "ts": pa.array([r[1] for r in rows], pa.timestamp("us")),
                "x": [r[2] for r in rows],
            }
        ),
    )
    view = ServedView("v", ("player_id",), "ts", source, ("x",))
    store = StoreConfig("sqlite", path=str(tmp_path / "online.sqlite"))
    result = materialize(str(tmp_path / "data"), view, source, store, ray_executor, partitions=2)
    assert result.chunks == 4 * 2
    again = materialize(str(tmp_path / "data"), view, source, store, ray_executor, full=True)
    assert again.written == 0
    values = open_store(store).read(view.namespace, [str(p) for p in range(200)])
    assert all(v.status is Status.PRESENT for v in values)
    assert [v.values["x"] for v in values] == [p * 1000.0 + 91 for p in range(200)]


def _batches() -> list[pl.DataFrame]:
    rng = random.Random(3)
    out = []
    for index in range(12):
        rows = [
            (rng.randint(0, 50), index * 10 + rng.randint(-15, 10), float(rng.randint(0, 9)))
            for _ in range(200)
        ]
        out.append(
            pl.DataFrame(
                rows,
                schema={"player_id": pl.Int64, "ts": pl.Int64, "amount": pl.Float64},
                orient="row",
            )
        )
    return out


def _windows(out: Path) -> pl.DataFrame:
    files = sorted((out / "windows").rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("key", "start")


def test_stream_actors_resume_after_a_kill(ray_runtime, tmp_path: Path) -> None:
    from raypipe.engine.streaming import RayStreamBackend

    spec = WindowSpec("sliding", "player_id", "ts", "amount", size=20, slide=10, allowed_lateness=8)
    reference = StreamConfig(spec, str(tmp_path / "inline"), partitions=2)
    runner = StreamRunner(reference, InlineStreamBackend(reference))
    for batch in _batches():
        runner.feed(batch)
    runner.finish()

    config = StreamConfig(spec, str(tmp_path / "ray"), partitions=2)
    backend = RayStreamBackend(config)
    try:
        ray_runner = StreamRunner(config, backend)
        for index, batch in enumerate(_batches()):
            if index == 6:
                ray.kill(backend.actors[1], no_restart=False)  # restarts from its checkpoint
            ray_runner.feed(batch)
        ray_runner.finish()
    finally:
        backend.close()
    assert ray_runner.late == runner.late > 0
    assert_frame_equal(_windows(tmp_path / "ray"), _windows(tmp_path / "inline"))


def test_sla_breach_launches_the_recompute_job(tmp_path: Path) -> None:
    """A stale view's recompute job really runs (`raypipe run`, its own Ray), once per cool-down."""
    import os
    import time

    from raypipe.features.store.recompute import RecomputeSpec, trigger_recompute
    from raypipe.features.store.registry import register_view

    data_dir = tmp_path / "data"
    job = tmp_path / "tiny.yaml"
    job.write_text(
        "name: tiny-recompute\n"
        f"data_dir: {data_dir}\n"
        "stages:\n"
        "  telemetry:\n"
        "    uses: synth.game_telemetry\n"
        "    with: {players: 40, days: 2}\n"
    )
    spec = RecomputeSpec(str(job), "telemetry", cooldown_s=3600)
    view, _ = register_view(
        str(data_dir),
        ServedView(
            "tiny", ("player_id",), "ts", "telemetry.events", ("x",), recompute=spec.to_record()
        ),
    )
    launch = trigger_recompute(str(data_dir), view)
    assert launch.launched and launch.pid
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(launch.pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.5)
    log_text = Path(str(launch.log_path)).read_text()
    assert status == 0, log_text
    # The job's run record says it succeeded.
    import json

    records = [json.loads(p.read_text()) for p in data_dir.rglob("runs/*/run.json")]
    assert [r["status"] for r in records] == ["succeeded"], log_text
    again = trigger_recompute(str(data_dir), view)
    assert not again.launched and again.pid == launch.pid
