"""The churn job end to end through the `raypipe` command, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    *("--set", "stages.events.with.players=1500", "--set", "stages.events.with.days=30"),
    *("--set", "stages.later.with.players=1500"),
]


def raypipe(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAYPIPE_DATA_DIR": ""}
    return subprocess.run(
        [sys.executable, "-m", "raypipe.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def latest_run(data_dir: Path) -> dict:
    runs = sorted((data_dir / "jobs" / "churn" / "runs").iterdir())
    return json.loads((runs[-1] / "run.json").read_text())


def test_churn_job_runs_then_is_cached(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = raypipe("run", "jobs/churn.yaml", "--data-dir", str(data_dir), *SMALL)
    assert first.returncode == 0, first.stderr[-3000:]
    record = latest_run(data_dir)
    assert record["status"] == "succeeded"
    events = record["stages"]["events"]
    assert events["status"] == "succeeded" and events["node_ids"]
    assert events["outputs"]["players"]["rows"] == 1500
    assert 0.6 < events["metrics"]["bayes_auc"] < 1.0
    assert "Run record:" in first.stdout
    train = record["stages"]["train"]["metrics"]
    assert 0.5 < train["test_auc"] <= 1.0 and 0.5 < train["bayes_auc"] <= 1.0
    assert train["auc_ratio"] == pytest.approx(train["test_auc"] / train["bayes_auc"])
    assert train["model_version"] == "1" and train["promoted"] is True
    assert record["stages"]["score"]["outputs"]["scores"]["rows"] == 1500
    report = Path(record["stages"]["monitor"]["metrics"]["report"])
    assert report.is_file() and report.read_text().lstrip().lower().startswith("<!doctype html")
    assert f"Report (monitor): {report}" in first.stdout
    *_, command, page = first.stdout.strip().splitlines()
    assert "mlflow ui --backend-store-uri sqlite:///" in command, first.stdout[-2000:]
    assert re.fullmatch(r"\s*then open http://127\.0\.0\.1:5000/#/experiments/\d+/runs", page)

    second = raypipe("run", "jobs/churn.yaml", "--data-dir", str(data_dir), *SMALL)
    assert second.returncode == 0, second.stderr[-3000:]
    again = latest_run(data_dir)
    assert again["run_id"] != record["run_id"]
    assert {stage["status"] for stage in again["stages"].values()} == {"cached"}
    for name, stage in record["stages"].items():
        assert again["stages"][name]["outputs"] == stage["outputs"]


def test_a_bad_spec_exits_2_with_every_problem_and_no_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: churn\nstages:\n"
        "  events: {uses: synth.game_telemetry, with: {players: -5, colour: red}}\n"
        "  profile: {uses: data.profile, inputs: {data: events.nope}}\n"
    )
    result = raypipe("validate", str(spec))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "`stages.events.with.colour`: unknown key" in result.stderr
    assert "`stages.events.with.players`" in result.stderr
    assert "has no output `nope`" in result.stderr


def test_a_missing_spec_file_is_a_clear_error() -> None:
    result = raypipe("run", "no/such/job.yaml")
    assert result.returncode == 2
    assert "cannot read `no/such/job.yaml`" in result.stderr
    assert "Traceback" not in result.stderr
