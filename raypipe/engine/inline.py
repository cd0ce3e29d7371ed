"""A test double of the Ray executor: runs each task in the calling process, one after another.

Unit tests hand it to stages so they run without starting Ray. The driver never uses it: every
real run goes through :class:`raypipe.engine.tasks.RayExecutor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from raypipe.stages.base import CancelToken

__all__ = ["InlineExecutor"]

T = TypeVar("T")
R = TypeVar("R")


class InlineExecutor:
    """Runs ``fn(item)`` for each item in order, in this process; stops between items once
    ``cancel_token`` is cancelled, as the Ray executor does between tasks."""

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
