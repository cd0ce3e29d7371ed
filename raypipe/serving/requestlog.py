"""Every request, logged to hive-partitioned Parquet in batches off the request path.

Rows collect in memory and are written when ``flush_rows`` rows or ``flush_s`` seconds have
gathered, by one background thread, so a request never waits on the disk. Each flush is one file
``<root>/date=YYYY-MM-DD/hour=HH/part-<replica>-<seq>.parquet``, written under a temporary name
and renamed, so a reader never sees half a file. Logged: time, entity, answering variant and
model version, score, latency, the feature views' versions and read statuses, and the shadow
variant's score when one mirrors the request.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["LOG_SCHEMA", "RequestLog", "log_row"]

logger = logging.getLogger(__name__)

LOG_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("entity", pa.string()),
        ("variant", pa.string()),
        ("model_version", pa.string()),
        ("score", pa.float64()),
        ("latency_ms", pa.float64()),
        ("code", pa.int16()),
        ("feature_versions", pa.string()),
        ("feature_status", pa.string()),
        ("shadow_variant", pa.string()),
        ("shadow_score", pa.float64()),
    ]
)


class RequestLog:
    """A buffered, partitioned Parquet log written by one replica.

    Parameters
    ----------
    root
        Folder of the log (``<data_dir>/serving/<service>/requests``).
    replica
        This replica's id (part of every file name, so replicas never collide).
    flush_rows, flush_s
        Write when this many rows are buffered, or the oldest is this old.
    """

    def __init__(self, root: str | Path, replica: str, flush_rows: int, flush_s: float) -> None:
        self.root = Path(root).expanduser()
        self.replica = replica
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self._rows: list[tuple[Any, ...]] = []
        self._oldest = 0.0
        self._seq = 0
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-log")
        self._pending: list[Future[None]] = []

    def append(self, row: tuple[Any, ...]) -> None:
        """One request's row, in ``LOG_SCHEMA`` order (``ts`` in epoch microseconds)."""
        with self._lock:
            if not self._rows:
                self._oldest = time.monotonic()
            self._rows.append(row)
            due = (
                len(self._rows) >= self.flush_rows
                or time.monotonic() - self._oldest >= self.flush_s
            )
        if due:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread."""
        with self._lock:
            rows, self._rows = self._rows, []
            self._seq += 1
            seq = self._seq
        if rows:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._writer.submit(self._write, rows, seq))

    def close(self) -> None:
        """Flush and wait for every write."""
        self.flush()
        for future in self._pending:
            future.result()
        self._writer.shutdown(wait=True)

    def _write(self, rows: list[tuple[Any, ...]], seq: int) -> None:
        columns = list(zip(*rows, strict=True))
        table = pa.table(
            [pa.array(values, type=f.type) for values, f in zip(columns, LOG_SCHEMA, strict=True)],
            schema=LOG_SCHEMA,
        )
        first = dt.datetime.fromtimestamp(rows[0][0] / 1e6, dt.UTC)
        folder = self.root / f"date={first:%Y-%m-%d}" / f"hour={first:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{self.replica}-{time.time_ns()}-{seq:06d}.parquet"
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp)
            tmp.replace(folder / name)
        except OSError:
            logger.exception("request log: %d rows could not be written to %s", len(rows), folder)
            tmp.unlink(missing_ok=True)


def log_row(
    ts_us: int,
    entity: str,
    variant: str,
    version: str,
    score: float | None,
    latency_ms: float,
    code: int,
    feature_versions: str,
    feature_status: Mapping[str, str],
    shadow: tuple[str, float] | None = None,
) -> tuple[Any, ...]:
    """A row in ``LOG_SCHEMA`` order (``feature_versions`` already JSON: it rarely changes)."""
    return (
        ts_us,
        entity,
        variant,
        version,
        score,
        latency_ms,
        code,
        feature_versions,
        json.dumps(feature_status, sort_keys=True),
        shadow[0] if shadow else None,
        shadow[1] if shadow else None,
    )
