"""Model performance once labels arrive: metrics, windows over time, calibration, degradation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "Degradation",
    "WindowPerformance",
    "calibration_points",
    "classification_metrics",
    "degradation",
    "performance_by_window",
]

#: Relative change of a metric against its baseline that counts as degradation.
DEFAULT_TOLERANCE = 0.05
#: Metrics where lower is better (the others: higher is better).
LOWER_IS_BETTER = frozenset({"brier", "log_loss"})


def classification_metrics(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """ROC AUC, accuracy, precision, recall, F1, Brier, log loss, positive rates."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(np.int64)
    p = np.clip(np.asarray(y_score, dtype=np.float64), 1e-15, 1 - 1e-15)
    predicted = (p >= threshold).astype(np.int64)
    tp = int(np.sum((predicted == 1) & (y == 1)))
    fp = int(np.sum((predicted == 1) & (y == 0)))
    fn = int(np.sum((predicted == 0) & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else math.nan
    return {
        "rows": float(len(y)),
        "roc_auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else math.nan,
        "accuracy": float(np.mean(predicted == y)) if len(y) else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else math.nan,
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        if len(y)
        else math.nan,
        "positive_rate": float(np.mean(y)) if len(y) else math.nan,
        "predicted_positive_rate": float(np.mean(predicted)) if len(y) else math.nan,
        "mean_score": float(np.mean(p)) if len(y) else math.nan,
    }


@dataclass(frozen=True)
class WindowPerformance:
    """Metrics of one time window (or chunk)."""

    window: str
    rows: int
    metrics: Mapping[str, float]


def performance_by_window(
    frame: pl.DataFrame,
    *,
    label: str,
    score: str,
    time_column: str | None = None,
    every: str = "1w",
    chunks: int = 10,
    threshold: float = 0.5,
) -> list[WindowPerformance]:
    """Metrics per time window of ``time_column`` (polars ``every``, e.g. ``1d``, ``1w``), or per
    one of ``chunks`` equal row chunks in order when there is no time column (NannyML's default).
    """
    labelled = frame.filter(pl.col(label).is_not_null() & pl.col(score).is_not_null())
    out = []
    if time_column is not None and time_column in labelled.columns:
        keyed = labelled.with_columns(pl.col(time_column).dt.truncate(every).alias("_window"))
        for (window,), part in sorted(keyed.group_by("_window"), key=lambda item: item[0]):
            out.append(_window(str(window), part, label, score, threshold))
        return out
    size = max(1, math.ceil(labelled.height / max(1, chunks)))
    for index, start in enumerate(range(0, labelled.height, size)):
        part = labelled.slice(start, size)
        out.append(_window(f"chunk {index}", part, label, score, threshold))
    return out


def _window(
    name: str, part: pl.DataFrame, label: str, score: str, threshold: float
) -> WindowPerformance:
    metrics = classification_metrics(
        part.get_column(label).cast(pl.Int64).to_numpy(),
        part.get_column(score).cast(pl.Float64).to_numpy(),
        threshold,
    )
    return WindowPerformance(name, part.height, metrics)


def calibration_points(
    y_true: np.ndarray, y_score: np.ndarray, bins: int = 10
) -> list[tuple[float, float, int]]:
    """Reliability diagram: (mean predicted, observed rate, rows) per equal-width score bin."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_score, dtype=np.float64)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append((float(p[mask].mean()), float(y[mask].mean()), int(mask.sum())))
    return out


@dataclass(frozen=True)
class Degradation:
    """A metric against its baseline: relative change, and whether it got worse than allowed."""

    metric: str
    baseline: float
    current: float
    relative_change: float
    degraded: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "relative_change": self.relative_change,
            "degraded": self.degraded,
        }


def degradation(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    metrics: Sequence[str] = ("roc_auc", "accuracy", "f1", "brier"),
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[Degradation]:
    """Relative change of each metric; degraded when worse by more than ``tolerance``."""
    out = []
    for metric in metrics:
        base, now = baseline.get(metric, math.nan), current.get(metric, math.nan)
        if not (math.isfinite(base) and math.isfinite(now)) or base == 0:
            continue
        change = (now - base) / abs(base)
        worse = change > tolerance if metric in LOWER_IS_BETTER else change < -tolerance
        out.append(Degradation(metric, base, now, change, worse))
    return out
