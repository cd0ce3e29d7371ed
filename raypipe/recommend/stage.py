"""The ``recommend.als`` stage: implicit ALS on Ray, batch top-k for every player to Parquet.

Input ``interactions``: one row per feedback event (user, item, and an event type weighed by
``event_weights`` or a weight column): the generator's, or a studio's own through ``ingest``.
Optional ``players``: every player to recommend for; those without history get the most popular
items (``source = popular``). The fit runs as one Ray task, the top-k as one task per block of
players, each writing its Parquet files; the driver commits. Output ``model`` holds the factors
as ``.npy`` files (no pickles) and ``params.json``. With ``online:`` each top-k task also writes
its players' lists to the online store (:mod:`raypipe.recommend.online`).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.recommend.als import AlsParams, fit_als, interaction_matrix, popular_items, top_k
from raypipe.recommend.online import OnlineTarget, store_config, write_lists
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["AlsOptions", "AlsStage", "recommendations_schema"]

logger = logging.getLogger(__name__)


def recommendations_schema(user: pa.Field, item: pa.Field) -> pa.Schema:
    """The lists' schema: the input's user and item columns (names and types kept), ``rank``,
    ``score`` and ``source`` (``als`` or ``popular``)."""
    return pa.schema(
        [
            user,
            pa.field("rank", pa.int32()),
            item,
            pa.field("score", pa.float32()),
            pa.field("source", pa.string()),
        ]
    )


def _lists_table(
    schema: pa.Schema, users: np.ndarray, items: np.ndarray, scores: np.ndarray, source: str
) -> pa.Table:
    """One row per (user, rank): ``items`` and ``scores`` are ``(len(users), k)``."""
    count, width = items.shape
    return pa.table(
        [
            pa.array(np.repeat(users, width), type=schema.field(0).type),
            pa.array(np.tile(np.arange(1, width + 1, dtype=np.int32), count)),
            pa.array(items.ravel(), type=schema.field(2).type),
            pa.array(scores.ravel().astype(np.float32)),
            pa.array([source] * (count * width), pa.string()),
        ],
        schema=schema,
    )


class AlsOptions(StageOptions):
    """Options of ``recommend.als``."""

    user_column: str = "player_id"
    item_column: str = "item_id"
    event_column: str | None = "event_type"
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "play": 3.0, "purchase": 10.0}
    )
    weight_column: str | None = None
    factors: int = Field(default=32, ge=1, le=1024)
    regularization: float = Field(default=0.05, ge=0)
    alpha: float = Field(default=4.0, gt=0)
    iterations: int = Field(default=15, ge=1, le=500)
    seed: int = Field(default=0, ge=0)
    top_k: int = Field(default=10, ge=1, le=1000)
    block_players: int = Field(default=50_000, ge=1)
    online: OnlineTarget | None = Field(
        default=None, description="also write each player's list to this online store"
    )


def _write_block(
    writer: Any,
    schema: pa.Schema,
    item_ids: np.ndarray,
    k: int,
    online: tuple[Any, str, int] | None,
    block: tuple[int, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[list[Any], int]:
    """Top-k of one block of players (their ids and factors), staged as Parquet and, with
    ``online`` (store config, namespace, as-of), written to the online store."""
    index, user_ids, user_factors, item_factors = block
    items, scores = top_k(user_factors, item_factors, k)
    table = _lists_table(schema, user_ids, item_ids[items], scores, "als")
    return writer.write(table, part=index), _write_online(online, schema, table)


def _write_online(online: tuple[Any, str, int] | None, schema: pa.Schema, table: pa.Table) -> int:
    if online is None:
        return 0
    config, namespace, as_of_us = online
    columns = {"user": schema.field(0).name, "item": schema.field(2).name}
    return write_lists(config, namespace, table, columns, as_of_us)


class AlsStage(Stage[AlsOptions]):
    """Train implicit ALS and write every player's top-k items."""

    kind = "recommend.als"
    options = AlsOptions
    inputs: ClassVar[tuple[str, ...]] = ("interactions",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("players",)
    outputs: ClassVar[tuple[str, ...]] = ("recommendations", "model")

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: AlsOptions
    ) -> StageResult:
        from raypipe.io.artifacts import write_artifact
        from raypipe.io.dataset import DatasetWriter, read_dataset

        storage = dict(context.storage_options)
        columns = [options.user_column, options.item_column]
        columns += [c for c in (options.event_column, options.weight_column) if c]
        table = read_dataset(inputs["interactions"].url, columns=columns, storage_options=storage)
        matrix = interaction_matrix(
            table,
            user_column=options.user_column,
            item_column=options.item_column,
            event_column=None if options.weight_column else options.event_column,
            event_weights=options.event_weights,
            weight_column=options.weight_column,
        )
        params = AlsParams(
            options.factors, options.regularization, options.alpha, options.iterations, options.seed
        )
        [(user_factors, item_factors)] = context.executor.map(
            partial(fit_als, matrix.matrix), [params], name="recommend.als_fit"
        )
        writer = DatasetWriter(context.output_url("recommendations"), storage_options=storage)
        schema = recommendations_schema(
            table.schema.field(options.user_column), table.schema.field(options.item_column)
        )
        size = options.block_players
        blocks = [
            (i, matrix.user_ids[s : s + size], user_factors[s : s + size], item_factors)
            for i, s in enumerate(range(0, len(matrix.user_ids), size))
        ]
        k = min(options.top_k, len(matrix.item_ids))
        online = None
        if options.online is not None:
            # One as-of for the whole run: every list carries it, a retried task rewrites
            # nothing, and a later run's lists replace these.
            online = (
                store_config(options.online, context.data_dir),
                options.online.namespace,
                time.time_ns() // 1_000,
            )
        results = context.executor.map(
            partial(_write_block, writer, schema, matrix.item_ids, k, online),
            blocks,
            name="recommend.top_k",
        )
        entries = [entry for block_entries, _ in results for entry in block_entries]
        written = sum(count for _, count in results)
        popular = popular_items(matrix, k)
        cold = 0
        if "players" in inputs:
            players = (
                read_dataset(
                    inputs["players"].url, columns=[options.user_column], storage_options=storage
                )
                .column(0)
                .to_numpy()
            )
            cold_ids = np.setdiff1d(np.unique(players), matrix.user_ids)
            cold = len(cold_ids)
            if cold:
                lists = np.broadcast_to(popular, (cold, len(popular)))
                cold_table = _lists_table(schema, cold_ids, lists, np.zeros(lists.shape), "popular")
                entries += writer.write(cold_table, part="popular")
                written += _write_online(online, schema, cold_table)
        manifest = writer.commit(entries, schema=schema)
        model = write_artifact(
            context.output_url("model"),
            {
                "user_factors.npy": _npy(user_factors),
                "item_factors.npy": _npy(item_factors),
                "user_ids.npy": _npy(matrix.user_ids),
                "item_ids.npy": _npy(matrix.item_ids),
                "params.json": json.dumps(asdict(params), sort_keys=True).encode(),
            },
            storage_options=storage,
        )
        metrics = {
            "interactions": table.num_rows,
            "users": len(matrix.user_ids),
            "items": len(matrix.item_ids),
            "nonzero": int(matrix.matrix.nnz),
            "cold_start_players": cold,
            "top_k": k,
            "popular_items": popular.tolist(),
            "online_store": (
                {
                    "kind": options.online.kind,
                    "namespace": options.online.namespace,
                    "written": written,
                }
                if options.online is not None
                else "not written (no `online:` option)"
            ),
        }
        return StageResult(
            outputs={"recommendations": manifest, "model": model},
            metrics=metrics,
            rows_in=table.num_rows,
            rows_out=manifest.rows,
        )


def _npy(array: np.ndarray) -> bytes:
    if array.dtype == object:  # string ids: a fixed-width unicode array needs no pickle
        array = array.astype(str)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
