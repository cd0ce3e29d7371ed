"""Confidence-based performance estimation (NannyML's CBPE): performance without labels.

Fit on a labelled reference: scores are calibrated with isotonic regression when that lowers
the cross-validated expected calibration error. On unlabelled data each prediction is correct
with probability ``1 - |y_hat - p|``; expected TP, FP, TN and FN are sums of these, and any
confusion-matrix metric follows. ROC AUC uses the expected ROC curve. The alert band is the
reference chunks' mean +/- 3 std. Assumes no concept drift and calibrated probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CBPE", "expected_calibration_error", "expected_metrics"]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed - predicted| over equal-width bins, weighted by bin size."""
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y)) if len(y) else math.nan


def expected_metrics(p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Expected confusion-matrix metrics and ROC AUC of calibrated probabilities ``p``."""
    p = np.asarray(p, dtype=np.float64)
    predicted = p >= threshold
    tp = float(p[predicted].sum())
    fp = float((1 - p[predicted]).sum())
    fn = float(p[~predicted].sum())
    tn = float((1 - p[~predicted]).sum())
    n = len(p)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else math.nan
    return {
        "roc_auc": _expected_auc(p),
        "accuracy": (tp + tn) / n if n else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_rate": float(p.mean()) if n else math.nan,
    }


def _expected_auc(p: np.ndarray) -> float:
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    # group ties so the curve steps once per distinct score
    _, first = np.unique(-ps, return_index=True)
    tp = np.cumsum(ps)
    fp = np.cumsum(1 - ps)
    ends = np.append(first[1:] - 1, len(ps) - 1)
    if tp[-1] <= 0 or fp[-1] <= 0:
        return math.nan
    tpr = np.concatenate([[0.0], tp[ends] / tp[-1]])
    fpr = np.concatenate([[0.0], fp[ends] / fp[-1]])
    return float(np.trapezoid(tpr, fpr))


@dataclass
class CBPE:
    """Estimate classification performance of unlabelled data from its scores.

    Parameters
    ----------
    threshold
        Decision threshold of the classifier.
    chunks
        Reference chunks used for the alert band.
    """

    threshold: float = 0.5
    chunks: int = 10
    splits: int = 10

    def fit(self, y_true: np.ndarray, y_score: np.ndarray) -> CBPE:
        from sklearn.isotonic import IsotonicRegression
        from sklearn.model_selection import KFold

        y = np.asarray(y_true, dtype=np.float64)
        p = np.asarray(y_score, dtype=np.float64)
        raw_ece, calibrated_ece = [], []
        folds = KFold(n_splits=min(self.splits, max(2, len(y) // 2)), shuffle=True, random_state=0)
        for train, test in folds.split(p):
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            iso.fit(p[train], y[train])
            raw_ece.append(expected_calibration_error(y[test], p[test]))
            calibrated_ece.append(expected_calibration_error(y[test], iso.predict(p[test])))
        self.needs_calibration_ = bool(np.mean(calibrated_ece) < np.mean(raw_ece))
        self.calibrator_ = (
            IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
            if self.needs_calibration_
            else None
        )
        estimates = [
            expected_metrics(self.calibrate(chunk), self.threshold)
            for chunk in np.array_split(p, self.chunks)
            if len(chunk)
        ]
        self.reference_ = {
            key: (
                float(np.nanmean([e[key] for e in estimates])),
                float(np.nanstd([e[key] for e in estimates])),
            )
            for key in estimates[0]
        }
        return self

    def calibrate(self, y_score: np.ndarray) -> np.ndarray:
        p = np.asarray(y_score, dtype=np.float64)
        return self.calibrator_.predict(p) if self.calibrator_ is not None else p

    def estimate(self, y_score: np.ndarray) -> dict[str, float]:
        """Expected metrics of the unlabelled ``y_score``."""
        return expected_metrics(self.calibrate(y_score), self.threshold)

    def band(self, metric: str) -> tuple[float, float]:
        """The alert band of ``metric``: reference chunk mean +/- 3 std."""
        mean, std = self.reference_[metric]
        return mean - 3 * std, mean + 3 * std
