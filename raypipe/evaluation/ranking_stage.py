"""The ``evaluate.ranking`` stage: top-k recommendations against what players did next.

Input ``recommendations``: (user, item, rank) lists, e.g. ``recommend.als``'s. Input
``relevant``: the next period's interactions (user, item, and an event type whose
``event_gains`` grade the relevance; without ``event_column`` every item counts 1). Optional
``truth``: lists ranked by true affinity (the best possible, e.g. ``synth.recommendations``'s
``affinity_topk``). Optional ``history``: past interactions, whose most popular items are the
baseline. Figures: recall@k and NDCG@k of each, over the players with relevant items and a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.evaluation.quality import quality
from raypipe.evaluation.ranking import ndcg_at_k, recall_at_k
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["RankingEvalOptions", "RankingEvalStage", "evaluate_lists"]

#: Dense rows evaluated at once: bounds memory to about this many floats.
_CELLS_PER_CHUNK = 20_000_000


class RankingEvalOptions(StageOptions):
    """Options of ``evaluate.ranking``."""

    user_column: str = "player_id"
    item_column: str = "item_id"
    rank_column: str = "rank"
    event_column: str | None = "event_type"
    event_gains: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "play": 2.0, "purchase": 3.0}
    )
    k: int = Field(default=10, ge=1, le=1000)
    metric: Literal["ndcg", "recall"] = "ndcg"


def _lists(
    table: pa.Table, options: Any, users: np.ndarray, items: np.ndarray, k: int
) -> np.ndarray:
    """``(len(users), k)`` item indices ranked, padded with ``len(items)`` (a zero-gain item)."""
    import polars as pl

    u, i, r = options.user_column, options.item_column, options.rank_column
    frame = (
        pl.DataFrame(table.select([u, i, r]))
        .filter(pl.col(r) <= k)
        .filter(pl.col(u).is_in(users))
        .sort([u, r])
    )
    out = np.full((len(users), k), len(items), dtype=np.int64)
    rows = np.searchsorted(users, frame[u].to_numpy())
    item_index = np.searchsorted(items, frame[i].to_numpy())
    known = (item_index < len(items)) & (
        items[np.minimum(item_index, len(items) - 1)] == frame[i].to_numpy()
    )
    position = frame.with_columns(pl.int_range(pl.len()).over(u).alias("_p"))["_p"].to_numpy()
    out[rows[known], position[known]] = item_index[known]
    return out


def evaluate_lists(
    gain: Any, lists: Mapping[str, np.ndarray], k: int
) -> dict[str, dict[str, float]]:
    """recall@k and NDCG@k of each named list matrix against a sparse ``gain`` (users x items).

    Rows are densified a chunk at a time, with one extra zero column for padded slots.
    """
    import scipy.sparse as sp

    n, m = gain.shape
    chunk = max(1, _CELLS_PER_CHUNK // (m + 1))
    sums: dict[str, dict[str, float]] = {name: {"recall": 0.0, "ndcg": 0.0} for name in lists}
    for start in range(0, n, chunk):
        dense = sp.hstack([gain[start : start + chunk], sp.csr_matrix((min(chunk, n - start), 1))])
        block = np.asarray(dense.todense())
        weight = len(block)
        for name, matrix in lists.items():
            top = matrix[start : start + chunk]
            sums[name]["recall"] += recall_at_k(top, block > 0, k) * weight
            sums[name]["ndcg"] += ndcg_at_k(top, block, k) * weight
    return {
        name: {metric: total / n for metric, total in values.items()}
        for name, values in sums.items()
    }


class RankingEvalStage(Stage[RankingEvalOptions]):
    """recall@k and NDCG@k of the model's lists, the true-affinity lists and the most popular."""

    kind = "evaluate.ranking"
    options = RankingEvalOptions
    inputs: ClassVar[tuple[str, ...]] = ("recommendations", "relevant")
    optional_inputs: ClassVar[tuple[str, ...]] = ("truth", "history")
    outputs: ClassVar[tuple[str, ...]] = ()

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: RankingEvalOptions
    ) -> StageResult:
        import polars as pl
        import scipy.sparse as sp

        from raypipe.errors import DataError
        from raypipe.io.dataset import read_dataset

        storage = dict(context.storage_options)
        u, i = options.user_column, options.item_column

        def read(name: str) -> pa.Table:
            table = read_dataset(inputs[name].url, storage_options=storage)
            missing = [c for c in (u, i) if c not in table.column_names]
            if missing:
                raise DataError(
                    f"input `{name}` lacks column(s) {missing}; received {table.column_names}",
                    hint="set `user_column` and `item_column` to columns of every input",
                )
            return table

        recommendations = read("recommendations")
        relevant = pl.DataFrame(
            read("relevant").select(
                [u, i, *([options.event_column] if options.event_column else [])]
            )
        )
        gain_expr = (
            pl.col(options.event_column).replace_strict(
                options.event_gains, default=0.0, return_dtype=pl.Float64
            )
            if options.event_column
            else pl.lit(1.0)
        )
        graded = (
            relevant.with_columns(gain_expr.alias("_g"))
            .group_by([u, i])
            .agg(pl.col("_g").max())
            .filter(pl.col("_g") > 0)
        )
        listed = np.unique(recommendations.column(u).to_numpy())
        graded = graded.filter(pl.col(u).is_in(listed))
        users = np.sort(graded[u].unique().to_numpy())
        items = np.sort(
            np.unique(np.concatenate([graded[i].to_numpy(), recommendations.column(i).to_numpy()]))
        )
        if len(users) == 0:
            raise DataError(
                "no player has both a recommendation list and a relevant item",
                hint="`relevant` must be the later interactions of the recommended players",
            )
        gain = sp.csr_matrix(
            (
                graded["_g"].to_numpy(),
                (
                    np.searchsorted(users, graded[u].to_numpy()),
                    np.searchsorted(items, graded[i].to_numpy()),
                ),
            ),
            shape=(len(users), len(items)),
        )
        k = options.k
        lists = {"model": _lists(recommendations, options, users, items, k)}
        if "truth" in inputs:
            lists["truth"] = _lists(read("truth"), options, users, items, k)
        if "history" in inputs:
            counts = (
                pl.DataFrame(read("history").select([u, i]))
                .unique()
                .group_by(i)
                .len()
                .sort(["len", i], descending=[True, False])
                .head(k)
            )
            popular = np.searchsorted(items, counts[i].to_numpy())
            popular = np.where(popular < len(items), popular, len(items))
            row = np.full(k, len(items), dtype=np.int64)
            row[: len(popular)] = popular
            lists["popularity"] = np.broadcast_to(row, (len(users), k))
        figures = evaluate_lists(gain, lists, k)
        metrics: dict[str, Any] = {"players_evaluated": len(users), "k": k}
        for metric in ("recall", "ndcg"):
            metrics[f"{metric}@{k}"] = {name: values[metric] for name, values in figures.items()}
        if "truth" in figures and "popularity" in figures:
            chosen = figures["model"][options.metric], figures["truth"][options.metric]
            metrics["quality"] = quality(
                f"{options.metric}@{k}", chosen[0], chosen[1], figures["popularity"][options.metric]
            )
        return StageResult(outputs={}, metrics=metrics, rows_in=recommendations.num_rows)
