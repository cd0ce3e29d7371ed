from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.federated.models import (
    LocalTrainSpec,
    client_order,
    init_params,
    n_params,
    predict_proba,
    train_clients,
    train_one_reference,
    with_padding_row,
)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 90), min_size=1, max_size=6),
    model=st.sampled_from(["logistic", "mlp"]),
    epochs=st.integers(1, 2),
    batch=st.integers(1, 40),
    mu=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 10_000),
)
def test_vectorised_training_equals_the_per_client_loop(sizes, model, epochs, batch, mu, seed):
    rng = np.random.default_rng(seed)
    d = 4
    spec = LocalTrainSpec(model=model, hidden=3, epochs=epochs, batch_size=batch, proximal_mu=mu)
    x = rng.normal(size=(sum(sizes), d))
    y = (rng.random(sum(sizes)) < 0.5).astype(float)
    start = init_params(spec, d, seed) + rng.normal(0, 0.1, n_params(spec, d))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    orders = [client_order(n, epochs, (seed, i)) for i, n in enumerate(sizes)]
    xp, yp = with_padding_row(x, y)
    out = train_clients(spec, start, xp, yp, orders, list(offsets[:-1]))
    for i, n in enumerate(sizes):
        rows = slice(offsets[i], offsets[i + 1])
        expected = train_one_reference(spec, start, x[rows], y[rows], orders[i])
        np.testing.assert_allclose(out.params[i], expected, rtol=1e-10, atol=1e-12)
        assert out.num_examples[i] == n


def test_local_training_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    for model in ("logistic", "mlp"):
        spec = LocalTrainSpec(model=model, epochs=5, batch_size=32, learning_rate=0.5)
        xp, yp = with_padding_row(x, y)
        out = train_clients(spec, init_params(spec, 3), xp, yp, [client_order(500, 5, (1,))], [0])
        accuracy = np.mean((predict_proba(spec, out.params[0], x) > 0.5) == y)
        assert accuracy > 0.95, model
        assert out.losses[0] < np.log(2)


def test_proximal_term_keeps_clients_near_the_global_model():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] > 0).astype(float)
    xp, yp = with_padding_row(x, y)
    order = [client_order(300, 3, (2,))]
    distance = []
    for mu in (0.0, 5.0):
        spec = LocalTrainSpec(epochs=3, batch_size=16, proximal_mu=mu)
        out = train_clients(spec, np.zeros(4), xp, yp, order, [0])
        distance.append(np.linalg.norm(out.params[0]))
    assert distance[1] < 0.5 * distance[0]
