"""FedAdam: Adam on the server over the FedAvg pseudo-gradient (Reddi et al. 2021).

Flower's update (``fedadam.py``): ``delta = w_avg - w``; ``m = b1 m + (1 - b1) delta``;
``v = b2 v + (1 - b2) delta^2``; ``eta_t = eta sqrt(1 - b2^t) / (1 - b1^t)``;
``w <- w + eta_t m / (sqrt(v) + tau)``, with Flower's defaults ``eta = eta_l = 0.1``,
``b1 = 0.9``, ``b2 = 0.99``, ``tau = 1e-3``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raypipe.federated.strategies.base import ClientUpdates, weighted_mean
from raypipe.federated.strategies.fedavg import FedAvg

__all__ = ["FedAdam"]


class FedAdam(FedAvg):
    """Server-side Adam; ``eta_l`` is the clients' learning rate, sent in the client config."""

    name = "fedadam"

    def __init__(
        self,
        *,
        eta: float = 0.1,
        eta_l: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eta, self.eta_l, self.beta_1, self.beta_2, self.tau = eta, eta_l, beta_1, beta_2, tau
        self.m_: np.ndarray | None = None
        self.v_: np.ndarray | None = None
        self.t_ = 0

    def client_config(self, round_: int) -> dict[str, Any]:
        return {"learning_rate": self.eta_l}

    def aggregate(self, round_: int, weights: np.ndarray, updates: ClientUpdates) -> np.ndarray:
        delta = weighted_mean(updates.params, updates.num_examples) - weights
        if self.m_ is None or self.v_ is None:
            self.m_, self.v_ = np.zeros_like(weights), np.zeros_like(weights)
        self.t_ += 1
        self.m_ = self.beta_1 * self.m_ + (1 - self.beta_1) * delta
        self.v_ = self.beta_2 * self.v_ + (1 - self.beta_2) * delta * delta
        eta_t = self.eta * np.sqrt(1 - self.beta_2**self.t_) / (1 - self.beta_1**self.t_)
        updated: np.ndarray = weights + eta_t * self.m_ / (np.sqrt(self.v_) + self.tau)
        return updated
