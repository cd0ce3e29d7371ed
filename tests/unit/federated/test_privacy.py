from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from raypipe.errors import RaypipeError
from raypipe.federated.privacy import (
    DPFixedClipping,
    RdpAccountant,
    clip_updates,
    rdp_sampled_gaussian,
)
from raypipe.federated.strategies import ClientUpdates, FedAvg, FedMedian


def test_rdp_without_sampling_is_the_gaussian_mechanism():
    for order in (2, 5, 32):
        assert rdp_sampled_gaussian(1.0, 1.3, order) == pytest.approx(order / (2 * 1.3**2))


@pytest.mark.parametrize(("q", "sigma", "order"), [(0.1, 1.0, 2), (0.05, 0.8, 4), (0.5, 2.0, 8)])
def test_sampled_gaussian_rdp_matches_numerical_integration(q, sigma, order):
    # A_alpha = E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]
    def integrand(z: float) -> float:
        ratio = (1 - q) + q * math.exp((2 * z - 1) / (2 * sigma**2))
        return stats.norm.pdf(z, scale=sigma) * ratio**order

    a, _ = integrate.quad(integrand, -40 * sigma, 40 * sigma, limit=200)
    assert rdp_sampled_gaussian(q, sigma, order) == pytest.approx(
        math.log(a) / (order - 1), rel=1e-6
    )


def test_epsilon_grows_with_rounds_and_shrinks_with_noise_and_sampling():
    def eps(z: float, q: float, rounds: int) -> float:
        acc = RdpAccountant(z)
        acc.step(q, rounds)
        return acc.epsilon(1e-5)

    assert eps(1.0, 1.0, 10) < eps(1.0, 1.0, 20)
    assert eps(2.0, 1.0, 10) < eps(1.0, 1.0, 10)
    assert eps(1.0, 0.1, 10) < eps(1.0, 1.0, 10)
    # one Gaussian release: RDP bound is no better than the classic analytic bound would allow
    assert 0 < eps(5.0, 1.0, 1) < 1.5


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.floats(0.1, 10), st.integers(0, 99))
def test_clipping_bounds_every_update_and_keeps_small_ones(k, p, c, seed):
    deltas = np.random.default_rng(seed).normal(scale=5, size=(k, p))
    clipped, was = clip_updates(deltas, c)
    norms = np.linalg.norm(deltas, axis=1)
    assert np.all(np.linalg.norm(clipped, axis=1) <= c * (1 + 1e-12))
    np.testing.assert_allclose(clipped[~was], deltas[~was])
    np.testing.assert_allclose(clipped[was], deltas[was] * (c / norms[was])[:, None])


def test_dp_uses_uniform_weights_noise_scale_and_reports_epsilon():
    k, p = 50, 2000
    w = np.zeros(p)
    params = np.tile([[0.01]], (k, p)) * np.arange(1, k + 1)[:, None]
    u = ClientUpdates(np.arange(k), params, np.arange(1, k + 1) * 100, np.zeros(k))
    dp = DPFixedClipping(FedAvg(), noise_multiplier=1.0, clipping_norm=1e6)
    dp.sample(1, np.arange(100), np.random.default_rng(0))
    out = dp.aggregate(1, w, u)
    noise = out - params.mean(axis=0)  # uniform mean, not example-weighted
    assert np.std(noise) == pytest.approx(1e6 / k, rel=0.1)
    assert dp.epsilon_ > 0
    with pytest.raises(RaypipeError, match="mean strategy"):
        DPFixedClipping(FedMedian(), noise_multiplier=1.0, clipping_norm=1.0)
