"""DP alone and DP with secure aggregation run the same mechanism (issue 14.2), and the noise
is not a function of the logged seed (issue 13.8)."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.federated.clients import ClientGroup, build_shards
from raypipe.federated.partition import partition_iid
from raypipe.federated.privacy import DPFixedClipping, SecAggConfig
from raypipe.federated.simulation import (
    FederationSpec,
    InlineFederation,
    aggregate_round,
    run_federation,
)
from raypipe.federated.strategies import ClientUpdates, FedAvg

M, P, Z, C = 10, 4000, 1.0, 1.0


def _updates(weights: np.ndarray) -> ClientUpdates:
    """Ten clients: one with a huge delta along +e, nine with small ones along -e."""
    e = np.ones(P) / np.sqrt(P)
    deltas = np.vstack([50.0 * e] + [-0.5 * e] * (M - 1))
    return ClientUpdates(np.arange(M), weights + deltas, np.full(M, 100), np.zeros(M))


def _spec(secure: bool) -> FederationSpec:
    return FederationSpec(
        secure_aggregation=SecAggConfig(num_shares=4, reconstruction_threshold=2, clipping_range=2)
        if secure
        else None
    )


@pytest.mark.parametrize("secure", [False, True], ids=["dp", "dp+secagg"])
def test_each_client_is_clipped_and_the_noise_on_the_mean_is_z_c_over_m(secure):
    weights = np.zeros(P)
    updates = _updates(weights)
    e = np.ones(P) / np.sqrt(P)
    # per-client clipping: (C - 9 * 0.5) / 10 along e; clipping the mean instead would give
    # min(C, |50 - 4.5| / 10) = C along +e, the opposite sign
    expected_mean = (C - (M - 1) * 0.5) / M * e

    silent = DPFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=C)
    silent.sample(1, np.arange(M), np.random.default_rng(0))
    mean, count = aggregate_round(silent, _spec(secure), 1, weights, updates)
    assert count == M
    np.testing.assert_allclose(mean, expected_mean, atol=1e-4)
    assert silent.clipped_fraction_ == pytest.approx(0.1)

    noisy = DPFixedClipping(FedAvg(), noise_multiplier=Z, clipping_norm=C)
    noisy.sample(1, np.arange(M), np.random.default_rng(0))
    out, _ = aggregate_round(noisy, _spec(secure), 1, weights, updates)
    noise = out - expected_mean
    # sample std of P = 4000 normals: relative standard error 1/sqrt(2P) = 1.1 %; 5 % is 4.5 SE
    assert np.std(noise) == pytest.approx(Z * C / M, rel=0.05)
    assert abs(np.mean(noise)) < 5 * Z * C / M / np.sqrt(P)
    # epsilon is that of one round of the Gaussian mechanism with multiplier z, q = 1
    reference = DPFixedClipping(FedAvg(), noise_multiplier=Z, clipping_norm=C)
    reference.accountant_.step(q=1.0)
    assert noisy.epsilon_ == pytest.approx(reference.accountant_.epsilon(1e-5))


def test_dp_with_secagg_calibrates_noise_to_the_clients_whose_upload_arrived():
    weights = np.zeros(P)
    spec = FederationSpec(
        secure_aggregation=SecAggConfig(num_shares=9, reconstruction_threshold=2),
        secagg_dropout=0.3,
        seed=4,
    )
    silent = DPFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=C)
    silent.sample(1, np.arange(M), np.random.default_rng(0))
    _, count = aggregate_round(silent, spec, 1, weights, _updates(weights))
    assert 1 < count < M  # some dropped after masking
    noisy = DPFixedClipping(FedAvg(), noise_multiplier=Z, clipping_norm=C)
    noisy.sample(1, np.arange(M), np.random.default_rng(0))
    out, count2 = aggregate_round(noisy, spec, 1, weights, _updates(weights))
    silent_again = DPFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=C)
    silent_again.sample(1, np.arange(M), np.random.default_rng(0))
    base, _ = aggregate_round(silent_again, spec, 1, weights, _updates(weights))
    assert count2 == count
    assert np.std(out - base) == pytest.approx(Z * C / count, rel=0.05)


class _Recording(InlineFederation):
    def __init__(self, groups):
        super().__init__(groups)
        self.sampled: list[list[int]] = []

    def fit_round(self, request, timeout_s):
        self.sampled.append([int(c) for c in request.client_ids])
        return super().fit_round(request, timeout_s)


def test_same_seed_gives_same_sampling_and_different_dp_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4))
    y = (x[:, 0] + rng.normal(size=3000) > 0).astype(float)
    shards = build_shards(x, y, partition_iid(len(y), 12), 2)

    def run() -> tuple[list[list[int]], np.ndarray]:
        backend = _Recording([ClientGroup(s) for s in shards])
        dp = DPFixedClipping(FedAvg(fraction_fit=0.5), noise_multiplier=1.0, clipping_norm=1.0)
        spec = FederationSpec(rounds=3, evaluate_clients=False, seed=7)
        result = run_federation(backend, dp, spec, np.zeros(5))
        return backend.sampled, result.weights

    sampled_a, weights_a = run()
    sampled_b, weights_b = run()
    assert sampled_a == sampled_b and len(sampled_a[0]) == 6
    assert not np.allclose(weights_a, weights_b)
