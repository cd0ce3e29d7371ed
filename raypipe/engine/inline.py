"""The in-process backend: every task, trial, client group and scoring unit in this process.

What ``--inline`` runs on, and what unit tests hand to stages so they run without Ray. It has
the capabilities of :class:`~raypipe.engine.backend.RayBackend` that make sense in one process
(trials, federated clients, scoring); a stage asking it for Ray Tune gets the clear error of
:func:`raypipe.stages.backend.require`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from raypipe.stages.base import CancelToken

if TYPE_CHECKING:
    from raypipe.federated.clients import ClientShard, FailureInjection
    from raypipe.federated.simulation import ClientBackend
    from raypipe.inference.pool import InlineScoringPool
    from raypipe.training.search import TrialRunner
    from raypipe.training.trial import TrialData

__all__ = ["InlineBackend", "InlineExecutor"]

T = TypeVar("T")
R = TypeVar("R")


class InlineBackend:
    """Runs ``fn(item)`` for each item in order, in this process; stops between items once
    ``cancel_token`` is cancelled, as the Ray backend does between tasks."""

    name = "inline"
    parallelism = 1

    def __init__(
        self,
        on_progress: Callable[[str, int, int], None] | None = None,
        cancel_token: CancelToken | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.node_ids: set[str] = set()
        self._on_progress = on_progress
        self._cancel_token = cancel_token or CancelToken()

    def for_stage(
        self, on_progress: Callable[[str, int, int], None] | None, cancel_token: CancelToken
    ) -> InlineBackend:
        return InlineBackend(on_progress, cancel_token)

    def close(self) -> None:
        """Nothing to end: no process, pool or actor outlives a call."""

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        name: str,
        num_cpus: float = 1.0,
        memory_bytes: int | None = None,
    ) -> list[R]:
        self.calls.append(name)
        results = []
        for done, item in enumerate(items, start=1):
            self._cancel_token.raise_if_cancelled(f"task `{name}`")
            results.append(fn(item))
            if self._on_progress is not None:
                self._on_progress(name, done, len(items))
        return results

    def report_progress(self, name: str, done: int, total: int) -> None:
        """Report work that is not this executor's tasks (a search's trials) the same way."""
        if self._on_progress is not None:
            self._on_progress(name, done, total)

    # -- capabilities ------------------------------------------------------------------------

    def trial_runner(
        self, data: TrialData, *, actors: int | None = None, threads: int = 1
    ) -> TrialRunner:
        from raypipe.training.search import InlineRunner
        from raypipe.training.trial import TrialWorker

        self.calls.append("trials")
        return InlineRunner(TrialWorker(data, nthread=threads))

    def federation(
        self,
        shards: Sequence[ClientShard],
        *,
        num_cpus: float = 0.5,
        failures: FailureInjection | None = None,
    ) -> ClientBackend:
        from raypipe.federated.clients import ClientGroup
        from raypipe.federated.simulation import InlineFederation

        self.calls.append("federation")
        return InlineFederation([ClientGroup(s, failures, i) for i, s in enumerate(shards)])

    def scoring_pool(self, actors: int | None = None) -> InlineScoringPool:
        from raypipe.inference.pool import InlineScoringPool

        self.calls.append("scoring")
        return InlineScoringPool()


#: The name this class had when it was only an executor; other code and tests still use it.
InlineExecutor = InlineBackend
