"""The federated model as a raypipe scoring model, so it is logged, registered and served like
any other (a :class:`~raypipe.training.estimators.NamedModel` in MLflow's scikit-learn flavor,
with the ``preprocess.json`` that :func:`raypipe.tracking.models.load_model` reads).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from raypipe.federated.models import LocalTrainSpec, predict_proba

__all__ = ["FederatedModel", "preprocess_state", "to_named_model"]


class FederatedModel:
    """Missing values -> training means, standard scaling, then the federated network.

    Follows scikit-learn's classifier surface (``classes_``, ``predict_proba``, ``predict``).
    """

    def __init__(
        self, spec: LocalTrainSpec, weights: np.ndarray, mean: np.ndarray, scale: np.ndarray
    ) -> None:
        self.spec = spec
        self.weights_ = np.asarray(weights, dtype=np.float64)
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = len(self.mean_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        x = np.where(np.isnan(x), self.mean_, x)
        p = predict_proba(self.spec, self.weights_, (x - self.mean_) / self.scale_)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def to_named_model(
    spec: LocalTrainSpec,
    weights: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    feature_names: list[str],
) -> Any:
    """The model wrapped as the training stage wraps its scikit-learn models."""
    from raypipe.training.estimators import NamedModel

    return NamedModel(FederatedModel(spec, weights, mean, scale), feature_names, "binary")


def preprocess_state(feature_names: list[str]) -> bytes:
    """``preprocess.json`` for numeric-only features (see ``TablePreprocessor.to_dict``)."""
    state = {
        "encoding": "native",
        "numeric": list(feature_names),
        "categories": {},
        "target_means": {},
        "prior": 0.0,
    }
    return json.dumps(state, sort_keys=True).encode()
