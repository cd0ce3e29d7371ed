from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from raypipe.cli.watch import list_periods, register
from raypipe.errors import SpecError
from raypipe.io.dataset import DatasetWriter


def _commit(url: str, rows: int, cutoff: str | None) -> None:
    writer = DatasetWriter(url)
    table = pa.table({"player_id": list(range(rows)), "x": [1.0] * rows})
    writer.commit(writer.write(table), metadata={"cutoff": cutoff} if cutoff else {})


def test_periods_are_committed_datasets_in_time_order(tmp_path: Path) -> None:
    _commit(str(tmp_path / "b"), 3, "2026-01-01")
    _commit(str(tmp_path / "a"), 2, "2026-02-01")
    (tmp_path / "half-written").mkdir()  # no manifest yet: not a period
    periods = list_periods(str(tmp_path))
    assert [(p.name, p.table.num_rows) for p in periods] == [("b", 3), ("a", 2)]
    assert periods[0].start.isoformat() == "2026-01-01T00:00:00+00:00"
    assert list_periods(str(tmp_path / "none")) == []


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command keeps typer from flattening `watch`
        pass

    return app


def test_watch_needs_a_watch_section(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: j\nstages: {a: {uses: x}}\nlifecycle: {model: churn, roles: {ml-lead: [a]}}\n"
    )
    result = CliRunner().invoke(_app(), ["watch", str(job), "--once"])
    assert isinstance(result.exception, SpecError)
    assert "`lifecycle.watch` is not set" in str(result.exception)


def test_watch_rejects_a_bad_policy_with_every_problem(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: j\nstages: {a: {uses: x}}\n"
        "lifecycle: {model: churn, triggers: {cooldown_periods: -1}, watch: {}}\n"
    )
    with pytest.raises(SpecError) as info:
        CliRunner().invoke(_app(), ["watch", str(job)], catch_exceptions=False)
    text = str(info.value)
    assert "`lifecycle.triggers.cooldown_periods`" in text and "`lifecycle.watch.periods`" in text
