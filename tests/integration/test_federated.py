"""Federated simulation on Ray actors: same arithmetic as in-process, and failures handled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from raypipe.federated.clients import ClientGroup, FailureInjection, build_shards
from raypipe.federated.partition import partition_dirichlet
from raypipe.federated.simulation import (
    FederationSpec,
    InlineFederation,
    RoundRecord,
    run_federation,
)
from raypipe.federated.strategies import FedAvg
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from raypipe.engine.federation import RayFederation

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _data(n: int = 8000, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ rng.normal(size=d))))).astype(float)
    return x, y


def test_actors_host_many_clients_and_match_the_in_process_run(ray_runtime) -> None:
    from raypipe.engine.backend import RayBackend
    from raypipe.engine.federation import RayFederation

    x, y = _data()
    shards = build_shards(x, y, partition_dirichlet(y, 40, 0.5, seed=1), 2)
    spec = FederationSpec(rounds=4)
    inline = run_federation(
        InlineFederation([ClientGroup(s, None, i) for i, s in enumerate(shards)]),
        FedAvg(),
        spec,
        np.zeros(7),
        test=(x[:1000], y[:1000]),
    )
    ray_backend = RayBackend(ray_runtime)
    backend = ray_backend.federation(shards, num_cpus=0.5)
    assert isinstance(backend, RayFederation) and backend.size == 2
    try:
        on_ray = run_federation(backend, FedAvg(), spec, np.zeros(7), test=(x[:1000], y[:1000]))
    finally:
        backend.close()
    assert ray_backend.node_ids == {ray_runtime.driver_node_id}  # its actors', no task ran
    np.testing.assert_allclose(on_ray.weights, inline.weights, rtol=1e-12)
    assert [r.clients["auc"] for r in on_ray.history] == pytest.approx(
        [r.clients["auc"] for r in inline.history]
    )


def test_a_dead_or_late_actor_leaves_its_clients_out_and_comes_back(ray_runtime) -> None:
    from raypipe.engine.federation import RayFederation

    x, y = _data()
    shards = build_shards(x, y, partition_dirichlet(y, 20, 1.0, seed=2), 2)
    failures = FailureInjection(kill=(2,), hang=((4, 5.0),), shard=1)
    backend = RayFederation(shards, failures=failures)
    backend.wait_ready()
    spec = FederationSpec(rounds=8, round_timeout_s=3.0, evaluate_clients=False)

    def after(record: RoundRecord) -> None:
        # Called once the next round is done. A killed actor takes seconds to come back (more
        # on a busy machine) while a round without it takes milliseconds: wait for it here, so
        # the hang of round 4 and the last round meet a live actor, however long its restart.
        if record.round in (2, 4):
            _wait_until_every_actor_answers(backend)

    try:
        result = run_federation(backend, FedAvg(), spec, np.zeros(7), test=(x, y), on_round=after)
    finally:
        backend.close()
    answered = [r.answered for r in result.history]
    hosted_by_0 = len(shards[0].client_ids)
    assert answered[0] == 20 and answered[1] == hosted_by_0  # round 2: shard 1 died
    assert answered[3] == hosted_by_0  # round 4: shard 1 late
    assert {"timed out after 3.0 s"} == set(result.history[3].failed.values())
    assert answered[-1] == 20  # restarted by Ray, its clients reloaded from the object store
    assert result.final_test["auc"] > 0.7


def _wait_until_every_actor_answers(backend: RayFederation) -> None:
    from ray.exceptions import RayError

    def answers() -> bool:
        try:
            backend.wait_ready()
        except RayError:  # still restarting
            return False
        return True

    wait_until(answers, "the restarted actor to answer")


def test_federated_xgboost_on_actors_matches_the_in_process_run(ray_runtime) -> None:
    from raypipe.engine.backend import RayBackend
    from raypipe.engine.federation import RayFederation
    from raypipe.federated.strategies import FedXgbBagging
    from raypipe.federated.xgb_clients import XgbTrainSpec

    x, y = _data(n=4000)
    shards = build_shards(x, y, partition_dirichlet(y, 12, 1.0, seed=1), 2)
    spec = FederationSpec(
        rounds=3, local=XgbTrainSpec.from_options({"max_depth": 3}, 1, new_trees_only=True)
    )
    empty = np.empty(0, np.uint8)
    inline = run_federation(
        InlineFederation([ClientGroup(s, None, i) for i, s in enumerate(shards)]),
        FedXgbBagging(),
        spec,
        empty,
        test=(x[:1000], y[:1000]),
    )
    backend = RayBackend(ray_runtime).federation(shards, num_cpus=0.5)
    assert isinstance(backend, RayFederation)
    try:
        on_ray = run_federation(backend, FedXgbBagging(), spec, empty, test=(x[:1000], y[:1000]))
    finally:
        backend.close()
    assert on_ray.model_bytes == inline.model_bytes  # one thread per client: deterministic
    assert on_ray.final_test["auc"] == inline.final_test["auc"] > 0.7
    assert on_ray.history[-1].clients["auc"] == pytest.approx(inline.history[-1].clients["auc"])


@pytest.mark.parametrize("protection", ["secagg", "homomorphic"])
def test_protected_aggregation_between_actors_matches_the_plain_mean(ray_runtime, protection):
    from raypipe.engine.backend import RayBackend
    from raypipe.engine.federation import RayFederation
    from raypipe.federated.privacy import SecAggConfig
    from raypipe.federated.privacy.homomorphic import HeConfig

    if protection == "homomorphic":
        pytest.importorskip("tenseal")

    x, y = _data()
    shards = build_shards(x, y, partition_dirichlet(y, 20, 1.0, seed=3), 2)
    plain_spec = FederationSpec(rounds=3, evaluate_clients=False, secagg_max_weight=1.0)
    secure_spec = FederationSpec(
        rounds=3,
        evaluate_clients=False,
        secagg_max_weight=1.0,  # every client weighs 1: the mean with equal weights
        secure_aggregation=SecAggConfig(num_shares=6, reconstruction_threshold=3)
        if protection == "secagg"
        else None,
        homomorphic=HeConfig() if protection == "homomorphic" else None,
    )

    class _Uniform(FedAvg):
        def aggregate(self, round_, weights, updates):
            return updates.params.mean(axis=0)

    plain = run_federation(
        InlineFederation([ClientGroup(s, None, i) for i, s in enumerate(shards)]),
        _Uniform(),
        plain_spec,
        np.zeros(7),
    )
    # Through the backend a stage gets: its federation's actors run the SecAgg+ steps.
    backend = RayBackend(ray_runtime).federation(shards)
    assert isinstance(backend, RayFederation)
    try:
        secure = run_federation(backend, _Uniform(), secure_spec, np.zeros(7), test=(x, y))
    finally:
        backend.close()
    np.testing.assert_allclose(secure.weights, plain.weights, atol=1e-4)
    assert all(r.answered == 20 for r in secure.history)
    assert all(r.privacy_bytes_per_client > 0 for r in secure.history)
