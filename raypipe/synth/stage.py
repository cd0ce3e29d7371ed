"""The ``synth.game_telemetry`` stage: synthetic game telemetry with known churn probabilities."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.synth.config import (
    DEFAULT_CUTOFF,
    DEFAULT_SHARD_PLAYERS,
    EVENT_NULLABLE_COLUMNS,
    DriftConfig,
    TelemetryConfig,
)
from raypipe.synth.engagement import MAX_LEVEL
from raypipe.synth.generate import TABLES, run_generate

__all__ = ["DriftOptions", "GameTelemetryOptions", "GameTelemetryStage", "bayes_auc"]

logger = logging.getLogger(__name__)


class DriftOptions(BaseModel):
    """The ``drift:`` block: what changes from ``start_day`` on (day 0 = ``cutoff - days``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_day: int = Field(default=0, ge=0)
    new_platform: str | None = None
    price_multiplier: float = Field(default=1.0, gt=0)
    null_rate: dict[str, float] = Field(default_factory=dict)
    social_by_level: tuple[float, ...] | None = Field(
        default=None, description="social events per session at engagement levels 0 .. 5"
    )

    @field_validator("null_rate")
    @classmethod
    def _known_columns(cls, value: dict[str, float]) -> dict[str, float]:
        for column, rate in value.items():
            if column not in EVENT_NULLABLE_COLUMNS:
                raise ValueError(
                    f"unknown events column `{column}`; expected one of "
                    f"{', '.join(EVENT_NULLABLE_COLUMNS)}"
                )
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate of `{column}` must be in [0, 1], received {rate}")
        return value

    @field_validator("social_by_level")
    @classmethod
    def _one_rate_a_level(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and (len(value) != MAX_LEVEL + 1 or min(value) < 0):
            raise ValueError(
                f"expected {MAX_LEVEL + 1} rates >= 0 (engagement levels 0 .. {MAX_LEVEL}), "
                f"received {list(value)}"
            )
        return value

    def to_config(self) -> DriftConfig:
        return DriftConfig(
            start_day=self.start_day,
            new_platform=self.new_platform,
            price_multiplier=self.price_multiplier,
            null_rate=dict(self.null_rate),
            social_by_level=self.social_by_level,
        )


class GameTelemetryOptions(StageOptions):
    """Options of ``synth.game_telemetry``."""

    players: int = Field(default=10_000, ge=1)
    days: int = Field(default=45, ge=1)
    seed: int = Field(default=0, ge=0)
    cutoff: dt.date = DEFAULT_CUTOFF
    shard_players: int = Field(default=DEFAULT_SHARD_PLAYERS, ge=1)
    drift: DriftOptions = DriftOptions()
    include_future_days: int = Field(default=0, ge=0)
    partition_events_by: tuple[str, ...] = ()

    def to_config(self) -> TelemetryConfig:
        return TelemetryConfig(
            players=self.players,
            days=self.days,
            seed=self.seed,
            cutoff=self.cutoff,
            shard_players=self.shard_players,
            drift=self.drift.to_config(),
            include_future_days=self.include_future_days,
        )


def bayes_auc(churned: np.ndarray, probability: np.ndarray) -> float | None:
    """AUC of the true churn probabilities against the labels; ``None`` with a single class."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(churned)) < 2:
        return None
    return float(roc_auc_score(churned, probability))


class GameTelemetryStage(Stage[GameTelemetryOptions]):
    """Generate players, their event log, churn labels and true churn probabilities."""

    kind = "synth.game_telemetry"
    options = GameTelemetryOptions
    inputs = ()
    outputs = TABLES

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: GameTelemetryOptions,
    ) -> StageResult:
        from raypipe.io.dataset import read_dataset

        config = options.to_config()
        urls = {name: context.output_url(name) for name in TABLES}
        manifests = run_generate(
            config,
            urls,
            context.executor,
            partition_events_by=options.partition_events_by,
            storage_options=context.storage_options,
        )
        storage = dict(context.storage_options) or None
        labels = read_dataset(urls["churn_labels"], storage_options=storage)
        truth = read_dataset(urls["churn_truth"], storage_options=storage)
        churned = labels.column("churned").to_numpy(zero_copy_only=False)
        probability = truth.column("churn_probability").to_numpy()
        metrics = {
            "players": manifests["players"].rows,
            "events": manifests["events"].rows,
            "shards": config.shards,
            "churn_rate": float(np.mean(churned)),
            "mean_churn_probability": float(np.mean(probability)),
            "bayes_auc": bayes_auc(churned, probability),
        }
        return StageResult(
            outputs=manifests,
            metrics=metrics,
            rows_in=0,
            rows_out=sum(manifest.rows for manifest in manifests.values()),
        )
