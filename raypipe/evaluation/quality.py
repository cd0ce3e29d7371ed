"""The ``quality`` record every evaluating stage writes, and joining tables on their keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from raypipe.errors import DataError

__all__ = ["join_on_keys", "quality"]


def quality(metric: str, value: float, truth: float, baseline: float) -> dict[str, Any]:
    """``{metric, value, truth, baseline}``: the model's figure, the truth's, the baseline's."""
    return {
        "metric": metric,
        "value": float(value),
        "truth": float(truth),
        "baseline": float(baseline),
    }


def join_on_keys(
    left: pa.Table, right: pa.Table, keys: Sequence[str], columns: Sequence[str], *, name: str
) -> pa.Table:
    """``left`` with ``columns`` of ``right`` joined on ``keys``, rows in ``left``'s order.

    Raises
    ------
    DataError
        When a key or column is missing, or a row of ``left`` has no match in ``right``.
    """
    import polars as pl

    missing = [c for c in (*keys, *columns) if c not in right.column_names]
    missing += [f"{c} (left)" for c in keys if c not in left.column_names]
    if missing:
        raise DataError(
            f"input `{name}` lacks column(s) {', '.join(f'`{c}`' for c in missing)}; "
            f"received {right.column_names}",
            hint="set the stage's `keys` and column options to columns of its inputs",
        )
    frame = pl.DataFrame(left).with_row_index("_row")
    other = (
        pl.DataFrame(right.select([*keys, *columns]))
        .unique(subset=list(keys), keep="first")
        .with_columns(pl.lit(True).alias("_matched"))
    )
    joined = frame.join(other, on=list(keys), how="left").sort("_row")
    unmatched = int(joined["_matched"].is_null().sum())
    if unmatched:
        raise DataError(
            f"input `{name}` has no row for {unmatched} of {left.num_rows} keys",
            hint=f"`{name}` must cover every evaluated key ({', '.join(keys)})",
        )
    return joined.drop("_row", "_matched").to_arrow()
