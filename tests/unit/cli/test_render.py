from __future__ import annotations

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
