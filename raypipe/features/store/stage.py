"""Stage kind ``features.materialize``: register a served view, bring its online store up to date.

.. code-block:: yaml

    materialize:
      uses: features.materialize
      inputs: {data: scoring_features.scoring_set}
      with:
        view: churn_player
        timestamp: cutoff
        online: {kind: sqlite}          # default: <data_dir>/online/online.sqlite
        max_age: 30d
        freshness_sla: 2d
        webhook_url: http://alerts.internal/hook
        recompute: {job: jobs/churn.yaml, stage: scoring_features, cooldown: 1h}

The stage registers the view (a new version when its definition changed), materializes
incrementally, and records the freshness lags in the run record's metrics. An SLA breach logs a
warning, calls the webhook and launches the ``recompute`` job (``raypipe run JOB --force
STAGE``, detached, at most once per ``cooldown``; see :mod:`raypipe.features.store.recompute`);
with ``on_breach: fail`` it also fails the stage.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from raypipe.errors import DataError, SpecError
from raypipe.features.spec import FeatureViewSpec, load_views
from raypipe.features.store.consistency import check_consistency
from raypipe.features.store.freshness import FreshnessBreachError, alert, freshness_of
from raypipe.features.store.materialize import materialize, read_state
from raypipe.features.store.online import StoreConfig, open_store
from raypipe.features.store.recompute import trigger_recompute
from raypipe.features.store.registry import register_view, served_view_of
from raypipe.features.views import parse_window
from raypipe.io.dataset import write_dataset
from raypipe.io.fs import is_local, join_url, resolve_fs
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.validation.checking import run_check
from raypipe.validation.rules import read_rules

__all__ = [
    "MaterializeOptions",
    "MaterializeStage",
    "OnlineOptions",
    "RecomputeOptions",
    "default_store",
]

log = logging.getLogger(__name__)


class OnlineOptions(BaseModel):
    """Which online store: ``sqlite`` (``path``, default beside the data) or ``redis`` (``url``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None
    url: str | None = None


def default_store(data_dir: str, online: OnlineOptions | None = None) -> StoreConfig:
    """The store ``online`` names; SQLite defaults to ``<data_dir>/online/online.sqlite``."""
    online = online or OnlineOptions()
    if online.kind == "redis":
        return StoreConfig("redis", url=online.url)
    path = online.path
    if path is None:
        fs, local = resolve_fs(data_dir)
        if not is_local(fs):
            raise SpecError(
                [
                    f"`online.path` is needed: data_dir `{data_dir}` is not a local "
                    "folder and SQLite needs a local file"
                ],
                hint="set `online: {kind: sqlite, path: /local/online.sqlite}` "
                "or `online: {kind: redis, url: ...}`",
            )
        path = join_url(local, "online", "online.sqlite")
    return StoreConfig("sqlite", path=path)


def _seconds(text: str | None, key: str) -> float | None:
    if text is None:
        return None
    try:
        delta = parse_window(text)
    except ValueError as exc:
        raise SpecError([f"`{key}`: {exc}"], hint="write a duration like `12h`, `2d`") from exc
    return None if delta is None else delta.total_seconds()


class RecomputeOptions(BaseModel):
    """The job an SLA breach launches: its spec path, the stage to rerun, overrides."""

    model_config = ConfigDict(extra="forbid")

    job: str
    stage: str | None = None
    set: list[str] = Field(default_factory=list)
    cooldown: str = "1h"

    def to_record(self) -> dict[str, Any]:
        from pathlib import Path

        from raypipe.features.store.recompute import RecomputeSpec

        cooldown = _seconds(self.cooldown, "recompute.cooldown")
        return RecomputeSpec(
            # Absolute: the breach may be noticed from another working directory.
            job=str(Path(self.job).expanduser().resolve()),
            stage=self.stage,
            overrides=tuple(self.set),
            cooldown_s=3600.0 if cooldown is None else cooldown,
        ).to_record()


class MaterializeOptions(StageOptions):
    """Options of ``features.materialize`` (see the module docstring)."""

    view: str
    entities: list[str] = Field(default_factory=lambda: ["player_id"], min_length=1)
    timestamp: str = "cutoff"
    columns: list[str] | None = None
    views: list[FeatureViewSpec] | None = None
    views_file: str | None = None
    online: OnlineOptions = Field(default_factory=OnlineOptions)
    max_age: str | None = None
    freshness_sla: str | None = None
    owner: str = ""
    description: str = ""
    checks: list[dict[str, Any]] = Field(default_factory=list)
    created_column: str | None = None
    chunk: str = "1d"
    partitions: int | None = Field(None, ge=1)
    webhook_url: str | None = None
    on_breach: Literal["warn", "fail"] = "warn"
    recompute: RecomputeOptions | None = None
    consistency_sample: int = Field(100, ge=0)


class MaterializeStage(Stage[MaterializeOptions]):
    """Register a served view of ``data`` and write its newest rows to the online store."""

    kind = "features.materialize"
    options = MaterializeOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("materialization",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: MaterializeOptions
    ) -> StageResult:
        data = inputs["data"]
        names = data.manifest.schema.names
        keys_and_time = [*options.entities, options.timestamp]
        missing = [c for c in [*keys_and_time, *(options.columns or [])] if c not in names]
        if missing:
            raise SpecError(
                [
                    f"`data` lacks column(s) {', '.join(f'`{c}`' for c in missing)} "
                    f"(columns: {', '.join(f'`{c}`' for c in names)})"
                ],
                hint="set `entities`, `timestamp` and `columns` to data columns",
            )
        columns = options.columns or [c for c in names if c not in keys_and_time]
        if options.views and options.views_file:
            raise SpecError(["give `views` or `views_file`, not both"])
        definition = (
            load_views(options.views_file)
            if options.views_file
            else [v.to_view() for v in options.views or []]
        )
        storage = dict(context.storage_options)
        view = served_view_of(
            options.view,
            definition,
            entities=options.entities,
            timestamp=options.timestamp,
            source=data.url,
            columns=columns,
            max_age_s=_seconds(options.max_age, "max_age"),
            owner=options.owner,
            description=options.description,
            freshness_sla_s=_seconds(options.freshness_sla, "freshness_sla"),
            checks=tuple(options.checks),
            recompute=options.recompute.to_record() if options.recompute else None,
        )
        quality: dict[str, Any] = {}
        if options.checks:
            # The view's quality checks gate what is served: a failing `fail` rule stops the
            # stage before anything reaches the online store.
            report = run_check(
                data.url,
                data.manifest,
                read_rules({"rules": options.checks}),
                context.executor,
                storage_options=storage or None,
            )
            quality = {"checks_failed": len(report.failed), "checks_warned": len(report.warnings)}
            if report.failed:
                names = ", ".join(f"`{r.rule}` ({r.failing} rows)" for r in report.failed)
                raise DataError(
                    f"feature view `{options.view}`: quality check(s) failed on "
                    f"`data`: {names}; nothing was materialized",
                    hint="fix the source data, or set the rule's `policy: warn`",
                )
        view, new_version = register_view(context.data_dir, view, storage_options=storage)
        store = default_store(context.data_dir, options.online)
        chunk = parse_window(options.chunk) or dt.timedelta(days=1)
        result = materialize(
            context.data_dir,
            view,
            data.url,
            store,
            context.executor,
            chunk=chunk,
            partitions=options.partitions,
            created_column=options.created_column,
            storage_options=storage,
        )
        freshness = freshness_of(view, read_state(context.data_dir, view, storage))
        recompute: dict[str, Any] = {}
        if freshness.breached:
            alert(
                freshness,
                webhook_url=options.webhook_url,
                extra={"stage": context.stage_name, "run_id": context.run_id},
            )
            if view.recompute:
                launch = trigger_recompute(context.data_dir, view, storage_options=storage)
                recompute = launch.metrics()
            if options.on_breach == "fail":
                raise FreshnessBreachError(
                    freshness.message(),
                    hint="rerun the job that produces the view's source, or raise `freshness_sla`",
                )
        consistency: dict[str, Any] = {}
        if options.consistency_sample and result.newest_event is not None:
            opened = open_store(store)
            try:
                sampled = check_consistency(
                    view,
                    data.url,
                    opened,
                    result.newest_event,
                    sample=options.consistency_sample,
                    storage_options=storage or None,
                )
            finally:
                opened.close()
            consistency = {
                "consistency_checked": sampled.checked,
                "consistency_mismatches": sampled.checked - sampled.matching,
            }
            if not sampled.consistent:
                log.warning(
                    "feature view %s: %d of %d sampled entities differ online from "
                    "offline, e.g. %s",
                    view.name,
                    sampled.checked - sampled.matching,
                    sampled.checked,
                    sampled.mismatches[:3],
                )
        record = pa.table(
            {
                "view": [view.name],
                "version": [view.version],
                "store": [store.describe()],
                "latest_rows": [result.latest_rows],
                "written": [result.written],
                "watermark": [result.watermark],
                "newest_event": [result.newest_event],
            }
        )
        manifest = write_dataset(
            context.output_url("materialization"), record, storage_options=storage or None
        )
        metrics = {
            "view": view.name,
            "version": view.version[:12],
            "new_version": new_version,
            "latest_rows": result.latest_rows,
            "written": result.written,
            "chunks": result.chunks,
            "seconds": round(result.seconds, 3),
            **freshness.metrics(),
            **consistency,
            **quality,
            **recompute,
        }
        return StageResult(
            outputs={"materialization": manifest},
            metrics=metrics,
            rows_in=data.rows,
            rows_out=result.written,
        )
