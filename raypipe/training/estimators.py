"""The candidate estimators and how each is fitted, scored and serialised.

XGBoost is trained with ``xgb.train`` on a DMatrix built once per worker (native categoricals,
per-round validation metric, early stopping per trial). The scikit-learn candidates are a scaled
logistic (or ridge) regression, a random forest and histogram gradient boosting. A fitted model
is serialised as XGBoost UBJSON or, for scikit-learn, as a skops file of :class:`NamedModel`
(no pickle: it loads with a type allow-list, ``raypipe.tracking.models.SKLEARN_TRUSTED_TYPES``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "NamedModel",
    "make_sklearn_estimator",
    "predict_scores",
    "xgboost_params",
]


class NamedModel:
    """A fitted scikit-learn estimator with the names of the columns it takes.

    ``feature_names_in_`` lets a scorer pick columns by name; ``predict_proba``/``predict``
    take a plain float matrix in that order.
    """

    def __init__(self, estimator: Any, feature_names: Sequence[str], task: str) -> None:
        self.estimator = estimator
        self.feature_names_in_ = [str(name) for name in feature_names]
        self.task = task

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "binary":
            positive: np.ndarray = self.predict_proba(X)[:, 1]
            return positive
        return np.asarray(self.estimator.predict(self._matrix(X)), dtype=np.float64)

    def __getattr__(self, name: str) -> Any:
        if name == "predict_proba" and self.__dict__.get("task") == "binary":
            return lambda X: self.estimator.predict_proba(self._matrix(X))
        raise AttributeError(name)

    def _matrix(self, X: Any) -> Any:
        """A frame (MLflow's input example, a pyfunc call) as the plain matrix the estimator was
        fitted on, its columns taken by name: scikit-learn warns when names appear at predict
        time that it did not see at fit time."""
        if hasattr(X, "columns"):
            return X[self.feature_names_in_].to_numpy()
        return X

    @property
    def has_contributions(self) -> bool:
        """Whether :meth:`contributions` can explain this model (the linear candidates)."""
        steps = getattr(self.estimator, "named_steps", {})
        return {"simpleimputer", "standardscaler"} <= set(steps) and hasattr(
            self.estimator[-1], "coef_"
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact SHAP values of a linear candidate, one column per feature, then the bias.

        In margin space (log-odds for a classifier), like XGBoost's ``pred_contribs``: for a
        linear model over standardised columns, a column's SHAP value against the training data
        is its weight times its standardised value (whose training mean is 0); an imputed column
        and its missing-value indicator both count toward their source feature. Each row's
        values sum to its margin.
        """
        if not self.has_contributions:
            raise ValueError(f"{type(self.estimator).__name__} has no exact SHAP values")
        imputer, scaler, linear = self.estimator[0], self.estimator[1], self.estimator[-1]
        parts = scaler.transform(imputer.transform(X)) * np.ravel(linear.coef_)
        width = len(self.feature_names_in_)
        contributions = np.zeros((len(X), width + 1))
        contributions[:, :width] = parts[:, :width]
        if imputer.indicator_ is not None:
            for offset, feature in enumerate(imputer.indicator_.features_):
                contributions[:, feature] += parts[:, width + offset]
        contributions[:, width] = float(np.ravel(linear.intercept_)[0])
        return contributions

    def to_bytes(self) -> bytes:
        """The model as a skops file (format ``sklearn-skops``)."""
        import skops.io

        return bytes(skops.io.dumps(self))


def xgboost_params(params: dict[str, Any], *, task: str, seed: int, nthread: int) -> dict[str, Any]:
    """XGBoost ``xgb.train`` parameters from a sampled configuration."""
    out = {key: value for key, value in params.items() if key not in {"n_estimators"}}
    out.setdefault("tree_method", "hist")
    # A regression may name its loss in the space's `fixed` (e.g. `reg:tweedie` for spend).
    objective = out.pop("objective", None)
    if task == "binary" or objective is None:
        objective = "binary:logistic" if task == "binary" else "reg:squarederror"
    out.update(
        objective=objective,
        eval_metric="auc" if task == "binary" else "rmse",
        seed=seed,
        nthread=nthread,
        verbosity=0,
    )
    return out


def make_sklearn_estimator(
    candidate: str,
    params: dict[str, Any],
    *,
    task: str,
    seed: int,
    nthread: int,
    categorical_mask: np.ndarray | None = None,
) -> Any:
    """An unfitted scikit-learn estimator for ``candidate`` with ``params``."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    binary = task == "binary"
    if candidate == "logistic":
        params = dict(params)
        c = float(params.pop("C", 1.0))
        if binary:
            model = LogisticRegression(C=c, random_state=seed, **params)
        else:
            params.pop("max_iter", None)
            model = Ridge(alpha=1.0 / c, **params)
        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            model,
        )
    if candidate == "random_forest":
        cls = RandomForestClassifier if binary else RandomForestRegressor
        return cls(random_state=seed, n_jobs=nthread, **params)
    if candidate == "hist_gb":
        cls = HistGradientBoostingClassifier if binary else HistGradientBoostingRegressor
        mask = categorical_mask if categorical_mask is not None and categorical_mask.any() else None
        return cls(random_state=seed, categorical_features=mask, **params)
    raise ValueError(f"unknown scikit-learn candidate {candidate!r}")


def predict_scores(model: Any, X: np.ndarray, task: str) -> np.ndarray:
    """Positive-class probabilities (binary) or predictions (regression) of a fitted model."""
    if hasattr(model, "inplace_predict"):
        return np.asarray(model.inplace_predict(X, validate_features=False), dtype=np.float64)
    if task == "binary":
        return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)
