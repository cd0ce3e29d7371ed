"""What a stage is: a kind name, an options model, named inputs and outputs, and a ``run``.

A stage never imports Ray nor the engine. Heavy work goes through ``context.backend``
(:mod:`raypipe.stages.backend`): its ``map`` runs plain, picklable functions as Ray tasks (or
in-process in unit tests), and its optional capabilities run trials, searches and scoring pools.
A stage reads its inputs through ``raypipe.io`` and writes each output with a ``DatasetWriter``
(or an artifact commit) at ``context.output_url(name)``; the driver publishes the stage's record
only after every output is committed, so a crash mid-stage leaves nothing half-visible.

Each job owns a folder of ``data_dir``, :func:`job_data_url`: its datasets, stage records and run
records live there, so two jobs with a stage of the same name never touch each other's outputs.
What is addressed by name across jobs (the model registry, the MLflow store, the audit log) stays
at ``data_dir`` itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from raypipe.errors import RunInterruptedError
from raypipe.io.manifest import Manifest

if TYPE_CHECKING:
    from raypipe.stages.backend import Backend

__all__ = [
    "CancelToken",
    "DatasetInput",
    "Executor",
    "Stage",
    "StageContext",
    "StageOptions",
    "StageResult",
    "job_data_url",
]

T = TypeVar("T")
R = TypeVar("R")


class StageOptions(BaseModel):
    """Base of every stage kind's options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Executor(Protocol):
    """Runs plain functions in parallel. The driver's is backed by Ray tasks."""

    @property
    def parallelism(self) -> int:
        """How many tasks can run at once (CPUs of the cluster)."""
        ...

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        name: str,
        num_cpus: float = 1.0,
        memory_bytes: int | None = None,
    ) -> list[R]:
        """Call ``fn(item)`` for every item, in parallel; results in the order of ``items``.

        Failed tasks are retried (a killed worker costs time, not data); a function that raises
        fails the call with a :class:`~raypipe.errors.TaskError` carrying its traceback and logs.
        """
        ...


@dataclass(frozen=True)
class DatasetInput:
    """A committed input dataset: where it is and which version."""

    url: str
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def rows(self) -> int:
        return self.manifest.rows


class CancelToken:
    """Set once when the run must stop (Ctrl-C, SIGTERM); checked at safe points.

    The CLI's signal handler calls :meth:`cancel`; the driver stops starting stages, executors
    stop between tasks (and cancel the tasks they started), and a long stage calls
    :meth:`raise_if_cancelled` before anything it cannot take back (registering a model).

    Examples
    --------
    >>> token = CancelToken()
    >>> token.cancel("SIGINT", exit_code=130)
    >>> token.cancelled, token.reason
    (True, 'SIGINT')
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.exit_code = 130

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str, *, exit_code: int = 130) -> None:
        """Ask everything that checks this token to stop; the first reason is kept."""
        if not self._event.is_set():
            self.reason, self.exit_code = reason, exit_code
            self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early when cancelled; ``True`` if cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self, where: str = "the run") -> None:
        """Raise :class:`~raypipe.errors.RunInterruptedError` when cancelled."""
        if self._event.is_set():
            raise RunInterruptedError(
                f"{where} interrupted ({self.reason})", exit_code=self.exit_code
            )


def job_data_url(data_dir: str, job_name: str) -> str:
    """The folder of ``data_dir`` that holds job ``job_name``'s datasets and records.

    ``<data_dir>/jobs/<job_name>``; a stage run outside a job (``job_name=""``, unit tests) uses
    ``data_dir`` itself. The ``jobs/`` level keeps job folders apart from the shared entries of
    ``data_dir`` (``registry/``, ``mlflow.db``, ``mlartifacts/``) whatever a job is called.

    Examples
    --------
    >>> job_data_url("s3://bucket/data", "churn")
    's3://bucket/data/jobs/churn'
    """
    from raypipe.io.fs import join_url

    return join_url(data_dir, "jobs", job_name) if job_name else data_dir


@dataclass(frozen=True)
class StageContext:
    """What the driver hands a running stage.

    ``data_dir`` is the shared root (registry, tracking store); ``job_name`` names the job whose
    folder of ``data_dir`` receives the stage's outputs (see :func:`job_data_url`); ``backend``
    is what the stage may ask of the engine (:class:`~raypipe.stages.backend.Backend`).
    """

    stage_name: str
    data_dir: str
    run_id: str
    backend: Backend
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    job_name: str = ""
    cancel_token: CancelToken = field(default_factory=CancelToken)

    @property
    def executor(self) -> Executor:
        """The backend's parallel map (the backend is an :class:`Executor` plus more)."""
        return self.backend

    def raise_if_cancelled(self) -> None:
        """Stop here if the run was interrupted; call before work that cannot be taken back."""
        self.cancel_token.raise_if_cancelled(f"stage `{self.stage_name}`")

    def output_url(self, output: str) -> str:
        """Where the stage's output ``output`` is committed."""
        from raypipe.io.fs import join_url

        return join_url(
            job_data_url(self.data_dir, self.job_name), "datasets", self.stage_name, output
        )


@dataclass(frozen=True)
class StageResult:
    """What a stage produced: committed outputs by name and its metrics."""

    outputs: Mapping[str, Manifest]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    rows_in: int = 0
    rows_out: int = 0


OptionsT = TypeVar("OptionsT", bound=StageOptions)


class Stage(Generic[OptionsT]):
    """Base class of stage kinds, generic in the kind's options model. Subclasses set the class
    attributes and implement ``run``.

    ``inputs`` names the inputs the kind requires, ``optional_inputs`` those it may take
    (``accepts_any_inputs`` lifts the limit, e.g. for a profiler of any tables), ``outputs`` the
    datasets it commits. ``options`` is the pydantic model of its ``with:`` block, the same class
    as the type argument: the spec loader validates the block with it, and ``run`` receives the
    validated instance.

    Examples
    --------
    >>> class EchoOptions(StageOptions):
    ...     text: str = "hi"
    >>> class EchoStage(Stage[EchoOptions]):
    ...     kind = "demo.echo"
    ...     options = EchoOptions
    ...     def run(self, context, inputs, options: EchoOptions) -> StageResult:
    ...         return StageResult(outputs={}, metrics={"text": options.text})
    """

    kind: ClassVar[str]
    options: ClassVar[type[StageOptions]]
    inputs: ClassVar[tuple[str, ...]] = ()
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    accepts_any_inputs: ClassVar[bool] = False
    outputs: ClassVar[tuple[str, ...]] = ()

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: OptionsT,
    ) -> StageResult:
        raise NotImplementedError

    @classmethod
    def accepted_inputs(cls) -> Iterable[str]:
        return (*cls.inputs, *cls.optional_inputs)
