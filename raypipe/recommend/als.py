"""The functional core of the recommender: confidence matrix, ALS fit, top-k by dot product."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.errors import DataError

__all__ = [
    "AlsParams",
    "InteractionMatrix",
    "fit_als",
    "interaction_matrix",
    "popular_items",
    "top_k",
]


@dataclass(frozen=True)
class AlsParams:
    """Hyperparameters of implicit ALS (Hu, Koren, Volinsky 2008)."""

    factors: int = 32
    regularization: float = 0.05
    alpha: float = 4.0
    iterations: int = 15
    seed: int = 0


@dataclass(frozen=True)
class InteractionMatrix:
    """A users x items CSR of summed feedback weights with the ids of its rows and columns."""

    matrix: Any  # scipy.sparse.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray


def interaction_matrix(
    table: pa.Table,
    *,
    user_column: str,
    item_column: str,
    event_column: str | None = None,
    event_weights: Mapping[str, float] | None = None,
    weight_column: str | None = None,
) -> InteractionMatrix:
    """Sum each (user, item)'s feedback into a CSR matrix, ``log1p`` of the summed weight.

    A row weighs ``event_weights[row[event_column]]`` (events not listed weigh 0), or
    ``row[weight_column]``, or 1. The log damps heavy repeat users, as implicit ALS suggests.
    """
    import polars as pl
    import scipy.sparse as sp

    needed = [user_column, item_column]
    needed += [c for c in (event_column, weight_column) if c]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(
            f"interactions lack column(s) {', '.join(f'`{c}`' for c in missing)}; received "
            f"{table.column_names}",
            hint="set `user_column`, `item_column` and `event_column`/`weight_column` to its "
            "columns",
        )
    frame = pl.DataFrame(table.select(needed))
    if weight_column:
        weight = pl.col(weight_column).cast(pl.Float64)
    elif event_column:
        weights = dict(event_weights or {})
        weight = pl.col(event_column).replace_strict(weights, default=0.0, return_dtype=pl.Float64)
    else:
        weight = pl.lit(1.0)
    summed = (
        frame.with_columns(weight.alias("_w"))
        .group_by([user_column, item_column])
        .agg(pl.col("_w").sum())
        .filter(pl.col("_w") > 0)
    )
    if summed.height == 0:
        raise DataError("no interaction has a positive weight", hint="check `event_weights`")
    users = np.sort(summed[user_column].unique().to_numpy())
    items = np.sort(summed[item_column].unique().to_numpy())
    rows = np.searchsorted(users, summed[user_column].to_numpy())
    cols = np.searchsorted(items, summed[item_column].to_numpy())
    matrix = sp.csr_matrix(
        (np.log1p(summed["_w"].to_numpy()).astype(np.float32), (rows, cols)),
        shape=(len(users), len(items)),
    )
    return InteractionMatrix(matrix, users, items)


def fit_als(matrix: Any, params: AlsParams) -> tuple[np.ndarray, np.ndarray]:
    """Fit implicit ALS on a users x items CSR; returns ``(user_factors, item_factors)``.

    One BLAS thread: the task holds one CPU, and ``implicit`` parallelises its own loops.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.seed,
            num_threads=1,
        )
        model.fit(matrix, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def top_k(
    user_factors: np.ndarray, item_factors: np.ndarray, k: int, *, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items per user by ``user · item``: ``(indices, scores)``, best first."""
    k = min(k, item_factors.shape[0])
    indices = np.empty((len(user_factors), k), dtype=np.int64)
    scores = np.empty((len(user_factors), k), dtype=np.float32)
    for start in range(0, len(user_factors), chunk):
        block = user_factors[start : start + chunk] @ item_factors.T
        part = (
            np.argpartition(-block, k - 1, axis=1)[:, :k]
            if k < block.shape[1]
            else (np.broadcast_to(np.arange(k), block.shape))
        )
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        indices[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        scores[start : start + chunk] = np.take_along_axis(part_scores, order, axis=1)
    return indices, scores


def popular_items(matrix: InteractionMatrix, k: int) -> np.ndarray:
    """Item ids of the ``k`` items most users interacted with (the popularity baseline)."""
    users_per_item = np.asarray((matrix.matrix > 0).sum(axis=0)).ravel()
    order = np.argsort(-users_per_item, kind="stable")[:k]
    return matrix.item_ids[order]
