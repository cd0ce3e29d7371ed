"""FedProx: FedAvg whose clients add ``mu/2 ||w - w_global||^2`` to their loss (Li et al. 2020)."""

from __future__ import annotations

from typing import Any

from raypipe.errors import SpecError
from raypipe.federated.strategies.fedavg import FedAvg

__all__ = ["FedProx"]


class FedProx(FedAvg):
    """FedAvg aggregation; clients get ``proximal_mu`` (Flower's default 0.0 is plain FedAvg)."""

    name = "fedprox"

    def __init__(self, *, proximal_mu: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if proximal_mu < 0:
            raise SpecError([f"`proximal_mu` must be >= 0, got {proximal_mu}"])
        self.proximal_mu = proximal_mu

    def client_config(self, round_: int) -> dict[str, Any]:
        return {"proximal_mu": self.proximal_mu}
