"""Stage kinds ``features.training_set`` and ``features.scoring_set``.

``features.training_set`` computes feature views for every label row as of the row's cutoff and
commits ``training_set`` (keys, cutoff, features..., then the label columns).
``features.scoring_set`` computes the same views for every entity (player) as of one cutoff and
commits ``scoring_set`` (keys, cutoff, features...) for batch inference. Both run through the
stage's executor over entity partitions (see :mod:`raypipe.features.build`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from raypipe.errors import SpecError
from raypipe.features.asof import check_views
from raypipe.features.build import FeatureBuild, run_feature_build
from raypipe.features.defaults import default_views
from raypipe.features.partition import empty_frame
from raypipe.features.spec import FeatureViewSpec, load_views
from raypipe.features.views import FeatureView
from raypipe.io.dataset import DatasetWriter
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = [
    "FeatureStageOptions",
    "ScoringSetOptions",
    "ScoringSetStage",
    "TrainingSetOptions",
    "TrainingSetStage",
]


class FeatureStageOptions(StageOptions):
    """Options shared by the feature stages.

    ``views`` (inline) or ``views_file`` (YAML path) declare the feature views; with neither,
    the game-telemetry default views (:mod:`raypipe.features.defaults`) are used.
    """

    views: list[FeatureViewSpec] | None = None
    views_file: str | None = None
    keys: list[str] = Field(default_factory=lambda: ["player_id"], min_length=1)
    player_columns: list[str] = Field(default_factory=list)
    partitions: int | None = Field(None, ge=1)
    clustered: Literal["auto", "yes", "no"] = "auto"

    def feature_views(self) -> list[FeatureView]:
        if self.views and self.views_file:
            raise SpecError(["give `views` or `views_file`, not both"])
        if self.views_file:
            return load_views(self.views_file)
        if self.views:
            return [view.to_view() for view in self.views]
        return default_views()


class TrainingSetOptions(FeatureStageOptions):
    """Options of ``features.training_set``: the label rows' cutoff and label columns."""

    cutoff_column: str = "cutoff"
    label_columns: list[str] = Field(default_factory=lambda: ["churned"])


class ScoringSetOptions(FeatureStageOptions):
    """Options of ``features.scoring_set``: one cutoff for every entity.

    ``cutoff`` defaults to the ``cutoff`` recorded in the events' manifest metadata (the
    synthetic telemetry records it).
    """

    cutoff: dt.datetime | None = None


def _run(
    stage: str,
    context: StageContext,
    inputs: Mapping[str, DatasetInput],
    options: TrainingSetOptions | ScoringSetOptions,
    entities: str,
    output: str,
    *,
    cutoff: dt.datetime | None,
    entity_columns: tuple[str, ...] | None,
) -> StageResult:
    views = options.feature_views()
    events = inputs["events"]
    schema = empty_frame(events.manifest.schema).schema
    check_views(views, schema)
    players = inputs.get("players")
    url = context.output_url(output)
    storage = dict(context.storage_options)
    build = FeatureBuild(
        events_url=events.url,
        views=tuple(views),
        entities_url=inputs[entities].url,
        keys=tuple(options.keys),
        out=DatasetWriter(url, storage_options=storage or None),
        cutoff=cutoff,
        cutoff_column=(
            options.cutoff_column if isinstance(options, TrainingSetOptions) else "cutoff"
        ),
        entity_columns=entity_columns,
        players_url=players.url if players is not None else None,
        player_columns=tuple(options.player_columns),
        storage_options=storage,
    )
    clustered = {"auto": None, "yes": True, "no": False}[options.clustered]
    result = run_feature_build(
        build,
        context.executor,
        partitions=options.partitions,
        clustered=clustered,
        name=stage,
        metadata={"events_version": events.version},
    )
    features = sum(len(view.features) for view in views)
    return StageResult(
        outputs={output: result.manifest},
        metrics={
            "rows": result.manifest.rows,
            "features": features,
            "tasks": result.tasks,
            "shuffled": result.shuffled,
            "seconds": round(result.seconds, 3),
        },
        rows_in=events.rows + inputs[entities].rows,
        rows_out=result.manifest.rows,
    )


class TrainingSetStage(Stage[TrainingSetOptions]):
    """Features of every label row as of its cutoff, with the label: the training set."""

    kind = "features.training_set"
    options = TrainingSetOptions
    inputs: ClassVar[tuple[str, ...]] = ("events", "labels")
    optional_inputs: ClassVar[tuple[str, ...]] = ("players",)
    outputs: ClassVar[tuple[str, ...]] = ("training_set",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: TrainingSetOptions
    ) -> StageResult:
        names = inputs["labels"].manifest.schema.names
        wanted = [*options.keys, options.cutoff_column, *options.label_columns]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise SpecError(
                [
                    f"`labels` lacks column(s) {', '.join(f'`{c}`' for c in missing)} "
                    f"(columns: {', '.join(f'`{c}`' for c in names)})"
                ],
                hint="set `keys`, `cutoff_column` and `label_columns` to the labels' columns",
            )
        return _run(
            self.kind,
            context,
            inputs,
            options,
            "labels",
            "training_set",
            cutoff=None,
            entity_columns=tuple(dict.fromkeys(wanted)),
        )


class ScoringSetStage(Stage[ScoringSetOptions]):
    """Features of every entity in ``players`` as of one cutoff: the scoring set."""

    kind = "features.scoring_set"
    options = ScoringSetOptions
    inputs: ClassVar[tuple[str, ...]] = ("events", "players")
    outputs: ClassVar[tuple[str, ...]] = ("scoring_set",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: ScoringSetOptions
    ) -> StageResult:
        cutoff = options.cutoff
        if cutoff is None:
            recorded = inputs["events"].manifest.metadata.get("cutoff")
            if recorded is None:
                raise SpecError(
                    ["`cutoff` is not set and the events' manifest records none"],
                    hint="set `with: {cutoff: 2026-01-01T00:00:00}`",
                )
            cutoff = dt.datetime.fromisoformat(str(recorded))
        return _run(
            self.kind,
            context,
            inputs,
            options,
            "players",
            "scoring_set",
            cutoff=cutoff,
            entity_columns=tuple(options.keys),
        )
