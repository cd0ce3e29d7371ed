"""The event log: turning a day's simulated sessions into rows, and the rows into a table.

Every session becomes ``session_start``, then ``level_start`` + ``level_complete``/``level_fail``
per level attempt, its ``ad_view``, ``social`` and ``purchase`` rows, and a final ``crash`` if it
crashed. Rows are placed by arithmetic on per-session counts (no sort, no loop). Purchases carry an
amount in USD, the billing currency and the card's country; fraud purchases come in bursts from
new fraud accounts, often with a foreign card, and are often charged back (``refund`` rows, days
later, carrying the purchase's session id, amount and ``is_fraud`` flag).

Purchase-level truth: every purchase has a true fraud probability (:func:`fraud_probability`),
set by what the generator knows and a model never sees (is this a fraud ring's burst, is the
account a fraud account) and by what it can see (a foreign card, a high price tier); its
``is_fraud`` label is drawn from that probability, from a stream of its own, so the other
draws are unchanged. ``fraud_truth`` holds each purchase with its label and probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raypipe.synth.config import TelemetryConfig
from raypipe.synth.players import COUNTRIES, CURRENCIES, Players, categorical, platform_names

__all__ = [
    "EVENTS_SCHEMA",
    "EVENT_TYPES",
    "FRAUD_TRUTH_SCHEMA",
    "DayRows",
    "SessionDraws",
    "build_day_rows",
    "events_table",
    "fraud_probability",
    "fraud_truth_table",
]

EVENT_TYPES = (
    "session_start",
    "level_start",
    "level_complete",
    "level_fail",
    "purchase",
    "ad_view",
    "social",
    "crash",
    "refund",
)
(
    SESSION_START,
    LEVEL_START,
    LEVEL_COMPLETE,
    LEVEL_FAIL,
    PURCHASE,
    AD_VIEW,
    SOCIAL,
    CRASH,
    REFUND,
) = range(len(EVENT_TYPES))

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
PRICE_TIERS_USD = np.array([0.99, 1.99, 4.99, 9.99, 19.99, 49.99, 99.99])
#: Tier probabilities of a legitimate purchase, by spender segment.
TIER_WEIGHTS_BY_SEGMENT = np.array(
    [
        [0.5, 0.3, 0.15, 0.05, 0.0, 0.0, 0.0],
        [0.45, 0.3, 0.15, 0.07, 0.03, 0.0, 0.0],
        [0.15, 0.2, 0.3, 0.2, 0.1, 0.05, 0.0],
        [0.0, 0.05, 0.15, 0.25, 0.25, 0.2, 0.1],
    ]
)
FRAUD_TIER_WEIGHTS = np.array([0.0, 0.0, 0.05, 0.15, 0.3, 0.3, 0.2])
LEGIT_FOREIGN_CARD = 0.03
FRAUD_FOREIGN_CARD = 0.7
LEGIT_REFUND = 0.015
FRAUD_REFUND = 0.5
#: Seed word of the label stream (``default_rng([seed, day, first session, FRAUD_LABELS])``).
FRAUD_LABELS = 0xF4A0D

FRAUD_TRUTH_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us")),
        pa.field("session_id", pa.int64()),
        pa.field("amount", pa.float64()),
        pa.field("is_fraud", pa.bool_()),
        pa.field("fraud_probability", pa.float64()),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64()),
        pa.field("ts", pa.timestamp("us")),
        pa.field("event_date", pa.date32()),
        pa.field("event_type", pa.string()),
        pa.field("session_id", pa.int64()),
        pa.field("platform", pa.string()),
        pa.field("level", pa.int32()),
        pa.field("amount", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("country", pa.string()),
        pa.field("is_fraud", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class SessionDraws:
    """One day's sessions (one entry per session) and level attempts (one per attempt)."""

    day: int
    player: np.ndarray
    rank: np.ndarray
    sessions_of_player: np.ndarray
    session_id: np.ndarray
    attempts: np.ndarray
    attempt_failed: np.ndarray
    attempt_level: np.ndarray
    ads: np.ndarray
    social: np.ndarray
    bought: np.ndarray
    burst_size: np.ndarray
    crashed: np.ndarray
    price_multiplier: float


@dataclass(frozen=True)
class DayRows:
    """A day's event rows as parallel arrays; -1 (or NaN for ``amount``) marks a null."""

    player: np.ndarray
    ts_us: np.ndarray
    event_type: np.ndarray
    session_id: np.ndarray
    level: np.ndarray
    amount: np.ndarray
    pay_country: np.ndarray
    is_fraud: np.ndarray
    fraud_probability: np.ndarray

    def __len__(self) -> int:
        return len(self.player)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    owners = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owners, np.arange(len(owners)) - np.repeat(starts, counts)


def _pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One index per row of ``weights`` (rows are probability vectors)."""
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random(len(weights))[:, None] * cumulative[:, -1:]
    picked: np.ndarray = np.minimum((draws >= cumulative).sum(axis=1), weights.shape[1] - 1)
    return picked


def fraud_probability(
    burst: np.ndarray, fraud_account: np.ndarray, foreign: np.ndarray, tier: np.ndarray
) -> np.ndarray:
    """The true probability that each purchase is fraud.

    A fraud ring's burst purchase is fraud with probability 0.77 (domestic card, low tier) to
    0.97 (foreign card, top tiers): some bursts are the account owner's own buying. A fraud
    account's ordinary purchase is fraud with probability 0.05 (0.30 on a foreign card).
    Purchases of other accounts are never fraud (account takeover is not simulated).
    """
    high = (tier >= 5).astype(np.float64)
    foreign = foreign.astype(np.float64)
    in_burst = 1.0 / (1.0 + np.exp(-(1.2 + 1.3 * foreign + 0.8 * high)))
    ordinary = np.where(foreign > 0, 0.30, 0.05)
    return np.where(burst, in_burst, np.where(fraud_account, ordinary, 0.0))


def build_day_rows(
    config: TelemetryConfig,
    players: Players,
    draws: SessionDraws,
    rng: np.random.Generator,
) -> DayRows:
    """The rows of one day's sessions, plus the refunds of the day's purchases."""
    purchases = draws.bought.astype(np.int64) + draws.burst_size
    crashed = draws.crashed.astype(np.int64)
    counts = 1 + 2 * draws.attempts + draws.ads + draws.social + purchases + crashed
    offsets = np.cumsum(counts) - counts
    total = int(counts.sum())
    row_session = np.repeat(np.arange(len(counts)), counts)
    event_type = np.full(total, SESSION_START, dtype=np.int8)
    level = np.full(total, -1, dtype=np.int32)
    amount = np.full(total, np.nan)
    pay_country = np.full(total, -1, dtype=np.int8)
    is_fraud = np.full(total, -1, dtype=np.int8)
    probability = np.full(total, np.nan)

    attempt_session, attempt_rank = _expand(draws.attempts)
    start_at = offsets[attempt_session] + 1 + 2 * attempt_rank
    event_type[start_at] = LEVEL_START
    event_type[start_at + 1] = np.where(draws.attempt_failed, LEVEL_FAIL, LEVEL_COMPLETE)
    level[start_at] = draws.attempt_level
    level[start_at + 1] = draws.attempt_level
    cursor = offsets + 1 + 2 * draws.attempts
    for kind, kind_counts in ((AD_VIEW, draws.ads), (SOCIAL, draws.social)):
        session, rank = _expand(kind_counts)
        event_type[cursor[session] + rank] = kind
        cursor = cursor + kind_counts
    session, rank = _expand(purchases)
    at = cursor[session] + rank
    event_type[at] = PURCHASE
    burst = rank >= draws.bought[session]  # the fraud ring's extra purchases
    player = draws.player[session]
    tiers = np.where(
        burst,
        _pick(rng, np.broadcast_to(FRAUD_TIER_WEIGHTS, (len(at), 7))),
        _pick(rng, TIER_WEIGHTS_BY_SEGMENT[players.segment[player]]),
    )
    amount[at] = np.round(PRICE_TIERS_USD[tiers] * draws.price_multiplier, 2)
    foreign = rng.random(len(at)) < np.where(burst, FRAUD_FOREIGN_CARD, LEGIT_FOREIGN_CARD)
    other = (players.country[player] + rng.integers(1, len(COUNTRIES), len(at))) % len(COUNTRIES)
    pay_country[at] = np.where(foreign, other, players.country[player])
    probability[at] = fraud_probability(burst, players.fraudster[player], foreign, tiers)
    first = int(draws.session_id[0]) if len(draws.session_id) else 0
    labels = np.random.default_rng([config.seed, draws.day, first, FRAUD_LABELS])
    fraud = labels.random(len(at)) < probability[at]
    is_fraud[at] = fraud
    cursor = cursor + purchases
    event_type[cursor[draws.crashed]] = CRASH  # the last row of a crashed session

    # Sessions spread over the day in the player's order; rows 10-60 s apart within a session.
    day_start = _day_start_us(config, draws.day)
    slot = (draws.rank + 0.9 * rng.random(len(counts))) / np.maximum(draws.sessions_of_player, 1)
    session_start = (
        day_start + 3_600 * US_PER_SECOND + (slot * 79_200 * US_PER_SECOND).astype(np.int64)
    )
    gap = rng.integers(10 * US_PER_SECOND, 60 * US_PER_SECOND, len(counts))
    rank_in_session = np.arange(total) - offsets[row_session]
    ts_us = session_start[row_session] + rank_in_session * gap[row_session]

    refunded = rng.random(len(at)) < np.where(fraud, FRAUD_REFUND, LEGIT_REFUND)
    max_delay_s = np.where(fraud, 20 * 86_400, 3 * 86_400)[refunded]
    delay = (rng.random(len(max_delay_s)) * (max_delay_s - 3_600) + 3_600) * US_PER_SECOND
    source = at[refunded]
    return DayRows(
        player=np.concatenate([draws.player[row_session], draws.player[row_session[source]]]),
        ts_us=np.concatenate([ts_us, ts_us[source] + delay.astype(np.int64)]),
        event_type=np.concatenate([event_type, np.full(len(source), REFUND, dtype=np.int8)]),
        session_id=np.concatenate(
            [draws.session_id[row_session], draws.session_id[row_session[source]]]
        ),
        level=np.concatenate([level, level[source]]),
        amount=np.concatenate([amount, amount[source]]),
        pay_country=np.concatenate([pay_country, pay_country[source]]),
        is_fraud=np.concatenate([is_fraud, is_fraud[source]]),
        fraud_probability=np.concatenate([probability, probability[source]]),
    )


def _day_start_us(config: TelemetryConfig, day: int) -> int:
    epoch = np.datetime64(config.start_date, "us").astype(np.int64)
    return int(epoch) + day * US_PER_DAY


def events_table(
    config: TelemetryConfig,
    players: Players,
    rows: list[DayRows],
    nulls: np.random.Generator,
) -> pa.Table:
    """The ``events`` table: rows before the kept horizon, drift's nulls applied.

    Rows are grouped by the day of their session (refunds with their purchase's day).
    """
    ts_us = np.concatenate([r.ts_us for r in rows])
    end_us = _day_start_us(config, config.days + config.include_future_days)
    keep = ts_us < end_us

    def column(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in rows])[keep]

    ts_us = ts_us[keep]
    player = column("player")
    day = (ts_us - _day_start_us(config, 0)) // US_PER_DAY
    drift = config.drift
    null_masks: dict[str, np.ndarray] = {}
    affected = day >= drift.start_day
    for name in sorted(drift.null_rate):
        rate = drift.null_rate[name]
        draw = nulls.random(len(ts_us))
        if rate > 0:
            null_masks[name] = affected & (draw < rate)

    def mask(name: str, base: np.ndarray | None = None) -> np.ndarray | None:
        combined = null_masks.get(name)
        if base is not None:
            combined = base if combined is None else (combined | base)
        return combined if combined is not None and combined.any() else None

    pay_country = column("pay_country").astype(np.int16)
    is_fraud = column("is_fraud")
    amount = column("amount")
    level = column("level")
    event_type = column("event_type").astype(np.int16)
    platform = players.platform[player].astype(np.int16)
    currency_codes = np.where(pay_country >= 0, pay_country, -1)
    date = ts_us // US_PER_DAY

    def nulled_codes(name: str, codes: np.ndarray) -> np.ndarray:
        nulled = null_masks.get(name)
        return codes if nulled is None else np.where(nulled, -1, codes)

    arrays = [
        pa.array(players.player_id[player]),
        pa.array(ts_us, type=pa.int64(), mask=mask("ts")).cast(pa.timestamp("us")),
        pa.array(date.astype(np.int32), mask=mask("event_date")).cast(pa.date32()),
        categorical(nulled_codes("event_type", event_type), EVENT_TYPES),
        pa.array(column("session_id"), mask=mask("session_id")),
        categorical(nulled_codes("platform", platform), platform_names(config)),
        pa.array(level, mask=mask("level", level < 0)),
        pa.array(amount, mask=mask("amount", np.isnan(amount))),
        categorical(nulled_codes("currency", currency_codes), CURRENCIES),
        categorical(nulled_codes("country", pay_country), COUNTRIES),
        pa.array(is_fraud > 0, mask=mask("is_fraud", is_fraud < 0)),
    ]
    return pa.Table.from_arrays(arrays, schema=EVENTS_SCHEMA)


def fraud_truth_table(config: TelemetryConfig, players: Players, rows: list[DayRows]) -> pa.Table:
    """The ``fraud_truth`` table: every purchase in the kept horizon, its label and probability.

    Keyed like the purchase's ``events`` row (``player_id``, ``ts``, ``session_id``); drift's
    nulls do not apply (this is the truth, not the log).
    """
    event_type = np.concatenate([r.event_type for r in rows]) if rows else np.empty(0, np.int8)
    ts_us = np.concatenate([r.ts_us for r in rows]) if rows else np.empty(0, np.int64)
    end_us = _day_start_us(config, config.days + config.include_future_days)
    keep = (event_type == PURCHASE) & (ts_us < end_us)

    def column(name: str) -> np.ndarray:
        kept: np.ndarray = np.concatenate([getattr(r, name) for r in rows])[keep]
        return kept

    return pa.Table.from_arrays(
        [
            pa.array(players.player_id[column("player")]),
            pa.array(ts_us[keep], type=pa.int64()).cast(pa.timestamp("us")),
            pa.array(column("session_id")),
            pa.array(column("amount")),
            pa.array(column("is_fraud") > 0),
            pa.array(column("fraud_probability")),
        ],
        schema=FRAUD_TRUTH_SCHEMA,
    )
