"""The latent engagement process: a birth-death chain over engagement levels, one step a day.

A player's engagement is a level ``0 .. MAX_LEVEL`` (0: gone quiet). On each day the player plays
``Poisson(rate_multiplier * SESSION_RATES[level])`` sessions, then moves one level down with
probability ``down``, one level up with probability ``up``, or stays. ``down`` rises with youth
(new accounts leave early), level failures and crashes that day, and falls with completed levels
and purchases; a quiet player (level 0) comes back with a small probability.

Because the day's events enter only through the day's counts, a day with no session has fixed,
known transition probabilities: this is what makes the churn probability exact
(:func:`raypipe.synth.labels.churn_probability`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COMEBACK_PROBABILITY",
    "MAX_LEVEL",
    "SESSION_RATES",
    "step_levels",
    "transition_probabilities",
]

#: Mean sessions a day at each engagement level.
SESSION_RATES = np.array([0.0, 0.2, 0.5, 1.0, 1.6, 2.5])
MAX_LEVEL = len(SESSION_RATES) - 1
#: Daily probability that a quiet player (level 0) comes back to level 1.
COMEBACK_PROBABILITY = 0.1

#: Extra logit of ``down`` for a brand-new account, decaying with age (days).
YOUTH_EFFECT = 1.0
YOUTH_SCALE_DAYS = 5.0
FAIL_EFFECT = 0.3
CRASH_EFFECT = 1.0
COMPLETE_EFFECT = 0.2
PURCHASE_EFFECT = 0.6
#: ``down + up`` never exceeds this.
MAX_MOVE = 0.95


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def transition_probabilities(
    level: np.ndarray,
    down_logit: np.ndarray,
    up_logit: np.ndarray,
    age_days: np.ndarray,
    fails: np.ndarray | int = 0,
    crashes: np.ndarray | int = 0,
    completes: np.ndarray | int = 0,
    purchases: np.ndarray | int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of moving one level down and one level up after a day.

    Parameters
    ----------
    level
        Current engagement level of each player.
    down_logit, up_logit
        The players' base logits (hidden traits).
    age_days
        Days since install.
    fails, crashes, completes, purchases
        The day's counts per player (0 on a day without session).

    Returns
    -------
    (down, up)
        Arrays of probabilities, ``down + up <= MAX_MOVE``.
    """
    down_x = (
        down_logit
        + YOUTH_EFFECT * np.exp(-np.asarray(age_days, dtype=np.float64) / YOUTH_SCALE_DAYS)
        + FAIL_EFFECT * np.minimum(fails, 4)
        + CRASH_EFFECT * np.minimum(crashes, 2)
        - COMPLETE_EFFECT * np.minimum(completes, 3)
        - PURCHASE_EFFECT * (np.asarray(purchases) > 0)
    )
    up_x = up_logit + 0.5 * COMPLETE_EFFECT * np.minimum(completes, 3)
    down = _sigmoid(down_x)
    up = _sigmoid(up_x)
    total = down + up
    scale = np.where(total > MAX_MOVE, MAX_MOVE / np.maximum(total, 1e-12), 1.0)
    down = down * scale
    up = up * scale
    quiet = level == 0
    down = np.where(quiet, 0.0, down)
    up = np.where(quiet, COMEBACK_PROBABILITY, np.where(level >= MAX_LEVEL, 0.0, up))
    return down, up


def step_levels(
    level: np.ndarray, down: np.ndarray, up: np.ndarray, draw: np.ndarray
) -> np.ndarray:
    """Next levels, given uniform draws: down if ``draw < down``, up if below ``down + up``."""
    moves = (draw < up + down).astype(np.int8) - 2 * (draw < down).astype(np.int8)
    # draw < down gives 1 - 2 = -1; down <= draw < down + up gives +1; else 0.
    return (level + moves).astype(np.int8)
