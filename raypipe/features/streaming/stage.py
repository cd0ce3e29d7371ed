"""Stage kind ``features.stream``: a bounded run of a windowed stream over landed event files.

.. code-block:: yaml

    purchase_windows:
      uses: features.stream
      with:
        folder: ./landing            # Parquet event files, names sorting in arrival order
        kind: sliding                # tumbling | sliding | session
        key: player_id
        timestamp: ts
        value: amount
        size: 1h
        slide: 10m
        lateness: 5m
        online: {kind: sqlite}       # optional: push closed windows (newest per entity)
        namespace: purchases

Each run processes the files landed since the previous run (the stream position is checkpointed
with the window state under ``<job>/streams/<stage>/``), then commits the windows it closed
(``windows``) and the late events it saw (``late``) as this run's datasets. Partitions run in
the stage's process (:class:`~raypipe.features.streaming.operator.InlineStreamBackend`). The
stage always runs (``always_runs``): its input is a folder that grows, which the cache cannot
see; a rerun with nothing new commits empty outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

import polars as pl
from pydantic import Field

from raypipe.features.store.stage import OnlineOptions, default_store
from raypipe.features.streaming.operator import InlineStreamBackend, StreamConfig, StreamRunner
from raypipe.features.streaming.windows import WindowKind, WindowSpec, batch_windows
from raypipe.io.dataset import write_dataset
from raypipe.io.fs import join_url, resolve_fs
from raypipe.stages.base import (
    DatasetInput,
    Stage,
    StageContext,
    StageOptions,
    StageResult,
    job_data_url,
)

__all__ = ["StreamOptions", "StreamStage"]

_BATCH = re.compile(r"batch-(\d+)\.parquet$")


class StreamOptions(StageOptions):
    """Options of ``features.stream`` (see the module docstring)."""

    folder: str
    kind: WindowKind
    key: str
    value: str
    timestamp: str = "ts"
    size: str | None = None
    slide: str | None = None
    gap: str | None = None
    lateness: str = "0s"
    partitions: int = Field(2, ge=1)
    online: OnlineOptions | None = None
    namespace: str = "stream"
    finish: bool = False

    def spec(self) -> WindowSpec:
        return WindowSpec.parse(
            self.kind,
            key=self.key,
            timestamp=self.timestamp,
            value=self.value,
            size=self.size,
            slide=self.slide,
            gap=self.gap,
            allowed_lateness=self.lateness,
        )


def _frames_after(url: str, position: int) -> list[pl.DataFrame]:
    """The sink files under ``url`` (``partition=P/batch-N.parquet``) with ``N > position``."""
    fs, root = resolve_fs(url)
    if not fs.exists(root):
        return []
    frames = []
    for path in sorted(fs.glob(f"{root}/partition=*/batch-*.parquet")):
        match = _BATCH.search(path)
        if match and int(match.group(1)) > position:
            with fs.open(path, "rb") as handle:
                frames.append(pl.read_parquet(handle))
    return frames


def _no_events(folder: str, spec: WindowSpec) -> pl.DataFrame:
    """An empty frame with the events' columns (those of a landed file, else the spec's)."""
    fs, root = resolve_fs(folder)
    landed = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
    if landed:
        with fs.open(landed[0], "rb") as handle:
            return pl.read_parquet(handle, n_rows=0)
    return pl.DataFrame(
        schema={spec.key: pl.Int64, spec.timestamp: pl.Int64, spec.value: pl.Float64}
    )


class StreamStage(Stage[StreamOptions]):
    """Process the event files landed since the last run; commit closed windows and late events."""

    kind = "features.stream"
    options = StreamOptions
    outputs: ClassVar[tuple[str, ...]] = ("windows", "late")
    always_runs: ClassVar[bool] = True

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: StreamOptions
    ) -> StageResult:
        spec = options.spec()
        state_url = join_url(
            job_data_url(context.data_dir, context.job_name), "streams", context.stage_name
        )
        store = default_store(context.data_dir, options.online) if options.online else None
        config = StreamConfig(
            spec,
            state_url,
            partitions=options.partitions,
            store=store,
            namespace=options.namespace,
        )
        runner = StreamRunner(config, InlineStreamBackend(config))
        start = runner.position
        files = runner.run_folder(options.folder)
        if options.finish:
            runner.finish()
        windows = _frames_after(join_url(state_url, "windows"), start)
        window_frame = (
            pl.concat(windows) if windows else batch_windows(_no_events(options.folder, spec), spec)
        )
        late = _frames_after(join_url(state_url, "late"), start)
        late_frame = (
            pl.concat(late, how="diagonal_relaxed") if late else _no_events(options.folder, spec)
        )
        storage = dict(context.storage_options) or None
        manifests = {
            "windows": write_dataset(
                context.output_url("windows"),
                window_frame.sort("key", "start").to_arrow(),
                storage_options=storage,
            ),
            "late": write_dataset(
                context.output_url("late"), late_frame.to_arrow(), storage_options=storage
            ),
        }
        metrics = {
            "files": files,
            "events": runner.events,
            "windows_closed": window_frame.height,
            "late_events": late_frame.height,
            "position": runner.position,
            "state_rows": runner.open_windows,
        }
        return StageResult(
            outputs=manifests, metrics=metrics, rows_in=runner.events, rows_out=window_frame.height
        )
