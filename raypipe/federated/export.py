"""The federated model as a raypipe scoring model, so it is logged, registered and served like
any other: a :class:`~raypipe.training.estimators.NamedModel` in MLflow's scikit-learn flavor for
the numpy models, an XGBoost UBJ booster for federated XGBoost; both with the ``preprocess.json``
that :func:`raypipe.tracking.models.load_model` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from raypipe.federated.models import LocalTrainSpec, predict_proba
from raypipe.federated.xgb_clients import XgbTrainSpec, array_to_model, load_booster

__all__ = ["ExportedModel", "FederatedModel", "export_model", "preprocess_state", "to_named_model"]


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


@dataclass(frozen=True)
class ExportedModel:
    """The final model as the tracking layer logs it.

    Attributes
    ----------
    data
        The model file's bytes (scikit-learn skops file or XGBoost UBJ).
    format
        ``"sklearn-skops"`` or ``"xgboost-ubj"`` (see :mod:`raypipe.tracking.models`).
    file_name
        ``model.skops`` or ``model.ubj``.
    """

    data: bytes
    format: str
    file_name: str

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for the MLflow signature: labels (scikit-learn) or probabilities (XGBoost)."""
        if self.format.startswith("xgboost"):
            booster = load_booster(self.data)
            return np.asarray(booster.inplace_predict(x, validate_features=False), np.float64)
        from raypipe.tracking.models import load_sklearn_model

        return np.asarray(load_sklearn_model(self.data, self.format).predict(x))


def export_model(
    spec: LocalTrainSpec | XgbTrainSpec,
    weights: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    feature_names: list[str],
) -> ExportedModel:
    """The final global model as raypipe scores it (``inference.score``, ``raypipe infer``)."""
    if isinstance(spec, XgbTrainSpec):
        booster = load_booster(array_to_model(weights))
        booster.feature_names = list(feature_names)
        return ExportedModel(bytes(booster.save_raw("ubj")), "xgboost-ubj", "model.ubj")
    named = to_named_model(spec, weights, mean, scale, feature_names)
    return ExportedModel(named.to_bytes(), "sklearn-skops", "model.skops")


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
