"""What every online store promises: one conflict rule, reads with status and age.

* **Conflict rule.** A row is written only if its ``(event_ts, created_ts)`` is strictly newer
  than the stored one, compared in the store itself in one atomic step (SQLite: an upsert with a
  ``WHERE``; Redis: a Lua script). A late or repeated write never overwrites a newer value, and
  writing the same rows twice writes nothing the second time.
* **Reads.** Every requested entity gets an :class:`OnlineValue`: ``PRESENT`` with its values
  and age, ``NOT_FOUND``, or ``OUTSIDE_MAX_AGE`` when ``now - event_ts > max_age`` (the values
  are still returned, for debugging, but the status says not to use them). Many entities are read
  in one round trip.

Timestamps are integers, microseconds since the Unix epoch (UTC), so comparison in SQL and Lua is
exact. An entity key is the text :func:`entity_key` makes of its key values.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from raypipe.errors import SpecError

__all__ = [
    "EXPIRY_MARGIN",
    "OnlineRow",
    "OnlineStore",
    "OnlineValue",
    "Status",
    "StoreConfig",
    "decode_value",
    "encode_values",
    "entity_key",
    "expiry_of",
    "from_micros",
    "max_age_micros",
    "open_store",
    "resolve_now",
    "to_micros",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Status(str, enum.Enum):
    """The state of one entity's value on read (Feast's field statuses, TTL enforced)."""

    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


def to_micros(value: dt.datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def entity_key(values: Sequence[Any]) -> str:
    """The key text of one entity: its key values joined by ``|`` (``42``, ``eu|42``)."""
    return "|".join(str(v) for v in values)


def encode_values(values: Mapping[str, Any]) -> str:
    """The stored form of one entity's values (compact JSON, NaN kept as ``NaN``)."""
    return json.dumps(values, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class OnlineRow:
    """One entity's values as of ``event_ts`` (written at ``created_ts``), both in microseconds."""

    entity: str
    event_ts: int
    created_ts: int
    values: str


@dataclass(frozen=True)
class OnlineValue:
    """The answer for one entity: status, values (None when not found), event time and age."""

    entity: str
    status: Status
    values: Mapping[str, Any] | None = None
    event_ts: dt.datetime | None = None
    age_s: float | None = None


def decode_value(
    entity: str, stored: tuple[int, str] | None, now_us: int, max_age_us: int | None
) -> OnlineValue:
    """Turn a stored ``(event_ts, payload)`` into an :class:`OnlineValue`, applying the max age."""
    if stored is None:
        return OnlineValue(entity, Status.NOT_FOUND)
    event_us, payload = stored
    age_us = now_us - event_us
    status = Status.PRESENT
    if max_age_us is not None and age_us > max_age_us:
        status = Status.OUTSIDE_MAX_AGE
    return OnlineValue(entity, status, json.loads(payload), from_micros(event_us), age_us / 1e6)


class OnlineStore(Protocol):
    """An online store: newest ``(event_ts, created_ts)`` wins; batch reads with status."""

    def write(
        self,
        namespace: str,
        rows: Sequence[OnlineRow],
        *,
        expire_after: dt.timedelta | None = None,
    ) -> int:
        """Write the rows newer than what is stored; returns how many were written.

        ``expire_after`` lets a store that supports it drop a row at ``event_ts +
        expire_after`` (Redis key expiry, a memory safety net); pass at least the view's max
        age, so a value never disappears while it could still be ``PRESENT``. Stores without
        expiry (SQLite) keep the row.
        """
        ...

    def read(
        self,
        namespace: str,
        entities: Sequence[str],
        *,
        max_age: dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> list[OnlineValue]:
        """One value per entity, in order, in one round trip."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoreConfig:
    """Where an online store is: picklable, so a Ray task opens its own connection.

    ``kind="sqlite"`` with ``path`` (a local file; created on first use) or ``kind="redis"`` with
    ``url`` (``redis://127.0.0.1:6379/0``).
    """

    kind: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "sqlite" and not self.path:
            raise SpecError(
                ["online store `sqlite` needs a `path`"],
                hint="set `online: {kind: sqlite, path: ./online.sqlite}`",
            )
        if self.kind == "redis" and not self.url:
            raise SpecError(
                ["online store `redis` needs a `url`"],
                hint="set `online: {kind: redis, url: redis://127.0.0.1:6379/0}`",
            )

    def describe(self) -> str:
        return f"sqlite:{self.path}" if self.kind == "sqlite" else str(self.url)


def open_store(config: StoreConfig) -> OnlineStore:
    """Open the store ``config`` names."""
    if config.kind == "sqlite":
        from raypipe.features.store.sqlite_store import SqliteOnlineStore

        assert config.path is not None
        return SqliteOnlineStore(config.path)
    from raypipe.features.store.redis_store import RedisOnlineStore

    assert config.url is not None
    return RedisOnlineStore(config.url)


def resolve_now(now: dt.datetime | None) -> int:
    return to_micros(now if now is not None else dt.datetime.now(dt.UTC))


def max_age_micros(max_age: dt.timedelta | None) -> int | None:
    return None if max_age is None else int(max_age.total_seconds() * 1_000_000)


#: How long past a view's max age its online rows are kept where stores expire keys: reads in
#: that time still say ``OUTSIDE_MAX_AGE`` (with the values, for debugging), later ``NOT_FOUND``.
EXPIRY_MARGIN = dt.timedelta(days=1)


def expiry_of(max_age_s: float | None) -> dt.timedelta | None:
    """Key expiry for a view with ``max_age_s``: max age + :data:`EXPIRY_MARGIN` (None: never)."""
    return None if max_age_s is None else dt.timedelta(seconds=max_age_s) + EXPIRY_MARGIN
