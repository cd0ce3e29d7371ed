"""Materialization: latest per key, incremental, resumable, idempotent; freshness and alerts."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError
from raypipe.features.store import materialize as materialize_module
from raypipe.features.store.freshness import alert, freshness_of
from raypipe.features.store.materialize import materialize, read_state
from raypipe.features.store.online import Status, StoreConfig, open_store
from raypipe.features.store.registry import ServedView, current_view, list_views
from raypipe.features.store.stage import MaterializeOptions, MaterializeStage
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.io.manifest import read_manifest
from raypipe.stages.base import DatasetInput, StageContext
from tests.support.redis import redis_url  # noqa: F401 - fixture

T0 = dt.datetime(2026, 1, 1)


def _events(root: Path, name: str, rows: list[tuple[int, dt.datetime, float]]) -> str:
    url = str(root / name)
    table = pa.table(
        {
            "player_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([r[1] for r in rows], pa.timestamp("us")),
            "x": pa.array([r[2] for r in rows], pa.float64()),
            "y": pa.array([r[2] * 2 for r in rows], pa.float64()),
        }
    )
    write_dataset(url, table)
    return url


VIEW = ServedView("activity", ("player_id",), "ts", "events", ("x", "y"))


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "sqlite":
        return StoreConfig("sqlite", path=str(tmp_path / "online.sqlite"))
    from redis import Redis

    url = request.getfixturevalue("redis_url")
    Redis.from_url(url).flushdb()
    return StoreConfig("redis", url=url)


def _read(store: StoreConfig, entities: list[str]) -> dict[str, float | None]:
    opened = open_store(store)
    try:
        values = opened.read(VIEW.namespace, entities)
    finally:
        opened.close()
    return {v.entity: (v.values["x"] if v.values else None) for v in values}


def test_latest_per_key_incremental_and_idempotent(tmp_path: Path, store: StoreConfig) -> None:
    rows = [
        (p, T0 + dt.timedelta(hours=h), float(p * 100 + h))
        for p in range(1, 6)
        for h in range(0, 72, 5)
    ]
    url = _events(tmp_path, "v1", rows)
    data_dir = str(tmp_path / "data")
    first = materialize(
        data_dir, VIEW, url, store, InlineBackend(), partitions=3, end=T0 + dt.timedelta(hours=30)
    )
    assert first.chunks == 2 * 3  # 30 hours in 1-day slices x 3 partitions
    # `end` is inclusive: the event at hour 30 is in.
    assert _read(store, ["1", "5", "9"]) == {"1": 130.0, "5": 530.0, "9": None}
    second = materialize(data_dir, VIEW, url, store, InlineBackend(), partitions=3)
    # Two day-slices each hold a latest row per player; the newer slice wins in the store
    # whatever order the chunks ran in.
    assert second.latest_rows == 10 and 5 <= second.written <= 10
    assert _read(store, ["1"]) == {"1": 170.0}
    again = materialize(data_dir, VIEW, url, store, InlineBackend(), partitions=3)
    assert (again.chunks, again.written) == (0, 0)
    # A forced full rescan finds every row already there: it writes nothing.
    full = materialize(data_dir, VIEW, url, store, InlineBackend(), partitions=2, full=True)
    assert full.latest_rows == 3 * 5 and full.written == 0
    state = read_state(data_dir, VIEW)
    assert state.newest_event_us is not None and state.done_chunks == []


def test_interrupted_run_resumes_without_redoing_done_chunks(
    tmp_path: Path, store: StoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [(p, T0 + dt.timedelta(days=d), float(p + d)) for p in range(1, 4) for d in range(6)]
    url = _events(tmp_path, "v1", rows)
    data_dir = str(tmp_path / "data")
    calls: list[str] = []
    real = materialize_module.materialize_chunk

    def failing(chunk):  # the fifth chunk fails, as a killed run would
        calls.append(chunk.chunk_id)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real(chunk)

    monkeypatch.setattr(materialize_module, "materialize_chunk", failing)
    executor = InlineBackend()
    monkeypatch.setattr(type(executor), "parallelism", property(lambda self: 1))
    with pytest.raises(Exception, match="killed"):
        materialize(data_dir, VIEW, url, store, executor, partitions=1)
    assert len(read_state(data_dir, VIEW).done_chunks) == 4  # the first round was recorded
    monkeypatch.setattr(materialize_module, "materialize_chunk", real)
    resumed = materialize(data_dir, VIEW, url, store, executor, partitions=1)
    assert resumed.skipped_chunks == 4 and resumed.chunks == 6
    assert _read(store, ["1", "3"]) == {"1": 6.0, "3": 8.0}


def test_freshness_lags_and_sla() -> None:
    state = materialize_module.MaterializeState(
        newest_event_us=1_000_000 * 3600, last_run_at="1970-01-01T02:00:00+00:00"
    )
    now = dt.datetime(1970, 1, 1, 3, tzinfo=dt.UTC)
    view = ServedView("v", ("k",), "ts", "s", ("x",), freshness_sla_s=3 * 3600)
    fresh = freshness_of(view, state, now)
    assert (fresh.event_lag_s, fresh.materialization_lag_s, fresh.breached) == (7200, 3600, False)
    stale = freshness_of(ServedView("v", ("k",), "ts", "s", ("x",), freshness_sla_s=60), state, now)
    assert stale.breached and stale.metrics()["freshness_sla_breached"] is True
    never = freshness_of(view, materialize_module.MaterializeState(), now)
    assert never.breached and never.event_lag_s is None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_alert_logs_and_posts_to_the_webhook(webhook, caplog: pytest.LogCaptureFixture) -> None:
    url, received = webhook
    view = ServedView("v", ("k",), "ts", "s", ("x",), freshness_sla_s=60)
    breach = freshness_of(view, materialize_module.MaterializeState(newest_event_us=0))
    assert alert(breach, webhook_url=url, extra={"run_id": "r1"})
    assert received[0]["alert"] == "feature_freshness" and received[0]["view"] == "v"
    assert received[0]["run_id"] == "r1"
    assert "breaches its freshness SLA" in caplog.text
    # A webhook that is down does not raise: the log line is the alert of record.
    assert not alert(breach, webhook_url="http://127.0.0.1:9/none", timeout_s=0.5)


def test_stage_registers_materializes_and_records_freshness(tmp_path: Path, webhook) -> None:
    url, received = webhook
    rows = [(p, T0, float(p)) for p in range(1, 4)]
    source = _events(tmp_path, "scoring", rows)
    data = DatasetInput(source, read_manifest(source))
    ctx = StageContext("materialize", str(tmp_path / "data"), "run-1", InlineBackend())
    options = MaterializeOptions(
        view="churn_player", timestamp="ts", max_age="3650d", freshness_sla="1d", webhook_url=url
    )
    result = MaterializeStage().run(ctx, {"data": data}, options)
    assert result.metrics["written"] == 3 and result.metrics["new_version"] is True
    assert result.metrics["freshness_sla_breached"] is True  # events from 2026-01-01 are old
    assert result.metrics["freshness_event_lag_s"] > 86_400
    assert received and received[0]["stage"] == "materialize"
    view = current_view(ctx.data_dir, "churn_player")
    assert view.columns == ("x", "y")
    store = open_store(StoreConfig("sqlite", path=str(tmp_path / "data/online/online.sqlite")))
    [value] = store.read(view.namespace, ["2"], max_age=dt.timedelta(days=3650))
    assert value.status is Status.PRESENT and value.values == {"x": 2.0, "y": 4.0}
    rerun = MaterializeStage().run(ctx, {"data": data}, options)
    assert rerun.metrics["written"] == 0 and rerun.metrics["new_version"] is False
    committed = pl.from_arrow(read_dataset(ctx.output_url("materialization")))
    assert committed["written"].to_list() == [0]


def test_quality_checks_gate_what_is_served(tmp_path: Path) -> None:
    source = _events(tmp_path, "scoring", [(1, T0, 1.0), (2, T0, 600.0)])
    data = DatasetInput(source, read_manifest(source))
    ctx = StageContext("materialize", str(tmp_path / "data"), "run-1", InlineBackend())
    checks = [{"check": "range", "column": "x", "min": 0, "max": 500}]
    warn = MaterializeOptions(view="v", timestamp="ts", checks=[{**checks[0], "policy": "warn"}])
    assert MaterializeStage().run(ctx, {"data": data}, warn).metrics["checks_warned"] == 1
    failing = MaterializeOptions(view="w", timestamp="ts", checks=checks)
    with pytest.raises(DataError, match="quality check"):
        MaterializeStage().run(ctx, {"data": data}, failing)
    assert [v.name for v in list_views(ctx.data_dir)] == ["v"]  # `w` was never registered
