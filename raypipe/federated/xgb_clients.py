"""The client side of federated XGBoost: local boosting from the global booster's bytes.

The global model travels as booster JSON bytes viewed as a ``uint8`` array
(:func:`model_to_array`), so the server loop, the in-process backend and the Ray actors move it
exactly as they move the numpy models' weight vector. Each client builds its ``DMatrix`` once
(the group keeps it) and boosts ``num_local_round`` rounds on top of the global model with one
thread; bagging clients answer with their new trees only, cyclic clients with the whole model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from raypipe.errors import ModelError

__all__ = [
    "XGB_DEFAULTS",
    "XgbTrainSpec",
    "array_to_model",
    "boost",
    "boost_locally",
    "load_booster",
    "model_to_array",
    "predict_model",
]

#: Flower's ``xgboost-quickstart`` parameters; ``nthread`` is always 1 (one thread per client).
XGB_DEFAULTS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eta": 0.1,
    "max_depth": 8,
    "eval_metric": "auc",
    "num_parallel_tree": 1,
    "subsample": 1.0,
    "tree_method": "hist",
}


@dataclass(frozen=True)
class XgbTrainSpec:
    """How an XGBoost client trains locally.

    Parameters
    ----------
    params
        Booster parameters as sorted ``(name, value)`` pairs (hashable, picklable).
    num_local_round
        Boosting rounds per server round.
    new_trees_only
        Answer with the new trees only (bagging) or the whole booster (cyclic).
    """

    params: tuple[tuple[str, Any], ...] = tuple(sorted(XGB_DEFAULTS.items()))
    num_local_round: int = 1
    new_trees_only: bool = True

    @classmethod
    def from_options(
        cls, params: Mapping[str, Any], num_local_round: int, *, new_trees_only: bool
    ) -> XgbTrainSpec:
        """``XGB_DEFAULTS`` overridden by ``params``."""
        merged = {**XGB_DEFAULTS, **params}
        return cls(tuple(sorted(merged.items())), num_local_round, new_trees_only)

    def booster_params(self) -> dict[str, Any]:
        return {**dict(self.params), "nthread": 1}


def model_to_array(model: bytes) -> np.ndarray:
    """Booster bytes as the ``uint8`` array the server loop moves (no copy)."""
    return np.frombuffer(model, dtype=np.uint8)


def array_to_model(weights: np.ndarray) -> bytes:
    """The inverse of :func:`model_to_array`; an empty array is "no model yet"."""
    return np.asarray(weights, dtype=np.uint8).tobytes()


def load_booster(model: bytes) -> Any:
    """An ``xgboost.Booster`` (one thread) from JSON or UBJ bytes."""
    import xgboost as xgb

    booster = xgb.Booster(params={"nthread": 1})
    try:
        booster.load_model(bytearray(model))
    except xgb.core.XGBoostError as exc:
        raise ModelError(
            "the global federated booster could not be loaded",
            hint="the model bytes must be XGBoost JSON or UBJ",
        ) from exc
    return booster


def predict_model(model: bytes, x: np.ndarray) -> np.ndarray:
    """Probabilities of ``model`` on ``x`` (0.5 everywhere before the first round)."""
    if not model or not len(x):
        return np.full(len(x), 0.5)
    booster = load_booster(model)
    return np.asarray(booster.inplace_predict(np.asarray(x), validate_features=False), np.float64)


def boost(
    global_model: bytes,
    dtrain: Any,
    params: Mapping[str, Any],
    num_local_round: int,
    *,
    new_trees_only: bool,
) -> tuple[bytes, float]:
    """``num_local_round`` boosting rounds on ``dtrain`` on top of ``global_model``.

    Returns booster JSON (the new trees only, or the whole model) and the client's training
    log-loss after boosting.
    """
    import xgboost as xgb

    start = bytearray(global_model) if global_model else None
    booster = xgb.train(dict(params), dtrain, num_boost_round=num_local_round, xgb_model=start)
    p = np.clip(booster.predict(dtrain), 1e-12, 1 - 1e-12)
    y = dtrain.get_label()
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")
    if new_trees_only and start is not None:
        rounds = booster.num_boosted_rounds()
        booster = booster[rounds - num_local_round : rounds]
    return bytes(booster.save_raw("json")), loss


def boost_locally(
    global_model: bytes,
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, Any],
    num_local_round: int,
    *,
    new_trees_only: bool,
) -> bytes:
    """A client's work from raw arrays: :func:`boost` on a fresh one-thread ``DMatrix``."""
    import xgboost as xgb

    dtrain = xgb.DMatrix(x, label=y, nthread=1)
    model, _ = boost(global_model, dtrain, params, num_local_round, new_trees_only=new_trees_only)
    return model
