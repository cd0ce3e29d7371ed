"""Options shared by several commands, defined once, and the backend they choose.

Every command that runs work takes ``--address`` (join a cluster) and ``--inline`` (run in this
process without Ray, the one spelling for in-process runs); every command that reads a job spec
takes ``--set`` (and ``--data-dir`` to replace its data dir); every command that reads raypipe's
own data takes ``--data-dir`` (and
``--tracking-uri`` for MLflow, ``--sqlite-path`` / ``--redis-url`` for the online store).
:func:`open_backend` is the one place a command turns them into a backend
(:mod:`raypipe.stages.backend`): it starts or joins Ray, builds the Ray backend once, and on
leaving ends the backend's pools and the Ray it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from raypipe.engine.runtime import RayRuntime
    from raypipe.features.store.online import StoreConfig
    from raypipe.stages.backend import Backend

__all__ = [
    "AddressOption",
    "DataDirOption",
    "InlineOption",
    "InsecureTokenOption",
    "RedisUrlOption",
    "SetOption",
    "SpecDataDirOption",
    "SqlitePathOption",
    "TrackingUriOption",
    "online_store",
    "open_backend",
    "split_list",
]

AddressOption = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional
    typer.Option(
        "--address",
        help="Join a Ray cluster (`auto`, `ray://HOST:10001`) instead of starting a local one.",
    ),
]
InlineOption = Annotated[
    bool,
    typer.Option("--inline", help="Run in this process without Ray (small data only)."),
]
InsecureTokenOption = Annotated[
    bool,
    typer.Option(
        "--allow-insecure-token",
        help="Send the Ray auth token without TLS to a host other than this machine (only on a "
        "network you trust; prefer a tunnel to 127.0.0.1 or https).",
    ),
]
SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--set", help="Override a spec value: `stages.events.with.players=5000`."),
]
DataDirOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--data-dir",
        help="raypipe's data directory: datasets, registry audit, feature registry, request logs "
        "(default: $RAYPIPE_DATA_DIR, else ./raypipe-data).",
    ),
]
SpecDataDirOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--data-dir",
        help="Replace the job spec's data_dir (any fsspec URL; a submitted job's must be one "
        "every node sees, e.g. s3://, and a local path is made absolute).",
    ),
]
TrackingUriOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--tracking-uri",
        help="MLflow store of runs and `models:/` URIs "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///<data-dir>/mlflow.db).",
    ),
]
SqlitePathOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--sqlite-path", help="SQLite online store (default: <data-dir>/online/online.sqlite)."
    ),
]
RedisUrlOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--redis-url", help="Use the Redis online store at this URL instead of SQLite."),
]


def split_list(value: str | None) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: a comma-separated option's values."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def online_store(data_dir: str, redis_url: str | None, sqlite_path: str | None) -> StoreConfig:
    """The online store that ``--redis-url`` / ``--sqlite-path`` name (SQLite by default)."""
    from raypipe.features.store.stage import OnlineOptions, default_store

    if redis_url:
        return default_store(data_dir, OnlineOptions(kind="redis", url=redis_url))
    return default_store(data_dir, OnlineOptions(kind="sqlite", path=sqlite_path))


@contextmanager
def open_backend(
    address: str | None = None,
    *,
    inline: bool = False,
    runtime: RayRuntime | None = None,
) -> Iterator[Backend]:
    """The backend of a command: in-process with ``inline``, else Ray (started or joined).

    A local Ray starts when a stage first needs it (a task, an actor, a service); a cluster is
    joined here. Either is stopped on leaving, if this command started it.

    Parameters
    ----------
    address
        The cluster to join; ``None`` starts a local Ray.
    inline
        Run everything in this process; ``address`` is then ignored.
    runtime
        A runtime the caller builds itself (more options: CPUs, dashboard, token policy).
    """
    if inline:
        from raypipe.engine.inline import InlineBackend

        yield InlineBackend()
        return
    from raypipe.engine.backend import RayBackend
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions

    runtime = runtime or RayRuntime(RuntimeOptions(address=address))
    if not runtime.is_local:
        runtime.start()  # a cluster is joined at once: a wrong address fails before any work
    try:
        backend = RayBackend(runtime)
        try:
            yield backend
        finally:
            backend.close()
    finally:
        runtime.stop()
