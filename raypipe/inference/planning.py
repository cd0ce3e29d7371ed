"""What a scoring run does: its spec, its input files, and its units of work.

A unit is one input file. Its id is a hash of the file's identity (path plus content hash, or
size and modification time), the model version and the options that shape the output, so a
retried or resumed unit writes the same output names and a new model or new data never reuses
another run's committed units. The run key, a hash of every unit id, marks a finished run in the
output manifest: rerunning it does nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from raypipe.errors import DataError, SpecError
from raypipe.inference.model import ModelBlob

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "InferenceSpec",
    "InputFile",
    "ScoringJob",
    "ScoringUnit",
    "committed_schema",
    "list_input_files",
    "plan_units",
    "run_key",
]

DEFAULT_BATCH_ROWS = 131_072
DEFAULT_TARGET_FILE_BYTES = 128 * 1024**2

OnBadFile = Literal["fail", "quarantine"]


@dataclass(frozen=True)
class InferenceSpec:
    """Everything a scoring run needs besides the model.

    Parameters
    ----------
    input_url
        A committed raypipe dataset, a folder of Parquet files, a glob, or one Parquet file.
    output_url
        Where the scores are committed (a raypipe dataset).
    id_columns
        Input columns copied to the output before ``score``.
    batch_rows
        Rows per Arrow batch read and scored at once (memory per worker grows with it).
    partition_by
        Output partition columns (they are copied from the input too).
    target_file_bytes
        Output file size a worker aims at before starting a new file.
    on_bad_file
        ``fail``: the first bad input file stops the run, nothing is committed. ``quarantine``:
        bad files are listed with their reason, the good ones are scored and committed.
    shap
        Add SHAP contributions (``shap_<feature>``, ``shap_bias``).
    worker_pid_dir
        If set, each worker writes a file named after its pid there (fault-injection tests and
        operators use it to find worker processes).
    """

    input_url: str
    output_url: str
    id_columns: tuple[str, ...] = ()
    batch_rows: int = DEFAULT_BATCH_ROWS
    partition_by: tuple[str, ...] = ()
    target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES
    on_bad_file: OnBadFile = "fail"
    shap: bool = False
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    worker_pid_dir: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.batch_rows < 1:
            problems.append(f"`batch_size` must be at least 1, received {self.batch_rows}")
        if self.on_bad_file not in ("fail", "quarantine"):
            problems.append(
                f"`on_bad_file` must be `fail` or `quarantine`, received `{self.on_bad_file}`"
            )
        if self.target_file_bytes < 1024:
            problems.append(
                f"`target_file_bytes` must be at least 1024, received {self.target_file_bytes}"
            )
        if problems:
            raise SpecError(problems)

    @property
    def carried_columns(self) -> tuple[str, ...]:
        """Input columns copied to the output: id columns, then partition columns."""
        extra = tuple(name for name in self.partition_by if name not in self.id_columns)
        return (*self.id_columns, *extra)

    def fingerprint(self) -> str:
        """Hash of the options that change output content or names."""
        shaping = [self.carried_columns, self.partition_by, self.shap, self.target_file_bytes]
        return hashlib.sha256(json.dumps(shaping).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class InputFile:
    """One input Parquet file and what identifies its content."""

    url: str
    identity: str
    bytes: int = 0
    #: Hive partition values of a committed dataset's file (not stored in the file itself).
    partition: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class ScoringUnit:
    """One unit of work: score one input file."""

    unit_id: str
    file: InputFile


@dataclass(frozen=True)
class ScoringJob:
    """What every worker receives once: the model, the spec, and the carried columns' types.

    ``carried_schema`` comes from the first input file: a file whose id or partition columns
    have other types is bad (its output would not fit the same dataset).
    """

    model: ModelBlob
    spec: InferenceSpec
    carried_schema: pa.Schema


def list_input_files(url: str, storage_options: Mapping[str, Any] | None = None) -> list[InputFile]:
    """The Parquet files of ``url``, in a stable order.

    A committed raypipe dataset gives its manifest's files (identity: their SHA-256). Otherwise
    ``url`` is a file, a folder (searched recursively for ``*.parquet``, skipping names that
    start with ``_`` or ``.``) or a glob; identity is size and modification time.
    """
    from raypipe.io.fs import join_url, resolve_fs
    from raypipe.io.sources import hive_partition, open_dataset

    manifest = _committed_manifest(url, storage_options)
    if manifest is not None:
        return [
            InputFile(
                url=join_url(url, entry.path),
                identity=entry.sha256,
                bytes=entry.bytes,
                partition=tuple(sorted(entry.partition.items())),
            )
            for entry in manifest.files
        ]
    fs, path = resolve_fs(url, dict(storage_options or {}))
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    if any(char in path for char in "*?["):
        paths = sorted(fs.glob(path))
    elif fs.isdir(path):
        paths = sorted(
            found
            for found in fs.find(path)
            if found.endswith(".parquet")
            and not any(part.startswith(("_", ".")) for part in found[len(path) :].split("/"))
        )
    elif fs.exists(path):
        paths = [path]
    else:
        raise DataError(
            f"Input `{url}` does not exist",
            hint="pass a committed dataset, a folder of Parquet files, a glob or a file",
        )
    files = []
    folder = fs.isdir(path) and not any(char in path for char in "*?[")
    for found in paths:
        info = fs.info(found)
        identity = f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or ''}"
        # Hive directories of plain Parquet (pandas, Spark) carry partition values too.
        partition = hive_partition(found[len(path.rstrip("/")) + 1 :]) if folder else {}
        files.append(
            InputFile(
                url=f"{protocol}{found}" if protocol else found,
                identity=identity,
                bytes=int(info.get("size") or 0),
                partition=tuple(sorted(partition.items())),
            )
        )
    if not files and folder:
        open_dataset(url, storage_options)  # says "the writer did not finish" where that is so
    if not files:
        raise DataError(
            f"Input `{url}` holds no Parquet files",
            hint="files must end in `.parquet`; names starting with `_` or `.` are skipped",
        )
    return files


def committed_schema(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> pa.Schema | None:
    """The schema of an input dataset with its partition columns (committed, or plain Hive
    partitions), else ``None``."""
    from raypipe.io.sources import open_dataset

    try:
        return open_dataset(url, storage_options).schema
    except DataError:
        return None


def _committed_manifest(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    from raypipe.errors import DatasetNotCommittedError
    from raypipe.io.manifest import read_manifest

    try:
        return read_manifest(url, storage_options)
    except DatasetNotCommittedError:
        return None


def plan_units(
    files: Sequence[InputFile], model: ModelBlob, spec: InferenceSpec
) -> list[ScoringUnit]:
    """One unit per file, with an id that changes when the file, model or output shape does."""
    shaping = spec.fingerprint()
    units = []
    for file in files:
        digest = hashlib.sha256(
            json.dumps([file.url, file.identity, model.version, shaping]).encode()
        ).hexdigest()[:20]
        units.append(ScoringUnit(unit_id=digest, file=file))
    return units


def run_key(units: Sequence[ScoringUnit]) -> str:
    """Identifies a whole run: the same inputs, model and options give the same key."""
    return hashlib.sha256("\n".join(unit.unit_id for unit in units).encode()).hexdigest()[:24]
