"""Fairness by group, with Fairlearn's definitions.

Selection rate ``E[h(X) | A=a]``; demographic parity difference = max - min selection rate over
groups, ratio = min / max; equalized odds difference = max(TPR difference, FPR difference)
(``agg="worst_case"``), ratio = min(TPR ratio, FPR ratio).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["FairnessReport", "GroupRates", "fairness_by_group"]


@dataclass(frozen=True)
class GroupRates:
    group: str
    rows: int
    selection_rate: float
    tpr: float
    fpr: float


@dataclass(frozen=True)
class FairnessReport:
    """Rates per group of one sensitive feature, and the disparity measures."""

    feature: str
    groups: tuple[GroupRates, ...]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["groups"] = [asdict(g) for g in self.groups]
        return out


def _rate(numerator: np.ndarray) -> float:
    return float(numerator.mean()) if len(numerator) else math.nan


def _difference(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) - min(finite) if finite else math.nan


def _ratio(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    high = max(finite)
    return min(finite) / high if high > 0 else 1.0


def fairness_by_group(
    feature: str, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> FairnessReport:
    """Fairlearn's ``demographic_parity_*`` and ``equalized_odds_*`` (``between_groups``)."""
    y = np.asarray(y_true).astype(np.int64)
    h = np.asarray(y_pred).astype(np.int64)
    keys = np.asarray(groups).astype(str)
    rates = []
    for key in sorted(set(keys.tolist())):
        mask = keys == key
        rates.append(
            GroupRates(
                group=key,
                rows=int(mask.sum()),
                selection_rate=_rate(h[mask]),
                tpr=_rate(h[mask & (y == 1)]),
                fpr=_rate(h[mask & (y == 0)]),
            )
        )
    selection = [g.selection_rate for g in rates]
    tpr = [g.tpr for g in rates]
    fpr = [g.fpr for g in rates]
    return FairnessReport(
        feature=feature,
        groups=tuple(rates),
        demographic_parity_difference=_difference(selection),
        demographic_parity_ratio=_ratio(selection),
        equalized_odds_difference=max(_difference(tpr), _difference(fpr)),
        equalized_odds_ratio=min(_ratio(tpr), _ratio(fpr)),
    )
