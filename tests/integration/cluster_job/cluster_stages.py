"""User-code stage kinds of the cluster test job: deterministic data, slow tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

KINDS = {
    "cluster.numbers": "cluster_stages:NumbersStage",
    "cluster.totals": "cluster_stages:TotalsStage",
}


class NumbersOptions(StageOptions):
    parts: int = Field(default=6, ge=1)
    rows: int = Field(default=3000, ge=1)
    seconds: float = Field(default=1.0, ge=0)


def _numbers_part(url: str, rows: int, parts: int, seconds: float, part: int) -> list[Any]:
    time.sleep(seconds)
    start, stop = part * rows // parts, (part + 1) * rows // parts
    ids = pa.array(range(start, stop), pa.int64())
    table = pa.table({"id": ids, "group": pc.bit_wise_and(ids, pa.scalar(3, pa.int64()))})
    return DatasetWriter(url).write(table, part=part)


class NumbersStage(Stage):
    kind = "cluster.numbers"
    options = NumbersOptions
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: Any
    ) -> StageResult:
        url = context.output_url("data")
        task = partial(_numbers_part, url, options.rows, options.parts, options.seconds)
        entries = context.executor.map(task, list(range(options.parts)), name="numbers")
        manifest = DatasetWriter(url).commit([e for part in entries for e in part])
        return StageResult(outputs={"data": manifest}, rows_out=manifest.rows)


class TotalsOptions(StageOptions):
    seconds: float = Field(default=1.0, ge=0)


def _total_of_file(url: str, seconds: float, path: str) -> tuple[int, int]:
    time.sleep(seconds)
    table = read_dataset(url, files=[path])
    return table.num_rows, int(pc.sum(table["id"]).as_py() or 0)


class TotalsStage(Stage):
    kind = "cluster.totals"
    options = TotalsOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("totals",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: Any
    ) -> StageResult:
        data = inputs["data"]
        files = sorted(entry.path for entry in data.manifest.files)
        task = partial(_total_of_file, data.url, options.seconds)
        parts = context.executor.map(task, files, name="totals")
        table = pa.table(
            {
                "rows": pa.array([sum(r for r, _ in parts)], pa.int64()),
                "id_sum": pa.array([sum(s for _, s in parts)], pa.int64()),
            }
        )
        url = context.output_url("totals")
        writer = DatasetWriter(url)
        manifest = writer.commit(writer.write(table, part=0))
        return StageResult(outputs={"totals": manifest}, rows_in=data.rows, rows_out=1)
