"""Client-level differential privacy with fixed clipping (Flower's fixed clipping).

Per client, the update ``delta_k = w_k - w`` is scaled to an L2 norm of at most ``clipping_norm``
(over the whole flat vector); the clipped deltas are averaged with **uniform weights** over the
``m`` clients whose update reached the aggregate (with example weights a client's influence
would be ``C * n_k / sum n``, more than the ``C / m`` the noise is calibrated for); Gaussian
noise with ``sigma = noise_multiplier * clipping_norm / m`` is added to that mean; and only then
does the wrapped strategy turn the noisy mean into the next global model (FedAdam's server step
is post-processing of the released mean). An :class:`RdpAccountant` reports epsilon after each
round.

The same mechanism runs with secure or homomorphic aggregation: each client clips its own delta
(:func:`raypipe.federated.secure_clients.contribution`) *before* masking or encrypting, the
protocol returns the sum of the clipped deltas and the count ``m`` of clients whose upload
arrived, and :meth:`DPFixedClipping.release` adds the noise calibrated to that ``m``. Either way
the sum has sensitivity ``C`` per client and noise ``z * C``, so the accountant's epsilon is
that of the mechanism that ran.

The noise comes from the operating system's entropy (``np.random.default_rng()`` without a seed),
never from the run's seed: the seed is logged, and noise derived from it could be subtracted by
anyone who reads the log. The seed still fixes client sampling and data splits.
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
    """

    name = "dp_fixed_clipping"

    def __init__(
        self,
        strategy: Strategy[np.ndarray, ClientUpdates],
        *,
        noise_multiplier: float,
        clipping_norm: float,
        delta: float = 1e-5,
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
        self._noise_rng = np.random.default_rng()  # OS entropy: see the module docstring
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
        return self.release(round_, weights, clipped.sum(axis=0), len(updates), updates)

    def release(
        self,
        round_: int,
        weights: np.ndarray,
        clipped_sum: np.ndarray,
        count: int,
        updates: ClientUpdates | None = None,
    ) -> np.ndarray:
        """The next global model from the sum of ``count`` clipped deltas.

        Adds ``N(0, (z C / count)^2)`` to their mean, accounts the round, and hands the noisy
        mean to the wrapped strategy as a single uniform answer.
        """
        count = max(int(count), 1)
        sigma = self.noise_multiplier * self.clipping_norm / count
        noisy_mean = clipped_sum / count + self._noise_rng.normal(0.0, sigma, clipped_sum.shape)
        # Only a released aggregate costs privacy: account here, not when sampling (retries).
        self.accountant_.step(q=self._sample_rate)
        self.epsilon_ = self.accountant_.epsilon(self.delta)
        ids = updates.client_ids[:1] if updates is not None else np.zeros(1, np.int64)
        losses = updates.losses[:1] if updates is not None else np.zeros(1)
        released = ClientUpdates(
            client_ids=ids,
            params=(weights + noisy_mean)[None, :],
            num_examples=np.ones(1, np.int64),
            losses=losses,
        )
        return self.strategy.aggregate(round_, weights, released)
