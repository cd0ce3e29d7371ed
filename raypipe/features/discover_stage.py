"""Stage kind ``features.discover``: candidate features, selection and the HTML report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from raypipe.features.discover import DiscoveryOptions, run_discovery
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["DiscoverOptions", "DiscoverStage"]


class DiscoverOptions(StageOptions):
    """Options of ``features.discover``; see :class:`raypipe.features.discover.DiscoveryOptions`."""

    keys: list[str] = Field(default_factory=lambda: ["player_id"], min_length=1)
    timestamp: str = "ts"
    cutoff_column: str = "cutoff"
    label: str = "churned"
    type_column: str | None = "event_type"
    max_types: int = Field(8, ge=0)
    numeric_columns: list[str] | None = None
    windows: list[str] = Field(default_factory=lambda: ["1d", "7d", "30d"], min_length=1)
    k: int | None = Field(None, ge=1)
    max_correlation: float = Field(0.95, gt=0, le=1)
    leakage_auc: float = Field(0.98, gt=0.5, le=1)
    partitions: int | None = Field(None, ge=1)
    exclude_columns: list[str] = Field(default_factory=list)

    def to_options(self) -> DiscoveryOptions:
        values = self.model_dump()
        for name in ("keys", "windows", "exclude_columns"):
            values[name] = tuple(values[name])
        if values["numeric_columns"] is not None:
            values["numeric_columns"] = tuple(values["numeric_columns"])
        return DiscoveryOptions(**values)


class DiscoverStage(Stage[DiscoverOptions]):
    """Generate candidate features point in time, select them, and write the report."""

    kind = "features.discover"
    options = DiscoverOptions
    inputs: ClassVar[tuple[str, ...]] = ("events", "labels")
    optional_inputs: ClassVar[tuple[str, ...]] = ("players",)
    outputs: ClassVar[tuple[str, ...]] = ("candidates", "report")

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: DiscoverOptions
    ) -> StageResult:
        players = inputs.get("players")
        result = run_discovery(
            inputs["events"].url,
            inputs["labels"].url,
            context.output_url("candidates"),
            context.output_url("report"),
            context.executor,
            players_url=players.url if players is not None else None,
            options=options.to_options(),
            storage_options=context.storage_options,
        )
        return StageResult(
            outputs={"candidates": result.candidates, "report": result.report},
            metrics={
                "candidates": result.candidate_count,
                "selected": len(result.selected),
                "leakage_flags": len(result.leaky),
                "selected_features": result.selected,
                "leakage": result.leaky,
            },
            rows_in=inputs["events"].rows + inputs["labels"].rows,
            rows_out=result.candidates.rows,
        )
