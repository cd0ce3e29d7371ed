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


def test_watch_once_processes_new_periods_retrains_on_drift_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's glue, with the retraining job replaced by the in-process retrainer."""
    import numpy as np

    from raypipe.cli import watch as watch_cli
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.retrain import XGBoostRetrainer
    from raypipe.tracking.store import audit_path
    from tests.support.registry import AuditOnlyRegistry

    data_dir = tmp_path / "data"

    class Registered(AuditOnlyRegistry):
        def register(self, name, model_uri, *, run_id, tags):  # type: ignore[no-untyped-def]
            return self.add_version(name, tags)

    registry = Registered(AuditLog(audit_path(str(data_dir))))

    class InProcess(XGBoostRetrainer):
        def __init__(self, spec, model_name, **_: object) -> None:  # type: ignore[no-untyped-def]
            super().__init__(registry, model_name, str(tmp_path / "models"), rounds=30)
            self.period = ""

    monkeypatch.setattr(watch_cli, "JobRetrainer", InProcess)
    rng = np.random.default_rng(0)

    def period(name: str, day: str, shift: float) -> None:
        x = rng.normal(0, 1, (3000, 6)) + np.array([shift] * 3 + [0] * 3)
        signal = x[:, 1] if shift else x[:, 0]  # the drift changes what predicts churn, too
        y = (rng.uniform(size=3000) < 1 / (1 + np.exp(-(2 * signal + x[:, 3])))).astype(int)
        table = pa.table({"player_id": np.arange(3000), "churned": y}
                         | {f"f{i}": x[:, i] for i in range(6)})  # fmt: skip
        writer = DatasetWriter(str(tmp_path / "periods" / name))
        writer.commit(writer.write(table), metadata={"cutoff": day})

    for name, day, shift in (("p1", "2026-01-01", 0), ("p2", "2026-02-01", 0)):
        period(name, day, shift)
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: j\nstages: {a: {uses: x}}\nlifecycle:\n  model: churn\n"
        "  roles: {ml-lead: [ann]}\n  identity: {sources: [env]}\n"
        "  watch: {periods: periods}\n"
    )
    app, runner = _app(), CliRunner()
    args = ["watch", str(job), "--once", "--data-dir", str(data_dir)]
    env = {"RAYPIPE_USER": "watcher"}
    refused = runner.invoke(app, args, env=env)
    assert isinstance(refused.exception, SpecError) and "no production version" in str(
        refused.exception
    )
    first_model = InProcess(job, "churn")
    train = pa.concat_tables([list_periods(str(tmp_path / "periods"))[0].table])
    v1 = first_model.register(first_model.retrain(train, champion=None)["scratch"], tags={})
    registry.promote("churn", v1, reason="first model", who="ann")

    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    # stdout only: a stale logging handler of another test may write errors to stderr.
    assert first.stdout.splitlines() == [
        "p1: champion 1, triggers: none",
        "p2: champion 1, triggers: none",
    ]
    period("p3", "2026-03-01", 1.0)  # a new period arrives, drifted
    second = runner.invoke(app, args, env=env)
    assert second.exit_code == 0, second.output
    lines = second.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("p3: champion 1, triggers: drift")
    assert "retrained -> 2" in lines[0]
    # The challenger learned the new concept (it beats the champion on fresh data) but lost the
    # old one: the replay check refuses it, and nothing waits for approval.
    assert "challenger refused: replay roc_auc" in lines[0] and "(forgetting)" in lines[0]
    assert "fresh" not in lines[0] and "production: waiting" not in lines[0]
    assert (data_dir / "lifecycle" / "churn" / "watch.json").is_file()
    again = runner.invoke(app, args, env=env)  # nothing new: nothing done
    assert again.exit_code == 0 and again.stdout == ""
    watch = registry.audit.read_stream("churn", "watch")
    assert [(e.details["period"], e.action, e.who) for e in watch] == [
        ("p1", "ok", "watcher"),
        ("p2", "ok", "watcher"),
        ("p3", "retrain", "watcher"),
    ]
