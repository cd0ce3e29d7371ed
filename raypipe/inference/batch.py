"""Run a batch scoring job: plan units, skip what is committed, score the rest, commit once.

The flow is the same whatever runs the units (an actor pool, executor tasks, this process):

1. list the input files and plan one unit per file (ids derive from file, model and options);
2. if the output's manifest already carries this run's key, stop: the run is finished;
3. with ``resume``, reuse the units whose markers exist; otherwise clear old markers;
4. a :data:`UnitRunner` scores the remaining units (each writes staged files, then its marker);
5. commit every ``ok`` unit's files in one manifest (atomic; bad files listed in its metadata),
   then remove the markers.

A failure before step 5 leaves no visible output: staged files and markers are invisible, and
``--resume`` picks up from them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raypipe.errors import DataError, SchemaError
from raypipe.inference.advice import PhaseTimes, advise, phase_times
from raypipe.inference.ledger import UnitLedger, UnitOutcome
from raypipe.inference.model import ModelBlob
from raypipe.inference.planning import (
    InferenceSpec,
    ScoringJob,
    ScoringUnit,
    committed_schema,
    list_input_files,
    plan_units,
    run_key,
)
from raypipe.inference.predictor import Predictor
from raypipe.inference.work import (
    UnitWorker,
    score_concurrently,
    score_unit_group,
    units_at_once,
)

__all__ = [
    "InferenceReport",
    "QuarantinedFile",
    "UnitRunner",
    "executor_runner",
    "inline_runner",
    "run_batch_inference",
]

logger = logging.getLogger(__name__)

UnitRunner = Callable[[ScoringJob, Sequence[ScoringUnit]], Iterable[UnitOutcome]]
"""Scores units and yields their outcomes, in any order; raises on the first failure."""

RUN_KEY = "inference_run_key"


@dataclass(frozen=True)
class QuarantinedFile:
    """An input file that was not scored, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class InferenceReport:
    """What a scoring run did.

    ``already_done`` is true when the output already held this exact run (nothing was scored).
    ``scored_units`` counts units scored by this run; ``resumed_units`` those taken from markers.
    """

    output_url: str
    version: str
    rows_in: int
    rows_out: int
    files_out: int
    units: int
    scored_units: int
    resumed_units: int
    quarantined: tuple[QuarantinedFile, ...]
    times: PhaseTimes | None
    already_done: bool = False
    advice: tuple[str, ...] = field(default=())


def inline_runner(job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterable[UnitOutcome]:
    """Score units in this process with one loaded model: as many at once as there are CPUs,
    each on one XGBoost thread (see :func:`~raypipe.inference.work.units_at_once`)."""
    at_once, nthread = units_at_once(os.cpu_count() or 1, len(units))
    yield from score_concurrently(UnitWorker(job, nthread=nthread), units, at_once)


def executor_runner(executor: Any, *, workers: int, threads: int = 1) -> UnitRunner:
    """Score units as ``workers`` executor tasks, each loading the model once for its group.

    Used by the job stage, whose executor runs tasks (Ray in real runs, in-process in tests).
    A task whose worker dies is retried by the executor; units it already marked are skipped.
    """

    def run(job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterable[UnitOutcome]:
        count = max(1, min(workers, len(units)))
        groups = [list(units[index::count]) for index in range(count)]
        task = partial(score_unit_group, job, threads)
        results = executor.map(task, groups, name="inference.score", num_cpus=float(threads))
        for group in results:
            yield from group

    return run


def run_batch_inference(
    model: ModelBlob,
    spec: InferenceSpec,
    runner: UnitRunner = inline_runner,
    *,
    resume: bool = False,
    workers: int = 1,
    threads_per_worker: int = 1,
    cluster_cpus: int = 1,
) -> InferenceReport:
    """Score ``spec.input_url`` with ``model`` into ``spec.output_url``, exactly once per row.

    Parameters
    ----------
    model
        The model bytes, read once on the driver.
    spec
        Input, output and options.
    runner
        What scores the units (see :data:`UnitRunner`).
    resume
        Reuse the units an interrupted run already committed to markers.
    workers, threads_per_worker, cluster_cpus
        The runner's shape, for the advice only.

    Raises
    ------
    DataError
        A bad input file, with ``on_bad_file="fail"``; nothing is committed.
    """
    from raypipe.io.lease import hold_dataset_leases

    # One writer per output, from the markers to the commit; a foreign folder is refused here.
    with hold_dataset_leases([spec.output_url], spec.storage_options):
        return _run_batch_inference(
            model, spec, runner, resume, workers, threads_per_worker, cluster_cpus
        )


def _run_batch_inference(
    model: ModelBlob,
    spec: InferenceSpec,
    runner: UnitRunner,
    resume: bool,
    workers: int,
    threads_per_worker: int,
    cluster_cpus: int,
) -> InferenceReport:
    from raypipe.io.dataset import DatasetWriter
    from raypipe.io.manifest import FileEntry

    started = time.perf_counter()
    files = list_input_files(spec.input_url, spec.storage_options)
    units = plan_units(files, model, spec)
    key = run_key(units)
    committed = _committed_key(spec.output_url, spec.storage_options)
    if committed == key:
        logger.info("`%s` already holds this run (%s); nothing to do", spec.output_url, key)
        return _done_report(spec.output_url, spec.storage_options)
    predictor = Predictor(model, id_columns=spec.carried_columns, shap=spec.shap)
    job = ScoringJob(model=model, spec=spec, carried_schema=_carried_schema(units, spec))
    ledger = UnitLedger(spec.output_url, spec.storage_options)
    done = ledger.read_all([unit.unit_id for unit in units]) if resume else {}
    if not resume:
        ledger.clear()
    pending = [unit for unit in units if unit.unit_id not in done]
    logger.info(
        "scoring %d file(s) (%d already committed) with model %s",
        len(pending),
        len(done),
        model.version,
    )
    outcomes = list(done.values()) + list(runner(job, pending))
    good = [outcome for outcome in outcomes if outcome.status == "ok"]
    bad = tuple(
        QuarantinedFile(file=outcome.source, reason=outcome.reason)
        for outcome in sorted(outcomes, key=lambda outcome: outcome.source)
        if outcome.status == "bad"
    )
    entries = [FileEntry(**entry) for outcome in good for entry in outcome.entries]
    writer = DatasetWriter(
        spec.output_url,
        partition_by=spec.partition_by,
        target_file_bytes=spec.target_file_bytes,
        storage_options=dict(spec.storage_options) or None,
    )
    metadata = {
        RUN_KEY: key,
        "model_uri": model.uri,
        "model_version": model.version,
        "input_url": spec.input_url,
        "quarantined": [{"file": item.file, "reason": item.reason} for item in bad],
    }
    manifest = writer.commit(
        entries, metadata=metadata, schema=_output_schema(job.carried_schema, predictor)
    )
    ledger.clear()
    times = phase_times(
        outcomes,
        wall_s=time.perf_counter() - started,
        workers=workers,
        threads_per_worker=threads_per_worker,
        cluster_cpus=cluster_cpus,
        input_bytes=sum(unit.file.bytes for unit in pending),
        batch_rows=spec.batch_rows,
    )
    report = InferenceReport(
        output_url=spec.output_url,
        version=manifest.version,
        rows_in=sum(outcome.rows_in for outcome in good),
        rows_out=manifest.rows,
        files_out=len(manifest.files),
        units=len(units),
        scored_units=len(pending),
        resumed_units=len(done),
        quarantined=bad,
        times=times,
        advice=tuple(advise(times)),
    )
    logger.info(
        "scored %d rows from %d file(s) into `%s` (version %s, %d quarantined) in %.2f s",
        report.rows_out,
        len(units),
        spec.output_url,
        manifest.version,
        len(bad),
        times.wall_s,
    )
    return report


def _committed_key(url: str, storage_options: Any) -> str | None:
    from raypipe.errors import DatasetNotCommittedError
    from raypipe.io.manifest import read_manifest

    try:
        manifest = read_manifest(url, dict(storage_options) or None)
    except DatasetNotCommittedError:
        return None
    return (manifest.metadata or {}).get(RUN_KEY)


def _done_report(url: str, storage_options: Any) -> InferenceReport:
    from raypipe.io.manifest import read_manifest

    manifest = read_manifest(url, dict(storage_options) or None)
    quarantined = tuple(
        QuarantinedFile(**item) for item in (manifest.metadata or {}).get("quarantined", [])
    )
    return InferenceReport(
        output_url=url,
        version=manifest.version,
        rows_in=manifest.rows,
        rows_out=manifest.rows,
        files_out=len(manifest.files),
        units=0,
        scored_units=0,
        resumed_units=0,
        quarantined=quarantined,
        times=None,
        already_done=True,
        advice=("nothing to do: this run is already committed",),
    )


def _carried_schema(units: Sequence[ScoringUnit], spec: InferenceSpec) -> pa.Schema:
    """Types of the id and partition columns, from the first readable input file.

    A committed input dataset's own schema gives the types of its partition columns (which are
    not stored in its files).
    """
    dataset_schema = (
        committed_schema(spec.input_url, dict(spec.storage_options) or None)
        if units and units[0].file.partition
        else None
    )
    for unit in units:
        try:
            schema = (
                pq.read_schema(unit.file.url, filesystem=None)
                if "://" not in unit.file.url
                else _remote_schema(unit.file.url, spec)
            )
        except (pa.ArrowException, OSError, ValueError) as exc:
            if spec.on_bad_file == "fail":
                raise DataError(
                    f"`{unit.file.url}` is not a readable Parquet file: {exc}",
                    hint="the file may be truncated or not Parquet; rewrite it, or pass "
                    "`--on-bad-file quarantine` to score the other files",
                ) from exc
            continue
        if dataset_schema is not None:
            for name, _ in unit.file.partition:
                if name not in schema.names and name in dataset_schema.names:
                    schema = schema.append(dataset_schema.field(name))
        missing = [name for name in spec.carried_columns if name not in schema.names]
        if missing:
            if spec.on_bad_file == "fail":
                raise SchemaError(
                    f"`{unit.file.url}` lacks column `{missing[0]}` (an id or partition column)",
                    hint="check `--id-columns` and `--partition-by` against the input's columns",
                )
            continue
        return pa.schema([schema.field(name) for name in spec.carried_columns])
    if not spec.carried_columns:
        return pa.schema([])
    raise DataError(
        f"No input file of `{spec.input_url}` is readable with columns "
        f"{', '.join(f'`{name}`' for name in spec.carried_columns)}",
        hint="check `--id-columns` and `--partition-by` against the input's columns",
    )


def _remote_schema(url: str, spec: InferenceSpec) -> pa.Schema:
    import fsspec

    with fsspec.open(url, "rb", **dict(spec.storage_options)) as handle:
        return pq.ParquetFile(handle).schema_arrow


def _output_schema(carried: pa.Schema, predictor: Predictor) -> pa.Schema:
    fields = list(carried) + [pa.field(name, pa.float32()) for name in predictor.output_names]
    return pa.schema(fields)
