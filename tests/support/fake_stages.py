"""Small stage kinds for testing the spec loader and the driver without real workloads."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest
from pydantic import Field

from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

RUN_LOG: list[str] = []


class MakeOptions(StageOptions):
    rows: int = Field(default=10, ge=0)
    parts: int = Field(default=2, ge=1)
    fail: bool = False


def _make_part(url: str, rows: int, parts: int, fail: bool, part: int) -> list[Any]:
    if fail:
        raise ValueError(f"part {part} was told to fail")
    start = part * rows // parts
    stop = (part + 1) * rows // parts
    table = pa.table({"id": pa.array(range(start, stop), pa.int64())})
    return DatasetWriter(url).write(table, part=part)


class MakeStage(Stage):
    kind = "test.make"
    options = MakeOptions
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: Any
    ) -> StageResult:
        RUN_LOG.append(context.stage_name)
        url = context.output_url("data")
        task = partial(_make_part, url, options.rows, options.parts, options.fail)
        entries = context.executor.map(task, list(range(options.parts)), name="make")
        manifest = DatasetWriter(url).commit([e for part in entries for e in part])
        return StageResult(outputs={"data": manifest}, rows_out=manifest.rows)


class DoubleOptions(StageOptions):
    factor: int = 2


class DoubleStage(Stage):
    kind = "test.double"
    options = DoubleOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("extra",)
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: Any
    ) -> StageResult:
        RUN_LOG.append(context.stage_name)
        table = read_dataset(inputs["data"].url)
        doubled = table.set_column(0, "id", pa.compute.multiply(table["id"], options.factor))
        url = context.output_url("data")
        writer = DatasetWriter(url)
        manifest = writer.commit(writer.write(doubled, part=0))
        return StageResult(
            outputs={"data": manifest},
            metrics={"sum": int(pa.compute.sum(doubled["id"]).as_py() or 0)},
            rows_in=inputs["data"].rows,
            rows_out=manifest.rows,
        )


class SlowOptions(StageOptions):
    parts: int = Field(default=2, ge=1)
    seconds: float = Field(default=30.0, ge=0)


def _slow_part(url: str, seconds: float, part: int) -> list[Any]:
    time.sleep(seconds)
    return DatasetWriter(url).write(pa.table({"id": pa.array([part], pa.int64())}), part=part)


class SlowStage(Stage):
    """Slow tasks, then an act that cannot be taken back (like registering a model), then a
    commit: ``published`` (a file in the job's folder) stands for the registration."""

    kind = "test.slow"
    options = SlowOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: Any
    ) -> StageResult:
        RUN_LOG.append(context.stage_name)
        url = context.output_url("data")
        task = partial(_slow_part, url, options.seconds)
        entries = context.executor.map(task, list(range(options.parts)), name="slow")
        context.raise_if_cancelled()
        published = Path(url).parent / "published"
        published.write_text(context.run_id)
        manifest = DatasetWriter(url).commit([e for part in entries for e in part])
        return StageResult(outputs={"data": manifest}, rows_out=manifest.rows)


FAKE_KINDS = {
    "test.make": "tests.support.fake_stages:MakeStage",
    "test.double": "tests.support.fake_stages:DoubleStage",
    "test.slow": "tests.support.fake_stages:SlowStage",
}


@pytest.fixture
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fake kinds loadable through the stage registry."""
    from raypipe.stages import registry

    monkeypatch.setattr(registry, "STAGE_KINDS", {**registry.STAGE_KINDS, **FAKE_KINDS})
    RUN_LOG.clear()
