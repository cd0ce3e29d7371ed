"""A scikit-learn winner is stored, logged and registered with skops, and loads back safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.io.artifacts import read_artifact_file
from raypipe.io.dataset import write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.tracking.models import load_model
from raypipe.training.preprocess import predict_table
from raypipe.training.stage import TrainSearchOptions, TrainSearchStage
from tests.unit.training.data import churn_table


@pytest.mark.slow
def test_sklearn_winner_is_a_skops_model_everywhere(tmp_path: Path) -> None:
    import skops.io

    table, _ = churn_table(1500)
    data = DatasetInput(str(tmp_path / "in"), write_dataset(str(tmp_path / "in"), table))
    context = StageContext(
        stage_name="train", data_dir=str(tmp_path), run_id="r1", backend=InlineBackend()
    )
    options = TrainSearchOptions(trials={"logistic": 2}, model_name="lin", max_rounds=20)
    metrics = TrainSearchStage().run(context, {"data": data}, options).metrics
    assert metrics["best_candidate"] == "logistic"

    model_url = str(tmp_path / "datasets/train/model")
    stored = read_artifact_file(model_url, "model.skops")
    assert skops.io.get_untrusted_types(data=stored)  # a skops file, not a pickle
    from_artifact = load_model(f"{model_url}/model.skops")
    registered = load_model("models:/lin@challenger", tracking_uri=metrics["tracking_uri"])
    assert registered.format == from_artifact.format == "sklearn-skops"
    assert registered.tags["raypipe.model_file"] == "model.skops"
    rows = table.slice(0, 50)
    np.testing.assert_allclose(
        predict_table(registered, rows), predict_table(from_artifact, rows), rtol=1e-9
    )
