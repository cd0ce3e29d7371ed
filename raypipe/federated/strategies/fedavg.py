"""FedAvg: the example-weighted mean of the clients' models (McMahan et al. 2017)."""

from __future__ import annotations

import numpy as np

from raypipe.federated.strategies.base import ClientUpdates, Strategy, weighted_mean

__all__ = ["FedAvg"]


class FedAvg(Strategy[np.ndarray, ClientUpdates]):
    """``w_new = sum_k (n_k / sum_j n_j) w_k`` with ``n_k`` the client's training examples."""

    name = "fedavg"

    def aggregate(self, round_: int, weights: np.ndarray, updates: ClientUpdates) -> np.ndarray:
        return weighted_mean(updates.params, updates.num_examples)
