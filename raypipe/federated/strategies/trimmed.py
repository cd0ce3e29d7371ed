"""FedTrimmedAvg: per coordinate, drop the ``beta`` fraction of lowest and highest values, average
the rest (Yin et al. 2018; Flower's default ``beta = 0.2``, cut ``int(beta * k)`` from each end)."""

from __future__ import annotations

from typing import Any

import numpy as np

from raypipe.errors import SpecError
from raypipe.federated.strategies.base import ClientUpdates, Strategy

__all__ = ["FedTrimmedAvg", "trimmed_mean"]


def trimmed_mean(values: np.ndarray, beta: float) -> np.ndarray:
    """Coordinate-wise mean after removing ``int(beta * k)`` values at each end (axis 0)."""
    k = values.shape[0]
    cut = int(beta * k)
    ordered = np.sort(values, axis=0)
    mean: np.ndarray = ordered[cut : k - cut].mean(axis=0)
    return mean


class FedTrimmedAvg(Strategy[np.ndarray, ClientUpdates]):
    """Robust mean; unweighted, like Flower's."""

    name = "trimmed_mean"
    is_mean = False

    def __init__(self, *, beta: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= beta < 0.5:
            raise SpecError([f"`beta` must be in [0, 0.5), got {beta}"])
        self.beta = beta

    def aggregate(self, round_: int, weights: np.ndarray, updates: ClientUpdates) -> np.ndarray:
        return trimmed_mean(updates.params, self.beta)
