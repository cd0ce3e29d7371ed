"""Where tracking lives: the embedded SQLite default, a server by URL, and safe writes.

The default store is ``sqlite:///<data_dir>/mlflow.db`` with artifacts in
``<data_dir>/mlartifacts``. Only the driver writes to it (trial results come back to the driver
as data), and every write goes through :func:`retrying`, which waits out SQLite's
``database is locked`` when another process (the UI, a second job) holds the lock.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from raypipe.errors import RaypipeError
from raypipe.io.fs import join_url

__all__ = [
    "audit_path",
    "default_tracking_uri",
    "get_client",
    "get_or_create_experiment",
    "resolve_data_dir",
    "resolve_tracking_uri",
    "retrying",
    "serving_log_path",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DATA_DIR = "./raypipe-data"
RETRIES = 8


def _local_dir(data_dir: str) -> Path:
    if data_dir.startswith("file://"):
        data_dir = data_dir[len("file://") :]
    return Path(data_dir).expanduser().resolve()


def default_tracking_uri(data_dir: str, *, create: bool = True) -> str:
    """``sqlite:///<absolute data_dir>/mlflow.db`` (the directory is created when ``create``)."""
    if "://" in data_dir and not data_dir.startswith("file://"):
        raise RaypipeError(
            f"the embedded tracking store needs a local `data_dir`, received `{data_dir}`",
            hint="pass `--tracking-uri` (or `tracking_uri:`) with an MLflow server URL",
        )
    path = _local_dir(data_dir)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def resolve_data_dir(data_dir: str | None) -> str:
    """The explicit data dir, else ``$RAYPIPE_DATA_DIR``, else ``./raypipe-data``."""
    return data_dir or os.environ.get("RAYPIPE_DATA_DIR", DEFAULT_DATA_DIR)


def resolve_tracking_uri(
    tracking_uri: str | None, data_dir: str | None = None, *, create: bool = True
) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``, else the embedded default of ``data_dir``.

    A reader passes ``create=False``: the embedded store's folder is then not made.
    """
    if tracking_uri:
        return tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return default_tracking_uri(resolve_data_dir(data_dir), create=create)


def audit_path(data_dir: str | None) -> str:
    """``<data_dir>/registry/audit``: the audit log's folder, a local path or an fsspec URL.

    A local ``data_dir`` is made absolute; a URL (``s3://bucket/x``) stays a URL, so the log is
    written through fsspec to the store, not to a local folder named ``s3:``.
    """
    data_dir = resolve_data_dir(data_dir)
    if "://" in data_dir and not data_dir.startswith("file://"):
        return join_url(data_dir, "registry", "audit")
    return str(_local_dir(data_dir) / "registry" / "audit")


def serving_log_path(data_dir: str | None, service: str) -> str:
    """``<data_dir>/serving/<service>/requests``: the request logs of ``raypipe serve``, whose
    service is named after its model unless ``--name`` says otherwise."""
    audit = audit_path(data_dir)
    return audit[: -len("registry/audit")] + f"serving/{service}/requests"


def artifact_root(tracking_uri: str) -> str | None:
    """Artifacts beside an embedded SQLite store; ``None`` (the server decides) otherwise."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").as_uri()
    return None


def retrying(fn: Callable[[], T], *, what: str = "tracking write") -> T:
    """Call ``fn``; on SQLite's ``database is locked`` retry with jittered backoff."""
    delay = 0.05
    for attempt in range(RETRIES):
        try:
            return fn()
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt == RETRIES - 1:
                raise
            logger.info("%s: database is locked, retrying in %.2fs", what, delay)
            time.sleep(delay * (1 + random.random()))
            delay = min(2.0, delay * 2)
    raise AssertionError("unreachable")


def get_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` (MLflow is imported here, not at import time)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


#: Tells MLflow's UI this experiment trains models, so it opens on its runs and not on the
#: (empty) GenAI overview.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def get_or_create_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created with artifacts beside the store if new."""
    experiment = retrying(lambda: client.get_experiment_by_name(name))
    if experiment is not None:
        if EXPERIMENT_KIND[0] not in experiment.tags:
            retrying(lambda: client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND))
        return str(experiment.experiment_id)
    location = artifact_root(tracking_uri)
    try:
        return str(
            retrying(
                lambda: client.create_experiment(
                    name, artifact_location=location, tags=dict([EXPERIMENT_KIND])
                )
            )
        )
    except Exception:
        # Another process created it in between.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
