"""Federated XGBoost through the simulation loop, in-process: bagging and cyclic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raypipe.errors import SpecError, StageError
from raypipe.federated.clients import ClientGroup, FailureInjection, build_shards, roc_auc
from raypipe.federated.models import LocalTrainSpec
from raypipe.federated.partition import partition_iid
from raypipe.federated.simulation import FederationSpec, InlineFederation, run_federation
from raypipe.federated.strategies import FedAvg, FedXgbBagging, FedXgbCyclic
from raypipe.federated.xgb_clients import XgbTrainSpec, predict_model

PARAMS = {"max_depth": 3}
NO_MODEL = np.empty(0, np.uint8)


def _data(n: int = 4000, seed: int = 0):
    """A non-linear problem (interaction, threshold, sine) that trees fit and a line does not."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 1500, 5))
    score = 1.5 * x[:, 0] - x[:, 1] + np.sin(2 * x[:, 2]) + 1.2 * (x[:, 3] > 0.5) * x[:, 4]
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-score))).astype(float)
    return x[:n], y[:n], (x[n:], y[n:])


def _federation(x, y, clients: int, failures=None) -> InlineFederation:
    shards = build_shards(x, y, partition_iid(len(y), clients, seed=3), 2)
    return InlineFederation([ClientGroup(s, failures, i) for i, s in enumerate(shards)])


def _central_auc(x, y, test, rounds: int) -> float:
    import xgboost as xgb

    spec = XgbTrainSpec.from_options(PARAMS, 1, new_trees_only=True)
    booster = xgb.train(spec.booster_params(), xgb.DMatrix(x, label=y), rounds)
    return roc_auc(test[1], booster.inplace_predict(test[0]))


def _num_trees(model: bytes) -> int:
    doc = json.loads(model)["learner"]["gradient_booster"]["model"]
    assert len(doc["trees"]) == int(doc["gbtree_model_param"]["num_trees"])
    return len(doc["trees"])


@pytest.mark.parametrize("local_rounds", [1, 2])
def test_bagging_reaches_central_xgboost_and_appends_every_clients_trees(local_rounds):
    x, y, test = _data()
    clients, rounds = 4, 4
    spec = FederationSpec(
        rounds=rounds, local=XgbTrainSpec.from_options(PARAMS, local_rounds, new_trees_only=True)
    )
    result = run_federation(
        _federation(x, y, clients),
        FedXgbBagging(num_local_round=local_rounds),
        spec,
        NO_MODEL,
        test=test,
    )
    assert _num_trees(result.model_bytes) == clients * rounds * local_rounds
    central = _central_auc(x, y, test, clients * rounds * local_rounds)
    assert result.final_test["auc"] > central - 0.01
    # each round's appended trees improve on the last (AUC recorded per round)
    aucs = [r.test["auc"] for r in result.history]
    assert aucs[-1] > aucs[0] and all(r.answered == clients for r in result.history)
    # every round's model was evaluated on every client's holdout
    assert all(0.5 < r.clients["auc"] <= 1 for r in result.history)
    assert len(result.history[-1].client_auc) == clients
    # the recorded test AUC is the final model's
    assert roc_auc(test[1], predict_model(result.model_bytes, test[0])) == pytest.approx(
        result.final_test["auc"]
    )


def test_cyclic_passes_the_model_round_robin_and_reaches_central_xgboost():
    x, y, test = _data(seed=1)
    clients, rounds = 3, 12
    spec = FederationSpec(
        rounds=rounds, local=XgbTrainSpec.from_options(PARAMS, 2, new_trees_only=False)
    )
    strategy = FedXgbCyclic(num_local_round=2)
    result = run_federation(_federation(x, y, clients), strategy, spec, NO_MODEL, test=test)
    assert _num_trees(result.model_bytes) == rounds * 2
    assert all(r.sampled == 1 and r.answered == 1 for r in result.history)
    assert result.final_test["auc"] > _central_auc(x, y, test, rounds * 2) - 0.01
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_crashed_clients_add_no_trees_and_cyclic_hands_the_turn_on():
    x, y, test = _data(seed=2)
    failures = FailureInjection(crash=frozenset({(2, 1), (2, 3)}))
    spec = FederationSpec(rounds=3, local=XgbTrainSpec.from_options(PARAMS, 1, new_trees_only=True))
    result = run_federation(
        _federation(x, y, 4, failures), FedXgbBagging(), spec, NO_MODEL, test=test
    )
    assert result.history[1].failed == {
        1: "client crashed (injected)",
        3: "client crashed (injected)",
    }
    assert _num_trees(result.model_bytes) == 4 + 2 + 4

    # cyclic: round 2's client (id 1) crashes; the retry gives the turn to client 2
    failures = FailureInjection(crash=frozenset({(2, 1)}))
    cyclic = FederationSpec(
        rounds=3, local=XgbTrainSpec.from_options(PARAMS, 1, new_trees_only=False)
    )
    strategy = FedXgbCyclic()
    result = run_federation(_federation(x, y, 4, failures), strategy, cyclic, NO_MODEL, test=test)
    assert [r.attempts for r in result.history] == [1, 2, 1]
    assert strategy.turn_ == 4 and _num_trees(result.model_bytes) == 3

    # nobody answers: a clear error after the retries
    spec = FederationSpec(
        rounds=1, round_retries=1, local=XgbTrainSpec.from_options(PARAMS, 1, new_trees_only=True)
    )
    crash_all = FailureInjection(crash_rate=1.0)
    with pytest.raises(StageError, match="min_fit_clients"):
        run_federation(_federation(x, y, 4, crash_all), FedXgbBagging(), spec, NO_MODEL)


def test_sampling_follows_fraction_fit():
    x, y, test = _data(n=3000, seed=3)
    spec = FederationSpec(
        rounds=3,
        local=XgbTrainSpec.from_options(PARAMS, 1, new_trees_only=True),
        evaluate_clients=False,
    )
    strategy = FedXgbBagging(fraction_fit=0.5, min_fit_clients=2)
    result = run_federation(_federation(x, y, 6), strategy, spec, NO_MODEL, test=test)
    assert all(r.sampled == 3 for r in result.history)
    assert _num_trees(result.model_bytes) == 9


def test_model_and_strategy_must_match():
    x, y, _ = _data(n=1000)
    xgb_spec = FederationSpec(rounds=1, local=XgbTrainSpec())
    with pytest.raises(SpecError, match="xgb_bagging"):
        run_federation(_federation(x, y, 2), FedAvg(), xgb_spec, NO_MODEL)
    with pytest.raises(SpecError, match="does not fit"):
        run_federation(
            _federation(x, y, 2), FedXgbBagging(), FederationSpec(local=LocalTrainSpec()), NO_MODEL
        )
