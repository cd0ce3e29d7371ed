"""Explanations from XGBoost's exact TreeSHAP (``pred_contribs=True``): global and per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["global_importance", "shap_contributions", "top_features"]


def shap_contributions(booster: Any, features: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``(n, n_features + 1)`` SHAP values in margin units; the last column is the bias.

    Each row sums to ``booster.predict(..., output_margin=True)``.
    """
    import xgboost as xgb

    matrix = xgb.DMatrix(np.asarray(features, dtype=np.float32), feature_names=list(names))
    return np.asarray(booster.predict(matrix, pred_contribs=True))


def global_importance(contributions: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    """Mean |SHAP| per feature (bias column excluded), largest first."""
    values = np.abs(contributions[:, : len(names)]).mean(axis=0)
    return sorted(
        ((name, float(v)) for name, v in zip(names, values, strict=True)),
        key=lambda item: -item[1],
    )


def top_features(
    contributions: np.ndarray, names: Sequence[str], k: int = 3
) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` features with the largest |SHAP| and their signed values."""
    body = contributions[:, : len(names)]
    order = np.argsort(-np.abs(body), axis=1)[:, :k]
    return [[(names[j], float(body[i, j])) for j in order[i]] for i in range(body.shape[0])]
