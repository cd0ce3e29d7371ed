"""Dynamic difficulty as a simulator with known truth: skill, level difficulty, true fail
probability and the true effect of frustration on churn.

Each player has a ``skill``; each level a ``difficulty`` (a rising slope with spikes). A policy
picks one of :data:`SETTINGS` (an offset to the level's difficulty) per player and day; an
attempt fails with the true probability ``sigmoid(1.5 (difficulty + offset - skill))``.
Frustration ``F`` decays by :data:`FRUSTRATION_DECAY` per attempt and rises by one per fail;
boredom is the day's mean of ``max(0, 0.2 - p_fail) / 0.2`` over attempts (too easy). The true
daily churn probability is ``sigmoid(-5.5 + 0.8 F + 3.0 boredom)`` (so too hard and too easy
both lose players), and a frustrated player sometimes buys a booster:
``P(buy) = 0.01 + 0.04 tanh(F)`` per day at :data:`BOOSTER_PRICE`.
The simulator runs every policy on the same players with the same random draws (common random
numbers), so policy differences are not sampling noise between different players.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SETTINGS",
    "DifficultyConfig",
    "Policy",
    "SimulationResult",
    "World",
    "fail_probability",
    "simulate",
    "world",
]

#: Difficulty settings: offsets to a level's difficulty, very easy .. very hard.
SETTINGS = np.array([-1.5, -0.75, 0.0, 0.75, 1.5])
SETTING_NAMES = ("very_easy", "easy", "normal", "hard", "very_hard")
FRUSTRATION_DECAY = 0.8
FRUSTRATION_CHURN = 0.8  # the true effect of frustration on the daily churn logit
BOREDOM_CHURN = 3.0
BASE_CHURN = -5.5
BOOSTER_PRICE = 2.99
ATTEMPTS_PER_DAY = 6
#: An attempt bores in proportion to how far its fail probability is below this.
BOREDOM_BELOW = 0.2
#: The fail rate at which frustration and boredom balance in this world (see tests).
OPTIMAL_FAIL_RATE = 0.2

#: ``policy(day, observed_fail_rate, setting, world, level) -> setting index per player``.
Policy = Callable[[int, np.ndarray, np.ndarray, "World", np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DifficultyConfig:
    """What a simulation depends on."""

    players: int
    days: int = 30
    levels: int = 80
    seed: int = 0


@dataclass(frozen=True)
class World:
    """The hidden truth: players' skills and levels' difficulties."""

    skill: np.ndarray
    difficulty: np.ndarray


def world(config: DifficultyConfig, shard_index: int = 0) -> World:
    """Players (one shard) and levels (shared) of ``config``."""
    levels = np.random.default_rng([config.seed, 0])
    slope = np.linspace(-0.5, 1.5, config.levels)
    spikes = np.where(levels.random(config.levels) < 0.15, 1.0, 0.0)
    players = np.random.default_rng([config.seed, 1, shard_index])
    return World(players.normal(0.0, 1.0, config.players), slope + spikes)


def fail_probability(world: World, level: np.ndarray, setting: np.ndarray) -> np.ndarray:
    """The true probability that each player's next attempt fails."""
    logit = 1.5 * (world.difficulty[level] + SETTINGS[setting] - world.skill)
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-logit))
    return probability


@dataclass(frozen=True)
class SimulationResult:
    """Per player: still playing at the end, active days, spend, attempts and fails."""

    retained: np.ndarray
    active_days: np.ndarray
    spend: np.ndarray
    attempts: np.ndarray
    fails: np.ndarray


def simulate(
    config: DifficultyConfig, policy: Policy, shard_index: int = 0, *, draws_seed: int = 0
) -> SimulationResult:
    """Play ``config.days`` days under ``policy``; the same ``draws_seed``, the same dice."""
    truth = world(config, shard_index)
    n = config.players
    dice = np.random.default_rng([config.seed, 2, shard_index, draws_seed])
    level = np.zeros(n, dtype=np.int64)
    setting = np.full(n, 2)
    frustration = np.zeros(n)
    observed = np.full(n, 0.3)  # EWMA of the player's fail outcomes, as the game sees them
    active = np.ones(n, dtype=bool)
    active_days = np.zeros(n, dtype=np.int64)
    spend = np.zeros(n)
    attempts = np.zeros(n, dtype=np.int64)
    fails = np.zeros(n, dtype=np.int64)
    for day in range(config.days):
        setting = np.where(active, policy(day, observed, setting, truth, level), setting)
        easy = np.zeros(n)
        for _ in range(ATTEMPTS_PER_DAY):
            p_fail = fail_probability(truth, level, setting)
            failed = dice.random(n) < p_fail
            easy += active * np.clip((BOREDOM_BELOW - p_fail) / BOREDOM_BELOW, 0.0, 1.0)
            frustration = np.where(active, FRUSTRATION_DECAY * frustration + failed, frustration)
            observed = np.where(active, 0.8 * observed + 0.2 * failed, observed)
            attempts += active
            fails += active & failed
            level = np.where(active & ~failed, np.minimum(level + 1, config.levels - 1), level)
        buys = dice.random(n) < 0.01 + 0.04 * np.tanh(frustration)
        spend += np.where(active & buys, BOOSTER_PRICE, 0.0)
        active_days += active
        boredom = easy / ATTEMPTS_PER_DAY
        churn = 1.0 / (
            1.0 + np.exp(-(BASE_CHURN + FRUSTRATION_CHURN * frustration + BOREDOM_CHURN * boredom))
        )
        active &= dice.random(n) >= churn
    return SimulationResult(active, active_days, spend, attempts, fails)
