"""Per-round MLflow logging of a federated run, and registration of its final model.

The driver process is the only writer (rounds are logged as they finish, one ``log_batch`` per
round with ``step = round``); the final model is logged (scikit-learn flavor, or an XGBoost UBJ
booster for federated XGBoost) and registered through
:class:`raypipe.tracking.registry.Registry`, like the training stage's models.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from raypipe.federated.simulation import RoundRecord

if TYPE_CHECKING:
    from raypipe.federated.export import ExportedModel

__all__ = ["FederatedTracker"]

logger = logging.getLogger(__name__)


class FederatedTracker:
    """One MLflow run per federated training; metrics per round.

    Parameters
    ----------
    tracking_uri, experiment, run_name
        Where to log.
    params, tags
        Logged once at the start.
    log_client_auc
        Also log every client's holdout AUC per round (``client_<id>_auc``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        log_client_auc: bool = True,
    ) -> None:
        from raypipe.tracking.runs import TrackingSession

        self.session = TrackingSession(tracking_uri, experiment)
        self.run_id = self.session.start_run(run_name, tags=tags)
        self.session.log(self.run_id, params=params)
        self.log_client_auc = log_client_auc

    def log_round(self, record: RoundRecord) -> None:
        from mlflow.entities import Metric

        from raypipe.tracking.store import retrying

        now = int(time.time() * 1000)
        values = dict(record.metrics())
        if self.log_client_auc:
            values.update({f"client_{c}_auc": v for c, v in record.client_auc.items()})
        metrics = [
            Metric(k, float(v), now, record.round) for k, v in values.items() if np.isfinite(v)
        ]
        client = self.session.client

        def write(chunk: list[Any]) -> None:
            client.log_batch(self.run_id, metrics=chunk)

        for start in range(0, len(metrics), 1000):
            chunk = metrics[start : start + 1000]
            retrying(partial(write, chunk), what="federated round metrics")

    def finish(
        self,
        *,
        model: ExportedModel,
        feature_names: list[str],
        example: np.ndarray,
        summary: Mapping[str, Any],
        register_as: str | None,
        data_dir: str,
        storage_options: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """Log the summary and the model; register it when ``register_as`` is set."""
        # final_* so the summary does not add a step-0 point to the per-round series
        self.session.log(self.run_id, metrics={f"final_{k}": v for k, v in summary.items()})
        self.session.log_text(
            self.run_id, json.dumps(dict(summary), indent=2, default=str), "federated_summary.json"
        )
        from raypipe.federated.export import preprocess_state

        logged = self.session.log_model(
            self.run_id,
            model_bytes=model.data,
            model_format=model.format,
            feature_names=feature_names,
            input_example=example,
            predictions=model.predict(example),
            extra_files={"preprocess.json": preprocess_state(feature_names)},
        )
        out = {"run_id": self.run_id, "model_uri": logged.model_uri}
        if register_as:
            from raypipe.tracking.audit import AuditLog
            from raypipe.tracking.registry import Registry
            from raypipe.tracking.store import audit_path

            audit = AuditLog(audit_path(data_dir), storage_options)  # the job's credentials
            registry = Registry(self.session.tracking_uri, audit)
            auc = float(summary.get("test_auc", float("nan")))
            version = registry.register(
                register_as,
                logged.model_uri,
                run_id=self.run_id,
                tags={
                    "raypipe.sha256": logged.sha256,
                    "raypipe.model_file": logged.model_file,
                    "raypipe.format": logged.format,
                    "raypipe.candidate": "federated",
                    "raypipe.metric.roc_auc": auc,
                    "raypipe.stage_kind": "federated.train",
                },
            )
            registry.set_alias(
                register_as,
                "challenger",
                version,
                action="register",
                reason=f"federated run {self.run_id}: roc_auc={auc:.4f}",
            )
            out["model_version"] = version
        self.session.end_run(self.run_id)
        return out

    def fail(self) -> None:
        self.session.end_run(self.run_id, failed=True)
