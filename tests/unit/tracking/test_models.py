from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from raypipe.errors import ModelError
from raypipe.io.artifacts import write_artifact
from raypipe.tracking.models import load_model
from raypipe.training.estimators import NamedModel


def _sklearn_bytes() -> bytes:
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    return NamedModel(model, ["f"], "binary").to_bytes()


def test_file_with_sidecar_checksum(tmp_path: Path) -> None:
    data = _sklearn_bytes()
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="pickle without a checksum"):
        load_model(str(path))
    (tmp_path / "model.pkl.sha256").write_text(hashlib.sha256(data).hexdigest())
    loaded = load_model(str(path))
    assert loaded.format == "sklearn" and loaded.feature_names == ["f"]
    assert loaded.model.predict_proba(np.array([[3.0]]))[0, 1] > 0.5
    (tmp_path / "model.pkl.sha256").write_text("0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(str(path))


def test_file_inside_a_committed_artifact_is_verified(tmp_path: Path) -> None:
    data = _sklearn_bytes()
    url = str(tmp_path / "artifact")
    write_artifact(
        url,
        {
            "model.pkl": data,
            "preprocess.json": b'{"encoding": "target", '
            b'"numeric": ["f"], "categories": {}, "prior": 0.5}',
        },
    )
    loaded = load_model(f"{url}/model.pkl")
    assert loaded.preprocess is not None and loaded.preprocess["numeric"] == ["f"]
    staged = next(p for p in Path(url).rglob("model.pkl"))
    staged.write_bytes(pickle.dumps("tampered"))
    with pytest.raises(ModelError, match="failed verification"):
        load_model(f"{url}/model.pkl")


def test_unknown_formats_and_uris() -> None:
    with pytest.raises(ModelError, match="unknown model format"):
        load_model("/tmp/model.bin")
    with pytest.raises(ModelError, match="not a registry URI"):
        load_model("models:/a/b/c")
