from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.errors import ModelError, SchemaError
from raypipe.inference.model import ModelBlob, read_model
from raypipe.inference.predictor import Predictor, check_feature_types

from .data import FEATURES, make_table, train_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("model") / "model.ubj")


def _oracle(model_path: Path, table: pa.Table) -> np.ndarray:
    booster = xgb.Booster(model_file=str(model_path))
    features = np.column_stack(
        [np.asarray(table[name].to_pylist(), dtype=np.float64) for name in FEATURES]
    ).astype(np.float32)
    return booster.predict(xgb.DMatrix(features, feature_names=list(FEATURES)))


def test_scores_match_a_fresh_dmatrix_and_keep_id_columns(model_path: Path) -> None:
    table = make_table(500)
    # columns in another order than the model's: features are taken by name
    table = table.select(["f3", "player_id", "f1", "extra", "f0", "day", "f2"])
    predictor = Predictor(read_model(str(model_path)), nthread=2, id_columns=("player_id",))
    scored = predictor(table)
    assert scored.column_names == ["player_id", "score"]
    assert scored["player_id"].equals(table["player_id"])
    assert scored["score"].type == pa.float32()
    np.testing.assert_allclose(scored["score"].to_numpy(), _oracle(model_path, table), rtol=1e-6)


def test_batches_of_any_size_and_threads_at_once_score_like_fresh_matrices(
    model_path: Path,
) -> None:
    """__call__ copies each batch into its thread's reused matrix: a smaller batch after a
    larger one, a larger one after it, and two threads at once each score exactly their rows."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor(read_model(str(model_path)), id_columns=("player_id",))
    tables = [make_table(rows, seed=rows) for rows in (700, 300, 900, 300)]
    expected = [predictor.predict(predictor.feature_matrix(table)) for table in tables]
    for table, scores in zip(tables, expected, strict=True):
        np.testing.assert_array_equal(predictor(table)["score"].to_numpy(), scores)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(20):
            got = list(pool.map(lambda t: predictor(t)["score"].to_numpy(), tables))
            for scores, want in zip(got, expected, strict=True):
                np.testing.assert_array_equal(scores, want)


def test_json_and_ubj_models_score_the_same(tmp_path: Path) -> None:
    json_path = train_model(tmp_path / "model.json")
    ubj_path = train_model(tmp_path / "model.ubj")
    table = make_table(100)
    assert Predictor(read_model(str(json_path)))(table)["score"].equals(
        Predictor(read_model(str(ubj_path)))(table)["score"]
    )
    assert read_model(str(json_path)).format == "xgboost-json"


def test_a_json_model_loaded_again_scores_as_xgboost_loads_it(tmp_path: Path) -> None:
    """A process parses a JSON model once and loads it again from XGBoost's binary form."""
    json_path = train_model(tmp_path / "model.json", seed=3)
    blob = read_model(str(json_path))
    table = make_table(200)
    first, again = Predictor(blob), Predictor(blob, nthread=2)
    direct = xgb.Booster(model_file=str(json_path))
    assert first.feature_names_ == again.feature_names_ == tuple(direct.feature_names or ())
    want = direct.inplace_predict(first.feature_matrix(table)).astype(np.float32)
    np.testing.assert_array_equal(first(table)["score"].to_numpy(), want)
    np.testing.assert_array_equal(again(table)["score"].to_numpy(), want)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-5, 5, width=32), st.just(float("nan"))),
        min_size=1,
        max_size=40,
    ),
    as_int=st.booleans(),
)
def test_nulls_nans_ints_and_chunks_score_like_the_oracle(
    model_path: Path, values: list[float | None], as_int: bool
) -> None:
    rows = len(values)
    base = make_table(rows)
    column = pa.array(values, pa.float32())
    if as_int:
        column = pa.array([None if v is None or v != v else int(v) for v in values], pa.int32())
    # f0 split into two chunks, with nulls/NaNs; f1 maybe integer
    half = rows // 2
    chunked = pa.chunked_array([column.slice(0, half), column.slice(half)], type=column.type)
    table = base.set_column(base.schema.get_field_index("f0"), "f0", chunked)
    predictor = Predictor(read_model(str(model_path)))
    got = predictor(table)["score"].to_numpy()
    np.testing.assert_allclose(got, _oracle(model_path, table), rtol=1e-6)


def test_shap_contributions_sum_to_the_margin(model_path: Path) -> None:
    table = make_table(50)
    predictor = Predictor(read_model(str(model_path)), id_columns=("player_id",), shap=True)
    scored = predictor(table)
    shap_names = [f"shap_{name}" for name in FEATURES] + ["shap_bias"]
    assert scored.column_names == ["player_id", "score", *shap_names]
    margin = np.sum([scored[name].to_numpy() for name in shap_names], axis=0)
    probability = 1 / (1 + np.exp(-margin))
    np.testing.assert_allclose(probability, scored["score"].to_numpy(), rtol=1e-4, atol=1e-5)


def test_missing_feature_column_names_the_source_and_column() -> None:
    schema = make_table(1).drop_columns(["f2"]).schema
    with pytest.raises(SchemaError, match=r"`data/x.parquet` lacks feature column\(s\) `f2`"):
        check_feature_types(schema, FEATURES, "data/x.parquet")


def test_string_feature_column_is_a_schema_error() -> None:
    table = make_table(3)
    table = table.set_column(table.schema.get_field_index("f1"), "f1", pa.array(["a", "b", "c"]))
    with pytest.raises(SchemaError, match=r"feature column `f1` has type `string`"):
        check_feature_types(table.schema, FEATURES, "x.parquet")


def test_model_without_feature_names_is_refused(tmp_path: Path) -> None:
    booster = xgb.train(
        {"objective": "binary:logistic"}, xgb.DMatrix(np.ones((4, 2)), label=[0, 1, 0, 1]), 2
    )
    path = tmp_path / "unnamed.json"
    booster.save_model(str(path))
    with pytest.raises(ModelError, match="has no feature names"):
        Predictor(read_model(str(path)))


def test_bad_model_bytes_and_unknown_suffix_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a valid XGBoost model"):
        Predictor(ModelBlob.from_bytes(b"garbage", format="xgboost-ubj", uri="m.ubj"))
    with pytest.raises(ModelError, match=r"unknown (model )?format"):
        read_model(str(tmp_path / "model.bin"))
    with pytest.raises(ModelError, match="could not be read"):
        read_model(str(tmp_path / "absent.ubj"))


def test_models_uris_and_files_go_through_the_tracking_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import raypipe.tracking.models as tracking

    path = train_model(tmp_path / "model.ubj")
    calls: list[str] = []

    def fake(uri: str) -> tracking.LoadedModel:
        calls.append(uri)
        data = path.read_bytes()
        return tracking.LoadedModel(format="xgboost-ubj", data=data, sha256="x", uri=uri)

    monkeypatch.setattr(tracking, "load_model_blob", fake)
    blob = read_model("models:/churn@champion")
    assert calls == ["models:/churn@champion"] and blob.format == "xgboost-ubj"
    assert Predictor(blob).feature_names_ == FEATURES


def test_checksum_sidecar_mismatch_is_refused(tmp_path: Path) -> None:
    path = train_model(tmp_path / "model.ubj")
    (tmp_path / "model.ubj.sha256").write_text("0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        read_model(str(path))


def test_raypipe_preprocess_state_encodes_categoricals(tmp_path: Path) -> None:
    pre = {
        "encoding": "native",
        "numeric": ["f0", "f1", "f2"],
        "categories": {"f3": ["a", "b", "c"]},
        "target_means": {},
        "prior": 0.5,
    }
    path = train_model(tmp_path / "model.ubj")
    blob = ModelBlob.from_bytes(path.read_bytes(), format="xgboost-ubj", uri="m", preprocess=pre)
    predictor = Predictor(blob)
    assert predictor.categorical_ == ("f3",)
    table = make_table(4)
    table = table.set_column(
        table.schema.get_field_index("f3"), "f3", pa.array(["a", "c", None, "z"])
    )
    check_feature_types(table.schema, predictor.feature_names_, "x", predictor.categorical_)
    matrix = predictor.feature_matrix(table)
    np.testing.assert_array_equal(matrix[:, 3], [0, 2, np.nan, np.nan])
    assert predictor(table).num_rows == 4


def _sklearn_blob(candidate: str) -> ModelBlob:
    from raypipe.training.estimators import NamedModel, make_sklearn_estimator

    table = make_table(300, seed=3)
    X = np.column_stack([table[name].to_numpy() for name in FEATURES])
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    estimator = make_sklearn_estimator(candidate, {}, task="binary", seed=0, nthread=1)
    named = NamedModel(estimator.fit(X, y), FEATURES, "binary")
    return ModelBlob.from_bytes(named.to_bytes(), format="sklearn-skops", uri=f"{candidate}.skops")


def test_a_linear_scikit_learn_model_explains_its_scores() -> None:
    predictor = Predictor(_sklearn_blob("logistic"), shap=True)
    assert predictor.explainable
    scored = predictor(make_table(40))
    shap = np.column_stack([scored[name].to_numpy() for name in predictor.output_names[1:]])
    logit = np.log(scored["score"].to_numpy() / (1 - scored["score"].to_numpy()))
    np.testing.assert_allclose(shap.sum(axis=1), logit, rtol=1e-3, atol=1e-3)  # float32 scores


def test_shap_of_a_tree_scikit_learn_model_is_a_clear_error() -> None:
    assert not Predictor(_sklearn_blob("random_forest")).explainable
    with pytest.raises(ModelError, match=r"XGBoost or linear model.*RandomForestClassifier"):
        Predictor(_sklearn_blob("random_forest"), shap=True)
