"""Nothing handed over runs code: pickles are refused, skops files load with an allow-list."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from raypipe.errors import ModelError
from raypipe.io.artifacts import write_artifact
from raypipe.tracking.models import SKLEARN_TRUSTED_TYPES, load_model
from raypipe.training.estimators import NamedModel

PREPROCESS = b'{"encoding": "target", "numeric": ["f"], "categories": {}, "prior": 0.5}'


def _named() -> NamedModel:
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    return NamedModel(LogisticRegression().fit(x, [0, 0, 1, 1]), ["f"], "binary")


class _RunsCode:
    """A pickle payload that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Foreign:
    """A harmless class raypipe does not know: a skops file holding it must be refused."""

    def __init__(self) -> None:
        self.value = 1


def _evil_pickle(tmp_path: Path) -> tuple[bytes, Path]:
    marker = tmp_path / "code-ran"
    return pickle.dumps(_RunsCode(marker)), marker


def test_handed_over_pickle_with_its_own_checksum_is_refused(tmp_path: Path) -> None:
    data, marker = _evil_pickle(tmp_path)
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    (tmp_path / "model.pkl.sha256").write_text(hashlib.sha256(data).hexdigest())
    with pytest.raises(ModelError) as info:
        load_model(str(path))
    assert "never unpickles a model file handed to it" in str(info.value)
    assert "Hint: score a registered version" in str(info.value)
    with pytest.raises(ModelError, match="never unpickles"):
        load_model(str(path), allow_pickle=True)  # the opt-in is for the registry only
    assert not marker.exists()


def test_handed_over_pickle_inside_a_manifest_is_refused(tmp_path: Path) -> None:
    data, marker = _evil_pickle(tmp_path)
    url = str(tmp_path / "artifact")
    write_artifact(url, {"model.pkl": data, "preprocess.json": PREPROCESS})
    with pytest.raises(ModelError, match="never unpickles"):
        load_model(f"{url}/model.pkl")
    assert not marker.exists()


def test_skops_file_loads_with_the_allow_list(tmp_path: Path) -> None:
    data = _named().to_bytes()
    path = tmp_path / "model.skops"
    path.write_bytes(data)
    loaded = load_model(str(path))  # no checksum needed: nothing in it can run
    assert loaded.format == "sklearn-skops" and loaded.feature_names == ["f"]
    assert loaded.model.predict_proba(np.array([[3.0]]))[0, 1] > 0.5
    (tmp_path / "model.skops.sha256").write_text("0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(str(path))


def test_skops_file_with_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    import skops.io

    path = tmp_path / "model.skops"
    path.write_bytes(skops.io.dumps(NamedModel(_Foreign(), ["f"], "binary")))
    with pytest.raises(ModelError) as info:
        load_model(str(path))
    assert "holds types raypipe does not trust" in str(info.value)
    assert "_Foreign`" in str(info.value)


def test_not_a_skops_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a valid skops file"):
        load_model(str(path))


def test_skops_file_inside_a_committed_artifact_is_verified(tmp_path: Path) -> None:
    url = str(tmp_path / "artifact")
    write_artifact(url, {"model.skops": _named().to_bytes(), "preprocess.json": PREPROCESS})
    loaded = load_model(f"{url}/model.skops")
    assert loaded.preprocess is not None and loaded.preprocess["numeric"] == ["f"]
    staged = next(p for p in Path(url).rglob("model.skops"))
    tampered = bytearray(staged.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    staged.write_bytes(bytes(tampered))
    with pytest.raises(ModelError, match="failed verification"):
        load_model(f"{url}/model.skops")


@pytest.mark.parametrize("candidate", ["logistic", "random_forest", "hist_gb"])
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_every_candidate_round_trips_within_the_allow_list(candidate: str, task: str) -> None:
    import skops.io

    from raypipe.tracking.models import load_sklearn_model
    from raypipe.training.estimators import make_sklearn_estimator

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    x[::9, 1] = np.nan
    x[:, 2] = rng.integers(0, 3, size=120)
    y = (x[:, 0] > 0).astype(int) if task == "binary" else x[:, 0]
    params = {"n_estimators": 3} if candidate == "random_forest" else {}
    params = {"max_iter": 3} if candidate == "hist_gb" else params
    estimator = make_sklearn_estimator(
        candidate,
        params,
        task=task,
        seed=0,
        nthread=1,
        categorical_mask=np.array([False, False, True]),
    ).fit(x, y)
    model = NamedModel(estimator, ["a", "b", "c"], task)
    data = model.to_bytes()
    assert set(skops.io.get_untrusted_types(data=data)) <= set(SKLEARN_TRUSTED_TYPES)
    np.testing.assert_allclose(load_sklearn_model(data).predict(x), model.predict(x))


def test_pickle_bytes_are_refused_without_the_opt_in() -> None:
    from raypipe.tracking.models import load_sklearn_model

    with pytest.raises(ModelError, match="refusing to unpickle"):
        load_sklearn_model(pickle.dumps(_named()), "sklearn")


@pytest.mark.slow
def test_legacy_pickle_in_the_registry_needs_the_explicit_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.sklearn

    from raypipe.tracking.runs import TrackingSession, global_tracking_uri
    from raypipe.tracking.store import default_tracking_uri, get_client

    uri = default_tracking_uri(str(tmp_path))
    session = TrackingSession(uri, "legacy")
    run = session.start_run("r")
    with global_tracking_uri(uri), mlflow.start_run(run_id=run):
        info = mlflow.sklearn.log_model(_named(), name="model", serialization_format="pickle")
    client = get_client(uri)
    client.create_registered_model("old")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{info.artifact_path}/model.pkl", tracking_uri=uri, dst_path=str(tmp_path)
    )
    with global_tracking_uri(uri):
        client.create_model_version(
            "old",
            source=info.model_uri,
            run_id=run,
            tags={
                "raypipe.sha256": hashlib.sha256(Path(local).read_bytes()).hexdigest(),
                "raypipe.model_file": "model.pkl",
                "raypipe.format": "sklearn",
            },
            model_id=info.model_id,
        )
    monkeypatch.delenv("RAYPIPE_ALLOW_PICKLE", raising=False)
    with pytest.raises(ModelError, match="legacy pickle") as refused:
        load_model("models:/old/1", tracking_uri=uri)
    assert "RAYPIPE_ALLOW_PICKLE=1" in str(refused.value)
    loaded = load_model("models:/old/1", tracking_uri=uri, allow_pickle=True)
    assert loaded.model.predict_proba(np.array([[3.0]]))[0, 1] > 0.5
    monkeypatch.setenv("RAYPIPE_ALLOW_PICKLE", "1")
    assert load_model("models:/old/1", tracking_uri=uri).format == "sklearn"
    monkeypatch.delenv("RAYPIPE_ALLOW_PICKLE")
    _infer_needs_allow_pickle(tmp_path, uri)


def _infer_needs_allow_pickle(tmp_path: Path, tracking_uri: str) -> None:
    """`raypipe infer` refuses the pickle unless `--allow-pickle` is passed.

    The input is an empty folder, so a loaded model ends at the "no Parquet files" error, before
    Ray starts.
    """
    from raypipe.cli.infer import infer
    from raypipe.errors import DataError

    empty = tmp_path / "empty"
    empty.mkdir()
    args = {"model": "models:/old/1", "input_url": str(empty),
            "output_url": str(tmp_path / "scores"), "tracking_uri": tracking_uri}  # fmt: skip
    with pytest.raises(ModelError, match="legacy pickle") as refused:
        infer(**args)
    assert "--allow-pickle" in str(refused.value)
    with pytest.raises(DataError, match="no Parquet files"):  # the model loaded
        infer(**args, allow_pickle=True)


def test_unknown_formats_and_uris() -> None:
    with pytest.raises(ModelError, match="unknown model format"):
        load_model("/tmp/model.bin")
    with pytest.raises(ModelError, match="not a registry URI"):
        load_model("models:/a/b/c")


def test_infer_refuses_a_handed_over_pickle_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from raypipe.cli.main import main

    data, marker = _evil_pickle(tmp_path)
    (tmp_path / "model.pkl").write_bytes(data)
    (tmp_path / "model.pkl.sha256").write_text(hashlib.sha256(data).hexdigest())
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        main(["infer", "--model", str(tmp_path / "model.pkl"), *args])
    assert info.value.code == ModelError.exit_code
    assert "never unpickles" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_infer_reads_a_skops_model_and_refuses_an_untrusted_one(tmp_path: Path) -> None:
    import skops.io

    from raypipe.inference.model import read_model

    good = tmp_path / "good.skops"
    good.write_bytes(_named().to_bytes())
    blob = read_model(str(good))
    assert blob.format == "sklearn-skops"
    from raypipe.inference.predictor import _load_sklearn

    assert _load_sklearn(blob).feature_names_in_ == ["f"]
    bad = tmp_path / "bad.skops"
    bad.write_bytes(skops.io.dumps(NamedModel(_Foreign(), ["f"], "binary")))
    with pytest.raises(ModelError, match="does not trust"):
        read_model(str(bad))
