"""Feature views: what to compute per entity, as frozen dataclasses.

A :class:`FeatureView` names its entity key(s), the event-time column, an optional row filter and
its features: :class:`Aggregate` (a function over a left-closed window ``[cutoff - w, cutoff)``,
or the whole history before the cutoff) and :class:`Derived` (an expression over the view's
other features). Views come from YAML through :mod:`raypipe.features.spec` or are built here in
Python::

    FeatureView(
        name="activity",
        entities=("player_id",),
        timestamp="ts",
        features=(
            Aggregate("purchases_7d", "count", window="7d", where='event_type == "purchase"'),
            Aggregate("spend_30d", "sum", column="amount", window="30d"),
            Aggregate("days_since_last", "time_since_last"),
            Derived("spend_share_7d", "safe_div(spend_7d, spend_30d)"),
        ),
    )
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

__all__ = [
    "AGGREGATIONS",
    "LIFETIME",
    "Aggregate",
    "Derived",
    "Feature",
    "FeatureView",
    "parse_window",
    "window_label",
]

#: Aggregation functions and whether they need a ``column``.
AGGREGATIONS: dict[str, bool] = {
    "count": False,
    "sum": True,
    "mean": True,
    "min": True,
    "max": True,
    "std": True,
    "count_distinct": True,
    "last": True,
    "time_since_last": False,
}
LIFETIME = "lifetime"
TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_window(text: str) -> dt.timedelta | None:
    """``"7d"`` -> 7 days, ``"lifetime"`` -> None; units ``s m h d w``.

    Raises
    ------
    ValueError
        Not a positive whole number followed by a unit, nor ``lifetime``.
    """
    if text.strip().lower() == LIFETIME:
        return None
    match = _WINDOW.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(
            f"window `{text}` is not valid (expected e.g. `1d`, `7d`, `12h`, `30d` or `lifetime`)"
        )
    return dt.timedelta(seconds=int(match.group(1)) * TIME_UNITS[match.group(2)])


def window_label(window: dt.timedelta | None) -> str:
    """The canonical text of a window (``7d``, ``12h``, ``lifetime``)."""
    if window is None:
        return LIFETIME
    seconds = int(window.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % TIME_UNITS[unit] == 0:
            return f"{seconds // TIME_UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Aggregate:
    """``function`` of ``column`` over the rows of ``window`` before the cutoff matching ``where``.

    Parameters
    ----------
    name
        Output column name.
    function
        One of :data:`AGGREGATIONS`. ``count`` counts rows (non-null values if ``column`` is
        given); ``time_since_last`` is the time from the last matching event to the cutoff, in
        ``unit``. ``count``, ``count_distinct`` and ``sum`` are 0 for an entity with no rows;
        the others are null.
    column
        A column name or expression (``amount * 2``); required unless the function counts rows.
    window
        ``"7d"``, ``"12h"``, ... or ``"lifetime"``: rows with ``cutoff - window <= ts < cutoff``.
    where
        Optional boolean expression selecting rows, e.g. ``event_type == "purchase"``.
    unit
        Time unit of ``time_since_last``: ``s``, ``m``, ``h``, ``d`` (default) or ``w``.
    """

    name: str
    function: str
    column: str | None = None
    window: str = LIFETIME
    where: str | None = None
    unit: str = "d"

    @property
    def window_delta(self) -> dt.timedelta | None:
        return parse_window(self.window)

    def problems(self) -> list[str]:
        """Structural problems (no schema needed), as messages without the location."""
        found = []
        if not _NAME.match(self.name):
            found.append(f"name `{self.name}` is not an identifier")
        if self.function not in AGGREGATIONS:
            found.append(
                f"unknown aggregation `{self.function}` (known: {', '.join(AGGREGATIONS)})"
            )
        elif AGGREGATIONS[self.function] and not self.column:
            found.append(f"aggregation `{self.function}` needs a `column`")
        elif self.function == "time_since_last" and self.column:
            found.append("`time_since_last` takes no `column`")
        try:
            parse_window(self.window)
        except ValueError as exc:
            found.append(str(exc))
        if self.unit not in TIME_UNITS:
            found.append(f"unit `{self.unit}` is not one of {', '.join(TIME_UNITS)}")
        return found


@dataclass(frozen=True)
class Derived:
    """A feature computed from the view's other features, e.g. ``safe_div(a_7d, a_30d)``."""

    name: str
    expression: str

    def problems(self) -> list[str]:
        return [] if _NAME.match(self.name) else [f"name `{self.name}` is not an identifier"]


Feature = Aggregate | Derived


@dataclass(frozen=True)
class FeatureView:
    """A named set of features over one event source, keyed by ``entities``.

    Parameters
    ----------
    name
        View name (used in errors and as a column prefix with ``full_feature_names``).
    entities
        Entity key column(s), e.g. ``("player_id",)``.
    timestamp
        Event-time column of the source.
    features
        Aggregates and derived features, in output order.
    where
        Optional filter applied to every row before any feature.
    source
        Name of the input dataset holding the events (``events`` by default).
    """

    name: str
    entities: tuple[str, ...]
    timestamp: str
    features: tuple[Feature, ...]
    where: str | None = None
    source: str = "events"
    description: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return tuple(f for f in self.features if isinstance(f, Aggregate))

    @property
    def derived(self) -> tuple[Derived, ...]:
        return tuple(f for f in self.features if isinstance(f, Derived))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def max_window(self) -> dt.timedelta | None:
        """The longest window (None if any feature looks at the whole history)."""
        deltas = [a.window_delta for a in self.aggregates]
        if not deltas or any(d is None for d in deltas):
            return None
        return max(d for d in deltas if d is not None)

    def problems(self) -> list[str]:
        """Structural problems, each prefixed with the view and feature it is about."""
        found = []
        if not self.entities:
            found.append(f"view `{self.name}`: `entities` must name at least one key column")
        if not self.features:
            found.append(f"view `{self.name}`: declares no features")
        seen: set[str] = set()
        for feature in self.features:
            if feature.name in seen:
                found.append(f"view `{self.name}` feature `{feature.name}`: duplicate name")
            seen.add(feature.name)
            found.extend(
                f"view `{self.name}` feature `{feature.name}`: {problem}"
                for problem in feature.problems()
            )
        return found
