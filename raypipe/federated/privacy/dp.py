"""Central differential privacy with fixed clipping (Flower's server-side fixed clipping).

Per client, the update ``delta_k = w_k - w`` is scaled to an L2 norm of at most ``clipping_norm``
(over the whole flat vector); the wrapped mean strategy aggregates the clipped models with
**uniform weights** (with example weights a client's influence would be ``C * n_k / sum n``, more
than the ``C / m`` the noise is calibrated for, a caveat of Flower's wrapper); then Gaussian noise
with ``sigma = noise_multiplier * clipping_norm / m`` is added to the aggregate, ``m`` being the
number of clients sampled this round. An :class:`RdpAccountant` reports epsilon after each round.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from raypipe.errors import SpecError
from raypipe.federated.privacy.accountant import RdpAccountant
from raypipe.federated.strategies.base import ClientUpdates, Strategy

__all__ = ["DPFixedClipping", "clip_updates"]

logger = logging.getLogger(__name__)


def clip_updates(deltas: np.ndarray, clipping_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale rows to L2 norm at most ``clipping_norm``; returns them and which were clipped."""
    norms = np.linalg.norm(deltas, axis=1)
    scale = np.minimum(1.0, clipping_norm / np.maximum(norms, 1e-300))
    return deltas * scale[:, None], norms > clipping_norm


class DPFixedClipping(Strategy[np.ndarray, ClientUpdates]):
    """Wraps a mean strategy (FedAvg, FedProx, FedAdam) with clipping, noise and accounting.

    Parameters
    ----------
    strategy
        The wrapped strategy; its sampling settings are used.
    noise_multiplier, clipping_norm
        ``z`` and ``C``; the noise standard deviation on the mean is ``z * C / m``.
    delta
        The delta at which :attr:`epsilon_` is reported.
    seed
        Seed of the noise.
    """

    name = "dp_fixed_clipping"

    def __init__(
        self,
        strategy: Strategy[np.ndarray, ClientUpdates],
        *,
        noise_multiplier: float,
        clipping_norm: float,
        delta: float = 1e-5,
        seed: int = 0,
    ) -> None:
        if not strategy.is_mean:
            raise SpecError(
                [f"differential privacy needs a mean strategy, not `{strategy.name}`"],
            )
        if clipping_norm <= 0 or noise_multiplier < 0:
            raise SpecError(
                [
                    "`clipping_norm` must be > 0 and `noise_multiplier` >= 0, got "
                    f"{clipping_norm} and {noise_multiplier}"
                ]
            )
        super().__init__(
            fraction_fit=strategy.fraction_fit,
            min_fit_clients=strategy.min_fit_clients,
            min_available_clients=strategy.min_available_clients,
        )
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = clipping_norm
        self.delta = delta
        self.accountant_ = RdpAccountant(noise_multiplier)
        self.epsilon_ = 0.0
        self.clipped_fraction_ = 0.0
        self._rng = np.random.default_rng([seed, 0xD9])
        self._sample_rate = 1.0

    def sample(self, round_: int, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        chosen = self.strategy.sample(round_, available, rng)
        self._sample_rate = len(chosen) / len(available)
        return chosen

    def client_config(self, round_: int) -> dict[str, Any]:
        return self.strategy.client_config(round_)

    def aggregate(self, round_: int, weights: np.ndarray, updates: ClientUpdates) -> np.ndarray:
        clipped, was_clipped = clip_updates(updates.params - weights, self.clipping_norm)
        self.clipped_fraction_ = float(was_clipped.mean()) if len(was_clipped) else 0.0
        uniform = updates.with_params(weights + clipped, np.ones(len(updates), dtype=np.int64))
        aggregated = self.strategy.aggregate(round_, weights, uniform)
        sigma = self.noise_multiplier * self.clipping_norm / max(len(updates), 1)
        # Only a released aggregate costs privacy: account here, not when sampling (retries).
        self.accountant_.step(q=self._sample_rate)
        self.epsilon_ = self.accountant_.epsilon(self.delta)
        return aggregated + self._rng.normal(0.0, sigma, size=aggregated.shape)
