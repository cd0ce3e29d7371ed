"""Incremental windows: the state of one stream partition, fed micro-batch by micro-batch.

:class:`WindowState` is plain Python (the functional core); the engine runs one per entity-hash
partition inside a Ray actor (:mod:`raypipe.engine.streaming`). Each call of :meth:`process`:

1. splits the batch into **late** events (``ts <= watermark``, the watermark *before* this
   batch) and on-time ones; late events are returned, never dropped;
2. reduces the on-time events to per-window partials (:func:`window_partials`, vectorized) and
   merges them into the open windows (sessions that touch merge);
3. moves the watermark to ``max_event_ts - allowed_lateness`` (the caller passes the newest
   event time of the *whole* stream, so every partition has the same watermark and lateness
   does not depend on how many partitions there are) and closes the windows whose end is at or
   before it, returning their final rows.

An on-time event (``ts > watermark``) can only fall into windows ending after the watermark,
which are all still open, so it is counted exactly once; that is why incremental results equal
the batch recompute over the on-time events. Memory holds only open windows: it is bounded by
keys x (size / slide) for sliding windows, not by the length of the stream.

:meth:`to_json` / :meth:`from_json` checkpoint the state together with the stream position (the
sequence number of the last processed batch), so a restarted partition skips what it has seen.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl

from raypipe.features.streaming.windows import WindowSpec, event_micros, finish, window_partials

__all__ = ["WindowState"]

_NO_WATERMARK = -(2**62)
_SCHEMA = {
    "key": pl.Int64,
    "start": pl.Int64,
    "end": pl.Int64,
    "count": pl.Int64,
    "sum": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
}
# Accumulator layout: [end, count, sum, min, max]
_END, _COUNT, _SUM, _MIN, _MAX = range(5)


def _merge(into: list[float], other: list[float]) -> None:
    into[_END] = max(into[_END], other[_END])
    into[_COUNT] += other[_COUNT]
    into[_SUM] += other[_SUM]
    into[_MIN] = min(into[_MIN], other[_MIN])
    into[_MAX] = max(into[_MAX], other[_MAX])


class WindowState:
    """Open windows of one partition (integer entity keys), its watermark and its position."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.watermark = _NO_WATERMARK
        self.position = -1
        # Sessions merge with each other, so they live in a dict:
        # key -> {start: [end, count, sum, min, max]}.
        self.windows: dict[Any, dict[int, list[float]]] = {}
        # Tumbling and sliding windows never merge: one table, merged with a group-by per
        # batch (vectorized; the per-event cost does not grow with the number of keys).
        self.table = pl.DataFrame(schema=_SCHEMA)

    @property
    def open_windows(self) -> int:
        """How many windows are held (the state's size)."""
        return self.table.height + sum(len(w) for w in self.windows.values())

    def process(
        self, events: pl.DataFrame, max_event_ts: int | None, position: int
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Add one micro-batch, advance the watermark; returns (closed windows, late events).

        A batch at or before :attr:`position` was processed already (a replay after a restart)
        and is ignored: nothing is counted twice.
        """
        if position <= self.position:
            return self._empty_closed(), events.clear()
        late = events.clear()
        if events.height:
            ts = event_micros(events, self.spec.timestamp)
            is_late = ts <= self.watermark
            late = events.filter(is_late)
            self._add(window_partials(events.filter(~is_late), self.spec))
        closed = self.advance(max_event_ts)
        self.position = position
        return closed, late

    def _add(self, partials: pl.DataFrame) -> None:
        columns = ("key", "start", "end", "count", "sum", "min", "max")
        if self.spec.kind != "session":
            both = pl.concat([self.table, partials.select(columns).cast(_SCHEMA)])
            self.table = (
                both.group_by("key", "start")
                .agg(
                    pl.col("end").first(),
                    pl.col("count").sum(),
                    pl.col("sum").sum(),
                    pl.col("min").min(),
                    pl.col("max").max(),
                )
                .select(columns)
            )
            return
        for key, start, end, count, total, low, high in partials.select(columns).iter_rows():
            new = [end, count, total, low, high]
            windows = self.windows.setdefault(key, {})
            # A session merges with every open session it overlaps or touches, until none is
            # left that touches the grown session.
            while True:
                touching = [
                    s for s, acc in windows.items() if s <= new[_END] and start <= acc[_END]
                ]
                if not touching:
                    break
                for other_start in touching:
                    _merge(new, windows.pop(other_start))
                    start = min(start, other_start)
            windows[start] = new

    def advance(self, max_event_ts: int | None) -> pl.DataFrame:
        """Move the watermark to ``max_event_ts - allowed_lateness``; return windows it closed."""
        if max_event_ts is not None:
            self.watermark = max(self.watermark, max_event_ts - self.spec.allowed_lateness)
        return self._close(lambda end: end <= self.watermark)

    def flush(self) -> pl.DataFrame:
        """Close every open window (end of a finite stream)."""
        return self._close(lambda end: True)

    def early(self) -> pl.DataFrame:
        """The open windows' results so far (speculative: they may still grow); state unchanged."""
        if self.spec.kind != "session":
            return finish(self.table)
        rows = [
            (key, start, int(acc[_END]), int(acc[_COUNT]), acc[_SUM], acc[_MIN], acc[_MAX])
            for key, windows in self.windows.items()
            for start, acc in windows.items()
        ]
        return finish(pl.DataFrame(rows, schema=_SCHEMA, orient="row"))

    def _close(self, done: Any) -> pl.DataFrame:
        if self.spec.kind != "session":
            is_done = done(pl.col("end"))
            if not isinstance(is_done, pl.Expr):
                is_done = pl.lit(is_done)
            closed = self.table.filter(is_done)
            self.table = self.table.filter(~is_done)
            return finish(closed)
        rows = []
        for key in list(self.windows):
            windows = self.windows[key]
            for start in [s for s, acc in windows.items() if done(acc[_END])]:
                end, count, total, low, high = windows.pop(start)
                rows.append((key, start, int(end), int(count), total, low, high))
            if not windows:
                del self.windows[key]
        if not rows:
            return self._empty_closed()
        frame = pl.DataFrame(rows, schema=_SCHEMA, orient="row")
        return finish(frame)

    def _empty_closed(self) -> pl.DataFrame:
        return finish(pl.DataFrame(schema=_SCHEMA))

    # -- checkpoints -----------------------------------------------------------------------

    def to_json(self) -> str:
        """The state and stream position as JSON (keys and window starts as text)."""
        document = {
            "watermark": self.watermark,
            "position": self.position,
            "table": self.table.to_dict(as_series=False),
            "windows": {
                str(k): {
                    str(s): [None if isinstance(v, float) and math.isnan(v) else v for v in acc]
                    for s, acc in w.items()
                }
                for k, w in self.windows.items()
            },
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, spec: WindowSpec, text: str) -> WindowState:
        document = json.loads(text)
        state = cls(spec)
        state.watermark = int(document["watermark"])
        state.position = int(document["position"])
        state.table = pl.DataFrame(document["table"], schema=_SCHEMA)
        state.windows = {
            int(k): {int(s): [math.nan if v is None else v for v in acc] for s, acc in w.items()}
            for k, w in document["windows"].items()
        }
        return state
