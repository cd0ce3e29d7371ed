"""Holdout splits: by time when the table has a usable time column, stratified otherwise.

A time split trains on rows strictly before a cut and tests on rows at or after it, so no row of
the test period informs the model. The cut is the time below which ``1 - test_fraction`` of the
rows lie; a column with a single value (e.g. one churn cutoff) cannot be split in time and falls
back to a stratified random split, which the result says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.errors import DataError

__all__ = ["Split", "detect_time_column", "split_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Row indices of the training and test parts and how they were chosen."""

    train: np.ndarray
    test: np.ndarray
    method: str  # "time" or "stratified" or "random"
    cut: str | None = None


def detect_time_column(schema: pa.Schema, exclude: tuple[str, ...] = ()) -> str | None:
    """The only date or timestamp column of ``schema`` not in ``exclude``, else ``None``."""
    temporal = [
        field.name
        for field in schema
        if field.name not in exclude
        and (pa.types.is_date(field.type) or pa.types.is_timestamp(field.type))
    ]
    return temporal[0] if len(temporal) == 1 else None


def split_rows(
    table: pa.Table,
    *,
    label: str,
    time_column: str | None,
    test_fraction: float,
    seed: int,
    classification: bool,
) -> Split:
    """Split the rows of ``table`` into train and test.

    Raises
    ------
    DataError
        Too few rows on one side, or ``time_column`` is not in the table.
    """
    n = table.num_rows
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"`test_fraction` must be in (0, 1), received {test_fraction}")
    if time_column is not None:
        if time_column not in table.column_names:
            raise DataError(
                f"time column `{time_column}` is not in the table (columns: "
                f"{', '.join(table.column_names)})",
                hint="set `time_column: null` for a stratified split",
            )
        split = _time_split(table.column(time_column), test_fraction)
        if split is not None:
            _check_sides(split, table, label, classification)
            return split
        logger.info("time column `%s` has a single value; using a stratified split", time_column)
    labels = table.column(label).to_numpy(zero_copy_only=False)
    split = _stratified_split(labels, test_fraction, seed, classification, n)
    _check_sides(split, table, label, classification)
    return split


def _time_split(column: pa.ChunkedArray, test_fraction: float) -> Split | None:
    if pa.types.is_date32(column.type):
        numeric = pc.cast(column, pa.int32())
    elif pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        numeric = pc.cast(column, pa.int64())
    else:
        numeric = column
    times = np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=np.float64)
    distinct = np.unique(times[~np.isnan(times)])
    if len(distinct) < 2:
        return None
    cut = float(np.quantile(times[~np.isnan(times)], 1.0 - test_fraction, method="higher"))
    if cut <= distinct[0]:
        cut = float(distinct[1])
    train = np.flatnonzero(times < cut)
    test = np.flatnonzero(times >= cut)
    cut_index = int(np.flatnonzero(times == cut)[0])
    return Split(train=train, test=test, method="time", cut=str(column[cut_index].as_py()))


def _stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int, classification: bool, n: int
) -> Split:
    rng = np.random.default_rng(seed)
    if not classification:
        order = rng.permutation(n)
        n_test = max(1, round(n * test_fraction))
        return Split(train=np.sort(order[n_test:]), test=np.sort(order[:n_test]), method="random")
    train_parts, test_parts = [], []
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_test = round(len(rows) * test_fraction)
        test_parts.append(rows[:n_test])
        train_parts.append(rows[n_test:])
    return Split(
        train=np.sort(np.concatenate(train_parts)),
        test=np.sort(np.concatenate(test_parts)),
        method="stratified",
    )


def _check_sides(split: Split, table: pa.Table, label: str, classification: bool) -> None:
    for side, rows in (("train", split.train), ("test", split.test)):
        if len(rows) < 2:
            raise DataError(
                f"the {split.method} split leaves {len(rows)} row(s) in `{side}` of "
                f"{table.num_rows}",
                hint="use more rows or another `test_fraction`",
            )
        if classification:
            values = pc.take(table.column(label), pa.array(rows)).to_numpy(zero_copy_only=False)
            if len(np.unique(values)) < 2:
                raise DataError(
                    f"the {split.method} split leaves a single class of `{label}` in `{side}`",
                    hint="use more rows, or `time_column: null` for a stratified split",
                )
