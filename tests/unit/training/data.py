"""Small generated tables with known truth for training tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa


def churn_table(rows: int = 2000, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """A churn-like training table and its truth (``player_id``, ``churn_probability``).

    The label depends on two numeric features, a categorical ``platform`` and has missing values.
    """
    rng = np.random.default_rng(seed)
    sessions = rng.poisson(5, rows).astype(np.float64)
    spend = rng.gamma(1.0, 3.0, rows)
    noise = rng.normal(size=rows)
    platform = rng.choice(["ios", "android", "web"], rows, p=[0.4, 0.4, 0.2])
    effect = np.select([platform == "ios", platform == "android"], [-0.5, 0.2], 0.8)
    logit = 1.0 - 0.45 * sessions - 0.15 * spend + effect + 0.8 * np.sin(noise)
    probability = 1.0 / (1.0 + np.exp(-logit))
    churned = rng.random(rows) < probability
    spend_with_gaps = np.where(rng.random(rows) < 0.05, np.nan, spend)
    table = pa.table(
        {
            "player_id": pa.array(np.arange(rows, dtype=np.int64)),
            "cutoff": pa.array([dt.date(2026, 1, 1)] * rows, pa.date32()),
            "sessions_7d": pa.array(sessions),
            "spend_30d": pa.array(spend_with_gaps, from_pandas=True),
            "noise": pa.array(noise.astype(np.float32)),
            "platform": pa.array(platform.tolist()),
            "churned": pa.array(churned),
        }
    )
    truth = pa.table(
        {
            "player_id": pa.array(np.arange(rows, dtype=np.int64)),
            "churn_probability": pa.array(probability),
        }
    )
    return table, truth
