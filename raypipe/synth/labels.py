"""Churn labels and their exact probabilities.

``churned`` is *no session in the 14 days from the cutoff*. The simulation samples it by running
the engagement chain forward; :func:`churn_probability` computes the probability of the same
event from the state at the cutoff, exactly, by backward recursion over the chain. A day without
a session has known transition probabilities (no fails, crashes, completes or purchases), so

``v_14(s) = 1``,
``v_k(s) = exp(-rate(s)) * [down_k(s) v_{k+1}(s-1) + up_k(s) v_{k+1}(s+1) + stay_k(s) v_{k+1}(s)]``

and ``P(churned) = v_0(level at cutoff)``. The AUC of this probability against the labels is the
best any model can reach (the Bayes AUC).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raypipe.synth.config import CHURN_HORIZON_DAYS, TelemetryConfig
from raypipe.synth.engagement import MAX_LEVEL, session_rates, transition_probabilities
from raypipe.synth.players import Players

__all__ = [
    "CHURN_LABELS_SCHEMA",
    "CHURN_TRUTH_SCHEMA",
    "churn_labels_table",
    "churn_probability",
    "churn_truth_table",
]

CHURN_LABELS_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("cutoff", pa.timestamp("us")),
        pa.field("churned", pa.bool_()),
    ]
)
CHURN_TRUTH_SCHEMA = pa.schema(
    [
        pa.field("player_id", pa.int64(), nullable=False),
        pa.field("churn_probability", pa.float64()),
    ]
)


def churn_probability(
    config: TelemetryConfig, players: Players, level_at_cutoff: np.ndarray
) -> np.ndarray:
    """P(no session in the 14 days from the cutoff | each player's state at the cutoff)."""
    n = len(players)
    levels = np.arange(MAX_LEVEL + 1)
    # stay_quiet[i, s]: probability of no session on a day spent at level s.
    stay_quiet = np.exp(-session_rates(levels[None, :], players.rate_multiplier[:, None]))
    value = np.ones((n, MAX_LEVEL + 1))
    for offset in reversed(range(CHURN_HORIZON_DAYS)):
        age = (config.days + offset - players.install_day)[:, None]
        down, up = transition_probabilities(
            np.broadcast_to(levels, (n, MAX_LEVEL + 1)),
            players.down_logit[:, None],
            players.up_logit[:, None],
            np.broadcast_to(age, (n, MAX_LEVEL + 1)),
        )
        below = np.concatenate([value[:, :1], value[:, :-1]], axis=1)  # down is 0 at level 0
        above = np.concatenate([value[:, 1:], value[:, -1:]], axis=1)  # up is 0 at the top
        value = stay_quiet * (down * below + up * above + (1.0 - down - up) * value)
    at_cutoff: np.ndarray = value[np.arange(n), level_at_cutoff]
    return at_cutoff


def churn_labels_table(
    config: TelemetryConfig, players: Players, label_window_sessions: np.ndarray
) -> pa.Table:
    """The ``churn_labels`` table: one row per player."""
    cutoff = pa.array(
        np.full(len(players), np.datetime64(config.cutoff, "us")), type=pa.timestamp("us")
    )
    return pa.Table.from_arrays(
        [pa.array(players.player_id), cutoff, pa.array(label_window_sessions == 0)],
        schema=CHURN_LABELS_SCHEMA,
    )


def churn_truth_table(players: Players, probability: np.ndarray) -> pa.Table:
    """The ``churn_truth`` table: each player's exact churn probability."""
    return pa.Table.from_arrays(
        [pa.array(players.player_id), pa.array(probability)], schema=CHURN_TRUTH_SCHEMA
    )
