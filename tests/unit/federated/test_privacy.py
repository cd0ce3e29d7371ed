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
    SecAggConfig,
    clip_updates,
    rdp_sampled_gaussian,
    secure_sum,
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


@settings(max_examples=15, deadline=None)
@given(k=st.integers(2, 12), p=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_secure_sum_equals_plain_sum_within_quantization_error(k, p, seed):
    vectors = np.random.default_rng(seed).uniform(-8, 8, size=(k, p))
    config = SecAggConfig()
    result = secure_sum(vectors, config, seed=seed)
    step = 2 * config.clipping_range / config.quantization_range
    assert np.all(np.abs(result.total - vectors.sum(axis=0)) <= k * step + 1e-9)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(4, 12), seed=st.integers(0, 10_000), data=st.data())
def test_clients_dropping_after_masking_are_left_out_and_the_rest_unmasked(k, seed, data):
    dropped = data.draw(st.lists(st.integers(0, k - 1), max_size=k - 3, unique=True))
    vectors = np.random.default_rng(seed).normal(size=(k, 5))
    config = SecAggConfig(num_shares=4, reconstruction_threshold=2)
    kept = [i for i in range(k) if i not in dropped]
    # each client's secrets are shared with itself and its ring neighbours i-2..i+2
    holders = [{(i + d) % k for d in range(-2, 3)} for i in range(k)]
    if any(len(holders[i] & set(kept)) < 2 for i in range(k)):
        with pytest.raises(RaypipeError, match="reconstruction_threshold"):
            secure_sum(vectors, config, dropped_after_masking=dropped, seed=seed)
        return
    result = secure_sum(vectors, config, dropped_after_masking=dropped, seed=seed)
    assert result.included == tuple(kept)
    step = 2 * config.clipping_range / config.quantization_range
    np.testing.assert_allclose(result.total, vectors[kept].sum(axis=0), atol=k * step)


def test_too_many_dropouts_is_a_clear_error():
    with pytest.raises(RaypipeError, match="reconstruction_threshold"):
        secure_sum(
            np.zeros((6, 3)),
            SecAggConfig(num_shares=2, reconstruction_threshold=2),
            dropped_after_masking=[1, 3, 5],
        )


def test_a_single_masked_update_looks_uniform_whatever_the_input():
    from raypipe.federated.privacy.secagg import masked_upload

    modulus = 2**32
    seen = []
    for value in (0.0, 7.5):
        x = np.full((3, 20_000), value)
        masked = masked_upload(x, SecAggConfig(), 0, seed=5)
        assert stats.kstest(masked / modulus, "uniform").pvalue > 1e-3
        seen.append(masked)
    # the uploads of a constant-0 and a constant-7.5 client are indistinguishable in distribution
    assert stats.ks_2samp(seen[0], seen[1]).pvalue > 1e-3
    # while the unmasked quantized vectors are obviously different
    assert not np.array_equal(seen[0], seen[1])
