"""The churn signal is observable: a simple model on the default features nears the Bayes AUC.

A guard for issue 4 point 7: the generator's latent state at the cutoff must show in the events,
and the default feature view must capture it. On a small run, out-of-fold predictions of a small
gradient-boosted model on the default features reach at least 0.95 of the AUC of the generator's
exact churn probabilities (the Bayes AUC) on the same rows. (The full-size figures, 20k players
and three seeds, come from ``benchmarks/churn_observability.py``.)
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from xgboost import XGBClassifier

from raypipe.engine.inline import InlineBackend
from raypipe.features.defaults import default_views
from raypipe.features.generated import LABEL_COLUMNS, generated_training_set
from raypipe.synth import TelemetryConfig
from raypipe.synth.generate import run_generate

CONFIG = TelemetryConfig(players=4_000, days=45, seed=3, shard_players=2_000)


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """The default-feature training set, built as ``features.training_set`` builds it."""
    base = str(tmp_path_factory.mktemp("observability"))
    executor = InlineBackend()
    run_generate(CONFIG, base, executor)
    return generated_training_set(base, executor)


def test_default_features_reach_095_of_the_bayes_auc(training_set: pl.DataFrame) -> None:
    features = [c for c in training_set.columns if c not in (*LABEL_COLUMNS, "churn_probability")]
    x = training_set.select(features).cast(pl.Float64).to_numpy()
    y = training_set["churned"].cast(pl.Int8).to_numpy()
    truth = training_set["churn_probability"].to_numpy()
    model = XGBClassifier(
        n_estimators=150, max_depth=3, learning_rate=0.1, tree_method="hist", n_jobs=1
    )
    folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    model_auc = roc_auc_score(y, scores)
    bayes_auc = roc_auc_score(y, truth)
    assert 0.2 <= y.mean() <= 0.4
    assert model_auc >= 0.95 * bayes_auc, (model_auc, bayes_auc, model_auc / bayes_auc)
    assert model_auc <= bayes_auc + 0.02  # nothing can beat the true probabilities by much


def test_the_features_that_drive_churn_are_in_the_default_view() -> None:
    names = {f.name for view in default_views() for f in view.features}
    for name in (
        "sessions_1d",
        "sessions_3d",
        "sessions_7d",
        "active_days_7d",
        "active_days_14d",
        "days_since_session",
        "session_trend_3_14",
    ):
        assert name in names
    assert np.unique(list(names)).size == len(names)
