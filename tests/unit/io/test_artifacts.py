from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.errors import DataError, DatasetNotCommittedError
from raypipe.io.artifacts import read_artifact_file, write_artifact
from raypipe.io.manifest import read_manifest


def test_artifact_round_trip_and_content_version(tmp_path: Path) -> None:
    url = str(tmp_path / "model")
    files = {"model.json": b'{"trees": []}', "report/index.html": b"<html></html>"}
    first = write_artifact(url, files, metadata={"auc": 0.9})
    assert read_artifact_file(url, "model.json") == files["model.json"]
    assert read_artifact_file(url, "report/index.html") == files["report/index.html"]
    assert read_manifest(url).metadata == {"auc": 0.9}
    again = write_artifact(url, files)
    assert again.version == first.version
    assert write_artifact(url, {"other.json": b'{"trees": []}'}).version != first.version
    with pytest.raises(DataError, match=r"no file `model\.json`"):
        read_artifact_file(url, "model.json")
    # Two versions kept (the same content twice is one version, its files reused): two attempts.
    assert len(list((tmp_path / "model" / "_data").iterdir())) == 2


def test_artifact_checksum_is_verified(tmp_path: Path) -> None:
    url = str(tmp_path / "model")
    manifest = write_artifact(url, {"model.json": b"0123456789"})
    (tmp_path / "model" / manifest.files[0].path).write_bytes(b"0123456780")
    with pytest.raises(DatasetNotCommittedError, match="SHA-256"):
        read_artifact_file(url, "model.json")


def test_uncommitted_artifact_is_refused() -> None:
    with pytest.raises(DatasetNotCommittedError, match="no committed manifest"):
        read_artifact_file("memory://nothing/here", "model.json")
