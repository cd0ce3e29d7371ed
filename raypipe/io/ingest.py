"""Ingest: CSV, JSON lines or Parquet files from any fsspec URL or glob, cast to a declared schema.

The functional core of the ``ingest`` stage. Each source file is one task
(:func:`ingest_file`): it reads the file, casts every column to its declared type, and stages the
good rows (and the rows that failed to cast, when quarantining) with a :class:`DatasetWriter`.
Rows that cannot be cast are reported by file, line (1-based, counting the CSV header), column,
expected type and received value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from raypipe.errors import DataError, SchemaError, SpecError
from raypipe.io.dataset import DatasetWriter
from raypipe.io.fs import resolve_fs
from raypipe.io.manifest import FileEntry
from raypipe.redaction import redact_url, strip_query

__all__ = [
    "QUARANTINE_FIXED",
    "BadRow",
    "FileResult",
    "IngestFileJob",
    "detect_format",
    "ingest_file",
    "list_source_files",
    "parse_schema",
    "parse_type",
    "quarantine_schema",
]

Format = Literal["auto", "csv", "jsonl", "parquet"]
QUARANTINE_FIXED = ("source_file", "line", "column", "reason")
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float": pa.float32(),
    "float64": pa.float64(),
    "double": pa.float64(),
    "string": pa.string(),
    "str": pa.string(),
    "utf8": pa.string(),
    "large_string": pa.large_string(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "date32": pa.date32(),
}
_TIMESTAMP = re.compile(r"^timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*(?:tz=)?([^\]]+?)\s*)?\]$")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def parse_type(name: str) -> pa.DataType:
    """A type name (``int64``, ``float64``, ``string``, ``bool``, ``date``, ``timestamp[us]``,
    ``timestamp[us, UTC]``) as a pyarrow type; ``ValueError`` when unknown."""
    text = (
        name.strip().lower() if not name.strip().lower().startswith("timestamp") else name.strip()
    )
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    if text == "timestamp":
        return pa.timestamp("us")
    match = _TIMESTAMP.match(text)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    raise ValueError(
        f"unknown type `{name}` (known: {', '.join(sorted(_SIMPLE_TYPES))}, "
        "timestamp[unit], timestamp[unit, TZ])"
    )


def parse_schema(mapping: Mapping[str, str]) -> pa.Schema:
    """A ``column -> type name`` mapping as a pyarrow schema; :class:`SpecError` lists bad types."""
    fields, problems = [], []
    for column, type_name in mapping.items():
        try:
            fields.append(pa.field(column, parse_type(type_name)))
        except ValueError as exc:
            problems.append(f"`with.schema.{column}`: {exc}")
    if problems:
        raise SpecError(
            problems, hint="use e.g. `int64`, `float64`, `string`, `timestamp[us, UTC]`"
        )
    return pa.schema(fields)


def quarantine_schema(columns: Sequence[str]) -> pa.Schema:
    """Quarantined rows: where and why, then every source column's raw value as a string."""
    fixed = [
        pa.field("source_file", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("column", pa.string()),
        pa.field("reason", pa.string()),
    ]
    return pa.schema(
        fixed + [pa.field(c, pa.string()) for c in columns if c not in QUARANTINE_FIXED]
    )


def detect_format(path: str, declared: Format = "auto") -> str:
    """The file's format: ``declared`` unless ``auto``, else from the suffix."""
    if declared != "auto":
        return declared
    name = strip_query(path).lower()  # a presigned URL ends in its signature, not its suffix
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    raise DataError(
        f"cannot tell the format of `{redact_url(path)}` from its suffix",
        hint="set `format: csv|jsonl|parquet` in the stage's options",
    )


def list_source_files(source: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The URLs of the files ``source`` names (a file, a folder or a glob), sorted."""
    fs, path = resolve_fs(source, storage_options)
    protocol = source.split("://", 1)[0] + "://" if "://" in source else ""
    if protocol == "file://":
        protocol = ""
    if any(char in path for char in "*?["):
        paths = [p for p in fs.glob(path) if not fs.isdir(p)]
    elif fs.isdir(path):
        paths = [
            p
            for p in fs.find(path)
            if not any(part.startswith(("_", ".")) for part in p[len(path) :].split("/"))
        ]
    elif fs.exists(path):
        paths = [path]
    else:
        paths = []
    if not paths:
        raise DataError(
            f"no file matches `{redact_url(source)}`",
            hint="check the `source` URL or glob (e.g. `s3://bucket/raw/*.csv`)",
        )
    # HTTP(S) file systems give back whole URLs (with their query); others bare paths.
    return [f"{protocol}{p}" if protocol and "://" not in p else p for p in sorted(paths)]


@dataclass(frozen=True)
class BadRow:
    """One row that could not be cast."""

    source_file: str
    line: int
    column: str
    expected: str
    received: str | None

    def describe(self) -> str:
        return (
            f"`{redact_url(self.source_file)}` line {self.line}, column `{self.column}`: expected "
            f"{self.expected}, received {self.received!r}"
        )


@dataclass(frozen=True)
class IngestFileJob:
    """One task: ingest ``source_file`` into staged files of ``writer`` (picklable)."""

    source_file: str
    format: str
    schema: pa.Schema | None
    writer: DatasetWriter
    quarantine_writer: DatasetWriter | None
    part: int
    storage_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileResult:
    """What one file produced: staged entries, row counts and the first bad row if failing."""

    source_file: str
    entries: tuple[FileEntry, ...]
    quarantine_entries: tuple[FileEntry, ...]
    rows_in: int
    rows_out: int
    bad_rows: int
    first_bad: BadRow | None
    schema: pa.Schema


def ingest_file(job: IngestFileJob) -> FileResult:
    """Read, cast and stage one source file (runs as a task)."""
    raw, lines = _read_raw(job)
    bad: list[tuple[int, BadRow]] = []
    if job.schema is None:
        table = raw
    else:
        table, bad = _cast(raw, lines, job.schema, job.source_file)
    bad_rows = sorted({row for row, _ in bad})
    if bad and job.quarantine_writer is None:
        return FileResult(
            job.source_file, (), (), raw.num_rows, 0, len(bad_rows), bad[0][1], table.schema
        )
    if bad_rows:
        keep = pc.invert(
            pc.is_in(
                pa.array(range(raw.num_rows), pa.int64()), value_set=pa.array(bad_rows, pa.int64())
            )
        )
        table = table.filter(keep)
    entries = job.writer.write(table, part=job.part) if table.num_rows else []
    quarantine: list[FileEntry] = []
    if job.quarantine_writer is not None and bad:
        quarantine = job.quarantine_writer.write(
            _quarantine_table(raw, lines, bad, job.source_file, job.schema), part=job.part
        )
    return FileResult(
        job.source_file,
        tuple(entries),
        tuple(quarantine),
        raw.num_rows,
        table.num_rows,
        len(bad_rows),
        bad[0][1] if bad else None,
        table.schema,
    )


# -- reading ---------------------------------------------------------------------------------


def _read_raw(job: IngestFileJob) -> tuple[pa.Table, list[int]]:
    """The file as a table (strings for CSV/JSONL when a schema is declared) and line numbers."""
    fs, path = resolve_fs(job.source_file, job.storage_options)
    try:
        if job.format == "parquet":
            with fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
            return table, list(range(1, table.num_rows + 1))
        data = fs.cat_file(path)
        if job.format == "csv":
            return _read_csv(data, job.schema)
        return _read_jsonl(data, job.schema, job.source_file)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read `{job.source_file}` as {job.format}: {exc}",
            hint="check the file and the `format` option",
        ) from exc


def _read_csv(data: bytes, schema: pa.Schema | None) -> tuple[pa.Table, list[int]]:
    if schema is None:
        table = pacsv.read_csv(pa.BufferReader(data))
    else:
        header = pacsv.open_csv(pa.BufferReader(data)).schema.names if data.strip() else []
        convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        )
        table = pacsv.read_csv(pa.BufferReader(data), convert_options=convert)
    return table, list(range(2, table.num_rows + 2))


def _read_jsonl(data: bytes, schema: pa.Schema | None, source: str) -> tuple[pa.Table, list[int]]:
    records, lines = [], []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"`{source}` line {number}: not valid JSON ({exc.msg})",
                hint="each line must be one JSON object",
            ) from exc
        if not isinstance(record, dict):
            raise DataError(
                f"`{source}` line {number}: expected a JSON object, received "
                f"{type(record).__name__}",
                hint="each line must be one JSON object",
            )
        records.append(record)
        lines.append(number)
    if schema is None:
        return pa.Table.from_pylist(records), lines
    names = list(dict.fromkeys(key for record in records for key in record))
    columns = {
        name: pa.array([_as_text(record.get(name)) for record in records], pa.string())
        for name in names
    }
    return pa.table(columns) if columns else pa.table({}), lines


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


# -- casting ---------------------------------------------------------------------------------


def _cast(
    raw: pa.Table, lines: list[int], schema: pa.Schema, source: str
) -> tuple[pa.Table, list[tuple[int, BadRow]]]:
    missing = [name for name in schema.names if name not in raw.column_names]
    if missing and raw.num_rows:
        raise SchemaError(
            f"`{source}` has no column(s) {', '.join(f'`{c}`' for c in missing)} "
            f"(it has {', '.join(f'`{c}`' for c in raw.column_names) or 'none'})",
            hint="fix the file or the declared `schema`",
        )
    arrays, bad = [], []
    for target in schema:
        if target.name not in raw.column_names:
            arrays.append(pa.nulls(raw.num_rows, target.type))
            continue
        column = raw.column(target.name)
        try:
            arrays.append(_cast_array(column, target.type))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        values = column.to_pylist()
        cast_values = []
        for row, value in enumerate(values):
            try:
                cast_values.append(_cast_array(pa.array([value], column.type), target.type)[0])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                cast_values.append(pa.scalar(None, target.type))
                bad.append(
                    (
                        row,
                        BadRow(
                            source,
                            lines[row],
                            target.name,
                            str(target.type),
                            None if value is None else str(value),
                        ),
                    )
                )
        arrays.append(pa.array([v.as_py() for v in cast_values], target.type))
    bad.sort(key=lambda item: item[0])
    return pa.Table.from_arrays(arrays, schema=schema), bad


def _cast_array(array: Any, type_: pa.DataType) -> Any:
    """``pc.cast``; text without a zone offset cast to a zoned timestamp is read in that zone."""
    try:
        return pc.cast(array, type_)
    except pa.ArrowInvalid:
        if not (pa.types.is_timestamp(type_) and type_.tz and pa.types.is_string(array.type)):
            raise
        naive = pc.cast(array, pa.timestamp(type_.unit))
        return pc.assume_timezone(naive, type_.tz).cast(type_)


def _quarantine_table(
    raw: pa.Table,
    lines: list[int],
    bad: list[tuple[int, BadRow]],
    source: str,
    schema: pa.Schema | None,
) -> pa.Table:
    columns = list(schema.names) if schema is not None else raw.column_names
    out_schema = quarantine_schema(columns)
    first: dict[int, BadRow] = {}
    for row, item in bad:
        first.setdefault(row, item)
    rows = []
    for row, item in sorted(first.items()):
        record: dict[str, Any] = {
            "source_file": strip_query(source),  # a presigned URL's signature stays out
            "line": lines[row],
            "column": item.column,
            "reason": f"expected {item.expected}, received {item.received!r}",
        }
        for name in out_schema.names[len(QUARANTINE_FIXED) :]:
            value = raw.column(name)[row].as_py() if name in raw.column_names else None
            record[name] = None if value is None else str(value)
        rows.append(record)
    return pa.Table.from_pylist(rows, schema=out_schema)
