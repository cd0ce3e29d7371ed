"""Player spend (LTV) data with its truth: features as of a cutoff, spend in the next 30 days,
and each player's true expected spend.

Every player has two hidden traits: a purchase rate ``rate`` (purchases per 30 days, log-normal,
higher for engaged, newly installed and iOS players) and a mean basket ``basket`` (price tier of
the country times a log-normal whale factor). Purchases in a 30-day window are
``Poisson(rate * window noise)`` and each costs ``Gamma(2, basket / 2)``. The observed features
are the history such a world leaves: the last 30 days' sessions, purchases and spend, lifetime
purchases and spend, days since the last purchase. The label is the spend of the next 30 days;
the truth is ``E[spend] = rate * basket``, the best any model can predict.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.synth.sharded import run_sharded, shard_bounds, shard_count, shard_rng

__all__ = [
    "SPEND_PLAYERS_SCHEMA",
    "SPEND_TRUTH_SCHEMA",
    "PlayerSpendOptions",
    "PlayerSpendStage",
    "SpendConfig",
    "generate_spend_shard",
]

logger = logging.getLogger(__name__)

PLATFORMS = ("ios", "android", "pc")
PLATFORM_SHARE = (0.35, 0.5, 0.15)
PLATFORM_EFFECT = (0.35, 0.0, -0.25)
COUNTRIES = ("US", "DE", "GB", "JP", "BR", "IN")
COUNTRY_SHARE = (0.3, 0.12, 0.1, 0.13, 0.17, 0.18)
#: Mean basket (currency units) per country: the price tier.
COUNTRY_BASKET = (10.0, 9.0, 9.5, 11.0, 4.0, 2.5)
#: Gamma shape of one purchase's amount (mean = basket).
AMOUNT_SHAPE = 2.0

SPEND_PLAYERS_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("platform", pa.string()),
        pa.field("country", pa.string()),
        pa.field("install_age_days", pa.int32()),
        pa.field("level", pa.int32()),
        pa.field("sessions_30d", pa.int32()),
        pa.field("playtime_min_30d", pa.float64()),
        pa.field("purchases_30d", pa.int32()),
        pa.field("spend_30d", pa.float64()),
        pa.field("purchases_lifetime", pa.int32()),
        pa.field("spend_lifetime", pa.float64()),
        pa.field("days_since_last_purchase", pa.float64()),
        pa.field("spend_next_30d", pa.float64()),
    ]
)
SPEND_TRUTH_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("expected_spend", pa.float64()),
    ]
)
TABLES = ("players", "spend_truth")

ATTRIBUTES_STREAM, HISTORY_STREAM, FUTURE_STREAM = 0, 1, 2


@dataclass(frozen=True)
class SpendConfig:
    """What the spend data depends on: player count, seed and players per shard."""

    players: int
    seed: int = 0
    shard_players: int = 50_000

    @property
    def shards(self) -> int:
        return shard_count(self.players, self.shard_players)


def _window_spend(
    rng: np.random.Generator, rate: np.ndarray, basket: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Purchases and spend of one window: a sum of k Gamma(2, basket/2) is Gamma(2k, basket/2)."""
    count = rng.poisson(rate)
    spend = np.where(count > 0, rng.gamma(np.maximum(AMOUNT_SHAPE * count, 1e-9), basket / 2), 0)
    return count, np.round(spend, 2)


def generate_spend_shard(config: SpendConfig, shard_index: int) -> dict[str, pa.Table]:
    """The ``players`` (features and label) and ``spend_truth`` tables of one shard.

    Examples
    --------
    >>> tables = generate_spend_shard(SpendConfig(players=500, seed=1), 0)
    >>> tables["players"].num_rows, tables["spend_truth"].num_rows
    (500, 500)
    """
    start, stop = shard_bounds(config.players, config.shard_players, shard_index)
    n = stop - start
    attributes = shard_rng(config.seed, shard_index, ATTRIBUTES_STREAM)
    platform = attributes.choice(len(PLATFORMS), size=n, p=PLATFORM_SHARE)
    country = attributes.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARE)
    age = np.clip(np.ceil(attributes.exponential(120.0, size=n)), 1, 730).astype(np.int32)
    engagement = attributes.normal(size=n)
    propensity = attributes.normal(size=n)
    whale = attributes.normal(size=n)
    # Newer players buy more; engaged ones both play and buy more.
    rate = np.exp(
        -2.3
        + 0.9 * propensity
        + 0.45 * engagement
        + np.asarray(PLATFORM_EFFECT)[platform]
        - 0.35 * np.log1p(age / 60.0)
    )
    basket = np.asarray(COUNTRY_BASKET)[country] * np.exp(0.35 * whale)

    history = shard_rng(config.seed, shard_index, HISTORY_STREAM)
    sessions = history.poisson(30 * np.exp(0.2 + 0.7 * engagement - 0.002 * age))
    playtime = np.round(sessions * history.gamma(2.0, 7.0 * np.exp(0.2 * engagement)), 1)
    level = np.minimum(1 + history.poisson(0.08 * age * np.exp(0.4 * engagement)), 500)
    # The last 30 days: the same traits, with a window-to-window wobble in the purchase rate.
    purchases_30d, spend_30d = _window_spend(
        history, rate * history.lognormal(-0.08, 0.4, size=n), basket
    )
    earlier = rate * np.maximum(age - 30, 0) / 30.0 * 1.3  # older windows: the rate was higher
    purchases_before, spend_before = _window_spend(history, earlier, basket)
    purchases_lifetime = purchases_30d + purchases_before
    spend_lifetime = np.round(spend_30d + spend_before, 2)
    # Days since the last purchase: exponential in the rate, inside the window that saw it
    # (the last 30 days if any purchase fell there, else before them); null for non-payers.
    gap = np.ceil(history.exponential(30.0 / np.maximum(rate, 1e-3)))
    gap = np.where(purchases_30d > 0, np.minimum(gap, 29), np.maximum(gap, 30))
    days_since = np.where(purchases_lifetime > 0, np.minimum(gap, age), np.nan)

    future = shard_rng(config.seed, shard_index, FUTURE_STREAM)
    _, spend_next = _window_spend(future, rate, basket)
    ids = np.arange(start, stop, dtype=np.int64)
    players = pa.table(
        {
            "player_id": ids,
            "platform": np.asarray(PLATFORMS)[platform],
            "country": np.asarray(COUNTRIES)[country],
            "install_age_days": age,
            "level": level.astype(np.int32),
            "sessions_30d": sessions.astype(np.int32),
            "playtime_min_30d": playtime,
            "purchases_30d": purchases_30d.astype(np.int32),
            "spend_30d": spend_30d.astype(np.float64),
            "purchases_lifetime": purchases_lifetime.astype(np.int32),
            "spend_lifetime": spend_lifetime.astype(np.float64),
            "days_since_last_purchase": pa.array(days_since, from_pandas=True),
            "spend_next_30d": spend_next.astype(np.float64),
        },
        schema=SPEND_PLAYERS_SCHEMA,
    )
    truth = pa.table({"player_id": ids, "expected_spend": rate * basket}, schema=SPEND_TRUTH_SCHEMA)
    return {"players": players, "spend_truth": truth}


class PlayerSpendOptions(StageOptions):
    """Options of ``synth.player_spend``."""

    players: int = Field(default=20_000, ge=1, le=10_000_000)
    seed: int = Field(default=0, ge=0)
    shard_players: int = Field(default=50_000, ge=1)


class PlayerSpendStage(Stage[PlayerSpendOptions]):
    """Generate per-player features with next-30-day spend (``players``) and its truth."""

    kind = "synth.player_spend"
    options = PlayerSpendOptions
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = TABLES

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: PlayerSpendOptions
    ) -> StageResult:
        from raypipe.io.dataset import read_dataset

        config = SpendConfig(options.players, options.seed, options.shard_players)
        manifests = run_sharded(
            generate_spend_shard,
            config,
            config.shards,
            {name: context.output_url(name) for name in TABLES},
            {"players": SPEND_PLAYERS_SCHEMA, "spend_truth": SPEND_TRUTH_SCHEMA},
            context.executor,
            task_name="synth.spend_shard",
            metadata={
                "generator": "raypipe.synth.spend",
                "seed": config.seed,
                "players": config.players,
                "clustered_by": ["player_id"],
            },
            storage_options=context.storage_options,
        )
        storage = dict(context.storage_options) or None
        label = (
            read_dataset(
                context.output_url("players"), columns=["spend_next_30d"], storage_options=storage
            )
            .column(0)
            .to_numpy()
        )
        expected = (
            read_dataset(
                context.output_url("spend_truth"),
                columns=["expected_spend"],
                storage_options=storage,
            )
            .column(0)
            .to_numpy()
        )
        metrics = {
            "players": config.players,
            "shards": config.shards,
            "payer_share": float(np.mean(label > 0)),
            "mean_spend": float(np.mean(label)),
            "mean_expected_spend": float(np.mean(expected)),
        }
        return StageResult(outputs=manifests, metrics=metrics, rows_out=2 * config.players)
