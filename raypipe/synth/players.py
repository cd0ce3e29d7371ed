"""Who the players are: observable attributes and the hidden traits that drive their behaviour.

Everything is drawn up front, vectorised, from the shard's ``attributes`` stream, so a player's
traits never depend on what happens later (drift included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raypipe.synth.config import TelemetryConfig

__all__ = [
    "CHANNELS",
    "COUNTRIES",
    "CURRENCIES",
    "PLATFORMS",
    "PLAYERS_SCHEMA",
    "SEGMENTS",
    "Players",
    "categorical",
    "draw_players",
    "platform_names",
    "players_table",
]

COUNTRIES = ("US", "BR", "DE", "GB", "FR", "JP", "KR", "IN", "MX", "ID")
COUNTRY_WEIGHTS = (0.28, 0.12, 0.09, 0.08, 0.07, 0.08, 0.05, 0.11, 0.06, 0.06)
#: Billing currency of each country above.
CURRENCIES = ("USD", "BRL", "EUR", "GBP", "EUR", "JPY", "KRW", "INR", "MXN", "IDR")
PLATFORMS = ("ios", "android", "pc")
PLATFORM_WEIGHTS = (0.35, 0.5, 0.15)
CHANNELS = ("organic", "paid_social", "paid_search", "referral", "ad_network")
CHANNEL_WEIGHTS = (0.4, 0.25, 0.15, 0.1, 0.1)
SEGMENTS = ("non_spender", "minnow", "dolphin", "whale")
SEGMENT_WEIGHTS = (0.8, 0.14, 0.05, 0.01)

#: Share of fraud accounts per acquisition channel (paid installs bring more bots).
FRAUDSTER_RATE_BY_CHANNEL = np.array([0.002, 0.008, 0.005, 0.002, 0.015])
#: Share of players installing on/after a drift's start day who use the new platform.
NEW_PLATFORM_SHARE = 0.4

# Hidden traits: logit of the daily probability of losing one engagement level, and of gaining one.
DOWN_BASE = -4.0
DOWN_SKILL = -0.35
DOWN_CHANNEL = np.array([0.0, 0.3, 0.2, -0.3, 0.5])
DOWN_SEGMENT = np.array([0.2, -0.2, -0.5, -0.8])
DOWN_NOISE = 0.6
DOWN_FRAUDSTER = 1.5
UP_BASE = -3.0
UP_SKILL = 0.2
UP_NOISE = 0.4
#: Spread (log scale) of how often a player plays at a given engagement level.
RATE_NOISE = 0.25
#: Engagement level at install: probabilities of levels 0..5.
INITIAL_LEVEL_WEIGHTS = (0.0, 0.3, 0.3, 0.2, 0.15, 0.05)

PLAYERS_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("country", pa.string()),
        pa.field("platform", pa.string()),
        pa.field("install_date", pa.date32()),
        pa.field("acquisition_channel", pa.string()),
        pa.field("spender_segment", pa.string()),
        pa.field("skill", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Players:
    """Attributes of a shard's players, as parallel arrays (codes index the tuples above).

    ``platform`` is ``len(PLATFORMS)`` for the drift's new platform.
    """

    player_id: np.ndarray
    country: np.ndarray
    platform: np.ndarray
    install_day: np.ndarray
    channel: np.ndarray
    segment: np.ndarray
    skill: np.ndarray
    fraudster: np.ndarray
    down_logit: np.ndarray
    up_logit: np.ndarray
    rate_multiplier: np.ndarray
    initial_level: np.ndarray

    def __len__(self) -> int:
        return len(self.player_id)


def _choice(rng: np.random.Generator, weights: tuple[float, ...], size: int) -> np.ndarray:
    cumulative = np.cumsum(weights)
    codes = np.searchsorted(cumulative / cumulative[-1], rng.random(size), side="right")
    return codes.astype(np.int8)


def draw_players(config: TelemetryConfig, shard_index: int, rng: np.random.Generator) -> Players:
    """Draw the players of one shard (ids are global: shard offset + index)."""
    start, stop = config.shard_bounds(shard_index)
    n = stop - start
    country = _choice(rng, COUNTRY_WEIGHTS, n)
    platform = _choice(rng, PLATFORM_WEIGHTS, n)
    channel = _choice(rng, CHANNEL_WEIGHTS, n)
    segment = _choice(rng, SEGMENT_WEIGHTS, n)
    skill = rng.standard_normal(n)
    install_day = rng.integers(0, config.days, n).astype(np.int32)
    fraudster = rng.random(n) < FRAUDSTER_RATE_BY_CHANNEL[channel]
    down_logit = (
        DOWN_BASE
        + DOWN_SKILL * skill
        + DOWN_CHANNEL[channel]
        + DOWN_SEGMENT[segment]
        + DOWN_NOISE * rng.standard_normal(n)
        + DOWN_FRAUDSTER * fraudster
    )
    up_logit = UP_BASE + UP_SKILL * skill + UP_NOISE * rng.standard_normal(n)
    rate_multiplier = np.exp(RATE_NOISE * rng.standard_normal(n))
    initial_level = _choice(rng, INITIAL_LEVEL_WEIGHTS, n)
    # Always drawn, used only under drift, so drift never shifts the other draws.
    new_platform_draw = rng.random(n)
    drift = config.drift
    if drift.new_platform is not None:
        adopts = (install_day >= drift.start_day) & (new_platform_draw < NEW_PLATFORM_SHARE)
        platform = np.where(adopts, len(PLATFORMS), platform).astype(np.int8)
    return Players(
        player_id=np.arange(start, stop, dtype=np.int64),
        country=country,
        platform=platform,
        install_day=install_day,
        channel=channel,
        segment=segment,
        skill=skill,
        fraudster=fraudster,
        down_logit=down_logit,
        up_logit=up_logit,
        rate_multiplier=rate_multiplier,
        initial_level=initial_level,
    )


def platform_names(config: TelemetryConfig) -> tuple[str, ...]:
    """Platform names by code, the drift's new platform last."""
    new = config.drift.new_platform
    return (*PLATFORMS, new) if new is not None else PLATFORMS


def categorical(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """A string array from integer codes (negative codes are nulls)."""
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names)).cast(pa.string())


def players_table(config: TelemetryConfig, players: Players) -> pa.Table:
    """The ``players`` output table."""
    install_date = np.datetime64(config.start_date, "D") + players.install_day.astype(
        "timedelta64[D]"
    )
    return pa.Table.from_arrays(
        [
            pa.array(players.player_id),
            categorical(players.country, COUNTRIES),
            categorical(players.platform, platform_names(config)),
            pa.array(install_date, type=pa.date32()),
            categorical(players.channel, CHANNELS),
            categorical(players.segment, SEGMENTS),
            pa.array(players.skill),
        ],
        schema=PLAYERS_SCHEMA,
    )
