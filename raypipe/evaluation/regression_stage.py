"""The ``evaluate.regression`` stage: a regression's predictions against the truth and a baseline.

Input ``predictions``: keys, the outcome (``label``) and the model's ``score`` (e.g.
``train.search``'s ``holdout``). Optional ``truth``: keys and the true expected outcome
(``truth_column``), the best possible prediction. Optional ``features``: keys and
``baseline_column``, a naive prediction (e.g. last month's spend); without it the baseline is the
mean outcome. Figures: RMSE and normalised Gini of each, calibration by decile; output
``calibration`` holds the deciles. On a studio's own data (through ``ingest``) the truth is
unknown: the stage then reports the model against the baseline only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.evaluation.quality import join_on_keys, quality
from raypipe.evaluation.regression import decile_calibration, normalized_gini, rmse
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["RegressionEvalOptions", "RegressionEvalStage", "evaluate_regression"]


class RegressionEvalOptions(StageOptions):
    """Options of ``evaluate.regression``."""

    keys: list[str] = Field(default_factory=lambda: ["player_id"], min_length=1)
    label: str
    score: str = "score"
    truth_column: str = "expected_value"
    baseline_column: str | None = None
    metric: Literal["normalized_gini", "rmse"] = "normalized_gini"
    bins: int = Field(default=10, ge=2, le=100)


def evaluate_regression(
    y: np.ndarray,
    score: np.ndarray,
    baseline: np.ndarray,
    truth: np.ndarray | None,
    *,
    metric: str = "normalized_gini",
    bins: int = 10,
) -> dict[str, Any]:
    """RMSE and normalised Gini of the model, the truth and the baseline, and the calibration.

    Without ``truth`` the ``truth`` figures are ``None`` and ``quality`` is omitted.
    """
    figures: dict[str, Any] = {"rows": len(y)}
    for name, fn in (("rmse", rmse), ("normalized_gini", normalized_gini)):
        figures[name] = {
            "value": fn(y, score),
            "truth": fn(y, truth) if truth is not None else None,
            "baseline": fn(y, baseline),
        }
    if truth is not None:
        chosen = figures[metric]
        figures["quality"] = quality(metric, chosen["value"], chosen["truth"], chosen["baseline"])
    figures["mean_outcome"] = float(np.mean(y))
    figures["mean_prediction"] = float(np.mean(score))
    figures["calibration"] = decile_calibration(y, score, truth, bins)
    return figures


class RegressionEvalStage(Stage[RegressionEvalOptions]):
    """Score a regression's holdout against the true expectation and a naive baseline."""

    kind = "evaluate.regression"
    options = RegressionEvalOptions
    inputs: ClassVar[tuple[str, ...]] = ("predictions",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("truth", "features")
    outputs: ClassVar[tuple[str, ...]] = ("calibration",)

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: RegressionEvalOptions,
    ) -> StageResult:
        from raypipe.errors import DataError
        from raypipe.io.dataset import read_dataset, write_dataset

        storage = dict(context.storage_options)
        table = read_dataset(inputs["predictions"].url, storage_options=storage)
        for name in (options.label, options.score):
            if name not in table.column_names:
                raise DataError(
                    f"input `predictions` has no column `{name}` (columns: "
                    f"{', '.join(table.column_names)})",
                    hint="set `label` and `score` to columns of the predictions",
                )
        if "truth" in inputs:
            truth_table = read_dataset(inputs["truth"].url, storage_options=storage)
            table = join_on_keys(
                table, truth_table, options.keys, [options.truth_column], name="truth"
            )
        if options.baseline_column is not None:
            if "features" not in inputs:
                raise DataError(
                    f"`baseline_column: {options.baseline_column}` needs the input `features`",
                    hint="add `features:` (a table with the keys and that column) to `inputs`",
                )
            features = read_dataset(inputs["features"].url, storage_options=storage)
            table = join_on_keys(
                table, features, options.keys, [options.baseline_column], name="features"
            )

        def column(name: str) -> np.ndarray:
            values: np.ndarray = table.column(name).to_numpy(zero_copy_only=False)
            return values.astype(np.float64)

        y = column(options.label)
        baseline = (
            np.nan_to_num(column(options.baseline_column))
            if options.baseline_column
            else np.full(len(y), float(np.mean(y)))
        )
        truth = column(options.truth_column) if "truth" in inputs else None
        figures = evaluate_regression(
            y, column(options.score), baseline, truth, metric=options.metric, bins=options.bins
        )
        figures["baseline"] = options.baseline_column or "mean outcome"
        manifest = write_dataset(
            context.output_url("calibration"),
            pa.Table.from_pylist(figures["calibration"]),
            storage_options=storage,
        )
        return StageResult(
            outputs={"calibration": manifest},
            metrics=figures,
            rows_in=len(y),
            rows_out=manifest.rows,
        )
