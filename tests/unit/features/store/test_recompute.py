"""An SLA breach launches the view's recompute job, at most once per cool-down."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from raypipe.features.store.recompute import RecomputeSpec, launch_detached, trigger_recompute
from raypipe.features.store.registry import ServedView, current_view, register_view

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


def _view(recompute: dict | None) -> ServedView:
    return ServedView(
        "churn_player",
        ("player_id",),
        "cutoff",
        "scoring.set",
        ("spend_30d",),
        freshness_sla_s=60,
        recompute=recompute,
    )


class FakeLauncher:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, command: Sequence[str], log_path: str) -> int:
        self.calls.append((list(command), log_path))
        return 1000 + len(self.calls)


def test_breach_launches_the_job_then_waits_for_the_cool_down(tmp_path: Path) -> None:
    spec = RecomputeSpec("/jobs/churn.yaml", "scoring", ("data_dir=/d",), cooldown_s=600)
    view, _ = register_view(str(tmp_path), _view(spec.to_record()))
    view = current_view(str(tmp_path), "churn_player")  # the record round-trips the spec
    launcher = FakeLauncher()

    first = trigger_recompute(str(tmp_path), view, now=T0, launch=launcher)
    assert first.launched and first.pid == 1001
    command, log_path = launcher.calls[0]
    assert command[3:] == ["run", "/jobs/churn.yaml", "--force", "scoring", "--set", "data_dir=/d"]
    assert Path(log_path).parent == tmp_path / "registry" / "features" / "churn_player"

    later = trigger_recompute(
        str(tmp_path), view, now=T0 + dt.timedelta(seconds=599), launch=launcher
    )
    assert not later.launched and "cool-down" in later.reason and later.pid == 1001
    assert len(launcher.calls) == 1

    after = trigger_recompute(
        str(tmp_path), view, now=T0 + dt.timedelta(seconds=600), launch=launcher
    )
    assert after.launched and len(launcher.calls) == 2


def test_a_view_without_recompute_launches_nothing(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    launch = trigger_recompute(str(tmp_path), _view(None), now=T0, launch=launcher)
    assert not launch.launched and launcher.calls == []


def test_the_detached_launch_runs_the_command_and_logs_its_output(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "recompute.log"
    marker = tmp_path / "done"
    code = f"import pathlib; print('recomputing'); pathlib.Path({str(marker)!r}).touch()"
    launch_detached([sys.executable, "-c", code], str(log_path))
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    time.sleep(0.2)
    assert "recomputing" in log_path.read_text()
