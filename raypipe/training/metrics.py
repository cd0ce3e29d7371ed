"""Holdout metrics: ranking, probability quality, calibration and cost-based thresholds.

Every function takes plain numpy arrays (``y_true`` in {0, 1} for classification) and returns
floats or small frozen records, so the same code scores a trial, a candidate and a monitoring
window. The reliability plot is an inline SVG string: a report embeds it without any plotting
library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "ReliabilityBin",
    "ThresholdMetrics",
    "binary_metrics",
    "cost_threshold",
    "expected_calibration_error",
    "regression_metrics",
    "reliability_bins",
    "reliability_svg",
]

#: Probabilities are clipped this far from 0 and 1 before the log loss.
_EPS = 1e-7


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width bin of predicted probability: mean prediction vs observed rate."""

    low: float
    high: float
    count: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion counts and rates at the threshold that minimises the expected cost."""

    threshold: float
    cost: float
    cost_per_row: float
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float
    recall: float
    f1: float


def reliability_bins(
    y_true: np.ndarray, y_prob: np.ndarray, bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; a probability of exactly 1 falls in the last bin.

    Empty bins are kept (count 0, NaN rates) so bins line up across models.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.clip(np.asarray(y_prob, dtype=np.float64), 0.0, 1.0)
    index = np.minimum((y_prob * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_prob = np.bincount(index, weights=y_prob, minlength=bins)
    sum_true = np.bincount(index, weights=y_true, minlength=bins)
    out = []
    for b in range(bins):
        n = int(counts[b])
        out.append(
            ReliabilityBin(
                low=b / bins,
                high=(b + 1) / bins,
                count=n,
                mean_predicted=float(sum_prob[b] / n) if n else float("nan"),
                observed_rate=float(sum_true[b] / n) if n else float("nan"),
            )
        )
    return out


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, bins: int = 10) -> float:
    """ECE: the row-weighted mean of |observed rate - mean prediction| over equal-width bins."""
    table = reliability_bins(y_true, y_prob, bins)
    total = sum(item.count for item in table)
    if total == 0:
        return float("nan")
    return float(
        sum(
            item.count * abs(item.observed_rate - item.mean_predicted)
            for item in table
            if item.count
        )
        / total
    )


def cost_threshold(
    y_true: np.ndarray, y_prob: np.ndarray, *, cost_fp: float = 1.0, cost_fn: float = 1.0
) -> ThresholdMetrics:
    """The threshold (flag rows with ``prob >= threshold``) with the lowest total cost.

    Every distinct predicted probability is a candidate, plus "flag nothing" (threshold above
    the largest probability); ties go to the higher threshold.
    """
    y_true = np.asarray(y_true).astype(bool)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    order = np.argsort(-y_prob, kind="stable")
    sorted_prob = y_prob[order]
    sorted_true = y_true[order]
    # Flagging the top k rows: the last index of each run of equal probabilities is a cut.
    cum_tp = np.cumsum(sorted_true)
    cum_fp = np.cumsum(~sorted_true)
    last_of_run = (
        np.r_[sorted_prob[1:] != sorted_prob[:-1], True] if len(y_prob) else np.array([], bool)
    )
    positives = int(y_true.sum())
    tp = np.r_[0, cum_tp[last_of_run]]
    fp = np.r_[0, cum_fp[last_of_run]]
    thresholds = np.r_[np.inf, sorted_prob[last_of_run]]
    costs = cost_fp * fp + cost_fn * (positives - tp)
    best = int(np.argmin(costs))  # first minimum = highest threshold among ties
    tp_b, fp_b = int(tp[best]), int(fp[best])
    fn_b = positives - tp_b
    tn_b = len(y_true) - positives - fp_b
    precision = tp_b / (tp_b + fp_b) if tp_b + fp_b else 0.0
    recall = tp_b / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    threshold = float(thresholds[best]) if np.isfinite(thresholds[best]) else 1.0
    return ThresholdMetrics(
        threshold=threshold,
        cost=float(costs[best]),
        cost_per_row=float(costs[best] / max(1, len(y_true))),
        tp=tp_b,
        fp=fp_b,
        tn=tn_b,
        fn=fn_b,
        precision=precision,
        recall=recall,
        f1=f1,
    )


def binary_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    *,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
    bins: int = 10,
) -> dict[str, Any]:
    """ROC AUC, PR AUC, log loss, Brier, ECE and the cost-optimal threshold's metrics."""
    y_true = np.asarray(y_true).astype(np.int64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    both_classes = len(np.unique(y_true)) == 2
    clipped = np.clip(y_prob, _EPS, 1 - _EPS)
    threshold = cost_threshold(y_true, y_prob, cost_fp=cost_fp, cost_fn=cost_fn)
    out: dict[str, Any] = {
        "roc_auc": float(skm.roc_auc_score(y_true, y_prob)) if both_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y_true, y_prob))
        if both_classes
        else float("nan"),
        "log_loss": float(skm.log_loss(y_true, clipped, labels=[0, 1])),
        "brier": float(np.mean((y_prob - y_true) ** 2)),
        "ece": expected_calibration_error(y_true, y_prob, bins),
        "positive_rate": float(y_true.mean()) if len(y_true) else float("nan"),
        "rows": len(y_true),
    }
    out.update({f"threshold_{k}": v for k, v in asdict(threshold).items()})
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE and R² of a regression."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {
        "rmse": float(np.sqrt(np.mean((y_true - y_pred) ** 2))),
        "mae": float(np.mean(np.abs(y_true - y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
        "rows": len(y_true),
    }


def reliability_svg(bins: list[ReliabilityBin], *, size: int = 320, title: str = "") -> str:
    """A reliability diagram as a standalone inline ``<svg>``: diagonal, points sized by count."""
    pad = 36
    inner = size - 2 * pad

    def x(v: float) -> float:
        return pad + v * inner

    def y(v: float) -> float:
        return size - pad - v * inner

    total = max(1, sum(item.count for item in bins))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" aria-label="reliability diagram">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#999"/>',
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#bbb" '
        'stroke-dasharray="4 3"/>',
    ]
    points = [item for item in bins if item.count]
    if points:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x(p.mean_predicted):.1f},{y(p.observed_rate):.1f}"
            for i, p in enumerate(points)
        )
        parts.append(f'<path d="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
        for p in points:
            radius = 2.0 + 6.0 * (p.count / total) ** 0.5
            parts.append(
                f'<circle cx="{x(p.mean_predicted):.1f}" cy="{y(p.observed_rate):.1f}" '
                f'r="{radius:.1f}" fill="#1f77b4"><title>{p.low:.1f}-{p.high:.1f}: '
                f"n={p.count}, predicted {p.mean_predicted:.3f}, observed "
                f"{p.observed_rate:.3f}</title></circle>"
            )
    parts.append(
        f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle" font-size="11">'
        "mean predicted probability</text>"
    )
    parts.append(
        f'<text x="12" y="{size / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 12 {size / 2})">observed rate</text>'
    )
    if title:
        parts.append(
            f'<text x="{size / 2}" y="20" text-anchor="middle" font-size="12">'
            f"{_escape(title)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
