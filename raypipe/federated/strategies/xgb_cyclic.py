"""Federated XGBoost, cyclic: one client per round boosts on the global model and hands it on
(Flower's ``FedXgbCyclic``). Converges more slowly than bagging; no tree surgery is needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from raypipe.federated.strategies.base import Strategy
from raypipe.federated.strategies.xgb_bagging import XgbUpdates

__all__ = ["FedXgbCyclic"]


class FedXgbCyclic(Strategy[bytes, XgbUpdates]):
    """Clients take turns in id order; the answering client's whole booster becomes global.

    Turn ``t`` (counted from 0) goes to the ``t mod n``-th client by id: without failures that
    is Flower's ``(server_round - 1) % n``; a retried round hands the turn to the next client.
    Exactly one client trains per round, so ``min_fit_clients`` is 1.
    """

    name = "xgb_cyclic"
    is_mean = False
    new_trees_only = False

    def __init__(self, *, num_local_round: int = 1, **kwargs: Any) -> None:
        kwargs["min_fit_clients"] = 1
        kwargs.setdefault("min_available_clients", 1)
        super().__init__(**kwargs)
        self.num_local_round = num_local_round
        self.turn_ = 0

    def sample(self, round_: int, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(available) < self.min_available_clients:
            return super().sample(round_, available, rng)  # raises the clear error
        ordered = np.sort(available)
        chosen = ordered[[self.turn_ % len(ordered)]]
        self.turn_ += 1
        return chosen

    def aggregate(self, round_: int, weights: bytes, updates: XgbUpdates) -> bytes:
        return updates.models[-1] if len(updates) else weights
