"""Units scored at once in one process: as many as there are threads, the spare threads to few."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from raypipe.inference.model import read_model
from raypipe.inference.planning import InferenceSpec, ScoringJob, list_input_files, plan_units
from raypipe.inference.work import UnitStoppedError, UnitWorker, score_concurrently, units_at_once

from .data import train_model, write_files


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

    def __call__(self, unit: Any, stop: threading.Event) -> int:
        with self.lock:
            self.started.append(unit)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            for _ in range(5):  # five "batches"
                if stop.is_set():
                    raise UnitStoppedError(str(unit))
                time.sleep(0.01)
        finally:
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


def test_the_first_failure_stops_the_running_units_and_starts_no_more() -> None:
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


def test_a_stopped_unit_gives_up_at_its_next_batch_and_leaves_no_marker(tmp_path: Path) -> None:
    from raypipe.inference.batch import _carried_schema

    write_files(tmp_path / "in", files=1, rows=500)
    model = read_model(str(train_model(tmp_path / "model.ubj")))
    spec = InferenceSpec(
        input_url=str(tmp_path / "in"),
        output_url=str(tmp_path / "out"),
        id_columns=("player_id",),
        batch_rows=100,
    )
    units = plan_units(list_input_files(spec.input_url), model, spec)
    worker = UnitWorker(ScoringJob(model, spec, _carried_schema(units, spec)))
    stop = threading.Event()
    stop.set()
    with pytest.raises(UnitStoppedError):
        worker(units[0], stop)
    assert worker.ledger.read(units[0].unit_id) is None
    assert worker(units[0]).status == "ok", "the same unit scores when nothing stops it"
