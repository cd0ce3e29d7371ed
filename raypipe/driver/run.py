"""Run a job's stage DAG: dependency order, independent stages at once, cache, resume, record.

The driver itself does no data work. Each stage runs in a driver thread and sends its heavy work
to the backend it is given (:mod:`raypipe.stages.backend`; built once by the CLI), bound to the
stage's progress and the run's cancel token; stages whose inputs are ready run concurrently.

Interrupts: the CLI turns Ctrl-C and SIGTERM into a cancelled :class:`CancelToken`. The driver
then starts no further stage, running stages stop at their next safe point (executors between
tasks; a stage before work it cannot take back), the run record says ``interrupted`` and
:class:`JobInterruptedError` carries the signal's exit code. ``--resume`` continues the run.
While it runs, the driver keeps a heartbeat in the run record (:mod:`raypipe.driver.heartbeat`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import raypipe
from raypipe.driver.fingerprint import stage_code_version, stage_fingerprint
from raypipe.driver.heartbeat import HEARTBEAT_S, beat, live_driver
from raypipe.driver.record import OutputRecord, RunRecord, StageRecord, StageStatus
from raypipe.driver.state import DriverState, new_run_id
from raypipe.errors import DataError, RaypipeError, RunInterruptedError, StageError
from raypipe.io.lease import DatasetLease, hold_dataset_leases
from raypipe.io.manifest import pinned_manifests, read_manifest
from raypipe.spec.job import Job, JobStage
from raypipe.stages.backend import Backend
from raypipe.stages.base import CancelToken, DatasetInput, StageContext

__all__ = [
    "JobFailedError",
    "JobInterruptedError",
    "RunObserver",
    "RunOptions",
    "run_job",
]

logger = logging.getLogger(__name__)


#: How often the run loop wakes to check for an interrupt and to beat.
TICK_S = 0.25


class RunObserver(Protocol):
    """Told about stage boundaries and task progress (the CLI draws bars or logs lines)."""

    def stage_started(self, name: str, kind: str) -> None: ...

    def stage_progress(self, name: str, task: str, done: int, total: int) -> None: ...

    def stage_finished(self, record: StageRecord) -> None: ...


class _SilentObserver:
    def stage_started(self, name: str, kind: str) -> None:
        pass

    def stage_progress(self, name: str, task: str, done: int, total: int) -> None:
        pass

    def stage_finished(self, record: StageRecord) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    """How to run a job.

    Parameters
    ----------
    resume
        Continue the newest unfinished run of this job (same run id) instead of starting one.
    force
        Stage names to rerun even when cached.
    max_concurrent_stages
        How many independent stages may run at once.
    """

    resume: bool = False
    force: frozenset[str] = field(default_factory=frozenset)
    max_concurrent_stages: int = 4


class JobFailedError(StageError):
    """One or more stages failed; the run record is written and attached."""

    def __init__(self, record: RunRecord, first_error: RaypipeError) -> None:
        names = ", ".join(f"`{stage.name}`" for stage in record.failed_stages)
        super().__init__(
            f"Job `{record.job}` failed in stage {names}:\n{first_error}",
            hint=f"fix the cause, then `raypipe run {record.spec} --resume` reruns only what "
            "did not finish",
        )
        self.record = record
        self.first_error = first_error
        self.exit_code = first_error.exit_code


class JobInterruptedError(RunInterruptedError):
    """Ctrl-C or SIGTERM stopped the run; the record (status ``interrupted``) is attached."""

    def __init__(self, record: RunRecord, token: CancelToken, stopped: list[str]) -> None:
        where = (
            "stopped " + ", ".join(f"`{name}`" for name in stopped) + " at a safe point"
            if stopped
            else "between stages"
        )
        super().__init__(
            f"interrupted ({token.reason}): run `{record.run_id}` of job `{record.job}` "
            f"{where}; nothing is registered or promoted after the interrupt",
            hint=f"`raypipe run {record.spec} --resume` continues this run; committed stages "
            "are reused",
            exit_code=token.exit_code,
        )
        self.record = record
        self.stopped = stopped


def run_job(
    job: Job,
    *,
    backend: Backend,
    driver_node: Callable[[], str] | None = None,
    options: RunOptions | None = None,
    observer: RunObserver | None = None,
    cancel_token: CancelToken | None = None,
) -> RunRecord:
    """Run every stage of ``job`` and return the run record (also written in the job's folder).

    Parameters
    ----------
    backend
        What the stages run on (each gets :meth:`~raypipe.stages.backend.Backend.for_stage`).
    driver_node
        Gives the Ray node of this driver (``""`` for none), recorded for a stage whose backend
        names no node (no task or actor of it ran: its work ran in the driver); asked as each
        stage ends, since a local Ray starts with the first stage that needs it.
    cancel_token
        Cancelled by the caller (the CLI's signal handler) to stop the run at the next safe
        point.

    Raises
    ------
    JobFailedError
        When a stage failed; carries the record. Independent stages still ran to the end.
    JobInterruptedError
        When ``cancel_token`` was cancelled; the record says ``interrupted``.
    """
    options = options or RunOptions()
    observer = observer or _SilentObserver()
    token = cancel_token or CancelToken()
    state = DriverState(job.data_dir, job.name, job.storage_options)
    record, lease = _start_record(job, state, options)
    try:
        runner = _StageRunner(job, state, record, backend, driver_node, options, observer, token)
        started = time.perf_counter()
        errors = runner.run_all()
        record.seconds = round(record.seconds + time.perf_counter() - started, 3)
        record.finished_at = _now()
        if token.cancelled:
            record.status = StageStatus.INTERRUPTED
        else:
            record.status = StageStatus.FAILED if errors else StageStatus.SUCCEEDED
        state.write_run(record)
    finally:
        lease.release()
    if token.cancelled:
        raise JobInterruptedError(record, token, runner.interrupted)
    if errors:
        raise JobFailedError(record, errors[0])
    return record


def _start_record(
    job: Job, state: DriverState, options: RunOptions
) -> tuple[RunRecord, DatasetLease]:
    """The run record to work on and the run's lease, held: only one driver per run."""
    if options.resume:
        previous = state.latest_unfinished_run()
        if previous is None:
            raise RaypipeError(
                f"Nothing to resume: job `{job.name}` has no unfinished run under "
                f"`{state.job_dir}`",
                hint="run without --resume; finished stages are reused from the cache anyway",
            )
        # The lease first (atomic: of two --resume at once, one gets it), then the record as it
        # is now, so a driver that just finished or still beats is seen.
        lease = state.take_over(previous.run_id)
        try:
            previous = state.read_run(previous.run_id)
            if previous.succeeded:
                raise RaypipeError(
                    f"Nothing to resume: run `{previous.run_id}` of job `{job.name}` has "
                    "just succeeded",
                    hint="run without --resume; finished stages are reused from the cache",
                )
            _refuse_a_live_driver(previous)
        except BaseException:
            lease.release()
            raise
        previous.attempts += 1
        previous.status = StageStatus.RUNNING
        previous.heartbeat = beat()
        for stage_record in previous.stages.values():
            if stage_record.status not in StageStatus.FINISHED:
                stage_record.status, stage_record.error = StageStatus.PENDING, None
        for stage in job.stages:
            previous.stages.setdefault(stage.name, StageRecord(name=stage.name, kind=stage.kind))
        state.write_run(previous)
        return previous, lease
    run_id = new_run_id()
    lease = state.take_over(run_id)
    record = RunRecord(
        run_id=run_id,
        job=job.name,
        spec=job.source,
        data_dir=job.data_dir,
        raypipe_version=raypipe.__version__,
        started_at=_now(),
        stages={stage.name: StageRecord(name=stage.name, kind=stage.kind) for stage in job.stages},
        heartbeat=beat(),
    )
    state.write_run(record)
    return record, lease


def _refuse_a_live_driver(previous: RunRecord) -> None:
    """``--resume`` must not take over a run whose driver still works on it."""
    if previous.status != StageStatus.RUNNING:
        return
    alive = live_driver(previous.heartbeat)
    if alive is None:
        return
    host, pid, age = alive
    raise RaypipeError(
        f"Run `{previous.run_id}` of job `{previous.job}` is still running: its driver "
        f"(pid {pid} on host `{host}`) wrote a heartbeat {age:.0f} s ago",
        hint=f"wait for it to end, or stop it (Ctrl-C in its terminal, `kill {pid}` on "
        f"`{host}`, or `raypipe jobs stop ID`); a driver silent for 60 s is taken over",
    )


class _StageRunner:
    """Schedules stages as their inputs become ready and records what each did."""

    def __init__(
        self,
        job: Job,
        state: DriverState,
        record: RunRecord,
        backend: Backend,
        driver_node: Callable[[], str] | None,
        options: RunOptions,
        observer: RunObserver,
        token: CancelToken,
    ) -> None:
        self.job = job
        self.state = state
        self.record = record
        self.backend = backend
        self.driver_node = driver_node
        self.options = options
        self.observer = observer
        self.token = token
        #: Stages that were running when the run was interrupted.
        self.interrupted: list[str] = []
        self._submitted_at: dict[str, float] = {}

    def run_all(self) -> list[RaypipeError]:
        errors: list[RaypipeError] = []
        waiting = [stage for stage in self.job.stages]
        running: dict[Future[StageRecord], JobStage] = {}
        pool = ThreadPoolExecutor(max_workers=self.options.max_concurrent_stages)
        last_beat = time.monotonic()
        try:
            while waiting or running:
                if not self.token.cancelled:
                    for stage in self._ready(waiting):
                        waiting.remove(stage)
                        self._mark(stage, StageStatus.RUNNING)
                        self._submitted_at[stage.name] = time.perf_counter()
                        running[pool.submit(self._run_stage, stage)] = stage
                if not running:
                    break
                done, _ = wait(running, timeout=TICK_S, return_when=FIRST_COMPLETED)
                for future in done:
                    stage = running.pop(future)
                    error = future.exception()
                    if error is None:
                        self.record.stages[stage.name] = future.result()
                    elif self.token.cancelled:
                        # Whatever a stage raised after the interrupt (a task killed by the
                        # same Ctrl-C, a cancelled task) is the interrupt, not a failure.
                        self._interrupt(stage)
                    else:
                        errors.append(self._fail(stage, error, waiting))
                    self.observer.stage_finished(self.record.stages[stage.name])
                    self.state.write_run(self.record)
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    self.record.heartbeat = beat()
                    self.state.write_run(self.record)
                    last_beat = time.monotonic()
        except (KeyboardInterrupt, SystemExit):  # a second signal: stop waiting for stages
            self.token.cancel(self.token.reason or "SIGINT")
            for stage in running.values():
                self._interrupt(stage)
            self.record.status = StageStatus.INTERRUPTED
            self.state.write_run(self.record)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return errors

    def _driver_node_id(self) -> str:
        return self.driver_node() if self.driver_node is not None else ""

    def _interrupt(self, stage: JobStage) -> None:
        self._mark(stage, StageStatus.INTERRUPTED, error=f"interrupted ({self.token.reason})")
        began = self._submitted_at.get(stage.name, time.perf_counter())
        self.record.stages[stage.name].seconds = round(time.perf_counter() - began, 3)
        self.interrupted.append(stage.name)
        logger.warning("stage %s interrupted", stage.name)

    def _ready(self, waiting: list[JobStage]) -> list[JobStage]:
        finished = {
            name
            for name, stage in self.record.stages.items()
            if stage.status in StageStatus.FINISHED
        }
        return [stage for stage in waiting if stage.depends_on <= finished]

    def _mark(self, stage: JobStage, status: str, error: str | None = None) -> None:
        stage_record = self.record.stages[stage.name]
        stage_record.status, stage_record.error = status, error

    def _fail(self, stage: JobStage, error: BaseException, waiting: list[JobStage]) -> RaypipeError:
        if not isinstance(error, RaypipeError):
            logger.debug("stage %s raised", stage.name, exc_info=error)
            wrapped = StageError(
                f"Stage `{stage.name}` ({stage.kind}) raised {type(error).__name__}: {error}",
                hint="rerun with --debug for the traceback",
            )
            wrapped.__cause__ = error
            error = wrapped
        assert isinstance(error, RaypipeError)
        self._mark(stage, StageStatus.FAILED, error=str(error))
        downstream = self.job.downstream_of(stage.name)
        for other in list(waiting):
            if other.name in downstream:
                waiting.remove(other)
                self._mark(other, StageStatus.SKIPPED, error=f"upstream `{stage.name}` failed")
        logger.error("stage %s failed: %s", stage.name, error.message)
        return error

    def _run_stage(self, stage: JobStage) -> StageRecord:
        self.observer.stage_started(stage.name, stage.kind)
        inputs = self._inputs(stage)
        fingerprint = stage_fingerprint(
            kind=stage.kind,
            options=stage.options_dict(),
            raypipe_version=raypipe.__version__,
            input_versions={name: item.version for name, item in inputs.items()},
            code_version=stage_code_version(stage.stage_class),
        )
        input_records = {
            name: OutputRecord(url=item.url, version=item.version, rows=item.rows)
            for name, item in inputs.items()
        }
        cached = self._cached(stage, fingerprint)
        if cached is not None:
            cached.inputs = input_records
            logger.debug("stage %s: cached (%d rows out)", stage.name, cached.rows_out)
            return cached
        started = time.perf_counter()
        self.token.raise_if_cancelled(f"stage `{stage.name}`")
        backend = self.backend.for_stage(
            lambda task, done, total: self.observer.stage_progress(stage.name, task, done, total),
            self.token,
        )
        context = StageContext(
            stage_name=stage.name,
            data_dir=self.job.data_dir,
            run_id=self.record.run_id,
            backend=backend,
            storage_options=self.job.storage_options,
            job_name=self.job.name,
            cancel_token=self.token,
        )
        output_urls = [context.output_url(name) for name in stage.stage_class.outputs]
        # One writer per output for the whole stage; a foreign folder is refused before work.
        # Inputs are read at the versions fingerprinted above, even if another run commits.
        with (
            hold_dataset_leases(
                output_urls,
                self.job.storage_options,
                run_id=self.record.run_id,
                keep_versions=self.job.keep_versions,
            ),
            pinned_manifests({item.url: item.manifest for item in inputs.values()}),
        ):
            result = stage.stage_class().run(context, inputs, stage.options)
        missing = set(stage.stage_class.outputs) - set(result.outputs)
        if missing:
            raise StageError(
                f"Stage `{stage.name}` ({stage.kind}) finished without committing "
                f"{', '.join(sorted(missing))}",
                hint="this is a bug in the stage kind; please report it",
            )
        stage_record = StageRecord(
            name=stage.name,
            kind=stage.kind,
            status=StageStatus.SUCCEEDED,
            fingerprint=fingerprint,
            seconds=round(time.perf_counter() - started, 3),
            rows_in=result.rows_in,
            rows_out=result.rows_out,
            inputs=input_records,
            outputs={
                name: OutputRecord(
                    url=context.output_url(name), version=manifest.version, rows=manifest.rows
                )
                for name, manifest in result.outputs.items()
            },
            node_ids=sorted(backend.node_ids or {self._driver_node_id()} - {""}),
            metrics=dict(result.metrics),
        )
        self.state.write_stage_commit(stage_record)
        logger.debug(
            "stage %s: %d rows in, %d rows out, %d output(s), %.1f s",
            stage.name,
            stage_record.rows_in,
            stage_record.rows_out,
            len(stage_record.outputs),
            stage_record.seconds,
        )
        return stage_record

    def _inputs(self, stage: JobStage) -> dict[str, DatasetInput]:
        inputs: dict[str, DatasetInput] = {}
        for name, ref in stage.inputs.items():
            upstream = self.record.stages[ref.stage].outputs.get(ref.output)
            if upstream is None:
                raise DataError(
                    f"Stage `{stage.name}` input `{name}`: `{ref}` was not produced",
                    hint=f"stage `{ref.stage}` must run first",
                )
            manifest = read_manifest(upstream.url, self.job.storage_options, version=ref.version)
            inputs[name] = DatasetInput(url=upstream.url, manifest=manifest)
        return inputs

    def _cached(self, stage: JobStage, fingerprint: str) -> StageRecord | None:
        if stage.name in self.options.force:
            return None
        if getattr(stage.stage_class, "always_runs", False):
            return None  # its input is outside raypipe (e.g. a folder files land in)
        commit = self.state.read_stage_commit(stage.name)
        if commit is None:
            return None
        if commit.fingerprint != fingerprint:
            logger.info(
                "stage %s runs again: its code, options or inputs changed since its last commit",
                stage.name,
            )
            return None
        for name, output in commit.outputs.items():
            try:
                version = read_manifest(output.url, self.job.storage_options).version
            except DataError as error:
                logger.info("stage %s runs again: output %s: %s", stage.name, name, error.message)
                return None
            if version != output.version:
                logger.info(
                    "stage %s runs again: output %s is at version %s, not its commit's %s",
                    stage.name,
                    name,
                    version,
                    output.version,
                )
                return None
        commit.status, commit.cached, commit.seconds = StageStatus.CACHED, True, 0.0
        commit.node_ids = []
        return commit


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
