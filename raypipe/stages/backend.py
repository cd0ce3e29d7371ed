"""The backend in a stage's context: everything a stage may ask of the engine, in one object.

The CLI builds one backend where it chooses the job's runtime (a Ray one, or the in-process one
of ``--inline`` and unit tests) and hands it down; the driver gives each stage a view of it
bound to that stage's progress bar and the run's cancel token (:meth:`Backend.for_stage`). A
stage never imports the engine: it asks its context (as Hamilton hands its executor to nodes).

The core of every backend is the :class:`~raypipe.stages.base.Executor` (``map`` and
``parallelism``), so ``context.executor`` and ``context.backend`` are the same object. Whatever
else a stage may need is an optional *capability*: a small runtime-checkable protocol declared
by the package that uses it, next to the types it speaks (``raypipe.training.search.TrialBackend``
and ``TuneBackend``, ``raypipe.inference.batch.ScoringBackend``,
``raypipe.federated.backend.FederationBackend``). A stage gets one with :func:`require`, which
fails with a clear error when the backend it runs on lacks it (Tune in an in-process run). A
new capability (an online-store writer, stream operators, serving) is one more protocol in its
package and one more method on the engine's backends; nothing here changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from raypipe.errors import RuntimeUnavailableError
from raypipe.stages.base import CancelToken, Executor

__all__ = ["Backend", "ProgressCallback", "require"]

C = TypeVar("C")

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(task_name, done, total)`` while a stage's tasks finish."""


@runtime_checkable
class Backend(Executor, Protocol):
    """An :class:`~raypipe.stages.base.Executor` that also says where its work ran and can be
    bound to one stage.

    Attributes
    ----------
    name
        ``"ray"`` or ``"inline"``: named in errors about a missing capability.
    node_ids
        Ray node ids that ran at least one task or actor of this (stage's) backend.
    """

    name: str
    node_ids: set[str]

    def for_stage(self, on_progress: ProgressCallback | None, cancel_token: CancelToken) -> Backend:
        """A view of this backend for one stage: its own progress and node ids, the run's
        cancel token, and the same runtime, pools and actors as this backend."""
        ...

    def close(self) -> None:
        """End what this backend started (warm pools, actors); the CLI calls it once."""
        ...


def require(backend: object, capability: type[C], *, stage: str) -> C:
    """``backend`` as ``capability``, or a clear error when it lacks it.

    Parameters
    ----------
    backend
        The stage's ``context.backend``.
    capability
        A runtime-checkable protocol (e.g. ``TrialBackend``).
    stage
        The stage's name, for the error.

    Raises
    ------
    RuntimeUnavailableError
        When ``backend`` does not provide ``capability`` (e.g. Ray Tune in an in-process run).
    """
    if isinstance(backend, capability):
        return backend
    kind = getattr(backend, "name", type(backend).__name__)
    summary = ((capability.__doc__ or "").strip().splitlines() or [""])[0].rstrip(".")
    raise RuntimeUnavailableError(
        f"Stage `{stage}` needs {capability.__name__} ({summary}), which the `{kind}` backend "
        "does not provide",
        hint="run the job on Ray (`raypipe run` without `--inline`)",
    )
