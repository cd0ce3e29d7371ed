from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
import xgboost as xgb
from typer.testing import CliRunner

from raypipe.cli.models import register
from raypipe.tracking.audit import AuditLog
from raypipe.tracking.registry import Registry
from raypipe.tracking.runs import TrackingSession
from raypipe.tracking.store import audit_path, default_tracking_uri


def _version(uri: str, registry: Registry) -> str:
    session = TrackingSession(uri, "cli")
    run = session.start_run("r")
    x = np.zeros((4, 1), np.float32)
    booster = xgb.train({}, xgb.DMatrix(x, label=[0, 1, 0, 1], feature_names=["f"]), 1)
    logged = session.log_model(
        run,
        model_bytes=bytes(booster.save_raw("ubj")),
        model_format="xgboost-ubj",
        feature_names=["f"],
        input_example=x[:2],
        predictions=np.zeros(2),
    )
    return registry.register(
        "churn", logged.model_uri, run_id=run, tags={"raypipe.sha256": logged.sha256}
    )


@pytest.mark.slow
def test_promote_show_rollback(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    uri = default_tracking_uri(data_dir)
    registry = Registry(uri, AuditLog(audit_path(data_dir)))
    v1, v2 = _version(uri, registry), _version(uri, registry)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    args = ["--data-dir", data_dir]
    assert (
        runner.invoke(app, ["models", "promote", "churn", v1, "--reason", "first", *args]).exit_code
        == 0
    )
    result = runner.invoke(app, ["models", "promote", "churn", v2, "--reason", "better", *args])
    assert result.exit_code == 0 and f"{v1} -> {v2}" in result.output
    result = runner.invoke(app, ["models", "rollback", "churn", "--reason", "bad", *args])
    assert result.exit_code == 0 and f"{v2} -> {v1}" in result.output
    shown = json.loads(runner.invoke(app, ["models", "show", "churn", "--json", *args]).output)
    assert shown["aliases"] == {"champion": int(v1)} or shown["aliases"] == {"champion": v1}
    assert [h["reason"] for h in shown["history"]] == ["first", "better", "bad"]
    listed = runner.invoke(app, ["models", "list", *args])
    assert listed.exit_code == 0 and "churn" in listed.output
    missing = runner.invoke(app, ["models", "rollback", "nope", "--reason", "x", *args])
    assert missing.exit_code != 0
    assert runner.invoke(app, ["models", "promote", "churn", v2, *args]).exit_code != 0  # reason
