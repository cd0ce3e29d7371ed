"""DP alone and DP with secure aggregation run the same mechanism (issue 14.2), and the noise
is not a function of the logged seed (issue 13.8)."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.federated.clients import ClientGroup, build_shards
from raypipe.federated.partition import partition_iid
from raypipe.federated.privacy import DPFixedClipping, SecAggConfig
from raypipe.federated.secure_clients import SecAggHost, SecureFit, contribution
from raypipe.federated.secure_rounds import secure_aggregate
from raypipe.federated.simulation import FederationSpec, InlineFederation, run_federation
from raypipe.federated.strategies import ClientUpdates, FedAvg

M, P, Z, C = 10, 4000, 1.0, 1.0


def _updates(weights: np.ndarray) -> ClientUpdates:
    """Ten clients: one with a huge delta along +e, nine with small ones along -e."""
    e = np.ones(P) / np.sqrt(P)
    deltas = np.vstack([50.0 * e] + [-0.5 * e] * (M - 1))
    return ClientUpdates(np.arange(M), weights + deltas, np.full(M, 100), np.zeros(M))


CONFIG = SecAggConfig(num_shares=9, reconstruction_threshold=2, clipping_range=2)


def _aggregate(
    dp: DPFixedClipping, secure: bool, weights: np.ndarray, updates: ClientUpdates, gone=()
) -> tuple[np.ndarray, int]:
    """One round through the real path: the strategy alone, or the clients' SecAgg+ hosts."""
    dp.sample(1, np.arange(M), np.random.default_rng(0))
    if not secure:
        return dp.aggregate(1, weights, updates), len(updates)
    host = SecAggHost()  # client side: each client clips its own delta before masking
    adverts = [
        host.hold(int(cid), contribution(row, weights, int(n), SecureFit(1000.0, dp.clipping_norm)))
        for cid, row, n in zip(
            updates.client_ids, updates.params, updates.num_examples, strict=True
        )
    ]
    answered = updates.with_params(np.empty((M, 0)))
    out, secure_round = secure_aggregate(
        lambda name, payload: host.step(name, payload),
        dp,
        CONFIG,
        1,
        weights,
        answered,
        adverts,
        frozenset(gone),
    )
    return out, len(secure_round.result.included)


@pytest.mark.parametrize("secure", [False, True], ids=["dp", "dp+secagg"])
def test_each_client_is_clipped_and_the_noise_on_the_mean_is_z_c_over_m(secure):
    weights = np.zeros(P)
    updates = _updates(weights)
    e = np.ones(P) / np.sqrt(P)
    # per-client clipping: (C - 9 * 0.5) / 10 along e; clipping the mean instead would give
    # min(C, |50 - 4.5| / 10) = C along +e, the opposite sign
    expected_mean = (C - (M - 1) * 0.5) / M * e

    silent = DPFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=C)
    mean, count = _aggregate(silent, secure, weights, updates)
    assert count == M
    np.testing.assert_allclose(mean, expected_mean, atol=1e-4)

    noisy = DPFixedClipping(FedAvg(), noise_multiplier=Z, clipping_norm=C)
    out, _ = _aggregate(noisy, secure, weights, updates)
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
    gone = (2, 5, 7)  # shared their keys, never uploaded
    silent = DPFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=C)
    base, count = _aggregate(silent, True, weights, _updates(weights), gone)
    assert count == M - len(gone)
    e = np.ones(P) / np.sqrt(P)
    np.testing.assert_allclose(base, (C - (count - 1) * 0.5) / count * e, atol=1e-4)
    noisy = DPFixedClipping(FedAvg(), noise_multiplier=Z, clipping_norm=C)
    out, _ = _aggregate(noisy, True, weights, _updates(weights), gone)
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
