"""Content recommendation data with its truth: a catalogue, true player-item affinities, and the
implicit feedback (views, plays, purchases) they emit.

Items (level packs, cosmetics, offers) have a latent taste vector and a popularity; players have
a taste vector and an activity. The true affinity of player ``p`` for item ``i`` is
``2 taste_p · taste_i + popularity_i``; each interaction picks an item with probability
``softmax(affinity_p)`` and becomes a view, a play or a purchase (the higher the affinity, the
deeper). ``interactions`` holds the history, ``future`` the next period (the relevance labels of
an evaluation), ``affinity_topk`` each player's items ranked by true affinity: the best possible
recommendations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.synth.sharded import run_sharded, shard_bounds, shard_count, shard_rng

__all__ = [
    "Catalog",
    "CatalogConfig",
    "RecommendationDataOptions",
    "RecommendationDataStage",
    "affinity",
    "catalog",
    "generate_catalog_shard",
]

ITEM_KINDS = ("level_pack", "cosmetic", "offer")
EVENT_TYPES = ("view", "play", "purchase")
#: Taste dimensions of players and items.
TASTE_DIMENSIONS = 8
#: Streams: the catalogue is shared by every shard (its own seed sequence).
CATALOG_STREAM, PLAYER_STREAM, HISTORY_STREAM, FUTURE_STREAM = 0, 1, 2, 3

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("price", pa.float64()),
    ]
)
INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("event_type", pa.string()),
        pa.field("day", pa.int32()),
    ]
)
TOPK_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("rank", pa.int32()),
        pa.field("item_id", pa.int64()),
        pa.field("affinity", pa.float64()),
    ]
)
SHARD_TABLES = {
    "interactions": INTERACTIONS_SCHEMA,
    "future": INTERACTIONS_SCHEMA,
    "affinity_topk": TOPK_SCHEMA,
}


@dataclass(frozen=True)
class CatalogConfig:
    """What the recommendation data depends on."""

    players: int
    items: int = 300
    seed: int = 0
    history_days: int = 28
    future_days: int = 14
    interactions_per_day: float = 1.0
    truth_k: int = 20
    shard_players: int = 50_000

    @property
    def shards(self) -> int:
        return shard_count(self.players, self.shard_players)


@dataclass(frozen=True)
class Catalog:
    """The items: kind, price, taste vectors and popularity (shared by every shard)."""

    kind: np.ndarray
    price: np.ndarray
    taste: np.ndarray
    popularity: np.ndarray


def catalog(config: CatalogConfig) -> Catalog:
    """The catalogue of ``config`` (a pure function of its seed and size)."""
    rng = np.random.default_rng([config.seed, CATALOG_STREAM])
    kind = rng.integers(0, len(ITEM_KINDS), size=config.items)
    price = np.round(np.asarray([4.99, 1.99, 9.99])[kind] * rng.lognormal(0, 0.3, config.items), 2)
    taste = rng.normal(size=(config.items, TASTE_DIMENSIONS)) / np.sqrt(TASTE_DIMENSIONS)
    return Catalog(kind, price, taste, rng.normal(0.0, 0.8, size=config.items))


def affinity(players_taste: np.ndarray, items: Catalog) -> np.ndarray:
    """True affinities ``(players, items)``: taste match (scaled) plus item popularity."""
    scores: np.ndarray = 2.0 * players_taste @ items.taste.T + items.popularity
    return scores


def _interactions(
    rng: np.random.Generator, ids: np.ndarray, scores: np.ndarray, activity: np.ndarray, days: int
) -> dict[str, np.ndarray]:
    """Sample interactions: per player Poisson(activity * days) draws from softmax(affinity)."""
    n, m = scores.shape
    counts = rng.poisson(activity * days)
    prob = np.exp(scores - scores.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    # Row-wise inverse CDF in one searchsorted: row r's cumulative shares are shifted by r.
    cumulative = (np.cumsum(prob, axis=1) + np.arange(n)[:, None]).ravel()
    cumulative[m - 1 :: m] = np.arange(1, n + 1)  # exact row ends despite rounding
    rows = np.repeat(np.arange(n), counts)
    # Sorted queries let searchsorted narrow each search from the previous one.
    flat = np.searchsorted(cumulative, np.sort(rows + rng.random(len(rows))), side="right")
    items = np.minimum(flat - rows * m, m - 1)
    # Deeper engagement with liked items: P(play) and P(purchase) rise with the affinity.
    liking = 1.0 / (1.0 + np.exp(-(scores[rows, items] - 1.0)))
    draw = rng.random(len(rows))
    event = np.where(draw < 0.15 * liking, 2, np.where(draw < 0.6 * liking, 1, 0))
    return {
        "player_id": ids[rows],
        "item_id": items.astype(np.int64),
        "event_type": np.asarray(EVENT_TYPES)[event],
        "day": rng.integers(0, days, size=len(rows)).astype(np.int32),
    }


def generate_catalog_shard(config: CatalogConfig, shard_index: int) -> dict[str, pa.Table]:
    """``interactions``, ``future`` and ``affinity_topk`` of one shard of players."""
    start, stop = shard_bounds(config.players, config.shard_players, shard_index)
    n = stop - start
    items = catalog(config)
    people = shard_rng(config.seed, shard_index, PLAYER_STREAM)
    taste = people.normal(size=(n, TASTE_DIMENSIONS)) / np.sqrt(TASTE_DIMENSIONS)
    activity = config.interactions_per_day * people.lognormal(-0.3, 0.8, size=n)
    scores = affinity(taste, items)
    ids = np.arange(start, stop, dtype=np.int64)
    history = _interactions(
        shard_rng(config.seed, shard_index, HISTORY_STREAM),
        ids,
        scores,
        activity,
        config.history_days,
    )
    future = _interactions(
        shard_rng(config.seed, shard_index, FUTURE_STREAM),
        ids,
        scores,
        activity,
        config.future_days,
    )
    future["day"] = future["day"] + config.history_days
    k = min(config.truth_k, config.items)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < config.items else None
    if top is None:
        top = np.broadcast_to(np.arange(k), (n, k))
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    topk = {
        "player_id": np.repeat(ids, k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
        "item_id": top.ravel().astype(np.int64),
        "affinity": np.take_along_axis(scores, top, axis=1).ravel(),
    }
    return {
        "interactions": pa.table(history, schema=INTERACTIONS_SCHEMA),
        "future": pa.table(future, schema=INTERACTIONS_SCHEMA),
        "affinity_topk": pa.table(topk, schema=TOPK_SCHEMA),
    }


class RecommendationDataOptions(StageOptions):
    """Options of ``synth.recommendations``."""

    players: int = Field(default=20_000, ge=1, le=10_000_000)
    items: int = Field(default=300, ge=2, le=100_000)
    seed: int = Field(default=0, ge=0)
    history_days: int = Field(default=28, ge=1)
    future_days: int = Field(default=14, ge=1)
    interactions_per_day: float = Field(default=1.0, gt=0)
    truth_k: int = Field(default=20, ge=1)
    shard_players: int = Field(default=20_000, ge=1)


class RecommendationDataStage(Stage[RecommendationDataOptions]):
    """Generate the catalogue, history and future interactions, and the true top items."""

    kind = "synth.recommendations"
    options = RecommendationDataOptions
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("items", *SHARD_TABLES)

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: RecommendationDataOptions,
    ) -> StageResult:
        from raypipe.io.dataset import write_dataset

        config = CatalogConfig(**options.model_dump())
        metadata = {
            "generator": "raypipe.synth.catalog",
            "seed": config.seed,
            "players": config.players,
            "clustered_by": ["player_id"],
        }
        manifests = run_sharded(
            generate_catalog_shard,
            config,
            config.shards,
            {name: context.output_url(name) for name in SHARD_TABLES},
            SHARD_TABLES,
            context.executor,
            task_name="synth.catalog_shard",
            metadata=metadata,
            storage_options=context.storage_options,
        )
        items = catalog(config)
        manifests["items"] = write_dataset(
            context.output_url("items"),
            pa.table(
                {
                    "item_id": np.arange(config.items, dtype=np.int64),
                    "kind": np.asarray(ITEM_KINDS)[items.kind],
                    "price": items.price,
                },
                schema=ITEMS_SCHEMA,
            ),
            metadata=metadata,
            storage_options=dict(context.storage_options) or None,
        )
        metrics = {
            "players": config.players,
            "items": config.items,
            "shards": config.shards,
            "interactions": manifests["interactions"].rows,
            "future_interactions": manifests["future"].rows,
        }
        return StageResult(
            outputs=manifests,
            metrics=metrics,
            rows_out=sum(m.rows for m in manifests.values()),
        )
