"""Mergeable column profiles: computed per partition, merged exactly, kept as a reference.

A :class:`ColumnProfile` holds only quantities that merge without rereading data: counts, nulls,
min/max, the Welford triple ``(n, mean, m2)`` (merged with Chan's formula), a K-minimum-values
sketch of value hashes (distinct estimate, exact below ``SKETCH_K`` distinct values), value
counts (exact while a column has at most ``VALUE_CAP`` distinct values) and a histogram on
edges shared by every partition (a second pass, after the global min/max are known).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = [
    "HISTOGRAM_BINS",
    "SKETCH_K",
    "TOP_VALUES",
    "VALUE_CAP",
    "ColumnProfile",
    "column_kind",
    "finite_values",
    "histogram_edges",
    "merge_profiles",
    "profile_column",
    "profile_table",
    "with_histogram",
]

#: Size of the K-minimum-values sketch: distinct counts are exact below it.
SKETCH_K = 1024
#: Value counts are kept exactly while a column has at most this many distinct values.
VALUE_CAP = 1000
#: Most frequent values shown in a profile (TFDV's ``num_top_values``).
TOP_VALUES = 20
#: Equal-width histogram buckets (TFDV's ``num_histogram_buckets``).
HISTOGRAM_BINS = 10
_HASH_SPACE = float(2**64)


def column_kind(dtype: pa.DataType) -> str:
    """``numeric``, ``boolean``, ``categorical``, ``temporal`` or ``other``."""
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "categorical"
    if pa.types.is_dictionary(dtype):
        return "categorical"
    if pa.types.is_temporal(dtype):
        return "temporal"
    return "other"


@dataclass(frozen=True)
class ColumnProfile:
    """Statistics of one column, mergeable across partitions.

    ``n``, ``mean`` and ``m2`` are over finite values (numeric) or non-null values (temporal,
    as epoch units); ``values`` is ``None`` once the column exceeds ``VALUE_CAP`` distinct values.
    """

    name: str
    type: str
    kind: str
    rows: int = 0
    nulls: int = 0
    nans: int = 0
    min: Any = None
    max: Any = None
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sketch: tuple[int, ...] = ()
    values: tuple[tuple[Any, int], ...] | None = ()
    edges: tuple[float, ...] | None = None
    histogram: tuple[int, ...] | None = None

    @property
    def null_fraction(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (``ddof=1``) of the finite values; NaN below two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.n > 1 else math.nan

    @property
    def distinct(self) -> int:
        """Distinct non-null values: exact below ``SKETCH_K``, else the KMV estimate."""
        if len(self.sketch) < SKETCH_K:
            return len(self.sketch)
        kth = self.sketch[SKETCH_K - 1] / _HASH_SPACE
        return round((SKETCH_K - 1) / kth) if kth > 0 else len(self.sketch)

    @property
    def distinct_is_exact(self) -> bool:
        return len(self.sketch) < SKETCH_K

    def top_values(self, k: int = TOP_VALUES) -> list[tuple[Any, int]]:
        """The ``k`` most frequent values (exact while ``values`` is kept), ties by value text."""
        pairs = list(self.values or ())
        pairs.sort(key=lambda pair: (-pair[1], str(pair[0])))
        return pairs[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "rows": self.rows,
            "nulls": self.nulls,
            "nans": self.nans,
            "min": _jsonable(self.min),
            "max": _jsonable(self.max),
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
            "sketch": [str(h) for h in self.sketch],
            "values": None if self.values is None else [[_jsonable(v), c] for v, c in self.values],
            "edges": None if self.edges is None else list(self.edges),
            "histogram": None if self.histogram is None else list(self.histogram),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        values = data.get("values")
        return cls(
            name=data["name"],
            type=data["type"],
            kind=data["kind"],
            rows=int(data["rows"]),
            nulls=int(data["nulls"]),
            nans=int(data.get("nans", 0)),
            min=data.get("min"),
            max=data.get("max"),
            n=int(data["n"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            sketch=tuple(int(h) for h in data.get("sketch", ())),
            values=None if values is None else tuple((v, int(c)) for v, c in values),
            edges=None if data.get("edges") is None else tuple(data["edges"]),
            histogram=None if data.get("histogram") is None else tuple(data["histogram"]),
        )


def profile_column(name: str, column: pa.ChunkedArray | pa.Array) -> ColumnProfile:
    """Profile one column of one partition (no histogram: that needs the shared edges)."""
    dtype = column.type
    kind = column_kind(dtype)
    series = pl.Series(name, column)
    rows = len(series)
    nulls = int(series.null_count())
    base = ColumnProfile(name=name, type=str(dtype), kind=kind, rows=rows, nulls=nulls)
    if kind == "other":
        return base
    present = series.drop_nulls()
    if kind == "temporal":
        present = present.to_physical()
    nans = 0
    if kind == "numeric":
        present = present.cast(pl.Float64) if present.dtype == pl.Decimal else present
        if present.dtype.is_float():
            nans = int(present.is_nan().sum())
            present = present.filter(present.is_not_nan())
    finite = _finite(present) if kind in ("numeric", "temporal") else present
    sketch = tuple(sorted(set(present.hash(seed=0).unique().sort().head(SKETCH_K).to_list())))
    counts = present.value_counts(sort=False)
    values: tuple[tuple[Any, int], ...] | None = None
    if counts.height <= VALUE_CAP:
        keys = counts.get_column(present.name).to_list()
        if kind == "temporal":
            keys = [int(k) for k in keys]
        values = _in_value_order(zip(keys, counts.get_column("count").to_list(), strict=True))
    n = len(finite) if kind in ("numeric", "temporal", "boolean") else 0
    stats = finite.cast(pl.Float64) if n else finite
    # A Float64 column with values: its mean is a float.
    mean = cast(float, stats.mean()) if n else 0.0
    m2 = float(((stats - mean) ** 2).sum()) if n else 0.0
    low = high = None
    if len(present):
        ordered = finite if kind in ("numeric", "temporal") else present
        if len(ordered):
            low, high = _scalar(ordered.min()), _scalar(ordered.max())
    return replace(
        base, nans=nans, min=low, max=high, n=n, mean=mean, m2=m2, sketch=sketch, values=values
    )


def profile_table(
    table: pa.Table, columns: Sequence[str] | None = None
) -> dict[str, ColumnProfile]:
    """Profile every column (or ``columns``) of one partition."""
    names = list(columns) if columns is not None else table.column_names
    return {name: profile_column(name, table.column(name)) for name in names}


def merge_profiles(profiles: Iterable[ColumnProfile]) -> ColumnProfile:
    """Merge the profiles of one column over partitions (exact; histograms must share edges)."""
    items = list(profiles)
    if not items:
        raise ValueError("merge_profiles needs at least one profile")
    out = items[0]
    for other in items[1:]:
        out = _merge_two(out, other)
    return out


def histogram_edges(profile: ColumnProfile, bins: int = HISTOGRAM_BINS) -> tuple[float, ...] | None:
    """Equal-width edges over the merged finite range (``None`` for non-numeric columns)."""
    if profile.kind not in ("numeric", "temporal") or profile.n == 0:
        return None
    low, high = float(profile.min), float(profile.max)
    if low == high:
        low, high = low - 0.5, high + 0.5
    return tuple(float(edge) for edge in np.linspace(low, high, bins + 1))


def with_histogram(
    profile: ColumnProfile, column: pa.ChunkedArray | pa.Array, edges: Sequence[float]
) -> ColumnProfile:
    """Add the histogram of ``column``'s finite values on ``edges`` (``np.histogram`` rules)."""
    values = finite_values(column)
    counts, _ = np.histogram(values, bins=np.asarray(edges, dtype=np.float64))
    return replace(profile, edges=tuple(edges), histogram=tuple(int(c) for c in counts))


def finite_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The non-null, finite values of a numeric or temporal column as float64."""
    series = pl.Series("v", column).drop_nulls()
    if series.dtype.is_temporal():
        series = series.to_physical()
    values = series.cast(pl.Float64).to_numpy()
    finite: np.ndarray = values[np.isfinite(values)]
    return finite


# -- internals -------------------------------------------------------------------------------


def _finite(series: pl.Series) -> pl.Series:
    if series.dtype.is_float():
        return series.filter(series.is_finite())
    return series


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _merge_two(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    n = a.n + b.n
    if n:
        delta = b.mean - a.mean
        mean = a.mean + delta * b.n / n
        m2 = a.m2 + b.m2 + delta * delta * a.n * b.n / n
    else:
        mean, m2 = 0.0, 0.0
    values: tuple[tuple[Any, int], ...] | None = None
    if a.values is not None and b.values is not None:
        merged: dict[Any, int] = dict(a.values)
        for value, count in b.values:
            merged[value] = merged.get(value, 0) + count
        values = _in_value_order(merged.items()) if len(merged) <= VALUE_CAP else None
    histogram = None
    if a.histogram is not None and b.histogram is not None:
        if a.edges != b.edges:
            raise ValueError(f"histograms of `{a.name}` have different edges; cannot merge")
        histogram = tuple(x + y for x, y in zip(a.histogram, b.histogram, strict=True))
    return ColumnProfile(
        name=a.name,
        type=a.type,
        kind=a.kind,
        rows=a.rows + b.rows,
        nulls=a.nulls + b.nulls,
        nans=a.nans + b.nans,
        min=_pick(a.min, b.min, min),
        max=_pick(a.max, b.max, max),
        n=n,
        mean=mean,
        m2=m2,
        sketch=tuple(sorted(set(a.sketch) | set(b.sketch))[:SKETCH_K]),
        values=values,
        edges=a.edges if histogram is not None else None,
        histogram=histogram,
    )


def _pick(x: Any, y: Any, choose: Any) -> Any:
    if x is None:
        return y
    if y is None:
        return x
    return choose(x, y)


def _in_value_order(pairs: Iterable[tuple[Any, int]]) -> tuple[tuple[Any, int], ...]:
    """Value counts sorted by value, so the same data always serialises to the same profile
    (and the profile dataset keeps its version across reruns)."""
    return tuple(sorted(pairs, key=lambda pair: (type(pair[0]).__name__, pair[0])))
