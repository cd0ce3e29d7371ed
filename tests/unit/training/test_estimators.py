from __future__ import annotations

import numpy as np
import pytest

from raypipe.training.estimators import NamedModel, make_sklearn_estimator


def _data(rows: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 4)) * [1.0, 3.0, 0.5, 10.0] + [0.0, 5.0, -1.0, 20.0]
    X[rng.random(rows) < 0.2, 1] = np.nan  # one column with missing values (and an indicator)
    y = (X[:, 0] + 0.1 * np.nan_to_num(X[:, 1]) + rng.normal(size=rows) > 0).astype(int)
    return X, y


def _named(candidate: str, X: np.ndarray, y: np.ndarray) -> NamedModel:
    estimator = make_sklearn_estimator(candidate, {}, task="binary", seed=0, nthread=1)
    return NamedModel(estimator.fit(X, y), ["a", "b", "c", "d"], "binary")


def test_linear_contributions_sum_to_the_margin_and_are_exact_shap() -> None:
    X, y = _data()
    model = _named("logistic", X, y)
    contributions = model.contributions(X[:50])
    assert contributions.shape == (50, 5)
    margin = model.estimator.decision_function(X[:50])
    np.testing.assert_allclose(contributions.sum(axis=1), margin, rtol=1e-9, atol=1e-9)
    # Interventional SHAP of a linear model against the training data, brute force: the mean
    # margin with feature j set to the row's value, minus the mean margin of the training rows.
    row = X[7]
    for j in range(4):
        swapped = X.copy()
        swapped[:, j] = row[j]
        expected = np.mean(model.estimator.decision_function(swapped)) - np.mean(
            model.estimator.decision_function(X)
        )
        assert contributions[7, j] == pytest.approx(expected, abs=1e-9)


def test_tree_candidates_have_no_contributions() -> None:
    X, y = _data()
    model = _named("random_forest", X, y)
    assert not model.has_contributions
    with pytest.raises(ValueError, match="no exact SHAP"):
        model.contributions(X[:3])
