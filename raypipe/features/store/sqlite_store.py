"""The embedded online store: one SQLite file, no set-up.

One table keyed by ``(namespace, entity)``. Writes are one upsert whose ``WHERE`` compares the
row values ``(event_ts, created_ts)``, so SQLite applies the conflict rule atomically even with
several writer processes (WAL mode, a busy timeout). A batch read is one ``SELECT … IN (…)``.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from collections.abc import Sequence

from raypipe.features.store.online import (
    OnlineRow,
    OnlineValue,
    decode_value,
    max_age_micros,
    resolve_now,
)

__all__ = ["SqliteOnlineStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_values (
    namespace TEXT NOT NULL,
    entity TEXT NOT NULL,
    event_ts INTEGER NOT NULL,
    created_ts INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (namespace, entity)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO online_values (namespace, entity, event_ts, created_ts, payload)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, entity) DO UPDATE SET
    event_ts = excluded.event_ts, created_ts = excluded.created_ts, payload = excluded.payload
WHERE (excluded.event_ts, excluded.created_ts) > (online_values.event_ts, online_values.created_ts)
"""
#: SQLite's default bound-parameter limit is 32766; stay well below it.
_READ_CHUNK = 30_000
#: How long a writer waits for another's lock before it fails.
_BUSY_TIMEOUT_S = 60.0


def _enable_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it persists in the file), waiting like any other lock.

    Switching the journal mode takes an exclusive lock for which SQLite does not call the busy
    handler: two processes opening a new file at once (two materialize tasks) get "database is
    locked" at once -- 18 of 120 openings in a test of two processes racing on fresh files.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteOnlineStore:
    """An :class:`~raypipe.features.store.online.OnlineStore` in the SQLite file ``path``."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        _enable_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def write(
        self,
        namespace: str,
        rows: Sequence[OnlineRow],
        *,
        expire_after: dt.timedelta | None = None,
    ) -> int:
        del expire_after  # rows on disk are kept; reads enforce the max age
        if not rows:
            return 0
        before = self._db.total_changes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                _UPSERT,
                ((namespace, r.entity, r.event_ts, r.created_ts, r.values) for r in rows),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return self._db.total_changes - before

    def read(
        self,
        namespace: str,
        entities: Sequence[str],
        *,
        max_age: dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> list[OnlineValue]:
        now_us = resolve_now(now)
        age_us = max_age_micros(max_age)
        found: dict[str, tuple[int, str]] = {}
        unique = list(dict.fromkeys(entities))
        for start in range(0, len(unique), _READ_CHUNK):
            chunk = unique[start : start + _READ_CHUNK]
            marks = ",".join("?" * len(chunk))
            cursor = self._db.execute(
                "SELECT entity, event_ts, payload FROM online_values "
                f"WHERE namespace = ? AND entity IN ({marks})",
                (namespace, *chunk),
            )
            for entity, event_ts, payload in cursor:
                found[entity] = (event_ts, payload)
        return [decode_value(e, found.get(e), now_us, age_us) for e in entities]

    def close(self) -> None:
        self._db.close()
