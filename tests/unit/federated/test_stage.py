from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import SpecError
from raypipe.federated.stage import FederatedTrainOptions, FederatedTrainStage
from raypipe.io.artifacts import read_artifact_file
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.training.preprocess import predict_table


def _table(n: int = 4000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    country = rng.choice(["de", "fr", "us", "br", "jp"], size=n)
    score = x @ np.array([1.0, -0.7, 0.4, 0.0]) + (country == "us") * 0.5
    churned = rng.random(n) < 1 / (1 + np.exp(-score))
    return pa.table(
        {
            "player_id": np.arange(n),
            "country": country,
            "sessions": x[:, 0],
            "spend": x[:, 1] * 10 + 50,
            "level": np.round(x[:, 2] * 3 + 20).astype(np.int32),
            "noise": x[:, 3],
            "churned": churned,
        }
    )


def _run(tmp_path: Path, **options):
    url = str(tmp_path / "in/data")
    data = DatasetInput(url, write_dataset(url, _table()))
    context = StageContext(
        stage_name="fl", data_dir=str(tmp_path), run_id="r1", backend=InlineBackend()
    )
    opts = FederatedTrainOptions(**options)
    return FederatedTrainStage().run(context, {"data": data}, opts)


def test_stage_trains_by_country_logs_and_registers(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        partition={"by": "country"},
        rounds=5,
        min_fit_clients=3,
        register_as="churn_fl",
        # DP noise is fresh every run (OS entropy): sd 0.02 * 5 / 5 on the mean keeps AUC near
        dp={"noise_multiplier": 0.02, "clipping_norm": 5.0},
    )
    m = result.metrics
    assert m["clients"] == 5 and m["rounds"] == 5
    assert m["test_auc"] > m["central_auc"] - 0.03
    assert m["epsilon"] > 0 and m["model_version"] == "1"
    history = read_dataset(str(tmp_path / "datasets/fl/history"))
    assert history.num_rows == 5 and "test_auc" in history.column_names
    model = json.loads(read_artifact_file(str(tmp_path / "datasets/fl/model"), "model.json"))
    assert model["features"] == ["sessions", "spend", "level", "noise"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    per_round = client.get_metric_history(m["run_id"], "test_auc")
    assert [p.step for p in per_round] == [1, 2, 3, 4, 5]
    assert len(client.get_metric_history(m["run_id"], "epsilon")) == 5
    run = client.get_run(m["run_id"])
    assert run.data.params["protections"] == "dp"
    assert run.data.params["dp.noise_multiplier"] == "0.02"
    assert run.data.tags["raypipe.federated.protections"] == "dp"
    assert client.get_metric_history(m["run_id"], "clients_auc")

    from raypipe.tracking.models import load_model

    loaded = load_model("models:/churn_fl@challenger", tracking_uri=client.tracking_uri)
    table = _table()
    scores = predict_table(loaded, table.select(model["features"]))
    assert scores.shape == (table.num_rows,)
    assert np.all((scores > 0) & (scores < 1))
    # the registered model scores exactly as the JSON artifact's weights do
    from raypipe.federated.export import FederatedModel
    from raypipe.federated.models import LocalTrainSpec

    raw = np.column_stack([table[c].to_numpy().astype(float) for c in model["features"]])
    direct = FederatedModel(
        LocalTrainSpec(),
        np.array(model["weights"]),
        np.array(model["mean"]),
        np.array(model["scale"]),
    ).predict_proba(raw)[:, 1]
    np.testing.assert_allclose(scores, direct, rtol=1e-5)  # the preprocessor uses float32


def test_stage_dirichlet_mlp_with_secure_aggregation(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        partition={"clients": 8, "alpha": 1.0},
        model="mlp",
        hidden=4,
        rounds=3,
        secure_aggregation={"num_shares": 4, "reconstruction_threshold": 2},
        tracking=False,
        strategy="fedprox",
        strategy_options={"proximal_mu": 0.01},
        epochs=2,
    )
    assert result.metrics["clients"] == 8
    assert result.metrics["test_auc"] > 0.7


def test_stage_homomorphic_with_dp_records_both_protections(tmp_path: Path) -> None:
    pytest.importorskip("tenseal")
    from mlflow.tracking import MlflowClient

    result = _run(
        tmp_path,
        partition={"clients": 6},
        rounds=2,
        homomorphic={},
        dp={"noise_multiplier": 0.01, "clipping_norm": 5.0},
    )
    m = result.metrics
    assert m["epsilon"] > 0 and m["test_auc"] > 0.7
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    run = client.get_run(m["run_id"])
    assert run.data.tags["raypipe.federated.protections"] == "dp+homomorphic"
    assert client.get_metric_history(m["run_id"], "privacy_bytes_per_client")
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="keep one"):
        _run(tmp_path / "b", homomorphic={}, secure_aggregation={}, tracking=False)


def test_bad_options_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"partition\.by"):
        _run(tmp_path, partition={"by": "nope"}, tracking=False)
    with pytest.raises(SpecError, match="strategy_options"):
        _run(tmp_path / "b", strategy_options={"nope": 1.0}, tracking=False)


def test_stage_trains_federated_xgboost_and_registers_a_scorable_booster(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        partition={"by": "country"},
        model="xgboost",
        strategy="xgb_bagging",
        rounds=3,
        min_fit_clients=3,
        num_local_round=2,
        xgb_params={"max_depth": 3, "eta": 0.2},
        register_as="churn_fxgb",
    )
    m = result.metrics
    assert m["clients"] == 5 and m["rounds"] == 3
    assert m["trees"] == 5 * 3 * 2
    assert m["test_auc"] > m["central_auc"] - 0.03 and m["model_version"] == "1"
    history = read_dataset(str(tmp_path / "datasets/fl/history"))
    assert history.column("answered").to_pylist() == [5, 5, 5]
    model_url = str(tmp_path / "datasets/fl/model")
    meta = json.loads(read_artifact_file(model_url, "model.json"))
    assert meta["format"] == "xgboost-ubj" and meta["xgb_params"]["max_depth"] == 3
    assert meta["xgb_params"]["objective"] == "binary:logistic"  # Flower's defaults fill the rest

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    assert [p.step for p in client.get_metric_history(m["run_id"], "test_auc")] == [1, 2, 3]
    assert client.get_metric_history(m["run_id"], "clients_auc")

    import xgboost as xgb

    from raypipe.tracking.models import load_model

    loaded = load_model("models:/churn_fxgb@challenger", tracking_uri=client.tracking_uri)
    assert loaded.format == "xgboost-ubj"
    table = _table()
    scores = predict_table(loaded, table.select(meta["features"]))
    booster = xgb.Booster(model_file=bytearray(read_artifact_file(model_url, "model.ubj")))
    raw = np.column_stack([table[c].to_numpy().astype(np.float32) for c in meta["features"]])
    np.testing.assert_allclose(scores, booster.inplace_predict(raw), rtol=1e-6)
    assert booster.num_boosted_rounds() == 30


def test_stage_cyclic_xgboost(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        partition={"clients": 4},
        model="xgboost",
        strategy="xgb_cyclic",
        rounds=8,
        xgb_params={"max_depth": 3},
        tracking=False,
    )
    assert result.metrics["trees"] == 8
    history = read_dataset(str(tmp_path / "datasets/fl/history"))
    assert history.column("sampled").to_pylist() == [1] * 8
    assert result.metrics["test_auc"] > result.metrics["central_auc"] - 0.03


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "xgboost"}, "needs `strategy: xgb_bagging` or `xgb_cyclic`"),
        ({"strategy": "xgb_bagging"}, "cannot be trained with `strategy: xgb_bagging`"),
        (
            {"model": "xgboost", "strategy": "xgb_cyclic", "dp": {}},
            "not to federated XGBoost",
        ),
        (
            {"model": "xgboost", "strategy": "xgb_bagging", "xgb_params": {"nthread": 4}},
            "one thread",
        ),
    ],
)
def test_xgboost_options_are_validated(options, message) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        FederatedTrainOptions(**options)


def test_stage_hosts_its_clients_on_the_context_backend(tmp_path: Path) -> None:
    url = str(tmp_path / "in/data")
    data = DatasetInput(url, write_dataset(url, _table()))
    backend = InlineBackend()
    context = StageContext(stage_name="fl", data_dir=str(tmp_path), run_id="r1", backend=backend)
    options = FederatedTrainOptions(partition={"by": "country"}, rounds=1, min_fit_clients=3)
    FederatedTrainStage().run(context, {"data": data}, options)
    assert backend.calls == ["federation"]


def test_stage_on_a_backend_without_client_workers_names_the_capability(tmp_path: Path) -> None:
    from raypipe.errors import RuntimeUnavailableError

    class _TasksOnly:
        name = "tasks-only"
        parallelism = 1

    url = str(tmp_path / "in/data")
    data = DatasetInput(url, write_dataset(url, _table()))
    context = StageContext("fl", str(tmp_path), "r1", backend=_TasksOnly())  # type: ignore[arg-type]
    options = FederatedTrainOptions(partition={"by": "country"}, rounds=1, min_fit_clients=3)
    with pytest.raises(RuntimeUnavailableError, match=r"Stage `fl` needs FederationBackend"):
        FederatedTrainStage().run(context, {"data": data}, options)
