from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raypipe.tracking.audit import AuditLog
from raypipe.tracking.history import ParquetServingLogs, model_history
from tests.support.registry import AuditOnlyRegistry


def _requests(root: Path, day: str, version: str, count: int, start: dt.datetime) -> None:
    folder = root / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "model": ["churn"] * count + ["other"],
            "model_version": [version] * count + ["9"],
            "ts": [start + dt.timedelta(minutes=i) for i in range(count)] + [start],
        }
    )
    pq.write_table(table, folder / f"part-{version}.parquet")


def test_history_joins_promotions_with_the_traffic_each_version_served(tmp_path: Path) -> None:
    registry = AuditOnlyRegistry(AuditLog(tmp_path / "audit"))
    v1, v2 = registry.add_version("churn"), registry.add_version("churn")
    registry.promote("churn", v1, reason="first model", who="ann")
    registry.promote("churn", v2, reason="drift in m4; challenger won", who="ann")
    logs = tmp_path / "serving"
    _requests(logs, "2026-04-01", v1, 5, dt.datetime(2026, 4, 1))
    _requests(logs, "2026-04-02", v2, 3, dt.datetime(2026, 4, 2))

    story = model_history(registry.audit, "churn", serving=ParquetServingLogs(str(logs)))
    assert [(i.version, i.traffic.requests if i.traffic else 0) for i in story.intervals] == [
        (v1, 5),
        (v2, 3),
    ]
    first, second = story.intervals
    assert first.until == second.since and second.until is None
    assert first.why_replaced == "promote: drift in m4; challenger won"
    assert first.traffic is not None and first.traffic.first.startswith("2026-04-01 00:00")
    # No logs yet (the serving layer has not run): history still comes from the audit trail.
    quiet = model_history(
        registry.audit, "churn", serving=ParquetServingLogs(str(tmp_path / "none"))
    )
    assert [i.traffic for i in quiet.intervals] == [None, None]


def test_history_counts_the_requests_raypipe_serve_logged(tmp_path) -> None:
    """The default reader finds `raypipe serve`'s own request log and counts it per version."""
    from raypipe.serving.requestlog import RequestLog, log_row
    from raypipe.tracking.history import ParquetServingLogs
    from raypipe.tracking.store import serving_log_path

    root = serving_log_path(str(tmp_path), "churn")
    log = RequestLog(root, "replica-1", flush_rows=1_000, flush_s=60.0)
    start_us = 1_780_000_000_000_000
    for i in range(5):
        version = "3" if i < 2 else "4"
        log.append(log_row(start_us + i, str(i), "champion", version, 0.5, 1.0, 200, "{}", {}))
    log.close()
    traffic = ParquetServingLogs(root).traffic("churn")
    assert {v: t.requests for v, t in traffic.items()} == {"3": 2, "4": 3}
