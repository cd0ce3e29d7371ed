from __future__ import annotations

import pickle

import pytest

from raypipe.errors import DataError, RaypipeError, SpecError, TaskError


def test_message_and_hint_render_together() -> None:
    error = DataError("`a.csv` line 3, column `x`: expected int64, received 'q'", hint="fix it")
    assert str(error) == "`a.csv` line 3, column `x`: expected int64, received 'q'\nHint: fix it"
    assert error.exit_code == 3


def test_spec_error_lists_every_problem() -> None:
    error = SpecError(["one", "two"], source="job.yaml")
    assert error.message.splitlines() == ["2 problems in `job.yaml`:", "  - one", "  - two"]
    assert error.exit_code == 2


@pytest.mark.parametrize(
    "error",
    [
        DataError("bad", hint="h"),
        SpecError(["p1", "p2"], source="s.yaml", hint="h"),
        TaskError("t", remote_traceback="tb", log_lines=["l1"], hint="h"),
    ],
)
def test_errors_survive_pickling_between_processes(error: RaypipeError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.message == error.message and copy.hint == error.hint
    assert vars(copy) == vars(error)
