from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.io.artifacts import read_artifact_file
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.tracking.audit import AuditLog
from raypipe.tracking.models import load_model
from raypipe.tracking.store import audit_path
from raypipe.training.preprocess import predict_table
from raypipe.training.stage import TrainSearchOptions, TrainSearchStage
from tests.unit.training.data import churn_table

TRIALS = {"xgboost": 6, "logistic": 2, "random_forest": 1, "hist_gb": 1}


@pytest.mark.slow
def test_train_search_trains_registers_promotes_and_gates(tmp_path: Path) -> None:
    table, truth = churn_table(3000)
    data = DatasetInput(str(tmp_path / "in/data"), write_dataset(str(tmp_path / "in/data"), table))
    truth_in = DatasetInput(
        str(tmp_path / "in/truth"), write_dataset(str(tmp_path / "in/truth"), truth)
    )
    context = StageContext(
        stage_name="train", data_dir=str(tmp_path), run_id="r1", backend=InlineBackend()
    )
    options = TrainSearchOptions(trials=TRIALS, model_name="churn", max_rounds=80, cost_fn=5.0)
    result = TrainSearchStage().run(context, {"data": data, "truth": truth_in}, options)
    metrics = result.metrics

    assert metrics["split"] == "stratified"  # `cutoff` has one value
    assert set(metrics["candidates"]) == set(TRIALS)
    selection = metrics["selection"]  # how the winner was chosen: never on the test rows
    assert selection["metric"] == "roc_auc" and selection["chosen"] == metrics["best_candidate"]
    assert selection["rows"] == "cross-validation" and selection["cv_folds"] == 5  # 2,400 rows
    assert set(selection["scores"]) == set(TRIALS)
    best_valid = max(selection["scores"], key=selection["scores"].__getitem__)
    assert best_valid == metrics["best_candidate"]
    assert 0.6 < metrics["test_auc"] <= metrics["bayes_auc"] + 0.03
    assert metrics["auc_ratio"] > 0.9
    for key in ("test_pr_auc", "test_log_loss", "test_brier", "test_ece", "test_threshold_cost"):
        assert key in metrics
    assert metrics["model_version"] == "1" and metrics["promoted"] is True
    assert Path(metrics["tracking_uri"].removeprefix("sqlite:///")).parent == tmp_path

    # The artifact holds a checksummed model that scores the holdout exactly as reported.
    model_url = str(tmp_path / "datasets/train/model")
    report = read_artifact_file(model_url, "report.html").decode()
    assert "<svg" in report and "chosen" in report
    assert json.loads(read_artifact_file(model_url, "metrics.json"))["model_version"] == "1"
    holdout = read_dataset(str(tmp_path / "datasets/train/holdout"))
    assert holdout.num_rows == result.rows_out == 600
    test_rows = table.take(
        pa.array(np.searchsorted(table["player_id"].to_numpy(), holdout["player_id"].to_numpy()))
    )
    champion = load_model("models:/churn@champion", tracking_uri=metrics["tracking_uri"])
    np.testing.assert_allclose(
        predict_table(champion, test_rows), holdout["score"].to_numpy(), rtol=1e-5, atol=1e-6
    )

    # A second run must beat the threshold and not trail the champion by more than the margin.
    strict = options.model_copy(
        update={"gate": options.gate.model_copy(update={"threshold": 0.999})}
    )
    second = TrainSearchStage().run(context, {"data": data}, strict).metrics
    assert second["model_version"] == "2" and second["promoted"] is False
    assert second["champion_version"] == "1" and "threshold" in second["gate_reasons"][0]
    actions = [entry.action for entry in AuditLog(audit_path(str(tmp_path))).read("churn")]
    assert actions == ["register", "promote", "register", "gate-refused"]


def test_missing_label_is_a_clear_error(tmp_path: Path) -> None:
    from raypipe.errors import DataError

    table, _ = churn_table(200)
    url = str(tmp_path / "in")
    data = DatasetInput(url, write_dataset(url, table.drop(["churned"])))
    context = StageContext(
        stage_name="train", data_dir=str(tmp_path), run_id="r", backend=InlineBackend()
    )
    with pytest.raises(DataError, match="`churned`"):
        TrainSearchStage().run(context, {"data": data}, TrainSearchOptions())


@pytest.mark.slow
def test_regression_label_trains_and_gates_on_rmse(tmp_path: Path) -> None:
    table, _ = churn_table(1500, seed=3)
    spend = table["spend_30d"].to_numpy(zero_copy_only=False)
    target = np.nan_to_num(spend) * 2.0 + table["sessions_7d"].to_numpy()
    table = table.drop(["churned"]).append_column("revenue", pa.array(target))
    url = str(tmp_path / "in")
    data = DatasetInput(url, write_dataset(url, table))
    context = StageContext(
        stage_name="value", data_dir=str(tmp_path), run_id="r", backend=InlineBackend()
    )
    options = TrainSearchOptions(
        label="revenue",
        candidates=["xgboost", "logistic"],
        trials={"xgboost": 3, "logistic": 1},
        max_rounds=50,
    )
    metrics = TrainSearchStage().run(context, {"data": data}, options).metrics
    assert "test_auc" not in metrics and metrics["test_rmse"] < np.std(target)
    assert metrics["test_r2"] > 0.5
    assert metrics["promoted"] is True  # no champion yet, no threshold: blessed
