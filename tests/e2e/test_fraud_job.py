"""The fraud job end to end through the `raypipe` command: generate, train, register, deploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_churn_job import latest_run, raypipe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL = [
    *("--set", "stages.events.with.players=4000", "--set", "stages.events.with.days=14"),
    *("--set", "stages.train.with.trials={xgboost: 3, logistic: 1}"),
]


def test_fraud_job_trains_registers_and_deploys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = raypipe("run", "jobs/fraud.yaml", "--data-dir", str(data_dir), *SMALL)
    assert run.returncode == 0, run.stderr[-3000:]
    stages = latest_run(data_dir)["stages"]
    assert stages["purchases"]["metrics"]["purchases"] > 500
    train = stages["train"]["metrics"]
    assert train["promoted"] and train["test_roc_auc"] > 0.85 and train["auc_ratio"] > 0.9
    deploy = stages["deploy"]["metrics"]
    assert deploy["smoke_equal"] is True and deploy["smoke_rows"] == 200
