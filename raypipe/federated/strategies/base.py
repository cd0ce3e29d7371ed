"""The common base of federated strategies: who trains each round, and how answers combine.

A strategy is a small stateful object the server loop drives: :meth:`Strategy.sample` picks the
round's clients (Flower's rule: ``max(int(available * fraction_fit), min_fit_clients)``),
:meth:`Strategy.client_config` says what clients should know (e.g. FedProx's ``proximal_mu``),
and :meth:`Strategy.aggregate` turns the current global model and the clients' answers into the
next global model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from raypipe.errors import SpecError

__all__ = ["ClientUpdates", "Strategy", "weighted_mean"]

ModelT = TypeVar("ModelT")
UpdatesT = TypeVar("UpdatesT")


@dataclass(frozen=True)
class ClientUpdates:
    """The answers of one round: one row of ``params`` per client that answered."""

    client_ids: np.ndarray
    params: np.ndarray  # (k, P)
    num_examples: np.ndarray  # (k,)
    losses: np.ndarray  # (k,)

    def __len__(self) -> int:
        return len(self.client_ids)

    def with_params(
        self, params: np.ndarray, num_examples: np.ndarray | None = None
    ) -> ClientUpdates:
        n = self.num_examples if num_examples is None else num_examples
        return ClientUpdates(self.client_ids, params, n, self.losses)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k w_k v_k / sum_k w_k`` over the first axis."""
    w = np.asarray(weights, dtype=np.float64)
    return np.tensordot(w / w.sum(), values, axes=1)


class Strategy(ABC, Generic[ModelT, UpdatesT]):
    """Base of every strategy.

    Parameters
    ----------
    fraction_fit
        Fraction of the available clients sampled each round.
    min_fit_clients
        At least this many are sampled, and at least this many must answer.
    min_available_clients
        The run refuses to start with fewer clients.
    """

    name: ClassVar[str]
    #: Whether the aggregate is a (weighted) mean, so secure aggregation and DP noise apply.
    is_mean: ClassVar[bool] = True

    def __init__(
        self, *, fraction_fit: float = 1.0, min_fit_clients: int = 2, min_available_clients: int = 2
    ) -> None:
        if not 0 < fraction_fit <= 1:
            raise SpecError([f"`fraction_fit` must be in (0, 1], got {fraction_fit}"])
        self.fraction_fit = fraction_fit
        self.min_fit_clients = min_fit_clients
        self.min_available_clients = min_available_clients

    def sample(self, round_: int, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The clients asked to train in ``round_`` (sorted)."""
        n = len(available)
        if n < self.min_available_clients:
            raise SpecError(
                [f"{n} clients available, `min_available_clients` is {self.min_available_clients}"]
            )
        size = min(n, max(int(n * self.fraction_fit), self.min_fit_clients))
        if size == n:
            return np.sort(available)
        return np.sort(rng.permutation(available)[:size])

    def client_config(self, round_: int) -> dict[str, Any]:
        """Settings sent to clients with the weights."""
        return {}

    @abstractmethod
    def aggregate(self, round_: int, weights: ModelT, updates: UpdatesT) -> ModelT:
        """The next global weights from the current ones and the clients' answers."""
