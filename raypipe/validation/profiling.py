"""Profile a committed dataset: per-partition tasks, merged on the driver, two passes.

Pass one profiles each group of files (counts, nulls, min/max, moments, sketches, value
counts); the driver merges them and derives histogram edges from the global range; pass two
counts each group's values on those shared edges, so the merged histogram is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pyarrow as pa

from raypipe.io.clustering import balance, clustered_groups
from raypipe.io.manifest import FileEntry, Manifest
from raypipe.stages.base import Executor
from raypipe.validation.stats import (
    HISTOGRAM_BINS,
    ColumnProfile,
    histogram_edges,
    merge_profiles,
    profile_table,
    with_histogram,
)

__all__ = [
    "DatasetProfile",
    "file_groups",
    "profile_rows",
    "read_profile_table",
    "run_profile",
]


@dataclass(frozen=True)
class DatasetProfile:
    """The merged profile of one dataset version."""

    name: str
    version: str
    rows: int
    columns: Mapping[str, ColumnProfile]

    @property
    def nulls(self) -> int:
        return sum(column.nulls for column in self.columns.values())


def file_groups(manifest: Manifest, parallelism: int) -> list[tuple[FileEntry, ...]]:
    """Split the files into at most ``2 * parallelism`` groups of similar size.

    A clustered dataset is split into groups of whole parts, so a stage that writes one part per
    group keeps its input's clustering (:mod:`raypipe.io.clustering`).
    """
    files = list(manifest.files)
    if not files:
        return []
    clusters = clustered_groups(manifest)
    if clusters is not None:
        return [tuple(group) for group in balance(clusters, 2 * max(1, parallelism))]
    count = max(1, min(len(files), 2 * max(1, parallelism)))
    size = math.ceil(len(files) / count)
    return [tuple(files[i : i + size]) for i in range(0, len(files), size)]


def _profile_part(
    item: tuple[FileEntry, ...],
    *,
    url: str,
    columns: tuple[str, ...] | None,
    storage_options: Mapping[str, Any] | None,
) -> dict[str, ColumnProfile]:
    from raypipe.io.dataset import read_dataset

    table = read_dataset(url, columns=columns, files=list(item), storage_options=storage_options)
    return profile_table(table)


def _histogram_part(
    item: tuple[FileEntry, ...],
    *,
    url: str,
    edges: Mapping[str, tuple[float, ...]],
    storage_options: Mapping[str, Any] | None,
) -> dict[str, tuple[int, ...]]:
    from raypipe.io.dataset import read_dataset

    names = list(edges)
    table = read_dataset(url, columns=names, files=list(item), storage_options=storage_options)
    out = {}
    for name in names:
        empty = _empty(name)
        out[name] = with_histogram(empty, table.column(name), edges[name]).histogram or ()
    return out


def _empty(name: str) -> ColumnProfile:
    return ColumnProfile(name=name, type="", kind="numeric")


def run_profile(
    name: str,
    url: str,
    manifest: Manifest,
    executor: Executor,
    *,
    columns: Sequence[str] | None = None,
    bins: int = HISTOGRAM_BINS,
    storage_options: Mapping[str, Any] | None = None,
) -> DatasetProfile:
    """Profile the committed dataset at ``url`` with one task per group of files."""
    groups = file_groups(manifest, executor.parallelism)
    selected = tuple(columns) if columns is not None else None
    storage = dict(storage_options or {}) or None
    if not groups:
        table = manifest.schema.empty_table()
        merged = profile_table(table, selected)
        return DatasetProfile(name, manifest.version, 0, merged)
    parts = executor.map(
        partial(_profile_part, url=url, columns=selected, storage_options=storage),
        groups,
        name=f"profile:{name}",
        num_cpus=1.0,
    )
    merged = {column: merge_profiles(part[column] for part in parts) for column in parts[0]}
    edges = {
        column: found
        for column, profile in merged.items()
        if (found := histogram_edges(profile, bins)) is not None
    }
    if edges:
        counts = executor.map(
            partial(_histogram_part, url=url, edges=edges, storage_options=storage),
            groups,
            name=f"histogram:{name}",
            num_cpus=1.0,
        )
        for column, column_edges in edges.items():
            total = [sum(part[column][i] for part in counts) for i in range(len(column_edges) - 1)]
            merged[column] = replace(merged[column], edges=column_edges, histogram=tuple(total))
    return DatasetProfile(name, manifest.version, manifest.rows, merged)


PROFILE_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("dataset_version", pa.string()),
        ("column", pa.string()),
        ("type", pa.string()),
        ("kind", pa.string()),
        ("rows", pa.int64()),
        ("nulls", pa.int64()),
        ("null_fraction", pa.float64()),
        ("min", pa.string()),
        ("max", pa.string()),
        ("mean", pa.float64()),
        ("std", pa.float64()),
        ("distinct", pa.int64()),
        ("distinct_exact", pa.bool_()),
        ("top_values", pa.string()),
        ("histogram", pa.string()),
        ("profile", pa.string()),
    ]
)


def profile_rows(profiles: Sequence[DatasetProfile]) -> pa.Table:
    """One row per (table, column): readable statistics plus the full mergeable state as JSON."""
    rows = []
    for dataset in profiles:
        for column in dataset.columns.values():
            numeric = column.kind in ("numeric", "boolean", "temporal") and column.n > 0
            rows.append(
                {
                    "table": dataset.name,
                    "dataset_version": dataset.version,
                    "column": column.name,
                    "type": column.type,
                    "kind": column.kind,
                    "rows": column.rows,
                    "nulls": column.nulls,
                    "null_fraction": column.null_fraction,
                    "min": _display(column.min, column),
                    "max": _display(column.max, column),
                    "mean": column.mean if numeric else None,
                    "std": column.std if numeric and column.n > 1 else None,
                    "distinct": column.distinct,
                    "distinct_exact": column.distinct_is_exact,
                    "top_values": json.dumps(
                        [[_display(v, column), c] for v, c in column.top_values()]
                    ),
                    "histogram": None
                    if column.histogram is None
                    else json.dumps({"edges": column.edges, "counts": column.histogram}),
                    "profile": json.dumps(column.to_dict()),
                }
            )
    return pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA)


def _display(value: Any, column: ColumnProfile) -> str | None:
    """Text of a profile value; temporal values (kept as epoch units) in ISO form."""
    if value is None:
        return None
    if column.kind == "temporal":
        try:
            dtype = pa.type_for_alias(column.type)
        except ValueError:
            dtype = None
        if dtype is not None:
            physical = pa.int32() if dtype.bit_width == 32 else pa.int64()
            try:
                return str(pa.array([int(value)], physical).cast(dtype)[0])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    return str(value)


def read_profile_table(table: pa.Table) -> dict[str, DatasetProfile]:
    """Rebuild :class:`DatasetProfile` objects from a profile dataset (no reread of the data)."""
    grouped: dict[str, dict[str, ColumnProfile]] = {}
    versions: dict[str, str] = {}
    for row in table.to_pylist():
        profile = ColumnProfile.from_dict(json.loads(row["profile"]))
        grouped.setdefault(row["table"], {})[row["column"]] = profile
        versions[row["table"]] = row["dataset_version"]
    return {
        name: DatasetProfile(
            name, versions[name], max((c.rows for c in cols.values()), default=0), cols
        )
        for name, cols in grouped.items()
    }
