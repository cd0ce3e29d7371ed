"""Timestamps compared exactly: a common unit (the finest of the sides) and one time-zone rule.

Polars compares a ``datetime[ns]`` with a ``datetime[us]`` (or a duration literal) by casting to
the *coarser* unit, so ``ts_ns <= cutoff_us`` truncates nanoseconds and lets a feature row up to
999 ns after the cutoff through. Every as-of comparison therefore casts both sides to the finest
unit of the two first (a cast up is exact; nothing is ever truncated), and builds its duration
literals in that unit.

Time zones: a tz-aware column is converted to UTC and compared as naive UTC; a naive column is
read as UTC. Comparing a naive column with an aware one is refused (a :class:`SchemaError`),
because the naive side's zone is unknown. A scalar cutoff given in configuration may be either:
aware is converted to UTC, naive is UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal

import polars as pl

from raypipe.errors import SchemaError

__all__ = [
    "TimeUnit",
    "check_time_zones",
    "duration_literal",
    "finest_unit",
    "time_literal",
    "unit_of",
    "utc_time",
]

#: Polars datetime units, coarsest first (Arrow ``timestamp[s]`` arrives in polars as ``ms``).
TimeUnit = Literal["ms", "us", "ns"]
UNITS: tuple[TimeUnit, ...] = ("ms", "us", "ns")


def unit_of(dtype: pl.DataType) -> TimeUnit:
    """The time unit of a datetime dtype (``us`` for a date or a Python datetime scalar)."""
    if isinstance(dtype, pl.Datetime | pl.Duration):
        return dtype.time_unit or "us"
    return "us"


def finest_unit(*dtypes: pl.DataType) -> TimeUnit:
    """The finest unit among ``dtypes``: the unit every side is cast up to before comparing."""
    return max((unit_of(d) for d in dtypes), key=UNITS.index, default="us")


def _aware(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Datetime) and dtype.time_zone is not None


def check_time_zones(columns: Mapping[str, pl.DataType], where: str) -> None:
    """Refuse comparing naive with tz-aware timestamp columns.

    Parameters
    ----------
    columns
        Column description (e.g. ``"entity rows `ts`"``) -> its dtype.
    where
        What compares them (named in the error).

    Raises
    ------
    SchemaError
        Some columns are tz-aware and others naive.
    """
    aware = [name for name, dtype in columns.items() if _aware(dtype)]
    naive = [name for name, dtype in columns.items() if not _aware(dtype)]
    if aware and naive:
        shown = ", ".join(f"{name}: {columns[name]}" for name in (*aware, *naive))
        raise SchemaError(
            f"{where}: cannot compare tz-aware timestamps ({', '.join(aware)}) with naive ones "
            f"({', '.join(naive)}); received {shown}",
            hint="store every timestamp column either with a time zone or without one "
            "(naive timestamps are read as UTC)",
        )


def utc_time(expr: pl.Expr, dtype: pl.DataType, unit: TimeUnit) -> pl.Expr:
    """``expr`` as naive UTC ``datetime[unit]``; ``unit`` must not be coarser than its own."""
    if UNITS.index(unit) < UNITS.index(unit_of(dtype)) and isinstance(dtype, pl.Datetime):
        raise ValueError(f"casting {dtype} down to {unit} would truncate")
    if _aware(dtype):
        expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return expr.cast(pl.Datetime(unit))


def time_literal(value: dt.datetime, unit: TimeUnit) -> pl.Expr:
    """A Python datetime as a naive UTC ``datetime[unit]`` literal (aware converted, naive UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return pl.lit(value, dtype=pl.Datetime("us")).cast(pl.Datetime(unit))


def duration_literal(delta: dt.timedelta, unit: TimeUnit) -> pl.Expr:
    """``delta`` as a ``duration[unit]`` literal, so arithmetic with ``unit`` columns is exact."""
    return pl.lit(delta, dtype=pl.Duration("us")).cast(pl.Duration(unit))
