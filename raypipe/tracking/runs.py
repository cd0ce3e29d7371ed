"""MLflow runs of a training job: one parent run, one nested run per trial, the model in its flavor.

:class:`TrackingSession` is used by the driver only: trials return their params and per-round
history as data and the driver writes them with ``log_batch`` (one call per 1,000 values), so
parallel trials never contend for the SQLite file.
"""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raypipe.tracking.models import SKLEARN_TRUSTED_TYPES, load_sklearn_model, model_file_name
from raypipe.tracking.store import get_client, get_or_create_experiment, retrying

__all__ = [
    "LoggedModelInfo",
    "TrackingSession",
    "git_commit",
    "global_tracking_uri",
    "raypipe_version",
]

logger = logging.getLogger(__name__)

BATCH = 1000


@contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-global tracking and registry URIs at ``uri`` for a block.

    MLflow's fluent ``log_model`` and the registry's lookup of logged models read the global
    URI; without this they would write a stray ``./mlflow.db`` in the working directory.
    """
    import os

    import mlflow

    env_keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    previous_env = {key: os.environ.get(key) for key in env_keys}
    previous, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)
        # ``set_tracking_uri`` also exports the URI to the environment: undo that exactly.
        for key, value in previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def raypipe_version() -> str:
    """raypipe's version, from its one source (``raypipe.__version__``, which the package
    metadata also reads)."""
    import raypipe

    return raypipe.__version__


def git_commit() -> str:
    """The commit of the working tree raypipe runs from, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


class LoggedModelInfo:
    """Where a logged model is and the checksum of its model file."""

    def __init__(self, model_uri: str, model_file: str, sha256: str, format: str) -> None:
        self.model_uri = model_uri
        self.model_file = model_file
        self.sha256 = sha256
        self.format = format


class TrackingSession:
    """Parent and nested runs in one experiment of one store.

    Parameters
    ----------
    tracking_uri
        The store (see :func:`raypipe.tracking.store.resolve_tracking_uri`).
    experiment
        Experiment name (the job name).
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = get_client(tracking_uri)
        self.experiment_id = get_or_create_experiment(self.client, experiment, tracking_uri)

    def start_run(
        self,
        name: str,
        *,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = retrying(
            lambda: self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        )
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        series: Mapping[str, list[float]] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Params, scalar metrics, per-step metric series and tags, in batches."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        items: list[Any] = [Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()]
        items += [
            Metric(str(k), float(v), now, 0)
            for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        for key, values in (series or {}).items():
            items += [
                Metric(str(key), float(v), now, step)
                for step, v in enumerate(values)
                if math.isfinite(float(v))
            ]
        items += [RunTag(str(k), str(v)[:5000]) for k, v in (tags or {}).items()]
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]

            def write(chunk: list[Any] = chunk) -> Any:
                return self.client.log_batch(
                    run_id,
                    metrics=[i for i in chunk if isinstance(i, Metric)],
                    params=[i for i in chunk if isinstance(i, Param)],
                    tags=[i for i in chunk if isinstance(i, RunTag)],
                )

            retrying(write)

    def end_run(self, run_id: str, *, failed: bool = False) -> None:
        status = "FAILED" if failed else "FINISHED"
        retrying(lambda: self.client.set_terminated(run_id, status=status))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        retrying(lambda: self.client.log_text(run_id, text, artifact_file))

    def log_model(
        self,
        run_id: str,
        *,
        model_bytes: bytes,
        model_format: str,
        feature_names: list[str],
        input_example: Any,
        predictions: Any,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> LoggedModelInfo:
        """Log the model under ``run_id`` in its flavor (XGBoost UBJSON; scikit-learn skops).

        Returns the model URI, the logged format and the SHA-256 of the model file as MLflow
        stored it, which the registry records and :func:`raypipe.tracking.models.load_model`
        verifies. A scikit-learn model is always logged with skops, whatever it arrived as.
        """
        import mlflow
        import pandas as pd
        from mlflow.models import infer_signature

        example = pd.DataFrame(input_example, columns=feature_names)
        signature = infer_signature(example, predictions)
        with global_tracking_uri(self.tracking_uri), tempfile.TemporaryDirectory() as tmp:
            extras = []
            for name, data in (extra_files or {}).items():
                path = Path(tmp) / name
                path.write_bytes(data)
                extras.append(str(path))
            with mlflow.start_run(run_id=run_id):
                info = self._log_flavor(model_bytes, model_format, signature, example, extras, tmp)
        logged_format = "xgboost-ubj" if model_format.startswith("xgboost") else "sklearn-skops"
        model_file = model_file_name(logged_format)
        digest = _sha256_of_logged(self.tracking_uri, str(info.artifact_path), model_file)
        return LoggedModelInfo(info.model_uri, model_file, digest, logged_format)

    @staticmethod
    def _log_flavor(
        model_bytes: bytes,
        model_format: str,
        signature: Any,
        example: Any,
        extras: list[str],
        tmp: str,
    ) -> Any:
        if model_format.startswith("xgboost"):
            import mlflow.xgboost
            import xgboost as xgb

            booster = xgb.Booster(model_file=bytearray(model_bytes))
            return mlflow.xgboost.log_model(
                booster,
                name="model",
                signature=signature,
                input_example=example,
                model_format="ubj",
                pip_requirements=[f"xgboost=={xgb.__version__}"],
                extra_files=extras or None,
            )
        import mlflow.sklearn
        import sklearn
        import skops

        model = load_sklearn_model(model_bytes, model_format)  # skops, with the allow-list
        return mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=list(SKLEARN_TRUSTED_TYPES),
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"skops=={skops.__version__}",
            ],
            extra_files=extras or None,
        )


def _sha256_of_logged(tracking_uri: str, artifact_location: str, model_file: str) -> str:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{artifact_location.rstrip('/')}/{model_file}",
            tracking_uri=tracking_uri,
            dst_path=tmp,
        )
        return hashlib.sha256(Path(local).read_bytes()).hexdigest()
