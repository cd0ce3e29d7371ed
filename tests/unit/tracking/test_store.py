from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from raypipe.errors import RaypipeError
from raypipe.tracking.store import audit_path, default_tracking_uri, retrying


def test_retrying_waits_out_a_locked_database() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert retrying(flaky) == "ok" and len(calls) == 3


def test_retrying_does_not_hide_other_errors() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: runs")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retrying(broken)
    assert len(calls) == 1


def test_default_store_lives_in_the_data_dir(tmp_path: Path) -> None:
    uri = default_tracking_uri(str(tmp_path / "data"))
    assert uri == f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}"
    assert audit_path(str(tmp_path / "data")) == str(tmp_path / "data/registry/audit")
    # A URL data_dir keeps its audit log in the store, not in a local folder named `s3:`.
    assert audit_path("s3://bucket/x") == "s3://bucket/x/registry/audit"
    with pytest.raises(RaypipeError, match="tracking-uri"):
        default_tracking_uri("s3://bucket/data")
