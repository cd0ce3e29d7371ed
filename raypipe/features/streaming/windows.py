"""Window specs and their batch computation (polars): tumbling, sliding and session windows.

Semantics (Flink's, also Spark's; ``reference/features-monitoring-federated.md`` B.2):

* windows are half-open ``[start, end)`` and epoch-aligned: a tumbling or sliding window starts
  at a multiple of ``slide`` (``slide == size`` for tumbling); an event at ``ts`` belongs to the
  ``size / slide`` windows whose interval contains it;
* a session opens at an event and lasts ``gap`` after its last event; two events of a key are in
  one session when the later is at most ``gap`` after the earlier (overlapping or adjacent
  windows ``[ts, ts + gap)`` merge); the session is ``[first, last + gap)``;
* every window reports ``count`` of events and ``sum``, ``min``, ``max``, ``mean`` of ``value``.

Times are integers, microseconds since the epoch. :func:`window_partials` turns events into
per-window partial aggregates; the batch result is the partials of all events, the incremental
result (:mod:`raypipe.features.streaming.state`) merges partials batch by batch, so both share
the window assignment and cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import polars as pl

from raypipe.errors import SpecError
from raypipe.features.views import parse_window

__all__ = [
    "AGG_COLUMNS",
    "WINDOW_KINDS",
    "WindowKind",
    "WindowSpec",
    "batch_windows",
    "event_micros",
    "finish",
    "window_partials",
]

#: Output columns of every window, after the key and the bounds.
AGG_COLUMNS = ("count", "sum", "min", "max", "mean")
_US = 1_000_000

WindowKind = Literal["tumbling", "sliding", "session"]
WINDOW_KINDS: tuple[WindowKind, ...] = get_args(WindowKind)


@dataclass(frozen=True)
class WindowSpec:
    """One windowed aggregate over an event stream.

    Parameters
    ----------
    kind
        ``tumbling``, ``sliding`` or ``session``.
    key
        Entity key column.
    timestamp
        Event-time column (datetime or integer microseconds).
    value
        Numeric column aggregated (``sum``, ``min``, ``max``, ``mean``); ``count`` counts events.
    size, slide, gap
        Durations in microseconds: ``size`` for tumbling/sliding, ``slide`` for sliding (a
        divisor of ``size``), ``gap`` for sessions.
    allowed_lateness
        The watermark trails the newest event by this much; events at or before the watermark
        are late (they go to the ``late`` output) and windows close when the watermark reaches
        their end.
    """

    kind: WindowKind
    key: str
    timestamp: str
    value: str
    size: int = 0
    slide: int = 0
    gap: int = 0
    allowed_lateness: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.kind in ("tumbling", "sliding") and self.size <= 0:
            problems.append(f"{self.kind} window needs a positive `size`")
        if self.kind == "tumbling" and self.slide not in (0, self.size):
            problems.append("a tumbling window's `slide` is its `size` (leave it out)")
        if self.kind == "sliding" and (self.slide <= 0 or self.size % self.slide):
            problems.append("a sliding window needs a positive `slide` that divides `size`")
        if self.kind == "session" and self.gap <= 0:
            problems.append("a session window needs a positive `gap`")
        if self.kind not in ("tumbling", "sliding", "session"):
            problems.append(f"unknown window kind `{self.kind}` (tumbling, sliding, session)")
        if self.allowed_lateness < 0:
            problems.append("`allowed_lateness` must not be negative")
        if problems:
            raise SpecError(
                problems,
                hint="e.g. WindowSpec.parse('sliding', size='1h', "
                "slide='5m', key=..., timestamp=..., value=...)",
            )

    @classmethod
    def parse(
        cls,
        kind: WindowKind,
        *,
        key: str,
        timestamp: str,
        value: str,
        size: str | None = None,
        slide: str | None = None,
        gap: str | None = None,
        allowed_lateness: str | None = None,
    ) -> WindowSpec:
        """A spec from duration texts (``"1h"``, ``"5m"``, ``"30s"``)."""

        def micros(text: str | None) -> int:
            if not text or text.strip().rstrip("smhdw").strip() == "0":
                return 0  # "0s": no lateness (parse_window takes positive windows only)
            try:
                delta = parse_window(text)
            except ValueError as exc:
                raise SpecError(
                    [str(exc)], hint="write a duration like `30s`, `10m`, `1h`"
                ) from exc
            return 0 if delta is None else int(delta.total_seconds()) * _US

        return cls(
            kind,
            key,
            timestamp,
            value,
            size=micros(size),
            slide=micros(slide),
            gap=micros(gap),
            allowed_lateness=micros(allowed_lateness),
        )

    @property
    def step(self) -> int:
        return self.slide or self.size


def event_micros(frame: pl.DataFrame | pl.LazyFrame, column: str) -> pl.Expr:
    """``column`` as integer microseconds (datetimes converted, integers kept)."""
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    if isinstance(schema[column], pl.Datetime):
        return pl.col(column).dt.cast_time_unit("us").cast(pl.Int64)
    return pl.col(column).cast(pl.Int64)


def window_partials(events: pl.DataFrame, spec: WindowSpec) -> pl.DataFrame:
    """Partial aggregates per ``(key, start)``: columns key, start, end, count, sum, min, max.

    For sessions the partials are the sessions *within* ``events``; sessions of different
    batches are merged by the caller (:meth:`WindowState.add`) or by :func:`batch_windows`.
    """
    ts = event_micros(events, spec.timestamp).alias("_ts")
    frame = events.select(
        pl.col(spec.key).alias("key"), ts, pl.col(spec.value).cast(pl.Float64).alias("_v")
    )
    aggs = [
        pl.len().cast(pl.Int64).alias("count"),
        pl.col("_v").sum().alias("sum"),
        pl.col("_v").min().alias("min"),
        pl.col("_v").max().alias("max"),
    ]
    if spec.kind == "session":
        frame = frame.sort(["key", "_ts"])
        new = (pl.col("_ts") - pl.col("_ts").shift(1).over("key")).fill_null(spec.gap + 1)
        frame = frame.with_columns((new > spec.gap).cum_sum().alias("_session"))
        return (
            frame.group_by("key", "_session")
            .agg(
                pl.col("_ts").min().alias("start"),
                (pl.col("_ts").max() + spec.gap).alias("end"),
                *aggs,
            )
            .drop("_session")
        )
    step = spec.step
    last_start = pl.col("_ts") - pl.col("_ts").mod(step)
    offsets = pl.int_ranges(0, spec.size // step) * step
    frame = frame.with_columns((last_start - offsets).alias("start")).explode("start")
    return frame.group_by("key", "start").agg(
        (pl.col("start").first() + spec.size).alias("end"), *aggs
    )


def finish(partials: pl.DataFrame) -> pl.DataFrame:
    """Final window rows from merged partials: key, start, end, count, sum, min, max, mean."""
    return (
        partials.with_columns((pl.col("sum") / pl.col("count")).alias("mean"))
        .select("key", "start", "end", *AGG_COLUMNS)
        .sort("key", "start")
    )


def batch_windows(events: pl.DataFrame, spec: WindowSpec) -> pl.DataFrame:
    """Every window of ``events`` computed at once (the batch reference of the streaming path)."""
    return finish(window_partials(events, spec))
