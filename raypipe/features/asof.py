"""As-of computation: feature views evaluated at a cutoff, with no row at or after it.

Windows are left-closed and end before the cutoff: a ``7d`` feature as of ``c`` sees the rows with
``c - 7d <= ts < c``; ``lifetime`` sees every row with ``ts < c``. Rows with a null key or a null
timestamp are never counted. Times are compared exactly, at the finer unit of the event time and
the cutoff (see :mod:`raypipe.features.timestamps`: aware converted to UTC, naive is UTC, a naive
column never compared with an aware one). Two shapes:

* one cutoff (scoring): ``compute_features(events, views, entities, cutoff=dt.datetime(...))``;
* a cutoff per entity row (training): ``entities`` carries a ``cutoff`` column; every row, even a
  duplicate or one without events, gets its features, in input order.

Everything is plain polars, so the same function runs inside a Ray task on one partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from raypipe.errors import SpecError
from raypipe.features.expressions import (
    CompiledExpression,
    ExpressionError,
    Kind,
    compile_expression,
    kind_of_dtype,
)
from raypipe.features.timestamps import (
    check_time_zones,
    duration_literal,
    finest_unit,
    time_literal,
    unit_of,
    utc_time,
)
from raypipe.features.views import TIME_UNITS, Aggregate, FeatureView

__all__ = [
    "CompiledView",
    "aggregate_views",
    "attach_features",
    "check_views",
    "compile_view",
    "compute_features",
    "normalize_time",
]

#: ``cutoff - ts`` as a duration in the comparison's unit (never truncated).
AGE = "__age"
#: Aggregations whose value over no rows is 0, not null.
ZERO_WHEN_EMPTY = ("count", "count_distinct", "sum")
#: The mask name of aggregates that keep every row of the view (lifetime, no ``where``).
EVERY_ROW = ""

#: Checks one expression of a view: (text, feature, expected kind, scope, what) -> compiled or
#: None (the problem recorded).
_Check = Callable[[str, str | None, str | None, Mapping[str, Kind], str], CompiledExpression | None]
#: An aggregate's input column: (its name in the frame, its expression, its kind).
_Value = tuple[str, pl.Expr, Kind]


@dataclass(frozen=True)
class CompiledView:
    """A view checked against a source schema, ready to run."""

    view: FeatureView
    where: pl.Expr | None
    masks: tuple[tuple[str, pl.Expr], ...]
    values: tuple[tuple[str, pl.Expr], ...]
    aggregations: tuple[pl.Expr, ...]
    derived: tuple[tuple[str, pl.Expr], ...]
    kinds: Mapping[str, Kind]
    columns: frozenset[str] = frozenset()


def normalize_time(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A datetime column as naive UTC in its own unit (at least microseconds; never truncated)."""
    return utc_time(expr, dtype, finest_unit(dtype, pl.Datetime("us")))


def compile_view(view: FeatureView, schema: Mapping[str, pl.DataType]) -> CompiledView:
    """Check ``view`` against the source ``schema`` and build its polars expressions.

    Raises
    ------
    SpecError
        Every problem at once, each naming the view and the feature.
    """
    problems = list(view.problems())
    kinds: dict[str, Kind] = {
        name: kind for name, dtype in schema.items() if (kind := kind_of_dtype(dtype)) is not None
    }
    for column in (*view.entities, view.timestamp):
        if column not in schema:
            problems.append(
                f"view `{view.name}`: column `{column}` is not in the source "
                f"(columns: {', '.join(f'`{c}`' for c in schema)})"
            )
    if view.timestamp in schema and kinds.get(view.timestamp) != "time":
        problems.append(
            f"view `{view.name}`: timestamp column `{view.timestamp}` must be a "
            f"datetime, received {schema[view.timestamp]}"
        )

    used: set[str] = {*view.entities, view.timestamp}

    def check(
        text: str, feature: str | None, expected: str | None, scope: Mapping[str, Kind], what: str
    ) -> CompiledExpression | None:
        where = f"view `{view.name}`" + (f" feature `{feature}`" if feature else "")
        try:
            compiled = compile_expression(text, scope)
        except ExpressionError as exc:
            problems.append(f"{where}: {what} {exc}")
            return None
        if expected is not None and compiled.kind not in (expected, "null"):
            problems.append(
                f"{where}: {what} `{text}` must be {expected}, received {compiled.kind}"
            )
            return None
        if scope is kinds:
            used.update(compiled.names)
        return compiled

    where_expr = None
    if view.where:
        compiled = check(view.where, None, "bool", kinds, "`where`")
        where_expr = compiled.expr if compiled else None
    masks: dict[tuple[str, str | None], str] = {}
    mask_exprs: list[tuple[str, pl.Expr]] = []
    value_exprs: dict[str, _Value] = {}
    aggregations: list[pl.Expr] = []
    # A failed aggregate still has a kind, so derived features do not cascade errors.
    feature_kinds: dict[str, Kind] = {a.name: "null" for a in view.aggregates}
    for aggregate in view.aggregates:
        if aggregate.problems():
            continue
        mask_name = _mask(aggregate, masks, mask_exprs, check, kinds)
        value: _Value | None = None
        if aggregate.column:
            expected = "num" if aggregate.function in ("sum", "mean", "std") else None
            compiled = check(aggregate.column, aggregate.name, expected, kinds, "`column`")
            if compiled is None:
                continue
            if aggregate.column not in value_exprs:
                value_exprs[aggregate.column] = (
                    f"__v{len(value_exprs)}",
                    compiled.expr,
                    compiled.kind,
                )
            value = value_exprs[aggregate.column]
        if mask_name is None:
            continue
        aggregations.append(_aggregation(aggregate, mask_name, value).alias(aggregate.name))
        feature_kinds[aggregate.name] = _result_kind(aggregate, value)
    derived = []
    for feature in view.derived:
        if feature.problems():
            continue
        compiled = check(feature.expression, feature.name, None, feature_kinds, "expression")
        if compiled is not None:
            derived.append((feature.name, compiled.expr))
            feature_kinds[feature.name] = compiled.kind
    if problems:
        raise SpecError(
            problems,
            hint="fix the feature view; expressions may use the source "
            "columns (aggregates) or the view's earlier features (derived)",
        )
    return CompiledView(
        view,
        where_expr,
        tuple(mask_exprs),
        tuple((name, expr) for name, expr, _ in value_exprs.values()),
        tuple(aggregations),
        tuple(derived),
        feature_kinds,
        frozenset(used),
    )


def check_views(views: Sequence[FeatureView], schema: Mapping[str, pl.DataType]) -> None:
    """Check every view against ``schema``; one :class:`SpecError` listing every problem."""
    problems: list[str] = []
    names: dict[str, str] = {}
    for view in views:
        try:
            compile_view(view, schema)
        except SpecError as exc:
            problems.extend(exc.problems)
        for feature in view.feature_names:
            if feature in names:
                problems.append(
                    f"view `{view.name}` feature `{feature}`: name also used by "
                    f"view `{names[feature]}`"
                )
            names[feature] = view.name
    if problems:
        raise SpecError(problems, hint="fix the feature views")


def _mask(
    aggregate: Aggregate,
    masks: dict[tuple[str, str | None], str],
    mask_exprs: list[tuple[str, pl.Expr]],
    check: _Check,
    kinds: Mapping[str, Kind],
) -> str | None:
    """The name of the row mask column of ``aggregate`` (:data:`EVERY_ROW` if it keeps all rows).

    None when its ``where`` does not compile (the problem is recorded by ``check``).
    """
    key = (aggregate.window, aggregate.where)
    if key in masks:
        return masks[key]
    window = aggregate.window_delta
    # A nanosecond literal: polars compares mixed units at the coarser one, i.e. AGE's unit, and
    # windows are whole seconds, so the cast down is exact while AGE is never truncated.
    mask = None if window is None else pl.col(AGE) <= duration_literal(window, "ns")
    if aggregate.where:
        compiled = check(aggregate.where, aggregate.name, "bool", kinds, "`where`")
        if compiled is None:
            return None
        where = compiled.expr.fill_null(False)
        mask = where if mask is None else mask & where
    if mask is None:  # lifetime, no condition: aggregate the rows as they are, no filter pass
        masks[key] = EVERY_ROW
        return EVERY_ROW
    name = f"__m{len(mask_exprs)}"
    masks[key] = name
    mask_exprs.append((name, mask))
    return name


def _aggregation(aggregate: Aggregate, mask: str, value: _Value | None) -> pl.Expr:
    every_row = mask == EVERY_ROW

    def selected(expr: pl.Expr) -> pl.Expr:
        return expr if every_row else expr.filter(pl.col(mask))

    function = aggregate.function
    if function == "count" and value is None:
        return pl.len().cast(pl.Int64) if every_row else pl.col(mask).sum().cast(pl.Int64)
    if function == "time_since_last":
        return (
            selected(pl.col(AGE)).min().dt.total_seconds(fractional=True)
            / TIME_UNITS[aggregate.unit]
        )
    assert value is not None
    column = selected(pl.col(value[0]))
    if function == "count":
        return column.count().cast(pl.Int64)
    if function == "count_distinct":
        return column.drop_nulls().n_unique().cast(pl.Int64)
    if function == "last":
        ages = selected(pl.col(AGE))
        return column.sort_by(ages, descending=True, maintain_order=True).last()
    if function == "sum":
        return column.sum()
    # The other functions (min, max, mean, std, ...) are polars methods of the same name.
    by_name: Callable[[], pl.Expr] = getattr(column, function)
    return by_name()


def _result_kind(aggregate: Aggregate, value: _Value | None) -> Kind:
    if aggregate.function in ("min", "max", "last") and value is not None:
        return value[2]
    return "num"


def compute_features(
    events: pl.DataFrame | pl.LazyFrame,
    views: Sequence[FeatureView],
    entities: pl.DataFrame,
    *,
    cutoff: dt.datetime | None = None,
    cutoff_column: str = "cutoff",
) -> pl.DataFrame:
    """Features of every row of ``entities`` as of its cutoff.

    Parameters
    ----------
    events
        The source rows (every view reads the same source here).
    views
        Feature views; their entity keys must be columns of ``entities``.
    entities
        Entity rows; kept as they are (duplicates, nulls, order), features appended.
    cutoff
        One cutoff for every row (scoring). Without it ``entities[cutoff_column]`` gives each
        row's cutoff (training).

    Returns
    -------
    polars.DataFrame
        ``entities`` with one column per feature.
    """
    if cutoff is None and cutoff_column not in entities.columns:
        raise SpecError(
            [f"entity rows have no `{cutoff_column}` column and no cutoff was given"],
            hint="pass `cutoff=` for scoring or add a cutoff column",
        )
    aggregated = aggregate_views(
        events,
        views,
        cutoff=cutoff,
        cutoffs=entities if cutoff is None else None,
        cutoff_column=cutoff_column,
    )
    return attach_features(entities, aggregated, cutoff=cutoff, cutoff_column=cutoff_column)


def aggregate_views(
    events: pl.DataFrame | pl.LazyFrame,
    views: Sequence[FeatureView],
    *,
    cutoff: dt.datetime | None = None,
    cutoffs: pl.DataFrame | None = None,
    cutoff_column: str = "cutoff",
) -> list[tuple[CompiledView, pl.DataFrame]]:
    """The aggregates of each view, one row per entity (and cutoff) that has matching rows.

    Give ``cutoff`` (one time) or ``cutoffs`` (rows with the keys and ``cutoff_column``).
    """
    lazy = events.lazy()
    schema = dict(lazy.collect_schema())
    out = []
    for view in views:
        compiled = compile_view(view, schema)
        out.append(
            (compiled, _view_features(lazy, compiled, schema, cutoffs, cutoff, cutoff_column))
        )
    return out


def attach_features(
    entities: pl.DataFrame,
    aggregated: Sequence[tuple[CompiledView, pl.DataFrame]],
    *,
    cutoff: dt.datetime | None = None,
    cutoff_column: str = "cutoff",
) -> pl.DataFrame:
    """``entities`` with the features of :func:`aggregate_views`: no-row values, then derived."""
    result = entities
    for compiled, features in aggregated:
        view = compiled.view
        keys = list(view.entities) + ([] if cutoff is not None else [cutoff_column])
        joined_keys = entities.select(keys)
        if cutoff is None:  # in the unit and zone the aggregates were computed in
            joined_keys = joined_keys.with_columns(
                utc_time(
                    pl.col(cutoff_column),
                    entities.schema[cutoff_column],
                    unit_of(features.schema[cutoff_column]),
                )
            )
        block = joined_keys.join(
            features, on=keys, how="left", nulls_equal=False, maintain_order="left"
        )
        fills = [
            pl.col(a.name).fill_null(0) for a in view.aggregates if a.function in ZERO_WHEN_EMPTY
        ]
        block = block.with_columns(fills) if fills else block
        for name, expr in compiled.derived:
            block = block.with_columns(expr.alias(name))
        result = result.hstack(block.select(view.feature_names))
    return result


def _view_features(
    lazy: pl.LazyFrame,
    compiled: CompiledView,
    schema: Mapping[str, pl.DataType],
    entities: pl.DataFrame | None,
    cutoff: dt.datetime | None,
    cutoff_column: str,
) -> pl.DataFrame:
    view = compiled.view
    keys = list(view.entities)
    ts_type = schema[view.timestamp]
    rows = lazy.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
    if compiled.where is not None:
        rows = rows.filter(compiled.where.fill_null(False))
    if cutoff is not None:
        unit = finest_unit(ts_type, pl.Datetime("us"))  # a Python datetime holds microseconds
        at = time_literal(cutoff, unit)
        group = keys
    else:
        assert entities is not None
        cutoff_type = entities.schema[cutoff_column]
        check_time_zones(
            {
                f"view `{view.name}` timestamp `{view.timestamp}`": ts_type,
                f"entity rows `{cutoff_column}`": cutoff_type,
            },
            "as-of features",
        )
        unit = finest_unit(ts_type, cutoff_type)
        cutoffs = (
            entities.lazy()
            .select(*keys, utc_time(pl.col(cutoff_column), cutoff_type, unit).alias(cutoff_column))
            .drop_nulls()
            .unique()
        )
        rows = rows.join(cutoffs, on=keys, how="inner")
        at = pl.col(cutoff_column)
        group = [*keys, cutoff_column]
    ts = utc_time(pl.col(view.timestamp), ts_type, unit)
    rows = rows.filter(ts < at)
    window = view.max_window
    if window is not None:
        rows = rows.filter(ts >= at - duration_literal(window, unit))
    rows = (
        rows.filter(ts.is_not_null())
        .with_columns(
            (at - ts).alias(AGE),
            *(expr.alias(name) for name, expr in compiled.values),
        )
        .with_columns(*(expr.alias(name) for name, expr in compiled.masks))
    )
    return rows.group_by(group).agg(*compiled.aggregations).collect()
