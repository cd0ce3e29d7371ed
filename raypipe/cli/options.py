"""Options shared by several commands, defined once, and the backend they choose.

Every command that runs work takes ``--address`` (join a cluster) and ``--inline`` (run in this
process without Ray, the one spelling for in-process runs); every command that reads a job spec
takes ``--set``. :func:`open_backend` is the one place a command turns them into a backend
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
    from raypipe.stages.backend import Backend

__all__ = [
    "AddressOption",
    "InlineOption",
    "InsecureTokenOption",
    "SetOption",
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


def split_list(value: str | None) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: a comma-separated option's values."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@contextmanager
def open_backend(
    address: str | None = None,
    *,
    inline: bool = False,
    runtime: RayRuntime | None = None,
) -> Iterator[Backend]:
    """The backend of a command: in-process with ``inline``, else Ray (started or joined).

    Parameters
    ----------
    address
        The cluster to join; ``None`` starts a local Ray.
    inline
        Run everything in this process; ``address`` is then ignored.
    runtime
        A runtime the caller builds itself (more options: CPUs, dashboard, token policy);
        started here and stopped on leaving.
    """
    if inline:
        from raypipe.engine.inline import InlineBackend

        yield InlineBackend()
        return
    from raypipe.engine.backend import RayBackend
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions

    with runtime or RayRuntime(RuntimeOptions(address=address)) as started:
        backend = RayBackend(started)
        try:
            yield backend
        finally:
            backend.close()
