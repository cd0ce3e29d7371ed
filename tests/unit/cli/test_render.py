from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.cli.main import render_error
from raypipe.errors import DataError, TaskError


def test_task_errors_show_the_workers_log_lines_then_the_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = TaskError(
        "Task `ingest` raised ValueError: bad",
        remote_traceback="Traceback (most recent call last):\n  ...\nValueError: bad",
        log_lines=["INFO raypipe.io.ingest: reading `a.csv`"],
        hint="see the log lines",
    )
    render_error(error, debug=False)
    err = capsys.readouterr().err
    assert err.index("reading `a.csv`") < err.index("error: Task `ingest` raised ValueError")
    assert "Hint: see the log lines" in err
    assert "Traceback" not in err
    render_error(error, debug=True)
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_plain_errors_print_message_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    render_error(DataError("`x.parquet` is truncated", hint="rewrite it"), debug=False)
    assert capsys.readouterr().err.splitlines() == [
        "error: `x.parquet` is truncated",
        "Hint: rewrite it",
    ]


def test_mlflow_link_opens_the_runs_of_the_experiment(tmp_path: Path) -> None:
    from raypipe.cli.render import mlflow_ui_lines
    from raypipe.tracking.store import get_client, get_or_create_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = get_client(uri)
    get_or_create_experiment(client, "other", uri)
    experiment_id = get_or_create_experiment(client, "churn", uri)
    run_id = client.create_run(experiment_id).info.run_id
    command, page = mlflow_ui_lines(uri, run_id, "/venv/bin/mlflow")
    assert command == f"/venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    assert page == f"then open http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
    assert experiment_id != "0"
    # The UI opens a model-training experiment on its runs, not on the GenAI overview.
    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert mlflow_ui_lines(uri, "no-such-run", "mlflow")[1] == "then open http://127.0.0.1:5000"
