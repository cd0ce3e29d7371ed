"""Drift of two committed datasets, distributed over partitions and columns.

Pass one: one task per group of files of each dataset counts, per column, the testable values
(exactly, while a column has at most ``VALUE_CAP`` distinct values in the group). Columns whose
merged counts are exact on both sides are tested on the driver from counts; the others (e.g.
continuous columns) are tested by column tasks that read only their columns from both datasets.
The result equals :func:`raypipe.monitoring.drift.detect_drift` on the whole tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import polars as pl

from raypipe.io.manifest import FileEntry, Manifest
from raypipe.monitoring.drift import (
    DEFAULT_DRIFT_SHARE,
    ColumnDrift,
    DriftReport,
    column_drift,
    drift_columns,
    sample_of,
    skipped_columns,
    summarize,
)
from raypipe.monitoring.stattests import Sample
from raypipe.stages.base import Executor
from raypipe.validation.profiling import DatasetProfile, file_groups
from raypipe.validation.stats import VALUE_CAP, ColumnProfile, column_kind

__all__ = ["profile_counts", "run_drift"]

logger = logging.getLogger(__name__)

Counts = dict[Any, int] | None


def _count_part(
    item: tuple[FileEntry, ...],
    *,
    url: str,
    columns: tuple[str, ...],
    storage_options: Mapping[str, Any] | None,
) -> dict[str, Counts]:
    """Per column: exact counts of the testable values in these files, or ``None`` if too many."""
    from raypipe.io.dataset import read_dataset

    table = read_dataset(
        url, columns=list(columns), files=list(item), storage_options=storage_options
    )
    out: dict[str, Counts] = {}
    for name in columns:
        series = _testable(table.column(name))
        if series.n_unique() > VALUE_CAP:
            out[name] = None
            continue
        counts = series.value_counts(sort=False)
        keys = counts.get_column("v").to_list()
        out[name] = dict(zip(keys, counts.get_column("count").to_list(), strict=True))
    return out


def _testable(column: Any) -> pl.Series:
    series = pl.Series("v", column).drop_nulls()
    if column_kind(column.type) == "numeric":
        series = series.cast(pl.Float64)
        return series.filter(series.is_finite())
    return series.cast(pl.String)


def profile_counts(profile: ColumnProfile) -> Counts:
    """A column profile's exact value counts, keyed as the drift tests key them."""
    if profile.values is None:
        return None
    out: dict[Any, int] = {}
    for value, count in profile.values:
        if profile.kind == "numeric":
            key: Any = float(value)
            if not math.isfinite(key):
                continue
        elif profile.kind == "boolean":
            key = "true" if value else "false"
        elif profile.kind == "categorical":
            key = str(value)
        else:
            return None
        out[key] = out.get(key, 0) + count
    return out


def _merge_counts(parts: Sequence[Counts]) -> Counts:
    merged: dict[Any, int] = {}
    for part in parts:
        if part is None:
            return None
        for key, count in part.items():
            merged[key] = merged.get(key, 0) + count
    return merged if len(merged) <= VALUE_CAP else None


def _column_task(
    names: tuple[str, ...],
    *,
    reference_url: str,
    current_url: str,
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    extra_scores: bool,
    storage_options: Mapping[str, Any] | None,
) -> list[ColumnDrift]:
    """Test whole columns read from both datasets (for columns with many distinct values)."""
    from raypipe.io.dataset import read_dataset

    reference = read_dataset(reference_url, columns=list(names), storage_options=storage_options)
    current = read_dataset(current_url, columns=list(names), storage_options=storage_options)
    out = []
    for name in names:
        ref, numerical = sample_of(reference.column(name))
        cur, _ = sample_of(current.column(name))
        out.append(
            column_drift(
                name,
                ref,
                cur,
                numerical=numerical,
                method=methods.get(name),
                threshold=thresholds.get(name),
                extra_scores=extra_scores,
            )
        )
    return out


def run_drift(
    reference_url: str,
    reference: Manifest,
    current_url: str,
    current: Manifest,
    executor: Executor,
    *,
    columns: Sequence[str] | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    extra_scores: bool = True,
    reference_profile: DatasetProfile | None = None,
    storage_options: Mapping[str, Any] | None = None,
    roles: Mapping[str, str] | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference`` (both committed), per column and overall.

    With ``reference_profile`` (the stored profile of the reference version, from
    ``data.profile``), columns whose profile kept exact value counts are tested without reading
    the reference; only columns with many distinct values read it (exact KS/Wasserstein need
    every value). Without ``columns``, ids, labels, timestamps and predictions are not tested
    (see :func:`~raypipe.monitoring.drift.column_role`; ``roles`` names them explicitly).
    """
    names = tuple(drift_columns(reference.schema, columns, roles=roles))
    missing = [name for name in names if name not in current.schema.names]
    if missing:
        from raypipe.errors import SchemaError

        raise SchemaError(
            f"column(s) {', '.join(f'`{n}`' for n in missing)} of the reference are not in "
            f"the current dataset `{current_url}`",
            hint="compare datasets with the same columns, or pass `columns`",
        )
    storage = dict(storage_options or {}) or None
    counted: dict[str, dict[str, Counts]] = {}
    if reference_profile is not None:
        counted["reference"] = {
            name: profile_counts(reference_profile.columns[name])
            if name in reference_profile.columns
            else None
            for name in names
        }
    for side, url, manifest in (
        ("reference", reference_url, reference),
        ("current", current_url, current),
    ):
        if side in counted:
            continue
        groups = file_groups(manifest, executor.parallelism)
        parts = (
            executor.map(
                partial(_count_part, url=url, columns=names, storage_options=storage),
                groups,
                name=f"drift.count:{side}",
                num_cpus=1.0,
            )
            if groups
            else [{key: {} for key in names}]
        )
        counted[side] = {name: _merge_counts([part[name] for part in parts]) for name in names}
    methods, thresholds = dict(methods or {}), dict(thresholds or {})
    results: dict[str, ColumnDrift] = {}
    heavy = []
    for name in names:
        ref_counts, cur_counts = counted["reference"][name], counted["current"][name]
        if ref_counts is None or cur_counts is None:
            heavy.append(name)
            continue
        numerical = column_kind(reference.schema.field(name).type) == "numeric"
        results[name] = column_drift(
            name,
            Sample(counts=ref_counts),
            Sample(counts=cur_counts),
            numerical=numerical,
            method=methods.get(name),
            threshold=thresholds.get(name),
            extra_scores=extra_scores,
        )
    if heavy:
        batches = _batches(heavy, executor.parallelism)
        task = partial(
            _column_task,
            reference_url=reference_url,
            current_url=current_url,
            methods=methods,
            thresholds=thresholds,
            extra_scores=extra_scores,
            storage_options=storage,
        )
        for batch in executor.map(task, batches, name="drift.columns", num_cpus=1.0):
            for drift in batch:
                results[drift.column] = drift
    logger.info(
        "drift: %d columns, %d from merged counts, %d from column tasks",
        len(names),
        len(names) - len(heavy),
        len(heavy),
    )
    return summarize(
        [results[name] for name in names],
        drift_share,
        reference.rows,
        current.rows,
        skipped_columns(reference.schema, names, roles),
    )


def _batches(names: Sequence[str], parallelism: int) -> list[tuple[str, ...]]:
    # at least 2 tasks per CPU, and at most 8 columns per task (bounded memory)
    count = max(1, min(len(names), max(2 * max(1, parallelism), math.ceil(len(names) / 8))))
    size = math.ceil(len(names) / count)
    return [tuple(names[i : i + size]) for i in range(0, len(names), size)]
