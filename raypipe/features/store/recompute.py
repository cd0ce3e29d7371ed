"""A freshness SLA breach launches the view's recompute job (with a cool-down).

A served view may name the job that produces its source (``recompute`` in its registry record,
set by the ``features.materialize`` stage's ``recompute:`` option)::

    recompute: {job: jobs/churn.yaml, stage: scoring_features, set: [...], cooldown: 1h}

When a freshness check finds the SLA breached, :func:`trigger_recompute` starts
``raypipe run JOB --force STAGE --set ...`` as a detached subprocess (the normal run path: the
job's own caching, run record and locks apply) and records the launch beside the registry
(``<registry>/<view>/recompute.json``). Within ``cooldown`` of the last launch it does not launch
again, so a check that runs every minute while the recompute is still working does not pile up
runs. The check does not wait for the job: it alerts and returns; the next materialization
serves what the recompute produced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raypipe.features.store.registry import ServedView, registry_url
from raypipe.io.fs import join_url, resolve_fs, write_bytes_atomic

__all__ = ["Launch", "Launcher", "RecomputeSpec", "launch_detached", "trigger_recompute"]

log = logging.getLogger(__name__)

#: Starts ``command`` writing its output to ``log_path``; returns the process id.
Launcher = Callable[[Sequence[str], str], int]


@dataclass(frozen=True)
class RecomputeSpec:
    """The job that recomputes a view's source, as stored in the view's registry record."""

    job: str
    stage: str | None = None
    overrides: tuple[str, ...] = ()
    cooldown_s: float = 3600.0

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RecomputeSpec:
        return cls(
            job=str(record["job"]),
            stage=record.get("stage"),
            overrides=tuple(record.get("set", ())),
            cooldown_s=float(record.get("cooldown_s", 3600.0)),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "stage": self.stage,
            "set": list(self.overrides),
            "cooldown_s": self.cooldown_s,
        }

    def command(self) -> list[str]:
        """``raypipe run JOB [--force STAGE] [--set K=V ...]`` with this interpreter."""
        argv = [sys.executable, "-c", "from raypipe.cli.main import main; main()", "run", self.job]
        if self.stage:
            argv += ["--force", self.stage]  # its inputs may be unchanged: rerun it anyway
        for override in self.overrides:
            argv += ["--set", override]
        return argv


@dataclass(frozen=True)
class Launch:
    """What a breach did about recomputing: launched (pid, log) or why not."""

    launched: bool
    reason: str
    pid: int | None = None
    log_path: str | None = None
    command: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {"recompute_launched": self.launched, "recompute_reason": self.reason}


def launch_detached(command: Sequence[str], log_path: str) -> int:
    """Start ``command`` in its own session (it outlives the check), output to ``log_path``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def _log_path(data_dir: str, view: ServedView, now: dt.datetime) -> str:
    stamp = now.strftime("%Y%m%dT%H%M%S")
    fs, path = resolve_fs(join_url(registry_url(data_dir), view.name))
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    folder = Path(path) if local else Path(tempfile.gettempdir()) / "raypipe-recompute"
    return str(folder / f"recompute-{stamp}.log")


def trigger_recompute(
    data_dir: str,
    view: ServedView,
    *,
    now: dt.datetime | None = None,
    launch: Launcher = launch_detached,
    storage_options: Mapping[str, Any] | None = None,
) -> Launch:
    """Launch ``view``'s recompute job after an SLA breach, unless one started within the
    cool-down. Call it only on a breach; a view without ``recompute`` launches nothing."""
    if not view.recompute:
        return Launch(False, "no recompute job configured")
    spec = RecomputeSpec.from_record(view.recompute)
    now = now or dt.datetime.now(dt.UTC)
    fs, state_path = resolve_fs(
        join_url(registry_url(data_dir), view.name, "recompute.json"), storage_options
    )
    if fs.exists(state_path):
        with fs.open(state_path, "rb") as handle:
            last = json.loads(handle.read().decode())
        since = (now - dt.datetime.fromisoformat(last["launched_at"])).total_seconds()
        if 0 <= since < spec.cooldown_s:
            reason = f"cool-down: launched {since:.0f}s ago (pid {last['pid']})"
            log.info("feature view %s: recompute not relaunched, %s", view.name, reason)
            return Launch(False, reason, last["pid"], last.get("log"), last.get("command", []))
    command = spec.command()
    log_path = _log_path(data_dir, view, now)
    pid = launch(command, log_path)
    record = {"launched_at": now.isoformat(), "pid": pid, "command": command, "log": log_path}
    write_bytes_atomic(fs, state_path, json.dumps(record, indent=1).encode())
    log.warning(
        "feature view %s: SLA breached, recompute job launched (pid %d, log %s): %s",
        view.name,
        pid,
        log_path,
        " ".join(command[3:]),
    )
    return Launch(True, "launched", pid, log_path, command)
