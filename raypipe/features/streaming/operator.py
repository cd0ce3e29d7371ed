"""Stream operators: partitions of a windowed stream, their sinks and checkpoints, and the runner.

A :class:`PartitionOperator` owns one :class:`WindowState` (the entities whose key hashes to its
partition) and, per micro-batch, writes

* the windows it closed to ``<out>/windows/partition=P/batch-<position>.parquet`` and, when an
  online store is configured, the newest closed window per entity into it (conflict rule:
  newest window end wins); with ``early_results`` also the open windows' results so far;
* the late events to ``<out>/late/partition=P/batch-<position>.parquet`` (never dropped);
* then its checkpoint ``<out>/checkpoints/partition-P.arrow`` (state + stream position).

Sink files are named by the stream position and written atomically, and online writes obey the
store's conflict rule, so replaying a batch after a crash (the checkpoint is written last)
rewrites the same files and writes nothing newer: no double counting.

:class:`StreamRunner` splits each micro-batch by entity hash, tracks the newest event time of the
whole stream (one watermark for every partition) and hands the parts to a
:class:`StreamBackend`: :class:`InlineStreamBackend` here, Ray actors in
:mod:`raypipe.engine.streaming`. Sources: :meth:`StreamRunner.feed` (in-process) and
:meth:`StreamRunner.run_folder` (Parquet files landing in a folder, in name order).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from raypipe.features.store.online import OnlineRow, StoreConfig, entity_key, open_store
from raypipe.features.streaming.state import WindowState
from raypipe.features.streaming.windows import WindowSpec, event_micros
from raypipe.io.fs import join_url, resolve_fs, write_bytes_atomic

__all__ = [
    "InlineStreamBackend",
    "PartitionOperator",
    "PartitionReport",
    "StreamBackend",
    "StreamConfig",
    "StreamRunner",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    """What every partition needs: the window spec, where to write, which online store."""

    spec: WindowSpec
    out_url: str
    partitions: int = 2
    store: StoreConfig | None = None
    namespace: str = "stream"
    write_windows: bool = True
    early_results: bool = False


@dataclass(frozen=True)
class PartitionReport:
    partition: int
    position: int
    events: int
    closed: int
    late: int
    open_windows: int
    state_bytes: int = 0


def _write_parquet(url: str, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    fs, path = resolve_fs(url)
    write_bytes_atomic(fs, path, buffer.getvalue())


class PartitionOperator:
    """One partition of a windowed stream (plain Python; a Ray actor runs it unchanged)."""

    def __init__(self, config: StreamConfig, partition: int) -> None:
        self.config = config
        self.partition = partition
        self._checkpoint = join_url(config.out_url, "checkpoints", f"partition-{partition}.arrow")
        fs, path = resolve_fs(self._checkpoint)
        if fs.exists(path):
            with fs.open(path, "rb") as handle:
                self.state = WindowState.from_bytes(config.spec, handle.read())
            log.info("stream partition %d resumed at position %d", partition, self.state.position)
        else:
            self.state = WindowState(config.spec)

    def position(self) -> int:
        return self.state.position

    def watermark(self) -> int:
        return self.state.watermark

    def process(
        self, events: pl.DataFrame, max_event_ts: int | None, position: int
    ) -> PartitionReport:
        """Process one micro-batch part; sinks first, checkpoint last."""
        if position <= self.state.position:
            return PartitionReport(self.partition, position, 0, 0, 0, self.state.open_windows)
        closed, late = self.state.process(events, max_event_ts, position)
        if self.config.early_results:
            self._push(self.state.early(), 2 * position)
        self._sink(closed, late, position)
        self._save()
        return PartitionReport(
            self.partition,
            position,
            events.height,
            closed.height,
            late.height,
            self.state.open_windows,
            self.state.state_bytes,
        )

    def flush(self, position: int) -> PartitionReport:
        """Close every window (end of a finite stream) as batch ``position``."""
        if position <= self.state.position:
            return PartitionReport(self.partition, position, 0, 0, 0, self.state.open_windows)
        closed = self.state.flush()
        self.state.position = position
        self._sink(closed, pl.DataFrame(), position)
        self._save()
        return PartitionReport(self.partition, position, 0, closed.height, 0, 0)

    def _sink(self, closed: pl.DataFrame, late: pl.DataFrame, position: int) -> None:
        name = f"partition={self.partition}/batch-{position:012d}.parquet"
        if late.height:
            _write_parquet(join_url(self.config.out_url, "late", name), late)
        if not closed.height:
            return
        if self.config.write_windows:
            _write_parquet(join_url(self.config.out_url, "windows", name), closed)
        self._push(closed, 2 * position + 1)

    def _push(self, windows: pl.DataFrame, created: int) -> None:
        """The newest window per entity into the online store.

        ``created`` orders writes of the same window: early results of batch ``p`` are written
        with ``2p`` and final ones with ``2p + 1``, so a final result replaces the early results
        of its window and a replayed batch writes nothing new.
        """
        if self.config.store is None or not windows.height:
            return
        newest = windows.sort("end").group_by("key").last()
        rows = [
            OnlineRow(
                entity_key([row["key"]]),
                row["end"],
                created,
                json.dumps(
                    {c: row[c] for c in newest.columns if c != "key"}, separators=(",", ":")
                ),
            )
            for row in newest.iter_rows(named=True)
        ]
        store = open_store(self.config.store)
        try:
            store.write(self.config.namespace, rows)
        finally:
            store.close()

    def _save(self) -> None:
        fs, path = resolve_fs(self._checkpoint)
        write_bytes_atomic(fs, path, self.state.to_bytes())


class StreamBackend(Protocol):
    """Runs the partitions of a stream: in-process or as Ray actors."""

    def positions(self) -> list[int]: ...

    def watermarks(self) -> list[int]: ...

    def process(
        self, parts: Sequence[pl.DataFrame], max_event_ts: int | None, position: int
    ) -> list[PartitionReport]: ...

    def flush(self, position: int) -> list[PartitionReport]: ...

    def close(self) -> None: ...


class InlineStreamBackend:
    """Every partition in this process (tests, ``--inline``)."""

    def __init__(self, config: StreamConfig) -> None:
        self.operators = [PartitionOperator(config, p) for p in range(config.partitions)]

    def positions(self) -> list[int]:
        return [o.position() for o in self.operators]

    def watermarks(self) -> list[int]:
        return [o.watermark() for o in self.operators]

    def process(
        self, parts: Sequence[pl.DataFrame], max_event_ts: int | None, position: int
    ) -> list[PartitionReport]:
        return [
            o.process(p, max_event_ts, position) for o, p in zip(self.operators, parts, strict=True)
        ]

    def flush(self, position: int) -> list[PartitionReport]:
        return [o.flush(position) for o in self.operators]

    def close(self) -> None:
        pass


class StreamRunner:
    """Feeds micro-batches to a backend's partitions with one stream-wide watermark."""

    def __init__(self, config: StreamConfig, backend: StreamBackend) -> None:
        self.config = config
        self.backend = backend
        # Resume after the partition that is furthest behind; the others skip what they saw.
        self.position = min(backend.positions())
        watermark = max(backend.watermarks())
        self.newest = None if self.position < 0 else watermark + config.spec.allowed_lateness
        self.events = self.late = self.closed = 0
        self.open_windows = 0
        self.state_bytes = 0

    def split(self, events: pl.DataFrame) -> list[pl.DataFrame]:
        """The parts of ``events`` per partition (hash of the entity key)."""
        parts = self.config.partitions
        bucket = (pl.col(self.config.spec.key).hash(seed=0) % parts).alias("_partition")
        tagged = events.with_columns(bucket)
        groups = {
            key[0]: frame.drop("_partition")
            for key, frame in tagged.partition_by("_partition", as_dict=True).items()
        }
        return [groups.get(p, events.clear()) for p in range(parts)]

    def feed(self, events: pl.DataFrame, *, position: int | None = None) -> list[PartitionReport]:
        """Process one micro-batch (the next position unless given, e.g. a replay)."""
        position = self.position + 1 if position is None else position
        if events.height:
            newest = events.select(event_micros(events, self.config.spec.timestamp).max()).item()
            self.newest = newest if self.newest is None else max(self.newest, newest)
        reports = self.backend.process(self.split(events), self.newest, position)
        self.position = max(self.position, position)
        self._count(reports)
        return reports

    def run_folder(self, folder: str) -> int:
        """Process the Parquet files in ``folder`` not processed yet, in name order.

        The position of a file is its index in name order, so files must land with names that
        sort in arrival order (e.g. a timestamp prefix). Returns how many files were processed.
        """
        fs, root = resolve_fs(folder)
        names = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
        done = 0
        for position, path in enumerate(names):
            if position <= self.position:
                continue
            with fs.open(path, "rb") as handle:
                self.feed(pl.read_parquet(handle), position=position)
            done += 1
        return done

    def finish(self) -> list[PartitionReport]:
        """Close every open window (end of a finite stream)."""
        self.position += 1
        reports = self.backend.flush(self.position)
        self._count(reports)
        return reports

    def _count(self, reports: list[PartitionReport]) -> None:
        self.events += sum(r.events for r in reports)
        self.late += sum(r.late for r in reports)
        self.closed += sum(r.closed for r in reports)
        self.open_windows = sum(r.open_windows for r in reports)
        self.state_bytes = sum(r.state_bytes for r in reports)
