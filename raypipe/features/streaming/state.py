"""Incremental windows: the state of one stream partition, fed micro-batch by micro-batch.

:class:`WindowState` is the functional core; the engine runs one per entity-hash partition inside
a Ray actor (:mod:`raypipe.engine.streaming`). Everything is vectorized (polars): no Python runs
per event or per window. Each call of :meth:`process`:

1. splits the batch into **late** events (``ts <= watermark``, the watermark *before* this
   batch) and on-time ones; late events are returned, never dropped;
2. reduces the on-time events to partial aggregates and merges them into the state table with
   one group-by;
3. moves the watermark to ``max_event_ts - allowed_lateness`` (the caller passes the newest
   event time of the *whole* stream, so every partition has the same watermark and lateness
   does not depend on how many partitions there are) and closes the windows whose end is at or
   before it, returning their final rows.

The state is one table. For tumbling and sliding windows it holds **panes** (tiles): the
aggregates per ``(key, pane start)`` over ``slide``-wide slices of time. A window is the union
of its ``size / slide`` panes, so an event is added once (not once per window it belongs to)
and the windows are assembled from panes only when they close (or for early results); a pane is
dropped once the last window containing it (the one starting at the pane) has closed. For
sessions the table holds the open sessions; a batch's sessions merge with them by an interval
merge (sorted by start, a new session where the start passes every earlier end of the key).

An on-time event (``ts > watermark``) can only fall into windows ending after the watermark,
which are all still open, so it is counted exactly once; that is why incremental results equal
the batch recompute over the on-time events. Memory holds only open panes / sessions: bounded by
keys x (size / slide + panes of allowed lateness), not by the length of the stream.

:meth:`to_bytes` / :meth:`from_bytes` checkpoint the state together with the stream position
(the sequence number of the last processed batch) as one Arrow IPC file, so a restarted
partition skips what it has seen.
"""

from __future__ import annotations

import io

import polars as pl
import pyarrow as pa

from raypipe.features.streaming.windows import WindowSpec, event_micros, finish, window_partials

__all__ = ["WindowState"]

_NO_WATERMARK = -(2**62)
_SCHEMA = pl.Schema(
    {
        "key": pl.Int64,
        "start": pl.Int64,
        "end": pl.Int64,
        "count": pl.Int64,
        "sum": pl.Float64,
        "min": pl.Float64,
        "max": pl.Float64,
    }
)
_COLUMNS = tuple(_SCHEMA)
_COMBINE = (
    pl.col("count").sum(),
    pl.col("sum").sum(),
    pl.col("min").min(),
    pl.col("max").max(),
)


class WindowState:
    """Open panes or sessions of one partition (integer entity keys), its watermark, position."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.watermark = _NO_WATERMARK
        self.position = -1
        # Panes (tumbling/sliding: ``end`` is the pane's end) or sessions.
        self.table = pl.DataFrame(schema=_SCHEMA)

    @property
    def open_windows(self) -> int:
        """How many rows the state holds (panes, or sessions): its size."""
        return self.table.height

    @property
    def state_bytes(self) -> int:
        """Estimated memory of the state table in bytes."""
        return int(self.table.estimated_size())

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
            is_late = event_micros(events, self.spec.timestamp) <= self.watermark
            flags = events.select(is_late.alias("_late")).to_series()
            if flags.any():
                late = events.filter(flags)
                events = events.filter(~flags)
            self._add(events)
        closed = self.advance(max_event_ts)
        self.position = position
        return closed, late

    def _add(self, events: pl.DataFrame) -> None:
        if not events.height:
            return
        if self.spec.kind == "session":
            partials = window_partials(events, self.spec).select(_COLUMNS).cast(_SCHEMA)
            self.table = _merge_sessions(pl.concat([self.table, partials]))
            return
        step = self.spec.step
        ts = event_micros(events, self.spec.timestamp)
        panes = (
            events.select(
                pl.col(self.spec.key).cast(pl.Int64).alias("key"),
                (ts - ts.mod(step)).alias("start"),
                pl.col(self.spec.value).cast(pl.Float64).alias("_v"),
            )
            .group_by("key", "start")
            .agg(
                pl.len().cast(pl.Int64).alias("count"),
                pl.col("_v").sum().alias("sum"),
                pl.col("_v").min().alias("min"),
                pl.col("_v").max().alias("max"),
            )
            .with_columns((pl.col("start") + step).alias("end"))
            .select(_COLUMNS)
        )
        self.table = (
            pl.concat([self.table, panes])
            .group_by("key", "start")
            .agg(pl.col("end").first(), *_COMBINE)
            .select(_COLUMNS)
        )

    def advance(self, max_event_ts: int | None) -> pl.DataFrame:
        """Move the watermark to ``max_event_ts - allowed_lateness``; return windows it closed."""
        before = self.watermark
        if max_event_ts is not None:
            self.watermark = max(self.watermark, max_event_ts - self.spec.allowed_lateness)
        if self.spec.kind == "session":
            done = pl.col("end") <= self.watermark
            closed = self.table.filter(done)
            self.table = self.table.filter(~done)
            return finish(closed)
        if self.watermark == before:
            return self._empty_closed()
        closed = self._windows(after=before, upto=self.watermark)
        # The last window holding a pane starts at the pane: once it closed, the pane is done.
        self.table = self.table.filter(pl.col("start") + self.spec.size > self.watermark)
        return closed

    def flush(self) -> pl.DataFrame:
        """Close every open window (end of a finite stream)."""
        if self.spec.kind == "session":
            closed = finish(self.table)
        else:
            closed = self._windows(after=self.watermark, upto=None)
        self.table = self.table.clear()
        return closed

    def early(self) -> pl.DataFrame:
        """The open windows' results so far (speculative: they may still grow); state unchanged."""
        if self.spec.kind == "session":
            return finish(self.table)
        return self._windows(after=self.watermark, upto=None)

    def _windows(self, *, after: int, upto: int | None) -> pl.DataFrame:
        """Windows (from panes) whose end is in ``(after, upto]`` (``upto=None``: no bound)."""
        size, step = self.spec.size, self.spec.step
        panes = self.table
        # Pane p is in the windows starting at p - k * step, k = 0 .. size/step - 1; only the
        # k whose window end p - k * step + size lies in (after, upto] are generated.
        reach = pl.col("start") + size
        k_high = pl.min_horizontal((reach - after - 1) // step, pl.lit(size // step - 1))
        k_low = pl.lit(0, dtype=pl.Int64)
        if upto is not None:
            panes = panes.filter(pl.col("start") < upto)  # a pane at or after upto ends later
            k_low = pl.max_horizontal(-((upto - reach) // step), k_low)  # ceil division
        windows = (
            panes.with_columns(
                pl.col("start") - pl.int_ranges(k_low, k_high + 1, dtype=pl.Int64) * step
            )
            .explode("start")
            .drop_nulls("start")
            .group_by("key", "start")
            .agg(*_COMBINE)
            .with_columns((pl.col("start") + size).alias("end"))
        )
        return finish(windows.select(_COLUMNS))

    def _empty_closed(self) -> pl.DataFrame:
        return finish(pl.DataFrame(schema=_SCHEMA))

    # -- checkpoints -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The state and stream position as one Arrow IPC file (position in the metadata)."""
        table = self.table.to_arrow().replace_schema_metadata(
            {"watermark": str(self.watermark), "position": str(self.position)}
        )
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()

    @classmethod
    def from_bytes(cls, spec: WindowSpec, data: bytes) -> WindowState:
        """The state written by :meth:`to_bytes`."""
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        metadata = table.schema.metadata or {}
        state = cls(spec)
        state.watermark = int(metadata[b"watermark"])
        state.position = int(metadata[b"position"])
        frame = pl.from_arrow(table.replace_schema_metadata(None))
        assert isinstance(frame, pl.DataFrame)
        state.table = frame.cast(_SCHEMA)
        return state


def _merge_sessions(sessions: pl.DataFrame) -> pl.DataFrame:
    """Merge sessions of a key that overlap or touch (``start <= end`` of an earlier one)."""
    ordered = sessions.sort("key", "start")
    reach = pl.col("end").cum_max().shift(1).over("key")
    new = reach.is_null() | (pl.col("start") > reach)
    return (
        ordered.with_columns(new.cum_sum().alias("_session"))
        .group_by("key", "_session")
        .agg(pl.col("start").min(), pl.col("end").max(), *_COMBINE)
        .select(_COLUMNS)
    )
