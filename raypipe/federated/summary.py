"""What a federated training reports: the summary metrics (with a central baseline trained on
the same rows) and the per-round history table."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.federated.clients import roc_auc
from raypipe.federated.models import LocalTrainSpec
from raypipe.federated.simulation import FederatedResult
from raypipe.federated.xgb_clients import XgbTrainSpec

__all__ = ["central_auc", "history_table", "summarize"]


def central_auc(
    local: LocalTrainSpec | XgbTrainSpec,
    rounds: int,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> float:
    """Test AUC of the centralised counterpart trained on all clients' rows.

    Logistic regression (scikit-learn) for the numpy models; for XGBoost the same parameters and
    ``rounds * num_local_round`` boosting rounds (two threads: it is a reference, not a client).
    """
    if isinstance(local, XgbTrainSpec):
        import xgboost as xgb

        params = {**local.booster_params(), "nthread": 2}
        booster = xgb.train(
            params, xgb.DMatrix(x_train, label=y_train), rounds * local.num_local_round
        )
        return roc_auc(y_test, booster.inplace_predict(x_test, validate_features=False))
    from sklearn.linear_model import LogisticRegression

    central = LogisticRegression(max_iter=500).fit(x_train, y_train)
    return roc_auc(y_test, central.predict_proba(x_test)[:, 1])


def summarize(
    result: FederatedResult,
    local: LocalTrainSpec | XgbTrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    train_rows: np.ndarray,
    is_test: np.ndarray,
    clients: int,
) -> dict[str, Any]:
    """Final metrics of a run, for the stage result and MLflow."""
    last = result.history[-1]
    out: dict[str, Any] = {
        "clients": clients,
        "rounds": len(result.history),
        "test_auc": last.test.get("auc"),
        "test_accuracy": last.test.get("accuracy"),
        "central_auc": central_auc(
            local, len(result.history), x[train_rows], y[train_rows], x[is_test], y[is_test]
        ),
        "clients_auc": last.clients.get("auc"),
        "failed_client_rounds": sum(len(r.failed) for r in result.history),
        "rounds_per_s": round(result.steady_rounds_per_s(), 3),
    }
    if isinstance(local, XgbTrainSpec):
        out["trees"] = _num_trees(result.model_bytes)
    if last.epsilon is not None:
        out["epsilon"] = last.epsilon
    return out


def _num_trees(model: bytes) -> int:
    if not model:
        return 0
    doc = json.loads(model)
    return int(doc["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"])


def history_table(result: FederatedResult) -> pa.Table:
    """One row per round: sampling, answers, failures, timings and metrics."""
    rows = [
        {
            "round": r.round,
            "sampled": r.sampled,
            "answered": r.answered,
            "failed": len(r.failed),
            "attempts": r.attempts,
            "seconds": r.seconds,
            **{
                k: float(v)
                for k, v in r.metrics().items()
                if k not in ("clients_answered", "clients_failed", "round_seconds")
            },
        }
        for r in result.history
    ]
    keys = sorted({k for row in rows for k in row})
    return pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])
