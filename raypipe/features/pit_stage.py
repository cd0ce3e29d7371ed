"""Stage kind ``features.point_in_time_join``: a distributed point-in-time join of datasets.

Both the entity rows and the feature table are hash-partitioned by key (file-based shuffle, see
:mod:`raypipe.features.partition`); each partition is joined by
:func:`~raypipe.features.pit.pit_join` (polars ``join_asof``) in its own task. The joined rows are
then routed back to the entity file they came from and sorted by their original position, so
the output lists the entity rows in input order, duplicates and unmatched rows included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
from pydantic import Field

from raypipe.errors import SchemaError
from raypipe.features.partition import (
    empty_frame,
    read_pieces,
    remove_scratch,
    scratch_url_for,
    write_pieces,
)
from raypipe.features.pit import FeatureTable, pit_join
from raypipe.features.views import parse_window
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.io.fs import join_url
from raypipe.io.manifest import FileEntry, Manifest
from raypipe.io.sources import open_dataset
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["PitJoinOptions", "PitJoinStage", "run_pit_join"]

logger = logging.getLogger(__name__)

FILE = "__pit_file"
ROW = "__pit_pos"


@dataclass(frozen=True)
class _Plan:
    entity_url: str
    features_url: str
    table: FeatureTable  # with empty data: the description
    entity_ts: str
    full_feature_names: bool
    partitions: int
    scratch: str
    storage: Mapping[str, Any] | None


def _map_entities(plan: _Plan, item: tuple[int, FileEntry]) -> list[str | None]:
    index, entry = item
    frame = pl.from_arrow(
        read_dataset(plan.entity_url, files=[entry], storage_options=plan.storage)
    )
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(
        pl.lit(index, dtype=pl.Int64).alias(FILE), pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW)
    )
    return write_pieces(
        join_url(plan.scratch, "entities"),
        index,
        frame,
        plan.table.keys,
        plan.partitions,
        plan.storage,
    )


def _map_features(plan: _Plan, item: tuple[int, FileEntry]) -> list[str | None]:
    index, entry = item
    columns = list(
        dict.fromkeys(
            [
                *plan.table.keys,
                plan.table.timestamp,
                *([plan.table.created] if plan.table.created else []),
                *plan.table.feature_columns,
            ]
        )
    )
    frame = pl.from_arrow(
        read_dataset(
            plan.features_url, files=[entry], columns=columns, storage_options=plan.storage
        )
    )
    assert isinstance(frame, pl.DataFrame)
    return write_pieces(
        join_url(plan.scratch, "features"),
        index,
        frame,
        plan.table.keys,
        plan.partitions,
        plan.storage,
    )


def _join(
    plan: _Plan,
    schemas: tuple[pa.Schema, pa.Schema],
    files: int,
    item: tuple[int, list[str | None], list[str | None]],
) -> list[str | None]:
    index, entity_pieces, feature_pieces = item
    entity = read_pieces(entity_pieces, schemas[0], plan.storage)
    features = read_pieces(feature_pieces, schemas[1], plan.storage)
    table = FeatureTable(
        plan.table.name,
        features,
        plan.table.keys,
        plan.table.timestamp,
        plan.table.created,
        plan.table.ttl,
        plan.table.features,
    )
    joined = pit_join(
        entity, [table], entity_ts=plan.entity_ts, full_feature_names=plan.full_feature_names
    )
    return write_pieces(
        join_url(plan.scratch, "joined"),
        index,
        joined,
        (),
        files,
        plan.storage,
        assign=pl.col(FILE),
    )


def _finish(
    plan: _Plan, writer: DatasetWriter, schema: pa.Schema, item: tuple[int, list[str | None]]
) -> list[FileEntry]:
    index, pieces = item
    frame = read_pieces(pieces, schema, plan.storage).sort(ROW).drop(FILE, ROW)
    return writer.write(frame.to_arrow(), part=index) if frame.height else []


def run_pit_join(
    entity_url: str,
    features_url: str,
    table: FeatureTable,
    out_url: str,
    executor: Any,
    *,
    entity_ts: str = "event_timestamp",
    full_feature_names: bool = False,
    partitions: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """Join the feature dataset described by ``table`` onto the entity dataset, point in time.

    ``table.data`` is ignored (pass an empty frame); the columns come from ``features_url``.
    """
    started = time.perf_counter()
    storage = dict(storage_options or {}) or None
    entity_manifest = open_dataset(entity_url, storage)
    feature_manifest = open_dataset(features_url, storage)
    entity_empty = empty_frame(entity_manifest.schema)
    feature_empty = empty_frame(feature_manifest.schema)
    chosen = FeatureTable(
        table.name,
        feature_empty,
        table.keys,
        table.timestamp,
        table.created,
        table.ttl,
        table.features,
    ).feature_columns
    described = FeatureTable(
        table.name, feature_empty, table.keys, table.timestamp, table.created, table.ttl, chosen
    )
    # Fail early, on empty frames with the real schemas (missing columns, name clashes).
    probe = pit_join(
        entity_empty, [described], entity_ts=entity_ts, full_feature_names=full_feature_names
    )
    n = partitions or max(1, 2 * int(getattr(executor, "parallelism", 1)))
    scratch = scratch_url_for(out_url)
    plan = _Plan(
        entity_url, features_url, described, entity_ts, full_feature_names, n, scratch, storage
    )
    entity_files = list(enumerate(entity_manifest.files))
    try:
        entity_pieces = executor.map(
            partial(_map_entities, plan), entity_files, name="pit_join.map_entities"
        )
        feature_pieces = executor.map(
            partial(_map_features, plan),
            list(enumerate(feature_manifest.files)),
            name="pit_join.map_features",
        )
        entity_schema = (
            entity_empty.with_columns(
                pl.lit(None, dtype=pl.Int64).alias(FILE), pl.lit(None, dtype=pl.Int64).alias(ROW)
            )
            .to_arrow()
            .schema
        )
        columns = [
            *table.keys,
            table.timestamp,
            *([table.created] if table.created else []),
            *described.feature_columns,
        ]
        feature_schema = feature_empty.select(list(dict.fromkeys(columns))).to_arrow().schema
        items = [
            (i, [p[i] for p in entity_pieces], [p[i] for p in feature_pieces]) for i in range(n)
        ]
        files = max(1, len(entity_files))
        joined = executor.map(
            partial(_join, plan, (entity_schema, feature_schema), files),
            items,
            name="pit_join.partition",
        )
        joined_schema = (
            probe.with_columns(
                pl.lit(None, dtype=pl.Int64).alias(FILE), pl.lit(None, dtype=pl.Int64).alias(ROW)
            )
            .to_arrow()
            .schema
        )
        writer = DatasetWriter(out_url, storage_options=storage)
        finals = [(f, [p[f] for p in joined]) for f in range(files)]
        entries = executor.map(
            partial(_finish, plan, writer, joined_schema), finals, name="pit_join.order"
        )
    finally:
        remove_scratch(scratch, storage)
    manifest = writer.commit(
        [e for part in entries for e in part],
        schema=probe.to_arrow().schema,
        metadata={
            "entity_version": entity_manifest.version,
            "features_version": feature_manifest.version,
        },
    )
    logger.info(
        "pit_join: %d rows, %d partitions, %.2f s", manifest.rows, n, time.perf_counter() - started
    )
    return manifest


class PitJoinOptions(StageOptions):
    """Options of ``features.point_in_time_join`` (Feast semantics; see :mod:`pit`)."""

    keys: list[str] = Field(min_length=1)
    entity_timestamp: str = "event_timestamp"
    feature_timestamp: str = "event_timestamp"
    created_timestamp: str | None = None
    ttl: str | None = None
    features: list[str] | None = None
    name: str = "features"
    full_feature_names: bool = False
    partitions: int | None = Field(None, ge=1)


class PitJoinStage(Stage[PitJoinOptions]):
    """Join a feature table onto entity rows point in time, partitioned by key."""

    kind = "features.point_in_time_join"
    options = PitJoinOptions
    inputs: ClassVar[tuple[str, ...]] = ("entities", "features")
    outputs: ClassVar[tuple[str, ...]] = ("joined",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: PitJoinOptions
    ) -> StageResult:
        try:
            ttl = parse_window(options.ttl) if options.ttl else None
        except ValueError as exc:
            raise SchemaError(f"`ttl`: {exc}", hint="e.g. `ttl: 7d`") from exc
        table = FeatureTable(
            options.name,
            pl.DataFrame(),
            tuple(options.keys),
            options.feature_timestamp,
            options.created_timestamp,
            ttl,
            tuple(options.features) if options.features else None,
        )
        manifest = run_pit_join(
            inputs["entities"].url,
            inputs["features"].url,
            table,
            context.output_url("joined"),
            context.executor,
            entity_ts=options.entity_timestamp,
            full_feature_names=options.full_feature_names,
            partitions=options.partitions,
            storage_options=context.storage_options,
        )
        return StageResult(
            outputs={"joined": manifest},
            metrics={"rows": manifest.rows},
            rows_in=inputs["entities"].rows + inputs["features"].rows,
            rows_out=manifest.rows,
        )
