"""The ``ingest`` stage: files from any fsspec URL or glob -> a committed dataset.

Options (``with:``): ``source`` (URL or glob), ``format`` (auto|csv|jsonl|parquet), ``schema``
(column -> type name) or ``infer: true``, ``partition_by``, ``target_file_mb``,
``on_bad_rows`` (fail|quarantine). Output ``data``; output ``quarantine`` holds the rows that
could not be cast (empty unless ``on_bad_rows: quarantine``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

import pyarrow as pa
from pydantic import ConfigDict, Field, model_validator

from raypipe.errors import DataError, SchemaError, SpecError
from raypipe.io.dataset import DatasetWriter
from raypipe.io.ingest import (
    FileResult,
    IngestFileJob,
    detect_format,
    ingest_file,
    list_source_files,
    parse_schema,
    quarantine_schema,
)
from raypipe.redaction import strip_query
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["IngestOptions", "IngestStage"]

logger = logging.getLogger(__name__)


class IngestOptions(StageOptions):
    """Options of the ``ingest`` stage."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    columns: dict[str, str] | None = Field(default=None, alias="schema")
    infer: bool = False
    partition_by: tuple[str, ...] = ()
    target_file_mb: float = Field(default=128.0, gt=0)
    on_bad_rows: Literal["fail", "quarantine"] = "fail"

    @model_validator(mode="after")
    def _schema_or_infer(self) -> IngestOptions:
        if not self.columns and not self.infer:
            raise ValueError("declare `schema` (column -> type) or set `infer: true`")
        if self.columns:
            try:
                parse_schema(self.columns)
            except SpecError as exc:
                raise ValueError("; ".join(exc.problems)) from exc
        return self


class IngestStage(Stage[IngestOptions]):
    """Reads CSV / JSON lines / Parquet files, casts them to the declared schema, commits them."""

    kind = "ingest"
    options = IngestOptions
    inputs = ()
    outputs = ("data", "quarantine")

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: IngestOptions,
    ) -> StageResult:
        storage = dict(context.storage_options)
        files = list_source_files(options.source, storage)
        schema = parse_schema(options.columns) if options.columns else None
        if schema is not None:
            unknown = [c for c in options.partition_by if c not in schema.names]
            if unknown:
                raise SchemaError(
                    f"`with.partition_by` names {', '.join(f'`{c}`' for c in unknown)}, "
                    "not in the declared schema",
                    hint="partition by declared columns",
                )
        writer = DatasetWriter(
            context.output_url("data"),
            partition_by=options.partition_by,
            target_file_bytes=int(options.target_file_mb * 1024 * 1024),
            storage_options=storage,
        )
        quarantine = DatasetWriter(context.output_url("quarantine"), storage_options=storage)
        jobs = [
            IngestFileJob(
                source_file=url,
                format=detect_format(url, options.format),
                schema=schema,
                writer=writer,
                quarantine_writer=quarantine if options.on_bad_rows == "quarantine" else None,
                part=index,
                storage_options=storage,
            )
            for index, url in enumerate(files)
        ]
        results: list[FileResult] = context.executor.map(ingest_file, jobs, name="ingest.file")
        failed = [result for result in results if result.first_bad is not None]
        if failed and options.on_bad_rows == "fail":
            first = failed[0].first_bad
            assert first is not None
            total = sum(result.bad_rows for result in failed)
            raise DataError(
                f"{first.describe()} ({total} bad row(s) in {len(failed)} file(s))",
                hint="fix the data, correct `with.schema`, or set `on_bad_rows: quarantine`",
            )
        out_schema = schema or _common_schema(results)
        data = writer.commit(
            [entry for result in results for entry in result.entries],
            schema=out_schema,
            metadata={"source": strip_query(options.source), "files": len(files)},
        )
        columns = list(out_schema.names) if schema is not None else []
        bad = quarantine.commit(
            [entry for result in results for entry in result.quarantine_entries],
            schema=quarantine_schema(columns),
            metadata={"source": strip_query(options.source)},
        )
        rows_in = sum(result.rows_in for result in results)
        logger.info(
            "ingested %d files: %d rows in, %d committed, %d quarantined",
            len(files),
            rows_in,
            data.rows,
            bad.rows,
        )
        return StageResult(
            outputs={"data": data, "quarantine": bad},
            metrics={"files": len(files), "rows": data.rows, "quarantined_rows": bad.rows},
            rows_in=rows_in,
            rows_out=data.rows,
        )


def _common_schema(results: list[FileResult]) -> pa.Schema:
    """With ``infer: true``, every file must infer to the same schema."""
    schemas = [result.schema for result in results if result.rows_in]
    if not schemas:
        return results[0].schema if results else pa.schema([])
    try:
        return pa.unify_schemas(schemas)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(
            f"inferred schemas of the source files differ: {exc}",
            hint="declare `with.schema` instead of `infer: true`",
        ) from exc
