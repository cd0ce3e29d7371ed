from __future__ import annotations

from raypipe.inference.advice import advise, phase_times
from raypipe.inference.ledger import UnitOutcome


def _outcomes(read: float, predict: float, write: float, units: int = 8) -> list[UnitOutcome]:
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


def _advice(read: float, predict: float, write: float, **kwargs: int) -> list[str]:
    shape = {"workers": 1, "threads_per_worker": 2, "cluster_cpus": 2, "units": 8}
    shape.update(kwargs)
    times = phase_times(
        _outcomes(read, predict, write, shape.pop("units")),
        wall_s=8 * (read + predict + write) / shape["workers"],
        input_bytes=8 * 2**20,
        batch_rows=1000,
        **shape,
    )
    return advise(times)


def test_the_largest_phase_is_named_with_the_knob_that_moves_it() -> None:
    assert "prediction is the bottleneck" in _advice(0.1, 1.0, 0.1)[1]
    assert "add nodes" in _advice(0.1, 1.0, 0.1)[1]
    assert "raise `--actors`" in _advice(0.1, 1.0, 0.1, cluster_cpus=8)[1]
    assert "reading is the bottleneck" in _advice(1.0, 0.2, 0.1)[1]
    assert "--batch-size" in _advice(1.0, 0.2, 0.1)[1]
    assert "writing is the bottleneck" in _advice(0.1, 0.2, 1.0)[1]


def test_idle_workers_and_too_few_files_are_pointed_out() -> None:
    lines = _advice(0.1, 1.0, 0.1, workers=4, cluster_cpus=8, units=2)
    assert any("only 2 files for 4 workers" in line for line in lines)


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
