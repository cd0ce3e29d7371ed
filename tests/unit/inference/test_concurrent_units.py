"""Units scored at once in one process: as many as there are threads, the spare threads to few."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from raypipe.inference.work import score_concurrently, units_at_once


@pytest.mark.parametrize(
    ("threads", "units", "expected"),
    [(2, 16, (2, 1)), (2, 1, (1, 2)), (8, 3, (3, 2)), (4, 0, (1, 4)), (1, 5, (1, 1))],
)
def test_one_unit_per_thread_and_spare_threads_go_to_fewer_units(
    threads: int, units: int, expected: tuple[int, int]
) -> None:
    assert units_at_once(threads, units) == expected


class _RecordingWorker:
    """Stands for a UnitWorker: sleeps a little per unit, records how many ran at once."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.started: list[int] = []
        self.finished: list[int] = []

    def __call__(self, unit: Any) -> int:
        with self.lock:
            self.started.append(unit)
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
            self.finished.append(unit)
        if unit == self.fail_on:
            raise ValueError(f"unit {unit} is corrupt")
        return unit


def test_every_unit_is_scored_once_with_at_most_at_once_running() -> None:
    worker = _RecordingWorker()
    outcomes = list(score_concurrently(worker, list(range(7)), at_once=2))  # type: ignore[arg-type]
    assert sorted(outcomes) == list(range(7))
    assert worker.most == 2 and sorted(worker.started) == list(range(7))


def test_the_first_failure_is_raised_after_the_running_units_finish_and_no_more_start() -> None:
    worker = _RecordingWorker(fail_on=1)
    with pytest.raises(ValueError, match="unit 1 is corrupt"):
        list(score_concurrently(worker, list(range(10)), at_once=2))  # type: ignore[arg-type]
    assert worker.running == 0, "no thread still scores once the error is raised"
    assert len(worker.started) < 10 and sorted(worker.started) == sorted(worker.finished)


def test_a_caller_that_stops_early_leaves_no_thread_scoring() -> None:
    worker = _RecordingWorker()
    outcomes = score_concurrently(worker, list(range(10)), at_once=2)  # type: ignore[arg-type]
    next(outcomes)
    outcomes.close()
    assert worker.running == 0 and len(worker.started) <= 4
    assert sorted(worker.started) == sorted(worker.finished)
