"""The advisor's statements follow from its measurements and never contradict one another."""

from __future__ import annotations

import re

import pytest

from raypipe.inference.advice import BUSY_ENOUGH, advise, phase_times
from raypipe.inference.ledger import UnitOutcome


def _outcomes(read: float, predict: float, write: float, units: int) -> list[UnitOutcome]:
    return [
        UnitOutcome(
            unit_id=str(i),
            source=f"f{i}",
            status="ok",
            rows_in=10,
            read_s=read,
            predict_s=predict,
            write_s=write,
        )
        for i in range(units)
    ]


def _measured(read, predict, write, *, busy, workers=1, threads=2, cpus=2, units=8):
    """Phase times of ``units`` units whose slots were busy ``busy`` of the wall time."""
    slots = min(units, workers * threads)
    wall = units * (read + predict + write) / slots / busy
    return phase_times(
        _outcomes(read, predict, write, units),
        wall_s=wall,
        workers=workers,
        threads_per_worker=threads,
        cluster_cpus=cpus,
        input_bytes=units * 2**20,
        batch_rows=1000,
    )


def _check_consistent(times, lines: list[str]) -> None:
    """Every statement agrees with the measurements it rests on."""
    text = " ".join(lines)
    shown = re.search(r"busy (\d+)% of the wall time", text)
    idle = times.busy_fraction < BUSY_ENOUGH
    assert (shown is not None and "idle time limits" in text) == idle
    if shown:
        assert int(shown.group(1)) == round(times.busy_fraction * 100)
    if "add nodes" in text or "every CPU predicts" in text:
        assert not idle and times.bottleneck == "predicting"
        assert times.used_cpus >= times.cluster_cpus
    if "raise `--actors`" in text and "split the input" not in text:
        assert not idle and times.units >= times.cluster_cpus
    if "only" in text and "CPUs predict" in text:
        assert times.used_cpus < times.cluster_cpus
    named = {"predicting": "prediction", "reading": "reading", "writing": "writing"}
    assert f"{named[times.bottleneck]} is the bottleneck" in text


CASES = {
    # name: (read, predict, write, shape)
    "low busy, predicting": (0.1, 1.0, 0.1, {"busy": 0.03, "workers": 1, "threads": 2, "cpus": 2}),
    "high busy, every CPU": (0.1, 1.0, 0.1, {"busy": 0.95, "workers": 1, "threads": 2, "cpus": 2}),
    "high busy, spare CPUs": (
        0.1,
        1.0,
        0.1,
        {"busy": 0.9, "workers": 1, "threads": 2, "cpus": 8, "units": 32},
    ),
    "io bound": (1.0, 0.2, 0.1, {"busy": 0.9}),
    "io bound and idle": (1.0, 0.2, 0.1, {"busy": 0.2}),
    "writing": (0.1, 0.2, 1.0, {"busy": 0.9}),
    "few units, many CPUs": (
        0.1,
        1.0,
        0.1,
        {"busy": 0.9, "workers": 2, "threads": 1, "cpus": 16, "units": 2},
    ),
    "few units, idle": (
        0.1,
        1.0,
        0.1,
        {"busy": 0.1, "workers": 4, "threads": 2, "cpus": 8, "units": 3},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_statements_agree_with_the_measurements(name: str) -> None:
    read, predict, write, shape = CASES[name]
    times = _measured(read, predict, write, **shape)
    _check_consistent(times, advise(times))


def test_three_percent_busy_never_says_every_cpu_already_predicts() -> None:
    times = _measured(0.1, 1.0, 0.1, busy=0.03)
    lines = advise(times)
    assert "busy 3% of the wall time" in lines[1]
    assert not any("add nodes" in line or "every CPU" in line for line in lines)
    assert "will not help until the slots are kept busy" in lines[2]


def test_busy_and_saturated_prediction_asks_for_nodes() -> None:
    lines = advise(_measured(0.1, 1.0, 0.1, busy=0.95))
    assert len(lines) == 2 and "prediction is the bottleneck" in lines[1]
    assert "busy 95% of the time and every CPU predicts, so add nodes" in lines[1]


def test_spare_cpus_with_enough_files_suggest_actors_and_few_files_suggest_splitting() -> None:
    lines = advise(_measured(0.1, 1.0, 0.1, busy=0.9, cpus=8, units=32))
    assert "only 2 of 8 CPUs predict; raise `--actors`" in lines[1]
    few = advise(_measured(0.1, 1.0, 0.1, busy=0.9, workers=2, threads=1, cpus=16, units=2))
    assert "2 files can keep at most 2 busy; split the input into more files" in few[1]


def test_idle_slots_with_too_few_files_are_pointed_out() -> None:
    lines = advise(_measured(0.1, 1.0, 0.1, busy=0.1, workers=4, threads=2, cpus=8, units=3))
    assert "only 3 files for 8 worker slot(s)" in lines[1]


def test_io_bound_run_names_reading_and_its_knobs() -> None:
    lines = advise(_measured(1.0, 0.2, 0.1, busy=0.9))
    assert "reading is the bottleneck" in lines[1] and "--batch-size" in lines[1]
    assert not any("add nodes" in line for line in lines)


def test_resumed_units_are_not_counted_and_nothing_scored_says_so() -> None:
    resumed = [UnitOutcome(unit_id="a", source="a", status="ok", read_s=5.0, resumed=True)]
    times = phase_times(
        resumed,
        wall_s=1.0,
        workers=1,
        threads_per_worker=1,
        cluster_cpus=1,
        input_bytes=0,
        batch_rows=1,
    )
    assert times.read_s == 0 and "nothing was scored" in advise(times)[0]
