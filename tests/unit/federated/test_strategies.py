from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from raypipe.errors import SpecError
from raypipe.federated.strategies import (
    ClientUpdates,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedXgbBagging,
    FedXgbCyclic,
    XgbUpdates,
)
from raypipe.federated.xgb_clients import boost_locally

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def updates(draw: st.DrawFn) -> ClientUpdates:
    k = draw(st.integers(1, 9))
    p = draw(st.integers(1, 5))
    params = draw(arrays(np.float64, (k, p), elements=finite))
    n = np.array(draw(st.lists(st.integers(1, 10_000), min_size=k, max_size=k)))
    return ClientUpdates(np.arange(k), params, n, np.zeros(k))


@settings(max_examples=60, deadline=None)
@given(updates())
def test_fedavg_is_the_example_weighted_mean(u):
    got = FedAvg().aggregate(1, np.zeros(u.params.shape[1]), u)
    # brute force: repeat each client's row n_k times and take the plain mean
    expected = [
        sum(float(u.params[k, j]) * int(u.num_examples[k]) for k in range(len(u)))
        / int(u.num_examples.sum())
        for j in range(u.params.shape[1])
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(updates())
def test_fedmedian_is_the_coordinatewise_median(u):
    got = FedMedian().aggregate(1, np.zeros(u.params.shape[1]), u)
    for j in range(u.params.shape[1]):
        column = sorted(float(v) for v in u.params[:, j])
        k = len(column)
        median = column[k // 2] if k % 2 else (column[k // 2 - 1] + column[k // 2]) / 2
        assert got[j] == pytest.approx(median, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(updates(), st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.45]))
def test_trimmed_mean_drops_int_beta_k_from_each_end(u, beta):
    got = FedTrimmedAvg(beta=beta).aggregate(1, np.zeros(u.params.shape[1]), u)
    k = len(u)
    cut = int(beta * k)
    for j in range(u.params.shape[1]):
        kept = sorted(float(v) for v in u.params[:, j])[cut : k - cut]
        assert got[j] == pytest.approx(sum(kept) / len(kept), rel=1e-9, abs=1e-9)


def test_trimmed_mean_ignores_an_outlier_that_fedavg_does_not():
    params = np.array([[1.0], [1.1], [0.9], [1.0], [1000.0]])
    u = ClientUpdates(np.arange(5), params, np.ones(5, int), np.zeros(5))
    assert FedTrimmedAvg(beta=0.2).aggregate(1, np.zeros(1), u)[0] == pytest.approx(3.1 / 3)
    assert FedMedian().aggregate(1, np.zeros(1), u)[0] == pytest.approx(1.0)
    assert FedAvg().aggregate(1, np.zeros(1), u)[0] > 100


def test_fedadam_follows_flowers_update_rule():
    s = FedAdam()
    assert (s.eta, s.eta_l, s.beta_1, s.beta_2, s.tau) == (0.1, 0.1, 0.9, 0.99, 1e-3)
    w = np.array([0.0, 1.0])
    m = v = np.zeros(2)
    for t in (1, 2, 3):
        params = np.array([[1.0, 0.0], [3.0, 2.0]]) * t
        u = ClientUpdates(np.arange(2), params, np.array([1, 3]), np.zeros(2))
        delta = (params[0] * 1 + params[1] * 3) / 4 - w
        m = 0.9 * m + 0.1 * delta
        v = 0.99 * v + 0.01 * delta**2
        expected = w + 0.1 * np.sqrt(1 - 0.99**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-3)
        w = s.aggregate(t, w, u)
        np.testing.assert_allclose(w, expected)


def test_fedprox_sends_mu_and_sampling_follows_flower():
    s = FedProx(proximal_mu=0.3, fraction_fit=0.1, min_fit_clients=4)
    assert s.client_config(1) == {"proximal_mu": 0.3}
    rng = np.random.default_rng(0)
    assert len(s.sample(1, np.arange(100), rng)) == 10
    assert len(s.sample(1, np.arange(20), rng)) == 4  # max(int(20 * 0.1), 4)
    with pytest.raises(SpecError, match="min_available_clients"):
        FedAvg(min_available_clients=5).sample(1, np.arange(3), rng)


def _xgb_data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(float)


XGB_PARAMS = {
    "objective": "binary:logistic",
    "max_depth": 2,
    "eta": 0.3,
    "nthread": 1,
    "base_score": 0.5,
}


def _margin(model: bytes, x: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model))
    return booster.predict(xgb.DMatrix(x), output_margin=True)


@pytest.mark.parametrize("local_rounds", [1, 2])
def test_xgb_bagging_appends_every_clients_new_trees(local_rounds):
    clients = [_xgb_data(s) for s in range(3)]
    strategy = FedXgbBagging(num_local_round=local_rounds)
    x_eval, _ = _xgb_data(99)
    model = b""
    for round_ in (1, 2):
        models = tuple(
            boost_locally(model, x, y, XGB_PARAMS, local_rounds, new_trees_only=True)
            for x, y in clients
        )
        before = _margin(model, x_eval) if model else None
        new = strategy.aggregate(round_, model, XgbUpdates(np.arange(3), models, np.full(3, 300)))
        if before is not None:
            # oracle: the global margin grows by each client's new trees' margin
            added = sum(_margin(m, x_eval) - 0.0 for m in models)  # base_score 0.5 -> margin 0
            np.testing.assert_allclose(_margin(new, x_eval), before + added, rtol=1e-5, atol=1e-5)
        model = new
    doc = json.loads(model)["learner"]["gradient_booster"]["model"]
    trees = 3 * local_rounds + 3 * local_rounds
    assert int(doc["gbtree_model_param"]["num_trees"]) == len(doc["trees"]) == trees
    assert [t["id"] for t in doc["trees"]] == list(range(trees))
    assert doc["iteration_indptr"] == list(range(trees + 1))


def test_xgb_cyclic_passes_the_model_round_robin():
    clients = [_xgb_data(s) for s in range(3)]
    strategy = FedXgbCyclic()
    rng = np.random.default_rng(0)
    model = b""
    for round_ in range(1, 5):
        (cid,) = strategy.sample(round_, np.arange(3), rng)
        assert cid == (round_ - 1) % 3
        x, y = clients[cid]
        answer = boost_locally(model, x, y, XGB_PARAMS, 1, new_trees_only=False)
        model = strategy.aggregate(
            round_, model, XgbUpdates(np.array([cid]), (answer,), np.ones(1))
        )
    doc = json.loads(model)["learner"]["gradient_booster"]["model"]
    assert int(doc["gbtree_model_param"]["num_trees"]) == 4
