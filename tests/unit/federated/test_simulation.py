from __future__ import annotations

import numpy as np
import pytest

from raypipe.errors import StageError
from raypipe.federated.clients import ClientGroup, FailureInjection, build_shards
from raypipe.federated.models import LocalTrainSpec, init_params
from raypipe.federated.partition import partition_dirichlet, partition_iid
from raypipe.federated.privacy import DPFixedClipping, SecAggConfig
from raypipe.federated.simulation import FederationSpec, InlineFederation, run_federation
from raypipe.federated.strategies import FedAdam, FedAvg, FedMedian, FedProx, FedTrimmedAvg


def _data(n: int = 6000, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=d)
    x = rng.normal(size=(n + 2000, d))
    y = (rng.random(n + 2000) < 1 / (1 + np.exp(-(x @ beta)))).astype(float)
    return x[:n], y[:n], (x[n:], y[n:])


def _federation(x, y, parts, shards=2, failures=None):
    return InlineFederation(
        [ClientGroup(s, failures, i) for i, s in enumerate(build_shards(x, y, parts, shards))]
    )


def _central_auc(x, y, test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    model = LogisticRegression().fit(x, y)
    return float(roc_auc_score(test[1], model.predict_proba(test[0])[:, 1]))


@pytest.mark.parametrize(
    "strategy",
    [FedAvg(), FedProx(proximal_mu=0.1), FedAdam(eta=0.05), FedMedian(), FedTrimmedAvg()],
)
def test_federated_logistic_regression_reaches_central_auc(strategy):
    x, y, test = _data()
    fed = _federation(x, y, partition_iid(len(y), 12))
    spec = FederationSpec(rounds=8, local=LocalTrainSpec(batch_size=32))
    result = run_federation(fed, strategy, spec, init_params(spec.local, 5), test=test)
    assert result.final_test["auc"] > _central_auc(x, y, test) - 0.01
    assert len(result.history) == 8
    assert all(r.answered == 12 for r in result.history)
    # every round's model was evaluated on every client's holdout
    assert all(0.5 < r.clients["auc"] <= 1 for r in result.history)
    assert len(result.history[-1].client_auc) == 12


def test_mlp_on_dirichlet_clients_learns():
    x, y, test = _data(seed=1)
    fed = _federation(x, y, partition_dirichlet(y, 10, 0.5, seed=2), shards=3)
    spec = FederationSpec(rounds=6, local=LocalTrainSpec(model="mlp", hidden=8, epochs=2))
    result = run_federation(fed, FedAvg(), spec, init_params(spec.local, 5, seed=1), test=test)
    assert result.final_test["auc"] > 0.8
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_crashed_clients_are_left_out_and_the_round_completes():
    x, y, test = _data()
    failures = FailureInjection(crash=frozenset({(2, 0), (2, 5), (3, 1)}))
    fed = _federation(x, y, partition_iid(len(y), 8), failures=failures)
    spec = FederationSpec(rounds=3, evaluate_clients=False)
    result = run_federation(fed, FedAvg(), spec, init_params(spec.local, 5), test=test)
    answered = [r.answered for r in result.history]
    assert answered == [8, 6, 7]
    assert result.history[1].failed == {
        0: "client crashed (injected)",
        5: "client crashed (injected)",
    }


def test_too_few_answers_retries_then_stops_with_a_clear_error():
    x, y, test = _data()
    fed = _federation(x, y, partition_iid(len(y), 4), failures=FailureInjection(crash_rate=1.0))
    spec = FederationSpec(rounds=2, round_retries=2, evaluate_clients=False)
    with pytest.raises(StageError, match="min_fit_clients") as info:
        run_federation(fed, FedAvg(min_fit_clients=2), spec, np.zeros(6), test=test)
    assert "after 3 attempts" in str(info.value)


def test_a_round_is_retried_when_the_first_sample_mostly_fails():
    x, y, _ = _data()
    # round 1: client 0 crashes; a sample of 3 out of 6 that holds it is retried with a new one
    failures = FailureInjection(crash=frozenset({(1, 0)}))
    fed = _federation(x, y, partition_iid(len(y), 6), failures=failures)
    attempts = []
    for seed in range(8):
        strategy = FedAvg(fraction_fit=0.5, min_fit_clients=3)
        spec = FederationSpec(rounds=1, round_retries=30, evaluate_clients=False, seed=seed)
        record = run_federation(fed, strategy, spec, np.zeros(6)).history[0]
        assert record.answered == 3
        assert (record.attempts > 1) == (0 in record.failed or record.attempts > 1)
        attempts.append(record.attempts)
    assert max(attempts) >= 2 and min(attempts) == 1


def test_late_groups_are_left_out():
    x, y, _ = _data()
    failures = FailureInjection(hang=((2, 0.3),), shard=1)
    fed = _federation(x, y, partition_iid(len(y), 6), failures=failures)
    spec = FederationSpec(rounds=2, round_timeout_s=0.25, evaluate_clients=False)
    result = run_federation(fed, FedAvg(), spec, np.zeros(6))
    assert result.history[0].answered == 6
    assert result.history[1].answered == 3
    assert set(result.history[1].failed.values()) == {"timed out after 0.25 s"}


def test_secure_aggregation_matches_plain_fedavg_with_capped_weights():
    x, y, test = _data()
    parts = partition_iid(len(y), 6)
    plain = run_federation(
        _federation(x, y, parts),
        FedAvg(),
        FederationSpec(rounds=3, evaluate_clients=False),
        np.zeros(6),
        test=test,
    )
    secure = run_federation(
        _federation(x, y, parts),
        FedAvg(),
        FederationSpec(rounds=3, evaluate_clients=False, secure_aggregation=SecAggConfig()),
        np.zeros(6),
        test=test,
    )
    # every client has > max_weight examples, so capped weights are uniform = FedAvg's here
    np.testing.assert_allclose(secure.weights, plain.weights, atol=1e-4)


def test_secure_aggregation_survives_dropouts_after_masking():
    x, y, test = _data()
    spec = FederationSpec(
        rounds=3,
        evaluate_clients=False,
        secagg_dropout=0.3,
        secure_aggregation=SecAggConfig(num_shares=4, reconstruction_threshold=2),
    )
    parts = partition_iid(len(y), 10)
    result = run_federation(_federation(x, y, parts), FedAvg(), spec, np.zeros(6), test=test)
    plain = run_federation(
        _federation(x, y, parts),
        FedAvg(),
        FederationSpec(rounds=3, evaluate_clients=False),
        np.zeros(6),
        test=test,
    )
    assert result.final_test["auc"] == pytest.approx(plain.final_test["auc"], abs=0.01)
    assert not np.allclose(result.weights, plain.weights, atol=1e-4)  # 30 % were left out


def test_dp_reports_growing_epsilon_each_round():
    x, y, test = _data()
    dp = DPFixedClipping(FedAvg(), noise_multiplier=0.5, clipping_norm=1.0, delta=1e-5)
    spec = FederationSpec(rounds=4, evaluate_clients=False)
    result = run_federation(
        _federation(x, y, partition_iid(len(y), 50)), dp, spec, np.zeros(6), test=test
    )
    eps = [r.epsilon for r in result.history]
    assert all(e is not None and e > 0 for e in eps)
    assert eps == sorted(eps) and eps[0] < eps[-1]
    # noiseless: 0.717; the noise (OS entropy, sd 0.01 per round) moves it by about 0.01
    assert result.final_test["auc"] > 0.65


def test_homomorphic_aggregation_matches_the_plain_capped_mean_and_composes_with_dp():
    pytest.importorskip("tenseal")
    from raypipe.federated.privacy.homomorphic import HeConfig

    x, y, test = _data()
    parts = partition_iid(len(y), 6)
    plain = run_federation(
        _federation(x, y, parts),
        FedAvg(),
        FederationSpec(rounds=3, evaluate_clients=False),
        np.zeros(6),
        test=test,
    )
    he_spec = FederationSpec(rounds=3, evaluate_clients=False, homomorphic=HeConfig())
    he = run_federation(_federation(x, y, parts), FedAvg(), he_spec, np.zeros(6), test=test)
    # every client has > max_weight examples, so capped weights are uniform = FedAvg's here
    np.testing.assert_allclose(he.weights, plain.weights, atol=1e-7)
    assert all(60_000 < r.privacy_bytes_per_client < 70_000 for r in he.history)  # 64 KB
    dp = DPFixedClipping(FedAvg(), noise_multiplier=0.5, clipping_norm=1.0)
    with_dp = run_federation(_federation(x, y, parts), dp, he_spec, np.zeros(6), test=test)
    assert with_dp.history[-1].epsilon == pytest.approx(_epsilon(0.5, 1.0, 3))


def _epsilon(z: float, q: float, rounds: int) -> float:
    from raypipe.federated.privacy import RdpAccountant

    acc = RdpAccountant(z)
    acc.step(q, rounds)
    return acc.epsilon(1e-5)


def test_secure_and_homomorphic_together_is_a_spec_error():
    from raypipe.errors import SpecError
    from raypipe.federated.privacy.homomorphic import HeConfig

    x, y, _ = _data(n=600)
    spec = FederationSpec(rounds=1, secure_aggregation=SecAggConfig(), homomorphic=HeConfig())
    with pytest.raises(SpecError, match="choose one"):
        run_federation(_federation(x, y, partition_iid(len(y), 3)), FedAvg(), spec, np.zeros(6))
