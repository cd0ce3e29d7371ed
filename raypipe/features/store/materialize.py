"""Materialization: the latest row per entity of an offline dataset, into an online store.

Incremental from a watermark: a run takes the source rows with ``watermark < event_ts <= end``
(``end`` = the newest event by default) and, when every chunk is written, moves the watermark to
``end``. The interval is cut into chunks of ``time x entity-hash partition``; each chunk is one
executor task (a Ray task in a job) that scans only its rows, keeps the latest row per key in
the scan itself (polars lazy ``sort`` + ``group_by().last()`` before ``collect``), and writes
through the store's conflict rule. Because the rule is "newest ``(event_ts, created_ts)`` wins",
chunks may run in any order and any number of times:

* **resumable** - finished chunks are recorded after each round of tasks; a rerun of an
  interrupted run skips them (and redoing one would write nothing anyway);
* **idempotent** - a second run finds nothing after the watermark; even a forced full rerun
  writes zero rows, because nothing it has is newer.

State per view version lives beside the registry:
``registry/features/<name>/materialized-<version>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import polars as pl

from raypipe.features.store.online import (
    OnlineRow,
    StoreConfig,
    entity_key,
    expiry_of,
    from_micros,
    open_store,
    to_micros,
)
from raypipe.features.store.registry import ServedView, registry_url
from raypipe.io.dataset import scan_dataset
from raypipe.io.fs import join_url, resolve_fs, write_bytes_atomic
from raypipe.stages.base import Executor

__all__ = [
    "ChunkResult",
    "MaterializeChunk",
    "MaterializeResult",
    "MaterializeState",
    "latest_per_key",
    "materialize",
    "materialize_chunk",
    "read_state",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaterializeChunk:
    """One task: rows of one time slice and one entity-hash partition."""

    source_url: str
    view: ServedView
    store: StoreConfig
    start_us: int
    end_us: int
    partition: int
    partitions: int
    created_column: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def chunk_id(self) -> str:
        return f"{self.start_us}-{self.end_us}-{self.partition}of{self.partitions}"


@dataclass(frozen=True)
class ChunkResult:
    chunk_id: str
    latest_rows: int
    written: int
    newest_event_us: int | None


@dataclass
class MaterializeState:
    """What the last runs of a view version did: watermark and the chunks of a run in flight."""

    watermark_us: int | None = None
    newest_event_us: int | None = None
    last_run_at: str | None = None
    in_flight_end_us: int | None = None
    done_chunks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MaterializeResult:
    """Counts of one run; ``written`` counts rows the store accepted as newer."""

    view: ServedView
    latest_rows: int
    written: int
    chunks: int
    skipped_chunks: int
    watermark: dt.datetime | None
    newest_event: dt.datetime | None
    seconds: float


def latest_per_key(frame: pl.LazyFrame, chunk: MaterializeChunk) -> pl.LazyFrame:
    """The chunk's rows reduced to the newest per key, as a lazy plan (runs inside the scan)."""
    view = chunk.view
    ts = pl.col(view.timestamp)
    micros = ts.dt.replace_time_zone(None).dt.cast_time_unit("us").cast(pl.Int64)
    created = (
        pl.col(chunk.created_column)
        .dt.replace_time_zone(None)
        .dt.cast_time_unit("us")
        .cast(pl.Int64)
        if chunk.created_column
        else pl.lit(0, pl.Int64)
    )
    keys = list(view.entities)
    frame = frame.with_columns(micros.alias("_event_us"), created.alias("_created_us"))
    frame = frame.filter(
        (pl.col("_event_us") > chunk.start_us) & (pl.col("_event_us") <= chunk.end_us)
    )
    if chunk.partitions > 1:
        bucket = pl.struct(keys).hash(seed=0) % chunk.partitions
        frame = frame.filter(bucket == chunk.partition)
    return (
        frame.sort(["_event_us", "_created_us"])
        .group_by(keys)
        .last()
        .select([*keys, "_event_us", "_created_us", *view.columns])
    )


def materialize_chunk(chunk: MaterializeChunk) -> ChunkResult:
    """Scan, reduce and write one chunk (the function each task runs)."""
    view = chunk.view
    columns = list(
        dict.fromkeys(
            [
                *view.entities,
                view.timestamp,
                *view.columns,
                *([chunk.created_column] if chunk.created_column else []),
            ]
        )
    )
    frame = scan_dataset(
        chunk.source_url, columns=columns, storage_options=dict(chunk.storage_options) or None
    )
    latest = latest_per_key(frame, chunk).collect()
    if latest.height == 0:
        return ChunkResult(chunk.chunk_id, 0, 0, None)
    keys = latest.select(view.entities).rows()
    # Values encoded to JSON by polars (vectorized; the same text json.loads reads back).
    payloads = latest.select(pl.struct(list(view.columns)).struct.json_encode()).to_series()
    rows = [
        OnlineRow(entity_key(key), event, created, payload)
        for key, event, created, payload in zip(
            keys, latest["_event_us"], latest["_created_us"], payloads, strict=True
        )
    ]
    store = open_store(chunk.store)
    try:
        written = store.write(view.namespace, rows, expire_after=expiry_of(view.max_age_s))
    finally:
        store.close()
    newest = cast(int, latest["_event_us"].max())  # an Int64 column with rows: an int
    return ChunkResult(chunk.chunk_id, latest.height, written, newest)


def _state_url(data_dir: str, view: ServedView) -> str:
    return join_url(registry_url(data_dir), view.name, f"materialized-{view.version}.json")


def read_state(
    data_dir: str, view: ServedView, storage_options: Mapping[str, Any] | None = None
) -> MaterializeState:
    """The materialization state of ``view`` (empty when it was never materialized)."""
    fs, path = resolve_fs(_state_url(data_dir, view), storage_options)
    if not fs.exists(path):
        return MaterializeState()
    with fs.open(path, "rb") as handle:
        return MaterializeState(**json.loads(handle.read()))


def _write_state(
    data_dir: str,
    view: ServedView,
    state: MaterializeState,
    storage_options: Mapping[str, Any] | None,
) -> None:
    fs, path = resolve_fs(_state_url(data_dir, view), storage_options)
    write_bytes_atomic(fs, path, json.dumps(state.__dict__, indent=1).encode())


def _time_bounds(
    source_url: str, view: ServedView, storage_options: Mapping[str, Any] | None
) -> tuple[int, int] | None:
    ts = pl.col(view.timestamp).dt.replace_time_zone(None).dt.cast_time_unit("us").cast(pl.Int64)
    bounds = (
        scan_dataset(source_url, columns=[view.timestamp], storage_options=storage_options)
        .select(ts.min().alias("lo"), ts.max().alias("hi"))
        .collect()
    )
    lo, hi = bounds.row(0)
    return None if lo is None else (int(lo), int(hi))


def materialize(
    data_dir: str,
    view: ServedView,
    source_url: str,
    store: StoreConfig,
    executor: Executor,
    *,
    end: dt.datetime | None = None,
    chunk: dt.timedelta = dt.timedelta(days=1),
    partitions: int | None = None,
    created_column: str | None = None,
    full: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> MaterializeResult:
    """Bring the online store up to ``end`` (default: the newest event) for ``view``.

    Parameters
    ----------
    full
        Ignore the watermark and scan the whole source (writes only what is newer; a repair).
    partitions
        Entity-hash partitions per time slice (default: the executor's parallelism).
    """
    started = time.perf_counter()
    state = MaterializeState() if full else read_state(data_dir, view, storage_options)
    bounds = _time_bounds(source_url, view, storage_options)
    end_us = to_micros(end) if end is not None else (bounds[1] if bounds else None)
    start_us = (
        state.watermark_us
        if state.watermark_us is not None
        else (bounds[0] - 1 if bounds else None)
    )
    if bounds is None or end_us is None or start_us is None or start_us >= end_us:
        log.info("feature view %s: nothing after the watermark to materialize", view.name)
        return MaterializeResult(
            view,
            0,
            0,
            0,
            0,
            _dt(state.watermark_us),
            _dt(state.newest_event_us),
            time.perf_counter() - started,
        )
    if state.in_flight_end_us != end_us:
        state.in_flight_end_us, state.done_chunks = end_us, []
    step = max(int(chunk.total_seconds() * 1_000_000), 1)
    parts = partitions or max(executor.parallelism, 1)
    chunks: list[MaterializeChunk] = []
    for lo in range(start_us, end_us, step):
        hi = min(lo + step, end_us)
        chunks.extend(
            MaterializeChunk(
                source_url,
                view,
                store,
                lo,
                hi,
                p,
                parts,
                created_column,
                dict(storage_options or {}),
            )
            for p in range(parts)
        )
    done = set(state.done_chunks)
    pending = [c for c in chunks if c.chunk_id not in done]
    skipped = len(chunks) - len(pending)
    latest_rows = written = 0
    newest = state.newest_event_us
    round_size = max(executor.parallelism, 1) * 4
    for start in range(0, len(pending), round_size):
        batch = pending[start : start + round_size]
        for result in executor.map(
            materialize_chunk, batch, name="features.materialize", num_cpus=1.0
        ):
            latest_rows += result.latest_rows
            written += result.written
            if result.newest_event_us is not None:
                newest = max(newest or result.newest_event_us, result.newest_event_us)
            state.done_chunks.append(result.chunk_id)
        state.newest_event_us = newest
        _write_state(data_dir, view, state, storage_options)  # progress: a rerun resumes here
    state.watermark_us, state.in_flight_end_us, state.done_chunks = end_us, None, []
    state.last_run_at = dt.datetime.now(dt.UTC).isoformat()
    _write_state(data_dir, view, state, storage_options)
    seconds = time.perf_counter() - started
    log.info(
        "feature view %s: %d chunk(s), %d latest row(s), %d written to %s in %.2fs",
        view.name,
        len(chunks),
        latest_rows,
        written,
        store.describe(),
        seconds,
    )
    return MaterializeResult(
        view, latest_rows, written, len(chunks), skipped, _dt(end_us), _dt(newest), seconds
    )


def _dt(micros: int | None) -> dt.datetime | None:
    return None if micros is None else from_micros(micros)
