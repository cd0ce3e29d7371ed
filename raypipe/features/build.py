"""Distributed as-of feature computation: partition by entity, compute per partition, commit.

:func:`run_feature_build` is what the ``features.*`` stages call. Events are split into entity
partitions (clustered files as they are, otherwise a file-based hash shuffle, see
:mod:`raypipe.features.partition`); each partition is one task of ``executor.map`` that reads its
events and its entity rows, runs :func:`~raypipe.features.asof.compute_features` with polars, and
stages its output with a :class:`~raypipe.io.dataset.DatasetWriter`. The driver only moves file
lists and key lists, and commits once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import polars as pl
import pyarrow as pa

from raypipe.features.asof import (
    aggregate_views,
    attach_features,
    compile_view,
    compute_features,
    normalize_time,
)
from raypipe.features.partition import (
    empty_frame,
    partition_of,
    read_pieces,
    remove_scratch,
    scratch_url_for,
    write_pieces,
)
from raypipe.features.timestamps import finest_unit, time_literal, utc_time
from raypipe.features.views import FeatureView
from raypipe.io.clustering import CLUSTERED_BY, balance, clustered_groups
from raypipe.io.commit import verify_files
from raypipe.io.dataset import DatasetWriter, read_dataset, scan_dataset
from raypipe.io.fs import is_local
from raypipe.io.manifest import FileEntry, Manifest
from raypipe.io.sources import locate_dataset, open_dataset

__all__ = ["FeatureBuild", "FeatureBuildResult", "run_feature_build"]

logger = logging.getLogger(__name__)

#: Events one task takes at most by default: about 0.6 GB in Arrow for the game telemetry, a few
#: times that at the peak of the polars query. More events than ``CPUs x this`` give more tasks.
MAX_EVENTS_PER_TASK = 8_000_000


@dataclass(frozen=True)
class FeatureBuild:
    """A picklable plan: what every task needs to compute its partition.

    ``entities_url`` holds the entity rows (labels, or players for scoring); with ``cutoff``
    every row is computed as of that time, else as of its ``cutoff_column``. ``players_url``
    optionally adds static attributes (``player_columns``) and ``tenure_days``.
    """

    events_url: str
    views: tuple[FeatureView, ...]
    entities_url: str
    keys: tuple[str, ...]
    out: DatasetWriter
    cutoff: dt.datetime | None = None
    cutoff_column: str = "cutoff"
    entity_columns: tuple[str, ...] | None = None
    players_url: str | None = None
    player_columns: tuple[str, ...] = ()
    install_column: str | None = "install_date"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    #: ``(lower or None, upper)``: only events with ``lower <= ts < upper`` can matter.
    time_range: tuple[dt.datetime | None, dt.datetime] | None = None

    @property
    def storage(self) -> dict[str, Any] | None:
        return dict(self.storage_options) or None

    def event_columns(self, schema: pa.Schema) -> list[str]:
        """The event columns the views read (so tasks read only those)."""
        source = empty_frame(schema).schema
        used: set[str] = set()
        for view in self.views:
            used |= compile_view(view, source).columns
        return [name for name in schema.names if name in used]


@dataclass(frozen=True)
class FeatureBuildResult:
    """The committed output and how it was computed."""

    manifest: Manifest
    tasks: int
    shuffled: bool
    seconds: float


@dataclass(frozen=True)
class _TaskOutput:
    entries: list[FileEntry]
    rows: int
    seen: pl.DataFrame | None = None


def _scan_events(build: FeatureBuild, files: list[FileEntry]) -> pl.LazyFrame:
    """The events of ``files`` as a lazy frame (local, unpartitioned: polars scans the files,
    so the cutoff filter and column choice are pushed into the Parquet reader)."""
    manifest, fs, root = locate_dataset(build.events_url, build.storage)
    if is_local(fs) and not manifest.partition_by and files:
        root = root.rstrip("/")
        verify_files(fs, root, build.events_url, files)
        frame = pl.scan_parquet([f"{root}/{entry.path}" for entry in files])
        frame = frame.select(list(build.columns)) if build.columns else frame
    else:
        table = read_dataset(
            build.events_url, files=files, columns=build.columns, storage_options=build.storage
        )
        events = pl.from_arrow(table)
        assert isinstance(events, pl.DataFrame)
        frame = events.lazy()
    return _prune(build, frame)


def _prune(build: FeatureBuild, events: pl.LazyFrame) -> pl.LazyFrame:
    """Drop events outside ``build.time_range`` (pushed into the Parquet scan)."""
    stamps = {view.timestamp for view in build.views}
    if build.time_range is None or len(stamps) != 1:
        return events
    stamp = stamps.pop()
    dtype = events.collect_schema()[stamp]
    unit = finest_unit(dtype, pl.Datetime("us"))  # never truncate the events' time
    ts = utc_time(pl.col(stamp), dtype, unit)
    lower, upper = build.time_range
    keep = ts < time_literal(upper, unit)
    if lower is not None:
        keep = keep & (ts >= time_literal(lower, unit))
    return events.filter(keep)


def _time_range(build: FeatureBuild) -> tuple[dt.datetime | None, dt.datetime] | None:
    """The event times any row can see: ``[min cutoff - longest window, max cutoff)``."""
    if build.cutoff is not None:
        low = high = build.cutoff
    else:
        column = pl.col(build.cutoff_column)
        bounds = (
            scan_dataset(
                build.entities_url, columns=[build.cutoff_column], storage_options=build.storage
            )
            .select(column.min().alias("low"), column.max().alias("high"))
            .collect()
        )
        low, high = bounds.row(0)
        if not isinstance(high, dt.datetime) or not isinstance(low, dt.datetime):
            return None  # no rows, or not a datetime: no pruning
        if high.tzinfo is not None or low.tzinfo is not None:
            return None
    windows = [view.max_window for view in build.views]
    lower = None if any(w is None for w in windows) else low - max(w for w in windows if w)
    # A Python datetime drops nanoseconds (rounds down): widen the open upper end by 1 us so a
    # nanosecond cutoff still sees the events just before it.
    return lower, (high + dt.timedelta(microseconds=1) if build.cutoff is None else high)


def _entity_rows(build: FeatureBuild, selector: pl.Expr | pl.DataFrame | None) -> pl.DataFrame:
    """The entity rows of one partition: those whose keys match ``selector``."""
    columns = list(build.entity_columns) if build.entity_columns else None
    rows = scan_dataset(build.entities_url, columns=columns, storage_options=build.storage)
    if isinstance(selector, pl.DataFrame):
        rows = rows.join(selector.lazy(), on=list(build.keys), how="semi", nulls_equal=True)
    elif selector is not None:
        rows = rows.filter(selector)
    return rows.collect()


def _assemble(build: FeatureBuild, events: pl.DataFrame, entities: pl.DataFrame) -> pl.DataFrame:
    """Features of ``entities``, in output column order: keys, cutoff, features, the rest."""
    features = compute_features(
        events, build.views, entities, cutoff=build.cutoff, cutoff_column=build.cutoff_column
    )
    return _finish(build, features)


def _finish(build: FeatureBuild, features: pl.DataFrame) -> pl.DataFrame:
    """Add the cutoff and player attributes; order columns as keys, cutoff, features, rest."""
    if build.cutoff is not None:
        features = features.with_columns(
            pl.lit(build.cutoff.replace(tzinfo=None), dtype=pl.Datetime("us")).alias(
                build.cutoff_column
            )
        )
    else:
        features = features.with_columns(
            normalize_time(pl.col(build.cutoff_column), features.schema[build.cutoff_column])
        )
    if build.players_url:
        features = _with_players(build, features)
    front = [*build.keys, build.cutoff_column]
    names = [n for view in build.views for n in view.feature_names]
    attributes = [
        c
        for c in (*build.player_columns, "tenure_days")
        if c in features.columns and c not in front and c not in names
    ]
    taken = {*front, *names, *attributes}
    rest = [c for c in features.columns if c not in taken]
    return features.select(*front, *names, *attributes, *rest)


def _compute(
    build: FeatureBuild, events: pl.DataFrame, entities: pl.DataFrame, part: int | str
) -> _TaskOutput:
    return _write(build, _assemble(build, events, entities), part)


def _write(build: FeatureBuild, frame: pl.DataFrame, part: int | str) -> _TaskOutput:
    table = frame.to_arrow()
    entries = build.out.write(table, part=part) if table.num_rows else []
    return _TaskOutput(entries, table.num_rows)


def _with_players(build: FeatureBuild, features: pl.DataFrame) -> pl.DataFrame:
    assert build.players_url is not None
    keys = list(build.keys)
    wanted = list(dict.fromkeys([*keys, *build.player_columns]))
    schema = open_dataset(build.players_url, build.storage).schema
    tenure = build.install_column if build.install_column in schema.names else None
    if tenure:
        wanted.append(tenure)
    players = (
        scan_dataset(build.players_url, columns=wanted, storage_options=build.storage)
        .join(features.select(keys).unique().lazy(), on=keys, how="semi")
        .unique(subset=keys, keep="first")
        .collect()
    )
    out = features.join(players, on=keys, how="left", maintain_order="left")
    if tenure:
        installed = pl.col(tenure).cast(pl.Datetime("us"))
        days = (pl.col(build.cutoff_column) - installed).dt.total_seconds() / 86_400
        out = out.with_columns(days.alias("tenure_days")).drop(tenure)
    return out


def _clustered_task(build: FeatureBuild, item: tuple[int, list[FileEntry]]) -> _TaskOutput:
    index, files = item
    events = _scan_events(build, files)
    if build.cutoff is not None:
        # One cutoff: aggregate first; the entities with rows are then the cluster's entities
        # (others get empty-history features in the remainder task, which is the same value).
        aggregated = aggregate_views(events, build.views, cutoff=build.cutoff)
        seen = (
            pl.concat([frame.select(list(build.keys)) for _, frame in aggregated])
            .drop_nulls()
            .unique()
        )
        entities = _entity_rows(build, seen)
        features = attach_features(entities, aggregated, cutoff=build.cutoff)
        return replace(_write(build, _finish(build, features), index), seen=seen)
    seen = events.select(list(build.keys)).drop_nulls().unique().collect()
    entities = _entity_rows(build, seen)
    return replace(_compute(build, events.collect(), entities, part=index), seen=seen)


def _remainder_task(build: FeatureBuild, seen: pl.DataFrame) -> _TaskOutput:
    """Entity rows whose keys had no events in any cluster: features of an empty history."""
    rows = scan_dataset(build.entities_url, storage_options=build.storage)
    if build.entity_columns:
        rows = rows.select(list(build.entity_columns))
    entities = rows.join(seen.lazy(), on=list(build.keys), how="anti", nulls_equal=True).collect()
    schema = open_dataset(build.events_url, build.storage).schema
    if build.columns:
        schema = pa.schema([schema.field(c) for c in build.columns])
    events = empty_frame(schema)
    assert isinstance(events, pl.DataFrame)
    return _compute(build, events, entities, part="rest")


def _map_task(
    build: FeatureBuild, partitions: int, scratch: str, item: tuple[int, list[FileEntry]]
) -> list[str | None]:
    index, files = item
    events = _scan_events(build, files)
    return write_pieces(scratch, index, events.collect(), build.keys, partitions, build.storage)


def _reduce_task(
    build: FeatureBuild, partitions: int, item: tuple[int, list[str | None]]
) -> _TaskOutput:
    index, pieces = item
    schema = open_dataset(build.events_url, build.storage).schema
    if build.columns:
        schema = pa.schema([schema.field(c) for c in build.columns])
    events = read_pieces(pieces, schema, build.storage)
    entities = _entity_rows(build, partition_of(build.keys, partitions) == index)
    return _compute(build, events, entities, part=index)


def run_feature_build(
    build: FeatureBuild,
    executor: Any,
    *,
    partitions: int | None = None,
    clustered: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
    name: str = "features",
) -> FeatureBuildResult:
    """Compute ``build`` over entity partitions with ``executor`` and commit the output.

    Parameters
    ----------
    partitions
        Tasks to use. Default: one per CPU (each task is a single-threaded polars query over
        whole files, so more tasks only add per-task cost), or more when the events exceed
        ``MAX_EVENTS_PER_TASK`` per task, so that a task's memory stays bounded as data grows.
    clustered
        True: trust the events' clustering (error if undeclared); False: always shuffle;
        None (default): use clustering when the events' manifest declares it.
    """
    started = time.perf_counter()
    events_manifest = open_dataset(build.events_url, build.storage)
    tasks = partitions or max(
        1,
        int(getattr(executor, "parallelism", 1)),
        math.ceil(events_manifest.rows / MAX_EVENTS_PER_TASK),
    )
    build = replace(build, columns=tuple(build.event_columns(events_manifest.schema)))
    if build.cutoff is not None and build.cutoff.tzinfo is not None:  # naive UTC inside
        build = replace(build, cutoff=build.cutoff.astimezone(dt.UTC).replace(tzinfo=None))
    build = replace(build, time_range=_time_range(build))
    groups = clustered_groups(events_manifest, build.keys) if clustered is not False else None
    if clustered and groups is None:
        from raypipe.errors import DataError

        raise DataError(
            f"events at `{build.events_url}` do not declare `{CLUSTERED_BY}: "
            f"{list(build.keys)}` in their manifest metadata",
            hint="set `clustered: auto` (or false) to hash-partition the events",
        )
    outputs: list[_TaskOutput]
    if groups is not None:
        bins = list(enumerate(balance(groups, tasks)))
        outputs = executor.map(partial(_clustered_task, build), bins, name=f"{name}.partition")
        used = len(bins)
        entity_manifest = open_dataset(build.entities_url, build.storage)
        if sum(o.rows for o in outputs) < entity_manifest.rows:  # entities without events
            empty = empty_frame(entity_manifest.schema)
            seen = [o.seen for o in outputs if o.seen is not None]
            known = pl.concat(seen).unique() if seen else empty.select(list(build.keys))
            outputs += executor.map(
                partial(_remainder_task, build), [known], name=f"{name}.no_events"
            )
            used += 1
    else:
        scratch = scratch_url_for(build.out.url)  # raypipe's own: deleted afterwards
        files = [[entry] for entry in events_manifest.files]
        bins = list(enumerate(balance(files, tasks)))
        try:
            pieces = executor.map(
                partial(_map_task, build, tasks, scratch), bins, name=f"{name}.shuffle_map"
            )
            items = [(i, [p[i] for p in pieces]) for i in range(tasks)]
            outputs = executor.map(
                partial(_reduce_task, build, tasks), items, name=f"{name}.partition"
            )
        finally:
            remove_scratch(scratch, build.storage)
        used = len(bins) + tasks
    schema = _output_schema(build, events_manifest.schema)
    entries = [entry for output in outputs for entry in output.entries]
    meta = {
        CLUSTERED_BY: list(build.keys),
        "features": [n for view in build.views for n in view.feature_names],
        "views": [view.name for view in build.views],
        **(metadata or {}),
    }
    if build.cutoff is not None:
        meta["cutoff"] = build.cutoff.isoformat()
    manifest = build.out.commit(entries, metadata=meta, schema=schema)
    seconds = time.perf_counter() - started
    logger.info(
        "%s: %d rows, %d tasks, %s, %.2f s",
        name,
        manifest.rows,
        used,
        "hash shuffle" if groups is None else "clustered input",
        seconds,
    )
    return FeatureBuildResult(manifest, used, groups is None, seconds)


def _output_schema(build: FeatureBuild, events_schema: pa.Schema) -> pa.Schema:
    """The output schema, from running the plan on empty inputs (so empty outputs commit)."""
    entity_schema = open_dataset(build.entities_url, build.storage).schema
    if build.entity_columns:
        entity_schema = pa.schema([entity_schema.field(c) for c in build.entity_columns])
    events = empty_frame(
        pa.schema([events_schema.field(c) for c in build.columns or events_schema.names])
    )
    entities = empty_frame(entity_schema)
    assert isinstance(events, pl.DataFrame) and isinstance(entities, pl.DataFrame)
    return _assemble(build, events, entities).to_arrow().schema
