"""An in-process XGBoost retrainer for the watch loop: scratch or warm-started from the champion.

:class:`XGBoostRetrainer` is the :class:`~raypipe.tracking.continual.Retrainer` that tests, the
continual-learning benchmark and small deployments use: it fits ``xgboost.XGBClassifier`` on the
numeric feature columns (the columns :func:`raypipe.monitoring.drift.drift_columns` calls
features), saves each registered model as a UBJSON file with its SHA-256 and registers it. With
a champion given, it also continues boosting the champion (``xgb_model=``, the warm start) so
the loop can compare both in the run record.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.errors import ModelError
from raypipe.tracking.registry import Registry

__all__ = ["XGBoostRetrainer"]


class XGBoostRetrainer:
    """Fit, register and score XGBoost churn models in this process.

    Parameters
    ----------
    registry, model_name
        Where new versions are registered.
    model_dir
        A local folder for the model files (one per version, never overwritten).
    label
        The label column.
    exclude
        Columns never used as features (besides ids, labels and predictions).
    rounds, warm_rounds
        Boosting rounds from scratch, and rounds added to the champion when warm-starting.
    """

    def __init__(
        self,
        registry: Registry,
        model_name: str,
        model_dir: str,
        *,
        label: str = "churned",
        exclude: Sequence[str] = (),
        rounds: int = 120,
        warm_rounds: int = 60,
        seed: int = 0,
    ) -> None:
        self.registry = registry
        self.model_name = model_name
        self.model_dir = model_dir
        self.label = label
        self.exclude = set(exclude)
        self.rounds = rounds
        self.warm_rounds = warm_rounds
        self.seed = seed
        self.features: list[str] | None = None
        self._models: dict[str, Any] = {}

    def retrain(self, train: pa.Table, *, champion: str | None) -> dict[str, Any]:
        """``scratch`` always; ``warm`` (the champion's trees plus ``warm_rounds``) if given."""
        x, y = self._matrix(train), self._labels(train)
        models = {"scratch": self._classifier(self.rounds).fit(x, y)}
        if champion is not None:
            base = self._model(champion).get_booster()
            models["warm"] = self._classifier(self.warm_rounds).fit(x, y, xgb_model=base)
        return models

    def register(self, model: Any, *, tags: Mapping[str, Any]) -> str:
        os.makedirs(self.model_dir, exist_ok=True)
        path = os.path.join(self.model_dir, f"{uuid.uuid4().hex}.ubj")
        data = bytes(model.get_booster().save_raw("ubj"))
        with open(path, "xb") as handle:
            handle.write(data)
        version = self.registry.register(
            self.model_name,
            path,
            run_id=None,
            tags={
                **tags,
                "raypipe.model_file": path,
                "raypipe.sha256": hashlib.sha256(data).hexdigest(),
                "raypipe.format": "xgboost-ubj",
                "raypipe.features": ",".join(self.features or []),
            },
        )
        self._models[version] = model
        return version

    def score(self, model: Any, table: pa.Table) -> np.ndarray:
        fitted = self._model(model) if isinstance(model, str) else model
        return np.asarray(fitted.predict_proba(self._matrix(table))[:, 1], dtype=np.float64)

    def _model(self, version: str) -> Any:
        if version in self._models:
            return self._models[version]

        tags = self.registry.version_tags(self.model_name, version)
        path = tags.get("raypipe.model_file")
        if not path:
            raise ModelError(
                f"version `{version}` of `{self.model_name}` has no `raypipe.model_file` tag",
                hint="it was not registered by the watch loop; retrain or promote another",
            )
        with open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != tags.get("raypipe.sha256"):
            raise ModelError(
                f"model file `{path}` of version `{version}` fails its SHA-256 check",
                hint="the file was changed after registration; restore it or retrain",
            )
        model = self._classifier(self.rounds)
        model.load_model(bytearray(data))
        self.features = self.features or tags.get("raypipe.features", "").split(",")
        self._models[version] = model
        return model

    def _classifier(self, rounds: int) -> Any:
        import xgboost as xgb

        return xgb.XGBClassifier(
            n_estimators=rounds,
            max_depth=4,
            learning_rate=0.08,
            subsample=0.9,
            tree_method="hist",
            random_state=self.seed,
            n_jobs=1,
        )

    def _matrix(self, table: pa.Table) -> np.ndarray:
        from raypipe.monitoring.drift import drift_columns
        from raypipe.validation.stats import column_kind

        if self.features is None:
            self.features = [
                name
                for name in drift_columns(table.schema)
                if name not in self.exclude
                and name != self.label
                and column_kind(table.schema.field(name).type) in ("numeric", "boolean")
            ]
        columns = [
            np.asarray(table.column(n).to_numpy(zero_copy_only=False), dtype=np.float64)
            for n in self.features
        ]
        return np.column_stack(columns)

    def _labels(self, table: pa.Table) -> np.ndarray:
        return np.asarray(table.column(self.label).to_numpy(zero_copy_only=False), dtype=np.int64)
