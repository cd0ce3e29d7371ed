"""The latent engagement process: a birth-death chain over engagement levels, one step a day.

A player's engagement is a level ``0 .. MAX_LEVEL`` (0: gone quiet). On each day the player plays
``Poisson(rate)`` sessions (:func:`session_rates`), then moves one level down with probability
``down``, one level up with probability ``up``, or stays.

Levels are persistent and their moves are driven by what the player experiences: on an ordinary
day ``down + up`` is a few percent, while a frustrating day (failed levels, a crash, nothing
completed) makes a drop likely and a good day (levels completed) a rise. ``down`` also rises with
youth (new accounts leave early) and falls with purchases. A quiet player (level 0) returns with a
rare session, which brings them back to level 1. An engaged player plays most days (a few quiet
days in a row are unlikely), the engaged levels also show in how social a player's sessions are
(:mod:`raypipe.synth.simulate`), and the moves happen on days the events record: this keeps the
level at the cutoff, which decides churn, inferable from the history.

Because the day's events enter only through the day's counts, a day with no session has fixed,
known transition probabilities: this is what makes the churn probability exact
(:func:`raypipe.synth.labels.churn_probability`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAX_LEVEL",
    "SESSION_RATES",
    "session_rates",
    "step_levels",
    "transition_probabilities",
]

#: Mean sessions a day at each engagement level (level 0: the rate of a quiet player's return).
SESSION_RATES = np.array([0.04, 1.7, 1.8, 1.9, 2.0, 2.2])
MAX_LEVEL = len(SESSION_RATES) - 1

#: Extra logit of ``down`` for a brand-new account, decaying with age (days).
YOUTH_EFFECT = 1.0
YOUTH_SCALE_DAYS = 5.0
#: Effects on the logit of ``down`` of the day's failed levels (up to 4), crashes (up to 2),
#: completed levels (up to 3, also raising ``up`` by half as much) and purchases.
FAIL_EFFECT = 2.0
CRASH_EFFECT = 5.0
COMPLETE_EFFECT = 1.5
PURCHASE_EFFECT = 0.6
#: ``down + up`` never exceeds this (reached only on days with many events).
MAX_MOVE = 0.9


def _sigmoid(x: np.ndarray) -> np.ndarray:
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return probability


def session_rates(level: np.ndarray, rate_multiplier: np.ndarray) -> np.ndarray:
    """Mean sessions a day of players at ``level`` (broadcasting).

    A player's ``rate_multiplier`` scales the rates of the engaged levels; the return rate of a
    quiet player (level 0) is the same for everyone.
    """
    level = np.asarray(level)
    rates: np.ndarray = SESSION_RATES[level] * np.where(level > 0, rate_multiplier, 1.0)
    return rates


def transition_probabilities(
    level: np.ndarray,
    down_logit: np.ndarray,
    up_logit: np.ndarray,
    age_days: np.ndarray,
    fails: np.ndarray | int = 0,
    crashes: np.ndarray | int = 0,
    completes: np.ndarray | int = 0,
    purchases: np.ndarray | int = 0,
    sessions: np.ndarray | int = 0,
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
    sessions
        The day's sessions per player: a quiet player (level 0) who plays comes back to level 1.

    Returns
    -------
    (down, up)
        Arrays of probabilities, ``down + up <= MAX_MOVE`` (but ``up`` is 1 for a quiet player
        who played that day).
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
    up = np.where(quiet, (np.asarray(sessions) > 0) * 1.0, np.where(level >= MAX_LEVEL, 0.0, up))
    return down, up


def step_levels(
    level: np.ndarray, down: np.ndarray, up: np.ndarray, draw: np.ndarray
) -> np.ndarray:
    """Next levels, given uniform draws: down if ``draw < down``, up if below ``down + up``."""
    moves = (draw < up + down).astype(np.int8) - 2 * (draw < down).astype(np.int8)
    # draw < down gives 1 - 2 = -1; down <= draw < down + up gives +1; else 0.
    levels: np.ndarray = (level + moves).astype(np.int8)
    return levels
