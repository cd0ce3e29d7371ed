"""Day-by-day simulation of a shard: sessions, what happens in them, and the engagement steps.

One loop iteration is one day for every player of the shard at once (vectorised over players,
sessions and level attempts); there is no loop over players or events. Each day's draws come from
the shard's streams in a fixed order, so the days before a drift's start day are identical with
and without the drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypipe.synth.config import CHURN_HORIZON_DAYS, TelemetryConfig
from raypipe.synth.engagement import session_rates, step_levels, transition_probabilities
from raypipe.synth.events import DayRows, SessionDraws, build_day_rows
from raypipe.synth.players import PLATFORMS, Players

__all__ = ["Simulation", "expand", "simulate_players"]

ATTEMPTS_MEAN = 1.5
FAIL_BASE = -1.2
FAIL_PER_LEVEL = 0.04
FAIL_SKILL = -0.8
AD_RATE_BY_SEGMENT = np.array([1.2, 0.6, 0.3, 0.1])
SOCIAL_RATE = 0.3
SOCIAL_SKILL = 0.1
#: Social events scale with engagement: the more engaged a player, the more they interact.
SOCIAL_BY_LEVEL = np.array([0.3, 0.3, 1.0, 2.0, 3.0, 4.0])
BUY_PROBABILITY_BY_SEGMENT = np.array([0.0, 0.04, 0.1, 0.25])
#: Purchase probability scales with ``price_multiplier ** -PRICE_ELASTICITY``.
PRICE_ELASTICITY = 0.7
CRASH_RATE_BY_PLATFORM = np.array([0.01, 0.02, 0.015, 0.06])  # last: a drift's new platform
#: Fraud accounts buy in bursts during their first days.
FRAUD_WINDOW_DAYS = 4
FRAUD_BURST_PROBABILITY = 0.6
FRAUD_BURST_EXTRA_MEAN = 2.0


@dataclass(frozen=True)
class Simulation:
    """What the simulation of a shard yields.

    Attributes
    ----------
    level_at_cutoff
        Each player's engagement level at the cutoff (start of day ``days``).
    label_window_sessions
        Each player's sessions in the 14 days from the cutoff.
    rows
        The event rows of every simulated day, in day order.
    """

    level_at_cutoff: np.ndarray
    label_window_sessions: np.ndarray
    rows: list[DayRows]


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts per owner: the owner of each item and the item's rank within its owner."""
    owners = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    ranks = np.arange(len(owners)) - np.repeat(starts, counts)
    return owners, ranks


def _segment_exclusive_cumsum(values: np.ndarray, owners: np.ndarray, n: int) -> np.ndarray:
    """Running sum of ``values`` before each item, restarting at each owner (items grouped)."""
    running = np.cumsum(values) - values
    counts = np.bincount(owners, minlength=n)
    first = np.cumsum(counts) - counts
    before: np.ndarray = running - np.repeat(running[first[counts > 0]], counts[counts > 0])
    return before


def simulate_players(
    config: TelemetryConfig,
    players: Players,
    dynamics: np.random.Generator,
    detail: np.random.Generator,
) -> Simulation:
    """Simulate every day of history and the label window (and kept future days)."""
    n = len(players)
    drift = config.drift
    level = np.zeros(n, dtype=np.int8)
    game_level = np.ones(n, dtype=np.int32)
    session_count = np.zeros(n, dtype=np.int64)
    label_window_sessions = np.zeros(n, dtype=np.int64)
    level_at_cutoff = level
    crash_rate = CRASH_RATE_BY_PLATFORM[np.minimum(players.platform, len(PLATFORMS))]
    rows: list[DayRows] = []
    kept_days = config.days + config.include_future_days
    for day in range(config.simulated_days):
        if day == config.days:
            level_at_cutoff = level.copy()
        level = np.where(players.install_day == day, players.initial_level, level)
        installed = players.install_day <= day
        rates = session_rates(level, players.rate_multiplier) * installed
        sessions = dynamics.poisson(rates)
        owner, rank = expand(sessions)
        total = len(owner)
        attempts = 1 + dynamics.poisson(ATTEMPTS_MEAN, total)
        attempt_session, _ = expand(attempts)
        attempt_player = owner[attempt_session]
        fail_x = FAIL_BASE + FAIL_PER_LEVEL * game_level + FAIL_SKILL * players.skill
        fail_probability = 1.0 / (1.0 + np.exp(-fail_x))
        failed = dynamics.random(len(attempt_player)) < fail_probability[attempt_player]
        completed = ~failed
        attempt_level = game_level[attempt_player] + _segment_exclusive_cumsum(
            completed.astype(np.int32), attempt_player, n
        )
        ads = dynamics.poisson(AD_RATE_BY_SEGMENT[players.segment][owner])
        social_by_level = SOCIAL_BY_LEVEL
        if day >= drift.start_day and drift.social_by_level is not None:
            social_by_level = np.asarray(drift.social_by_level)
        social = dynamics.poisson(
            np.maximum(SOCIAL_RATE + SOCIAL_SKILL * players.skill, 0.0)[owner]
            * social_by_level[level[owner]]
        )
        crashed = dynamics.random(total) < crash_rate[owner]
        buy_probability = BUY_PROBABILITY_BY_SEGMENT[players.segment][owner]
        price = 1.0
        if day >= drift.start_day and drift.price_multiplier != 1.0:
            price = drift.price_multiplier
            buy_probability = np.minimum(buy_probability * price**-PRICE_ELASTICITY, 1.0)
        bought = dynamics.random(total) < buy_probability
        age = day - players.install_day
        in_fraud_window = players.fraudster & (age >= 0) & (age < FRAUD_WINDOW_DAYS)
        # Only the few sessions of new fraud accounts draw burst sizes.
        eligible = np.flatnonzero(in_fraud_window[owner])
        burst = eligible[dynamics.random(len(eligible)) < FRAUD_BURST_PROBABILITY]
        burst_size = np.zeros(total, dtype=np.int64)
        burst_size[burst] = 2 + dynamics.poisson(FRAUD_BURST_EXTRA_MEAN, len(burst))

        fails = np.bincount(attempt_player, weights=failed, minlength=n)
        completes = np.bincount(attempt_player, weights=completed, minlength=n)
        crashes = np.bincount(owner, weights=crashed, minlength=n)
        purchases = np.bincount(owner, weights=bought.astype(np.int64) + burst_size, minlength=n)
        down, up = transition_probabilities(
            level,
            players.down_logit,
            players.up_logit,
            age,
            fails,
            crashes,
            completes,
            purchases,
            sessions,
        )
        step = step_levels(level, down, up, dynamics.random(n))
        level = np.where(installed, step, level)
        game_level = game_level + completes.astype(np.int32)

        if day < kept_days:  # later days only decide labels: no rows to build
            draws = SessionDraws(
                day=day,
                player=owner,
                rank=rank,
                sessions_of_player=sessions[owner],
                session_id=players.player_id[owner] * 100_000 + session_count[owner] + rank,
                attempts=attempts,
                attempt_failed=failed,
                attempt_level=attempt_level,
                ads=ads,
                social=social,
                bought=bought,
                burst_size=burst_size,
                crashed=crashed,
                price_multiplier=price,
            )
            rows.append(build_day_rows(config, players, draws, detail))
        session_count += sessions
        if config.days <= day < config.days + CHURN_HORIZON_DAYS:
            label_window_sessions += sessions
    return Simulation(
        level_at_cutoff=level_at_cutoff,
        label_window_sessions=label_window_sessions,
        rows=rows,
    )
