"""Regression figures for skewed targets such as spend: RMSE, normalised Gini, calibration."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["decile_calibration", "normalized_gini", "rmse"]


def rmse(y: np.ndarray, prediction: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(prediction)) ** 2)))


def _gini(y: np.ndarray, prediction: np.ndarray) -> float:
    # Sort by prediction, highest first (ties by position, stable): how fast the actual total
    # accumulates compared with a random order.
    order = np.argsort(-np.asarray(prediction, dtype=np.float64), kind="stable")
    actual = np.asarray(y, dtype=np.float64)[order]
    total = actual.sum()
    if total == 0:
        return 0.0
    n = len(actual)
    cumulative = np.cumsum(actual) / total
    return float(cumulative.sum() / n - (n + 1) / (2 * n))


def normalized_gini(y: np.ndarray, prediction: np.ndarray) -> float:
    """Gini of ``prediction`` over the Gini of the perfect ordering (1 = perfect, 0 = random).

    The ranking figure of insurance and LTV models: how much of the total the top-ranked
    players hold, relative to ranking by the outcome itself.

    Examples
    --------
    >>> normalized_gini(np.array([0.0, 0.0, 5.0, 10.0]), np.array([0.1, 0.2, 0.3, 0.4]))
    1.0
    """
    best = _gini(y, y)
    return _gini(y, prediction) / best if best else 0.0


def decile_calibration(
    y: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None, bins: int = 10
) -> list[dict[str, Any]]:
    """Mean prediction, outcome (and true expectation) per prediction decile, lowest first.

    A calibrated model's ``mean_prediction`` equals ``mean_outcome`` in each decile.
    """
    order = np.argsort(np.asarray(prediction), kind="stable")
    rows = []
    for index, part in enumerate(np.array_split(order, bins)):
        if len(part) == 0:
            continue
        row = {
            "decile": index + 1,
            "rows": len(part),
            "mean_prediction": float(np.mean(prediction[part])),
            "mean_outcome": float(np.mean(y[part])),
        }
        if truth is not None:
            row["mean_truth"] = float(np.mean(truth[part]))
        rows.append(row)
    return rows
