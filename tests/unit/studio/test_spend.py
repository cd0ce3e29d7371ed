"""The spend generator: deterministic shards, a truth that beats the naive forecast, the
``synth.player_spend`` and ``evaluate.regression`` stages, and a Tweedie objective."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError
from raypipe.evaluation import normalized_gini, rmse
from raypipe.evaluation.regression_stage import RegressionEvalOptions, RegressionEvalStage
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.stages.registry import load_stage
from raypipe.synth.spend import (
    PlayerSpendOptions,
    PlayerSpendStage,
    SpendConfig,
    generate_spend_shard,
)
from raypipe.training.estimators import xgboost_params


def _context(tmp_path: Path, name: str) -> StageContext:
    return StageContext(
        stage_name=name, data_dir=str(tmp_path), run_id="r", backend=InlineBackend()
    )


def test_shards_are_deterministic_and_independent_of_worker_count() -> None:
    config = SpendConfig(players=3_000, seed=4, shard_players=1_000)
    first = generate_spend_shard(config, 1)
    assert first["players"].equals(generate_spend_shard(config, 1)["players"])
    assert first["players"].column("player_id").to_pylist()[0] == 1_000
    other_seed = generate_spend_shard(SpendConfig(3_000, 5, 1_000), 1)
    assert not first["players"].equals(other_seed["players"])


def test_truth_is_the_best_forecast() -> None:
    tables = generate_spend_shard(SpendConfig(players=40_000, seed=2), 0)
    y = tables["players"].column("spend_next_30d").to_numpy()
    truth = tables["spend_truth"].column("expected_spend").to_numpy()
    naive = tables["players"].column("spend_30d").to_numpy()
    assert 0.05 < np.mean(y > 0) < 0.3  # most players spend nothing
    assert np.mean(truth) == pytest.approx(np.mean(y), rel=0.1)
    assert rmse(y, truth) < rmse(y, naive)
    assert normalized_gini(y, truth) > normalized_gini(y, naive) + 0.2


def test_stages_generate_and_evaluate(tmp_path: Path) -> None:
    context = _context(tmp_path, "spend")
    result = PlayerSpendStage().run(
        context, {}, PlayerSpendOptions(players=2_500, seed=1, shard_players=1_000)
    )
    assert result.metrics["shards"] == 3
    assert context.executor.calls == ["synth.spend_shard"]
    players = read_dataset(context.output_url("players"))
    assert players.num_rows == 2_500
    truth = result.outputs["spend_truth"]
    # "predictions": the truth itself, so the model's figures equal the truth's
    expected = read_dataset(context.output_url("spend_truth")).column("expected_spend")
    predictions = players.select(["player_id", "spend_next_30d"]).append_column("score", expected)
    url = str(tmp_path / "predictions")
    manifest = write_dataset(url, predictions)
    inputs = {
        "predictions": DatasetInput(url, manifest),
        "truth": DatasetInput(context.output_url("spend_truth"), truth),
        "features": DatasetInput(context.output_url("players"), result.outputs["players"]),
    }
    options = RegressionEvalOptions(
        label="spend_next_30d", truth_column="expected_spend", baseline_column="spend_30d"
    )
    evaluated = RegressionEvalStage().run(_context(tmp_path, "evaluate"), inputs, options)
    quality = evaluated.metrics["quality"]
    assert quality["metric"] == "normalized_gini"
    assert quality["value"] == pytest.approx(quality["truth"])
    assert quality["baseline"] < quality["truth"]
    assert evaluated.metrics["rmse"]["value"] == pytest.approx(evaluated.metrics["rmse"]["truth"])
    assert len(evaluated.metrics["calibration"]) == 10
    assert evaluated.outputs["calibration"].rows == 10
    no_features = {k: v for k, v in inputs.items() if k != "features"}
    with pytest.raises(DataError, match="needs the input `features`"):
        RegressionEvalStage().run(_context(tmp_path, "evaluate"), no_features, options)


def test_kinds_are_registered() -> None:
    assert load_stage("synth.player_spend") is PlayerSpendStage
    assert load_stage("evaluate.regression") is RegressionEvalStage


def test_a_regression_may_name_its_objective() -> None:
    params = {"objective": "reg:tweedie", "tweedie_variance_power": 1.5}
    assert (
        xgboost_params(params, task="regression", seed=0, nthread=1)["objective"] == "reg:tweedie"
    )
    assert (
        xgboost_params({}, task="regression", seed=0, nthread=1)["objective"] == "reg:squarederror"
    )
    assert (
        xgboost_params(params, task="binary", seed=0, nthread=1)["objective"] == "binary:logistic"
    )
