"""Difficulty policies: fixed settings, a target-fail-rate controller, and the oracle.

Each is a :data:`raypipe.synth.difficulty.Policy`: called once per day with what the game
observed (each player's recent fail rate, an exponentially weighted mean of outcomes) and
returns a setting index per player. Only the oracle reads the hidden truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypipe.synth.difficulty import (
    OPTIMAL_FAIL_RATE,
    SETTINGS,
    Policy,
    World,
    fail_probability,
)

__all__ = ["FailRateController", "FixedSetting", "Oracle", "make_policy"]


@dataclass(frozen=True)
class FixedSetting:
    """The same setting for everyone, every day."""

    setting: int

    def __call__(
        self, day: int, observed: np.ndarray, current: np.ndarray, world: World, level: np.ndarray
    ) -> np.ndarray:
        return np.full(len(current), self.setting)


@dataclass(frozen=True)
class FailRateController:
    """Step a player's setting toward a target fail rate: one step easier when the observed
    fail rate is above ``target + band``, one harder when below ``target - band``."""

    target: float = 0.3
    band: float = 0.1

    def __call__(
        self, day: int, observed: np.ndarray, current: np.ndarray, world: World, level: np.ndarray
    ) -> np.ndarray:
        step = np.where(observed > self.target + self.band, -1, 0)
        step = np.where(observed < self.target - self.band, 1, step)
        settings: np.ndarray = np.clip(current + step, 0, len(SETTINGS) - 1)
        return settings


@dataclass(frozen=True)
class Oracle:
    """Knows each player's skill and level: the setting whose true fail probability is nearest
    the world's optimal fail rate. The best any policy can do with these settings (near)."""

    fail_rate: float = OPTIMAL_FAIL_RATE

    def __call__(
        self, day: int, observed: np.ndarray, current: np.ndarray, world: World, level: np.ndarray
    ) -> np.ndarray:
        distance = np.stack(
            [
                np.abs(fail_probability(world, level, np.full(len(level), s)) - self.fail_rate)
                for s in range(len(SETTINGS))
            ]
        )
        nearest: np.ndarray = np.argmin(distance, axis=0)
        return nearest


def make_policy(name: str, target_fail_rate: float) -> Policy:
    """``fixed_<setting>``, ``controller`` or ``oracle``."""
    from raypipe.synth.difficulty import SETTING_NAMES

    if name == "controller":
        return FailRateController(target=target_fail_rate)
    if name == "oracle":
        return Oracle()
    if name.startswith("fixed_") and name[6:] in SETTING_NAMES:
        return FixedSetting(SETTING_NAMES.index(name[6:]))
    raise ValueError(name)
