from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from raypipe.errors import ModelError
from raypipe.tracking.audit import AuditLog, ConcurrentChangeError
from raypipe.tracking.models import load_model
from raypipe.tracking.registry import CHALLENGER, CHAMPION, Registry, bless
from raypipe.tracking.runs import TrackingSession
from raypipe.tracking.store import default_tracking_uri


def test_bless_threshold_and_margin() -> None:
    assert bless(0.80, metric="auc", threshold=0.7, champion_value=0.805, margin=0.01).passed
    low = bless(0.65, metric="auc", threshold=0.7, champion_value=None, margin=0.01)
    assert not low.passed and "threshold" in low.reasons[0]
    worse = bless(0.78, metric="auc", threshold=0.7, champion_value=0.80, margin=0.01)
    assert not worse.passed and "worse than the champion" in worse.reasons[0]
    loss = bless(
        0.30, metric="rmse", threshold=0.5, champion_value=0.25, margin=0.1, maximize=False
    )
    assert loss.passed
    assert bless(0.1, metric="auc", threshold=None, champion_value=None, margin=0.0).passed
    assert not bless(math.nan, metric="auc", threshold=0.0, champion_value=None, margin=1).passed


def test_audit_log_entries_are_created_once_and_read_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit")
    assert log.head("m", "champion") == (0, None)
    first = log.append(
        model="m",
        alias="champion",
        action="promote",
        from_version=None,
        to_version="1",
        reason="first",
        who="ann",
        sequence=1,
    )
    written = sorted(p.read_bytes() for p in (tmp_path / "audit").rglob("*.json"))
    with pytest.raises(ConcurrentChangeError, match="changed by another writer"):
        log.append(
            model="m",
            alias="champion",
            action="promote",
            from_version=None,
            to_version="9",
            reason="raced",
            who="eve",
            sequence=1,
        )
    assert sorted(p.read_bytes() for p in (tmp_path / "audit").rglob("*.json")) == written
    log.append(
        model="m",
        alias="champion",
        action="rollback",
        from_version="1",
        to_version="0",
        reason="bad",
        who="bob",
        sequence=2,
    )
    assert log.head("m", "champion")[0] == 2 and first.sequence == 1
    entries = log.read("m")
    assert [(e.who, e.from_version, e.to_version) for e in entries] == [
        ("ann", None, "1"),
        ("bob", "1", "0"),
    ]
    assert log.read("other") == []
    assert not list((tmp_path / "audit").rglob(".tmp-*"))


def _booster() -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2)).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic"},
        xgb.DMatrix(x, label=x[:, 0] > 0, feature_names=["a", "b"]),
        3,
    )
    return bytes(booster.save_raw("ubj"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("store")
    return default_tracking_uri(str(root)), root


def _register(store: tuple[str, Path], registry: Registry) -> str:
    uri, _ = store
    session = TrackingSession(uri, "unit")
    run = session.start_run("r")
    x = np.zeros((2, 2), np.float32)
    logged = session.log_model(
        run,
        model_bytes=_booster(),
        model_format="xgboost-ubj",
        feature_names=["a", "b"],
        input_example=x,
        predictions=np.zeros(2),
    )
    return registry.register(
        "m",
        logged.model_uri,
        run_id=run,
        tags={
            "raypipe.sha256": logged.sha256,
            "raypipe.model_file": logged.model_file,
            "raypipe.format": logged.format,
        },
    )


@pytest.mark.slow
def test_register_promote_rollback_and_checksummed_loading(store: tuple[str, Path]) -> None:
    uri, root = store
    registry = Registry(uri, AuditLog(root / "audit.jsonl"))
    v1 = _register(store, registry)
    registry.set_alias("m", CHALLENGER, v1, action="register", reason="trained")
    registry.promote("m", None, reason="first champion", who="ann")
    v2 = _register(store, registry)
    registry.promote("m", v2, reason="better", who="ann")
    assert registry.alias_version("m", CHAMPION) == v2
    registry.rollback("m", reason="v2 misbehaves in prod", who="bob")
    assert registry.alias_version("m", CHAMPION) == v1
    with pytest.raises(ModelError, match="no earlier version"):
        registry.rollback("m", reason="again")
    history = registry.show_model("m")["history"]
    assert [(h["action"], h["from_version"], h["to_version"]) for h in history] == [
        ("register", None, v1),
        ("promote", None, v1),
        ("promote", v1, v2),
        ("rollback", v2, v1),
    ]
    tags = registry.client.get_registered_model("m").tags
    audit_tags = sorted(k for k in tags if k.startswith("raypipe.audit."))
    assert len(audit_tags) == 4
    assert json.loads(tags[audit_tags[-1]])["reason"] == "v2 misbehaves in prod"

    loaded = load_model("models:/m@champion", tracking_uri=uri)
    assert loaded.version == v1 and loaded.format == "xgboost-ubj"
    assert loaded.sha256 == hashlib.sha256(loaded.data).hexdigest()
    assert loaded.feature_names == ["a", "b"]
    assert load_model(f"models:/m/{v2}", tracking_uri=uri).version == v2

    # Tamper with the stored model file: loading must refuse it.
    for path in (root / "mlartifacts").rglob("model.ubj"):
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model("models:/m@champion", tracking_uri=uri)
    with pytest.raises(ModelError, match="not in the registry"):
        load_model("models:/m@nobody", tracking_uri=uri)
