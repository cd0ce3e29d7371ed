"""FedMedian: the coordinate-wise median of the clients' models (Yin et al. 2018); unweighted."""

from __future__ import annotations

import numpy as np

from raypipe.federated.strategies.base import ClientUpdates, Strategy

__all__ = ["FedMedian"]


class FedMedian(Strategy[np.ndarray, ClientUpdates]):
    """Robust to a minority of arbitrary updates; ignores example counts, as Flower does."""

    name = "fedmedian"
    is_mean = False

    def aggregate(self, round_: int, weights: np.ndarray, updates: ClientUpdates) -> np.ndarray:
        median: np.ndarray = np.median(updates.params, axis=0)
        return median
