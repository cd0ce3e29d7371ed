"""Progress of a training search: each finished trial is reported as it comes back.

The search itself knows nothing of terminals; a :class:`ReportingRunner` wraps whatever runs the
trials and calls a plain ``report(task, done, total)`` callback, which the CLI draws as a bar or
logs as a line (the same callback the driver gives each stage for its Ray tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raypipe.training.search import TrialRunner
from raypipe.training.trial import TrialRequest, TrialResult

__all__ = ["ProgressCallback", "ReportingRunner"]

ProgressCallback = Callable[[str, int, int], None]


class ReportingRunner:
    """A :class:`TrialRunner` that reports every finished trial to ``report``.

    Parameters
    ----------
    runner
        The runner that runs the trials.
    report
        Called with ``(task, done, total)``: ``task`` names the candidate (``xgboost trials``,
        or ``refit`` for a final model).
    planned
        Trials expected in all (searches and refits); the total grows when more are submitted
        (promoted trials of a multi-fidelity search).
    """

    def __init__(self, runner: TrialRunner, report: ProgressCallback, planned: int) -> None:
        self.runner = runner
        self.report = report
        self.planned = planned
        self.submitted = 0
        self.done = 0

    @property
    def slots(self) -> int:
        return self.runner.slots

    def submit(self, request: TrialRequest) -> None:
        self.runner.submit(request)
        self.submitted += 1

    def next_result(self) -> TrialResult:
        result = self.runner.next_result()
        self.done += 1
        task = "refit" if result.trial_id < 0 else f"{result.candidate} trials"
        self.report(task, self.done, max(self.planned, self.submitted))
        return result

    def close(self) -> None:
        close: Any = getattr(self.runner, "close", None)
        if close is not None:
            close()
