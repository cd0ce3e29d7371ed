"""Point-in-time joins of entity rows with feature tables, with Feast's semantics.

For each entity row (keys, ``entity_ts``) and each feature table, take the feature row with equal
keys and ``feature_ts <= entity_ts`` (inclusive), and, with a TTL, ``feature_ts >= entity_ts -
ttl`` (inclusive); among candidates the latest ``feature_ts`` wins, ties broken by the latest
``created_ts`` (a null created time loses), then by the later row. Entity rows are never dropped
(no match, a null key or a null time give null features), duplicates are kept and get identical
features, and the output keeps the input order. Naive timestamps are UTC; tz-aware ones are
converted.

Inside, polars ``join_asof(strategy="backward", by=keys)`` does the matching after the feature
table is reduced to one row per (keys, feature_ts); :func:`pit_join_partitioned` splits both sides
by key hash so each partition can run as its own task.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import polars as pl

from raypipe.errors import SchemaError
from raypipe.features.partition import hash_partition
from raypipe.features.timestamps import (
    TimeUnit,
    check_time_zones,
    duration_literal,
    finest_unit,
    unit_of,
    utc_time,
)

__all__ = ["FeatureTable", "pit_join", "pit_join_partitioned"]

ROW = "__pit_row"
PART_ROW = "__pit_part_row"
MATCHED_TS = "__pit_ts"


@dataclass(frozen=True)
class FeatureTable:
    """A feature table to join: ``data`` with its keys, event time and optional created time.

    ``features`` defaults to every other column; ``ttl`` None or zero means no lower bound.
    """

    name: str
    data: pl.DataFrame
    keys: tuple[str, ...]
    timestamp: str
    created: str | None = None
    ttl: dt.timedelta | None = None
    features: tuple[str, ...] | None = None

    @property
    def feature_columns(self) -> tuple[str, ...]:
        if self.features is not None:
            return self.features
        skip = {*self.keys, self.timestamp, self.created}
        return tuple(c for c in self.data.columns if c not in skip)


def _check(table: FeatureTable, entity: pl.DataFrame, entity_ts: str) -> None:
    missing = [
        c
        for c in (
            *table.keys,
            table.timestamp,
            *(table.feature_columns),
            *([table.created] if table.created else []),
        )
        if c not in table.data
    ]
    if missing:
        raise SchemaError(
            f"feature table `{table.name}` lacks column(s) {', '.join(f'`{c}`' for c in missing)}",
            hint="check `keys`, `timestamp`, `created` and `features`",
        )
    missing = [c for c in (*table.keys, entity_ts) if c not in entity.columns]
    if missing:
        raise SchemaError(
            f"entity rows lack column(s) {', '.join(f'`{c}`' for c in missing)} "
            f"needed to join feature table `{table.name}`",
            hint="entity rows need every join key and the entity timestamp",
        )


def _latest_per_time(table: FeatureTable, unit: TimeUnit) -> pl.DataFrame:
    """One feature row per (keys, ts): the latest created (nulls lose), then the later row.

    The event time comes out as naive UTC ``datetime[unit]``.
    """
    keys = list(table.keys)
    columns = [*keys, table.timestamp, *table.feature_columns]
    data = table.data.with_row_index(ROW)
    data = data.with_columns(
        utc_time(pl.col(table.timestamp), table.data.schema[table.timestamp], unit)
    )
    data = data.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in (*keys, table.timestamp)))
    order = [table.timestamp, ROW]
    if table.created:
        created = table.data.schema[table.created]
        data = data.with_columns(utc_time(pl.col(table.created), created, unit_of(created)))
        order = [table.timestamp, table.created, ROW]
    data = data.sort(order, nulls_last=False)
    return data.unique(subset=[*keys, table.timestamp], keep="last", maintain_order=True).select(
        columns
    )


def pit_join(
    entity: pl.DataFrame,
    tables: Sequence[FeatureTable],
    *,
    entity_ts: str = "event_timestamp",
    full_feature_names: bool = False,
) -> pl.DataFrame:
    """Join ``tables`` onto ``entity`` point in time; returns ``entity`` plus feature columns.

    Raises
    ------
    SchemaError
        A column is missing, or two tables produce the same feature name.
    """
    out = entity.with_row_index(ROW)
    names: dict[str, str] = {}
    for table in tables:
        _check(table, entity, entity_ts)
        renames = {
            c: f"{table.name}__{c}" if full_feature_names else c for c in table.feature_columns
        }
        for new in renames.values():
            if new in names or new in entity.columns:
                raise SchemaError(
                    f"feature `{new}` of `{table.name}` clashes with "
                    f"`{names.get(new, 'the entity rows')}`",
                    hint="set `full_feature_names=True` or rename the feature",
                )
            names[new] = table.name
        keys = list(table.keys)
        entity_type, feature_type = entity.schema[entity_ts], table.data.schema[table.timestamp]
        check_time_zones(
            {
                f"entity rows `{entity_ts}`": entity_type,
                f"feature table `{table.name}` `{table.timestamp}`": feature_type,
            },
            "point-in-time join",
        )
        unit = finest_unit(entity_type, feature_type)
        time = utc_time(pl.col(entity_ts), entity_type, unit).alias(MATCHED_TS + "_l")
        right = _latest_per_time(table, unit).rename({table.timestamp: MATCHED_TS, **renames})
        left = out.select(ROW, *keys, time)
        valid = pl.all_horizontal(pl.col(c).is_not_null() for c in (*keys, MATCHED_TS + "_l"))
        matched = (
            left.filter(valid)
            .sort(MATCHED_TS + "_l")
            .join_asof(
                right.sort(MATCHED_TS),
                left_on=MATCHED_TS + "_l",
                right_on=MATCHED_TS,
                by=keys,
                strategy="backward",
                allow_exact_matches=True,
                check_sortedness=False,
            )
        )
        if table.ttl:
            stale = pl.col(MATCHED_TS) < (
                pl.col(MATCHED_TS + "_l") - duration_literal(table.ttl, unit)
            )
            matched = matched.with_columns(
                pl.when(stale).then(None).otherwise(pl.col(c)).alias(c) for c in renames.values()
            )
        out = out.join(
            matched.select(ROW, *renames.values()), on=ROW, how="left", maintain_order="left"
        )
    return out.sort(ROW).drop(ROW)


def _join_partition(
    tables: Sequence[FeatureTable],
    entity_ts: str,
    full_feature_names: bool,
    item: tuple[pl.DataFrame, list[pl.DataFrame]],
) -> pl.DataFrame:
    entity, parts = item
    local = [
        FeatureTable(t.name, part, t.keys, t.timestamp, t.created, t.ttl, t.features)
        for t, part in zip(tables, parts, strict=True)
    ]
    return pit_join(entity, local, entity_ts=entity_ts, full_feature_names=full_feature_names)


def pit_join_partitioned(
    entity: pl.DataFrame,
    tables: Sequence[FeatureTable],
    *,
    entity_ts: str = "event_timestamp",
    full_feature_names: bool = False,
    partitions: int = 4,
    map_fn: Callable[[Callable[[Any], Any], list[Any]], list[Any]] | None = None,
) -> pl.DataFrame:
    """:func:`pit_join` over ``partitions`` key-hash partitions (every table shares the keys).

    ``map_fn(fn, items)`` runs the partitions (e.g. an executor's ``map``); default in-process.
    Same result as :func:`pit_join`, including row order.
    """
    keys = tables[0].keys if tables else ()
    if any(t.keys != keys for t in tables):
        raise SchemaError(
            "partitioned point-in-time join needs the same keys in every table",
            hint="join tables with other keys in a second call",
        )
    numbered = entity.with_row_index(PART_ROW)
    entity_parts = hash_partition(numbered, keys, partitions)
    table_parts = [hash_partition(t.data, keys, partitions) for t in tables]
    items = [(entity_parts[i], [parts[i] for parts in table_parts]) for i in range(partitions)]
    fn = partial(_join_partition, tables_without_data(tables), entity_ts, full_feature_names)
    results: list[pl.DataFrame] = map_fn(fn, items) if map_fn else [fn(item) for item in items]
    return pl.concat(results, how="vertical_relaxed").sort(PART_ROW).drop(PART_ROW)


def tables_without_data(tables: Sequence[FeatureTable]) -> list[FeatureTable]:
    """The tables' descriptions with empty data (cheap to ship to tasks)."""
    return [
        FeatureTable(
            t.name, t.data.clear(), t.keys, t.timestamp, t.created, t.ttl, t.feature_columns
        )
        for t in tables
    ]
