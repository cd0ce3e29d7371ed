"""The Redis online store.

One string key per entity, ``rp:<namespace>:<entity>``, holding ``event_ts:created_ts:payload``.
Writes run a Lua script that compares the stored ``(event_ts, created_ts)`` with the new one and
sets the key only when the new pair is strictly greater: the comparison and the write are one
atomic step inside Redis, for a whole batch of keys per call. A batch read is one ``MGET`` sent
on a connection the store holds (not checked out of redis-py's pool per call, which costs more
than the round trip itself on loopback), under a lock so threads may share the store.
Lua numbers are doubles, exact for microsecond timestamps (< 2**53 until the year 2255).
Keys may expire (``expire_after``: the view's max age + a margin, at ``event_ts + expire_after``)
as a memory safety net; a key never expires while its value could still read ``PRESENT``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

import redis

from raypipe.errors import RuntimeUnavailableError
from raypipe.features.store.online import (
    OnlineRow,
    OnlineValue,
    decode_value,
    max_age_micros,
    resolve_now,
)

__all__ = ["RedisOnlineStore"]

_COMPARE_AND_SET = """
local written = 0
for i = 1, #KEYS do
  local event_ts = tonumber(ARGV[4 * i - 3])
  local created_ts = tonumber(ARGV[4 * i - 2])
  local newer = true
  local current = redis.call('GET', KEYS[i])
  if current then
    local e, c = string.match(current, '^(%-?%d+):(%-?%d+):')
    e = tonumber(e)
    c = tonumber(c)
    if e > event_ts or (e == event_ts and c >= created_ts) then newer = false end
  end
  if newer then
    local value = ARGV[4 * i - 3] .. ':' .. ARGV[4 * i - 2] .. ':' .. ARGV[4 * i - 1]
    local expire_at_ms = tonumber(ARGV[4 * i])
    if expire_at_ms > 0 then
      redis.call('SET', KEYS[i], value, 'PXAT', expire_at_ms)
    else
      redis.call('SET', KEYS[i], value)
    end
    written = written + 1
  end
end
return written
"""
#: Keys per script call: large enough to amortize the round trip, small enough not to block.
_WRITE_CHUNK = 1000


class RedisOnlineStore:
    """An :class:`~raypipe.features.store.online.OnlineStore` in the Redis at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = redis.Redis.from_url(url)
        try:
            self._client.ping()
        except redis.exceptions.ConnectionError as exc:
            raise RuntimeUnavailableError(
                f"cannot reach the Redis online store at `{url}`: {exc}",
                hint="start `redis-server` or use the SQLite online store (`kind: sqlite`)",
            ) from exc
        self._script = self._client.register_script(_COMPARE_AND_SET)
        self._read_lock = threading.Lock()
        self._read_connection: Any = self._client.connection_pool.get_connection()

    @staticmethod
    def _key(namespace: str, entity: str) -> str:
        return f"rp:{namespace}:{entity}"

    def write(
        self,
        namespace: str,
        rows: Sequence[OnlineRow],
        *,
        expire_after: dt.timedelta | None = None,
    ) -> int:
        """Compare-and-set each row; with ``expire_after`` the key expires at ``event_ts +
        expire_after`` (absolute, ``PXAT``), so expiry follows the value's age, not the write."""
        written = 0
        expire_ms = None if expire_after is None else int(expire_after.total_seconds() * 1000)
        for start in range(0, len(rows), _WRITE_CHUNK):
            chunk = rows[start : start + _WRITE_CHUNK]
            keys = [self._key(namespace, r.entity) for r in chunk]
            args: list[str | int] = []
            for r in chunk:
                # 0: no expiry. An expiry already past deletes the key (a row too old to serve).
                expire_at = 0 if expire_ms is None else max(1, r.event_ts // 1000 + expire_ms)
                args.extend((r.event_ts, r.created_ts, r.values, expire_at))
            written += int(self._script(keys=keys, args=args))
        return written

    def read(
        self,
        namespace: str,
        entities: Sequence[str],
        *,
        max_age: dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> list[OnlineValue]:
        if not entities:
            return []
        now_us = resolve_now(now)
        age_us = max_age_micros(max_age)
        raw = self._read("MGET", *[self._key(namespace, e) for e in entities])
        values = []
        for entity, item in zip(entities, raw, strict=True):
            stored = None
            if item is not None:
                event_ts, _, rest = item.partition(b":")
                payload = rest.partition(b":")[2]
                stored = (int(event_ts), payload.decode())
            values.append(decode_value(entity, stored, now_us, age_us))
        return values

    def _read(self, *command: str) -> Any:
        """One read-only command on the held connection; retried once on a fresh connection
        (a restarted server or a dropped socket), which is safe because it changes nothing."""
        with self._read_lock:
            connection = self._read_connection
            try:
                connection.send_command(*command)
                return connection.read_response()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                connection.disconnect()
                connection.send_command(*command)
                return connection.read_response()

    def close(self) -> None:
        with self._read_lock:
            self._client.connection_pool.release(self._read_connection)
        self._client.close()
