"""Run plain functions as Ray tasks: the executor every stage gets in a real run.

Each task runs inside :func:`_call_captured`, which keeps the log lines the function emitted and
turns an exception into a picklable failure record. The driver then shows the error and the
worker's own log lines, not a wall of Ray output. A worker or node that dies is retried by Ray
(``max_retries``); an exception raised by the function is not retried, since rerunning the same
code on the same input fails the same way.

``ray`` itself is imported where a task first runs, not at the top: every command builds its
backend before a local Ray starts (or is ever needed), and a run that never needs Ray, such as
``raypipe infer`` scoring in its own process, must not pay the import (~0.5 s here).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from raypipe.engine.runtime import RayRuntime
from raypipe.errors import RaypipeError, TaskError
from raypipe.io.manifest import with_pins
from raypipe.stages.base import CancelToken

__all__ = ["ProgressCallback", "RayExecutor"]

T = TypeVar("T")
R = TypeVar("R")

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(task_name, done, total)`` while tasks finish."""

#: Retries of a task whose worker process or node died; exceptions are not retried.
TASK_MAX_RETRIES = 3
LOG_TAIL_LINES = 40
#: How often :meth:`RayExecutor.map` wakes to check for an interrupt while tasks run.
WAIT_TICK_S = 0.5


@dataclass
class _TaskOutcome:
    node_id: str
    seconds: float
    value: Any = None
    error: BaseException | None = None
    remote_traceback: str = ""
    log_lines: list[str] = field(default_factory=list)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _call_captured(fn: Callable[[Any], Any], item: Any) -> _TaskOutcome:
    """Run ``fn(item)`` in a worker, keeping its log lines and turning errors into data."""
    handler = _ListHandler()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(min(previous_level, logging.INFO) if previous_level else logging.INFO)
    import ray

    started = time.perf_counter()
    node_id = str(ray.get_runtime_context().get_node_id())
    try:
        value = fn(item)
    except Exception as exc:
        return _TaskOutcome(
            node_id=node_id,
            seconds=time.perf_counter() - started,
            error=exc if _is_picklable_error(exc) else None,
            remote_traceback=traceback.format_exc(),
            log_lines=handler.lines[-LOG_TAIL_LINES:],
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    return _TaskOutcome(
        node_id=node_id,
        seconds=time.perf_counter() - started,
        value=value,
        log_lines=handler.lines[-LOG_TAIL_LINES:],
    )


def _is_picklable_error(exc: BaseException) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True


@functools.cache
def _remote_call() -> Any:
    """The remote version of :func:`_call_captured` (``ray`` is imported once a task runs)."""
    import ray

    return ray.remote(_call_captured)


class RayExecutor:
    """Runs ``fn(item)`` for many items as Ray tasks, in parallel, results in input order.

    Parameters
    ----------
    runtime
        The runtime (gives the cluster's CPU count); started by the first :meth:`map`.
    on_progress
        Called with ``(name, done, total)`` as tasks finish.
    cancel_token
        Once cancelled, :meth:`map` cancels its unfinished tasks (a running one gets a
        ``KeyboardInterrupt`` in its worker) and raises ``RunInterruptedError``.

    Attributes
    ----------
    node_ids
        Ray node ids that ran at least one task of this executor
        (:class:`~raypipe.engine.backend.RayBackend` adds the nodes of the actors it started for
        the stage).
    task_seconds
        Summed run time of this executor's tasks.
    """

    def __init__(
        self,
        runtime: RayRuntime,
        on_progress: ProgressCallback | None = None,
        cancel_token: CancelToken | None = None,
    ) -> None:
        self._runtime = runtime
        self._on_progress = on_progress
        self._cancel_token = cancel_token or CancelToken()
        self._lock = threading.Lock()
        self.node_ids: set[str] = set()
        self.task_seconds = 0.0

    @property
    def parallelism(self) -> int:
        return self._runtime.cpus

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        name: str,
        num_cpus: float = 1.0,
        memory_bytes: int | None = None,
    ) -> list[R]:
        if not items:
            return []
        self._cancel_token.raise_if_cancelled(f"task `{name}`")
        self._runtime.start()  # a local Ray starts with the first task that needs it
        import ray

        options: dict[str, Any] = {
            "name": name,
            "num_cpus": num_cpus,
            "max_retries": TASK_MAX_RETRIES,
            "retry_exceptions": False,
        }
        if memory_bytes:
            options["memory"] = memory_bytes
        fn_ref = ray.put(with_pins(fn))  # the stage's pinned input versions travel along
        refs = [_remote_call().options(**options).remote(fn_ref, item) for item in items]
        index_of = {ref: index for index, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        done_count = 0
        self._report(name, 0, len(refs))
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_TICK_S)
                # Checked before reading results: a task killed by the same Ctrl-C (it reaches
                # the whole terminal process group) is reported as the interrupt, not a failure.
                self._cancel_token.raise_if_cancelled(f"task `{name}`")
                for ref in ready:
                    outcome = self._get(ref, name)
                    self._record(outcome)
                    if outcome.error is not None or outcome.remote_traceback:
                        raise _task_failure(name, outcome)
                    results[index_of[ref]] = outcome.value
                    done_count += 1
                if ready:
                    self._report(name, done_count, len(refs))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=False, recursive=True)
            raise
        return results

    def _get(self, ref: Any, name: str) -> _TaskOutcome:
        import ray
        from ray.exceptions import RayError

        try:
            outcome: _TaskOutcome = ray.get(ref)
        except RayError as exc:
            raise TaskError(
                f"Task `{name}` could not finish: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
                hint="a worker or node died more often than the retries allow "
                "(out of memory? killed?); see `ray status` and the Ray logs",
            ) from exc
        return outcome

    def _record(self, outcome: _TaskOutcome) -> None:
        with self._lock:
            self.node_ids.add(outcome.node_id)
            self.task_seconds += outcome.seconds

    def _report(self, name: str, done: int, total: int) -> None:
        if self._on_progress is not None:
            self._on_progress(name, done, total)

    def report_progress(self, name: str, done: int, total: int) -> None:
        """Report work that is not this executor's tasks (a search's trials) the same way."""
        self._report(name, done, total)


def _task_failure(name: str, outcome: _TaskOutcome) -> RaypipeError:
    """The error to raise in the driver for a task whose function raised."""
    if isinstance(outcome.error, RaypipeError):
        error = outcome.error
        if outcome.log_lines and isinstance(error, TaskError):
            error.log_lines = outcome.log_lines
        return error
    lines = outcome.remote_traceback.strip().splitlines()
    last_line = lines[-1] if lines else "an error"
    return TaskError(
        f"Task `{name}` raised {last_line}",
        remote_traceback=outcome.remote_traceback,
        log_lines=outcome.log_lines,
        hint="the task's traceback and log lines are shown with --debug",
    )
