"""Rényi-DP accountant of the (sub)sampled Gaussian mechanism: epsilon at delta after T rounds.

Per round, client-level central DP samples a fraction ``q`` of the clients and adds Gaussian noise
of ``noise_multiplier`` times the clipping norm to the sum of clipped updates. The RDP of one round
at integer order ``alpha`` is (Mironov, Talwar, Zhang 2019, "Rényi DP of the Sampled Gaussian
Mechanism", eq. for integer alpha)::

    log A_alpha = log sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2)),
    rdp = log A_alpha / (alpha - 1)

which is exactly ``alpha / (2 sigma^2)`` at ``q = 1``. RDP adds over rounds and converts to
``(epsilon, delta)`` by Balle et al. 2020, Theorem 21, minimised over the orders. Sampling a fixed
number of clients is treated as Poisson sampling with rate ``q`` (the common approximation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln, logsumexp

from raypipe.errors import SpecError

__all__ = ["DEFAULT_ORDERS", "RdpAccountant", "epsilon_from_rdp", "rdp_sampled_gaussian"]

DEFAULT_ORDERS: tuple[int, ...] = (*range(2, 65), 80, 96, 128, 192, 256, 512)


def rdp_sampled_gaussian(q: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer ``order`` of one step of the Gaussian mechanism sampled with rate ``q``."""
    if noise_multiplier <= 0:
        return math.inf
    if q >= 1.0:
        return order / (2 * noise_multiplier**2)
    if q <= 0.0:
        return 0.0
    k = np.arange(order + 1)
    log_binom = gammaln(order + 1) - gammaln(k + 1) - gammaln(order - k + 1)
    terms = (
        log_binom
        + (order - k) * math.log1p(-q)
        + k * math.log(q)
        + (k * k - k) / (2 * noise_multiplier**2)
    )
    return float(logsumexp(terms) / (order - 1))


def epsilon_from_rdp(rdp: np.ndarray, orders: np.ndarray, delta: float) -> tuple[float, float]:
    """Smallest epsilon over the orders and the order attaining it (Balle et al. 2020)."""
    orders = np.asarray(orders, dtype=np.float64)
    eps = rdp + np.log1p(-1 / orders) - (np.log(delta) + np.log(orders)) / (orders - 1)
    eps = np.where(np.isfinite(eps), eps, np.inf)
    best = int(np.argmin(eps))
    return max(float(eps[best]), 0.0), float(orders[best])


@dataclass
class RdpAccountant:
    """Composes rounds of the sampled Gaussian mechanism.

    Examples
    --------
    >>> acc = RdpAccountant(noise_multiplier=1.0)
    >>> acc.step(q=1.0, rounds=10)
    >>> round(acc.epsilon(1e-5), 2)
    19.8
    """

    noise_multiplier: float
    orders: tuple[int, ...] = DEFAULT_ORDERS
    rdp_: np.ndarray = field(init=False)
    rounds_: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise SpecError([f"`noise_multiplier` must be >= 0, got {self.noise_multiplier}"])
        self.rdp_ = np.zeros(len(self.orders))

    def step(self, q: float, rounds: int = 1) -> None:
        """Account ``rounds`` rounds that each sampled a fraction ``q`` of the clients."""
        per_round = np.array(
            [rdp_sampled_gaussian(q, self.noise_multiplier, a) for a in self.orders]
        )
        self.rdp_ = self.rdp_ + rounds * per_round
        self.rounds_ += rounds

    def epsilon(self, delta: float) -> float:
        """Epsilon of everything accounted so far, at ``delta``."""
        if not 0 < delta < 1:
            raise SpecError([f"`delta` must be in (0, 1), got {delta}"])
        if self.rounds_ == 0:
            return 0.0
        return epsilon_from_rdp(self.rdp_, np.array(self.orders), delta)[0]
