"""``train.search`` with ``engine: tune``: Ray Tune trials, ASHA stops, failures recorded."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.ray
def test_train_search_stage_with_tune(ray_executor: object, tmp_path: Path) -> None:
    from raypipe.io.dataset import write_dataset
    from raypipe.stages.base import DatasetInput, StageContext
    from raypipe.tracking.models import load_model
    from raypipe.training.stage import TrainSearchOptions, TrainSearchStage
    from tests.unit.training.data import churn_table

    table, truth = churn_table(3000)
    data = DatasetInput(str(tmp_path / "data"), write_dataset(str(tmp_path / "data"), table))
    truth_in = DatasetInput(str(tmp_path / "truth"), write_dataset(str(tmp_path / "truth"), truth))
    context = StageContext(
        stage_name="train", data_dir=str(tmp_path), run_id="r1", backend=ray_executor
    )  # type: ignore[arg-type]
    options = TrainSearchOptions(
        engine="tune",
        model_name="churn_tune",
        candidates=["xgboost", "logistic"],
        trials={"xgboost": 6, "logistic": 1},
        # An invalid parameter: the one logistic trial fails, and the search goes on.
        spaces={"logistic": {"fixed": {"max_iter": -5}}},
        max_rounds=27,
        # Patience as long as the budget: a trial that ends before max_rounds was stopped by ASHA.
        early_stopping_rounds=27,
        stopping_metric=None,
        grace_rounds=3,
    )
    metrics = TrainSearchStage().run(context, {"data": data, "truth": truth_in}, options).metrics
    assert metrics["search_engine"] == "tune"
    assert metrics["trials"] == 7 and metrics["failed_trials"] == 1
    assert metrics["stopped_trials"] >= 1  # ASHA cut some trials before max_rounds
    assert metrics["best_candidate"] == "xgboost"
    assert metrics["test_auc"] >= 0.95 * metrics["bayes_auc"]
    assert metrics["promoted"] is True
    loaded = load_model("models:/churn_tune@champion", tracking_uri=metrics["tracking_uri"])
    assert loaded.sha256 == metrics["model_sha256"]
