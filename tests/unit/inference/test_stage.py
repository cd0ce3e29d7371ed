from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import SpecError
from raypipe.inference.stage import ScoreOptions, ScoreStage
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages.base import DatasetInput, StageContext

from .data import train_model, write_files


def _input_dataset(tmp_path: Path) -> DatasetInput:
    paths = write_files(tmp_path / "raw", files=3, rows=40)
    url = str(tmp_path / "data" / "features")
    writer = DatasetWriter(url)
    entries = [e for i, p in enumerate(paths) for e in writer.write(pq.read_table(p), part=i)]
    return DatasetInput(url=url, manifest=writer.commit(entries))


def _context(tmp_path: Path) -> StageContext:
    return StageContext(
        stage_name="score",
        data_dir=str(tmp_path / "data"),
        run_id="r1",
        backend=InlineBackend(),
    )


def test_stage_scores_a_committed_dataset_with_a_model_uri(tmp_path: Path) -> None:
    model = train_model(tmp_path / "model.json")
    options = ScoreOptions(model=str(model), id_columns=["player_id"])
    context = _context(tmp_path)
    result = ScoreStage().run(context, {"data": _input_dataset(tmp_path)}, options)
    assert result.rows_out == result.rows_in == 120
    assert result.metrics["bottleneck"] in {"reading", "predicting", "writing"}
    table = read_dataset(context.output_url("scores"))
    assert sorted(table["player_id"].to_pylist()) == list(range(120))
    assert ScoreStage.kind == "inference.score" and ScoreStage.outputs == ("scores",)
    # Scored on the backend's pool (the one `raypipe infer` uses), not as executor tasks.
    assert context.backend.calls == ["scoring"]  # type: ignore[attr-defined]


def test_a_backend_without_a_scoring_pool_is_a_clear_error(tmp_path: Path) -> None:
    from raypipe.errors import RuntimeUnavailableError

    class MapOnly:
        name, parallelism, node_ids = "map-only", 1, set()

        def map(self, fn, items, *, name, num_cpus=1.0, memory_bytes=None):  # type: ignore[no-untyped-def]
            return [fn(item) for item in items]

    model = train_model(tmp_path / "model.json")
    context = StageContext("score", str(tmp_path / "data"), "r1", backend=MapOnly())  # type: ignore[arg-type]
    with pytest.raises(RuntimeUnavailableError, match=r"Stage `score` needs ScoringBackend"):
        ScoreStage().run(
            context, {"data": _input_dataset(tmp_path)}, ScoreOptions(model=str(model))
        )


def test_stage_without_a_model_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"needs `with\.model`"):
        ScoreStage().run(_context(tmp_path), {"data": _input_dataset(tmp_path)}, ScoreOptions())


def test_options_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        ScoreOptions(model="m.ubj", batch_sise=3)  # type: ignore[call-arg]


def test_stage_scores_with_a_training_stage_model_artifact(tmp_path: Path) -> None:
    import json

    from raypipe.inference.stage import ScoreStage
    from raypipe.io.artifacts import write_artifact
    from raypipe.io.manifest import read_manifest

    model = train_model(tmp_path / "model.ubj")
    preprocess = {
        "encoding": "native",
        "numeric": ["f0", "f1", "f2", "f3"],
        "categories": {},
        "target_means": {},
        "prior": 0.5,
    }
    url = str(tmp_path / "data" / "datasets" / "train" / "model")
    write_artifact(
        url,
        {
            "metrics.json": b'{"test_auc": 0.9}',
            "model.ubj": model.read_bytes(),
            "preprocess.json": json.dumps(preprocess).encode(),
        },
        metadata={"model_name": "churn"},
    )
    model_input = DatasetInput(url=url, manifest=read_manifest(url))
    context = _context(tmp_path)
    options = ScoreOptions(id_columns=["player_id"])
    result = ScoreStage().run(
        context, {"data": _input_dataset(tmp_path), "model": model_input}, options
    )
    assert result.rows_out == 120
    assert result.metrics["model_uri"].endswith("model.ubj")


def test_shap_auto_with_a_random_forest_is_recorded_not_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import numpy as np

    from raypipe.inference.stage import SHAP_NOT_AVAILABLE
    from raypipe.io.artifacts import write_artifact
    from raypipe.io.manifest import read_manifest
    from raypipe.training.estimators import NamedModel, make_sklearn_estimator

    from .data import FEATURES, make_table

    table = make_table(200, seed=3)
    X = np.column_stack([table[name].to_numpy() for name in FEATURES])
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    forest = make_sklearn_estimator("random_forest", {}, task="binary", seed=0, nthread=1)
    named = NamedModel(forest.fit(X, y), FEATURES, "binary")
    url = str(tmp_path / "data" / "datasets" / "train" / "model")
    write_artifact(url, {"model.skops": named.to_bytes()}, metadata={"model_name": "churn"})
    inputs = {
        "data": _input_dataset(tmp_path),
        "model": DatasetInput(url=url, manifest=read_manifest(url)),
    }
    with caplog.at_level(logging.INFO):
        result = ScoreStage().run(_context(tmp_path), inputs, ScoreOptions(shap="auto"))
    assert result.rows_out == 120
    assert result.metrics["shap"] == SHAP_NOT_AVAILABLE
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "SHAP" in r.message]
