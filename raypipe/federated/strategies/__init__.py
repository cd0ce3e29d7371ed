"""Federated strategies over a common base: one small module each."""

from __future__ import annotations

import numpy as np

from raypipe.federated.strategies.base import ClientUpdates, Strategy, weighted_mean
from raypipe.federated.strategies.fedadam import FedAdam
from raypipe.federated.strategies.fedavg import FedAvg
from raypipe.federated.strategies.fedmedian import FedMedian
from raypipe.federated.strategies.fedprox import FedProx
from raypipe.federated.strategies.trimmed import FedTrimmedAvg, trimmed_mean
from raypipe.federated.strategies.xgb_bagging import FedXgbBagging, XgbUpdates, aggregate_bagging
from raypipe.federated.strategies.xgb_cyclic import FedXgbCyclic

__all__ = [
    "STRATEGIES",
    "ClientUpdates",
    "FedAdam",
    "FedAvg",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "Strategy",
    "XGB_STRATEGIES",
    "XgbUpdates",
    "aggregate_bagging",
    "trimmed_mean",
    "weighted_mean",
]

#: Strategies over numpy parameter vectors, by the name used in job specs.
STRATEGIES: dict[str, type[Strategy[np.ndarray, ClientUpdates]]] = {
    cls.name: cls for cls in (FedAvg, FedProx, FedAdam, FedMedian, FedTrimmedAvg)
}

#: Federated XGBoost strategies over booster bytes, by name.
XGB_STRATEGIES: dict[str, type[Strategy[bytes, XgbUpdates]]] = {
    cls.name: cls for cls in (FedXgbBagging, FedXgbCyclic)
}
