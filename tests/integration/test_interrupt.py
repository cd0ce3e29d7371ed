"""Ctrl-C and SIGTERM during ``raypipe run``, on a real process with its own local Ray.

The job's slow stage has tasks that sleep, then an act that cannot be taken back (a ``published``
file, standing for registering a model), then a commit. An interrupt while its tasks run must
exit 130 (SIGINT) or 143 (SIGTERM), say ``interrupted`` and how to continue, leave neither the
act nor the commit behind, record the run as interrupted, leave no Ray process of the run alive,
and ``--resume`` must finish the same run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SPEC = """\
name: slowjob
data_dir: {data_dir}
stages:
  make: {{uses: test.make, with: {{rows: 20, parts: 2}}}}
  slow: {{uses: test.slow, inputs: {{data: make.data}}, with: {{parts: 2, seconds: {seconds}}}}}
  after: {{uses: test.double, inputs: {{data: slow.data}}}}
"""


def start_run(spec: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAYPIPE_DEBUG": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_cli", "run", str(spec), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def run_record(job_dir: Path) -> dict:
    runs = sorted((job_dir / "runs").glob("*/run.json"))
    assert len(runs) == 1, runs
    return json.loads(runs[0].read_text())


def wait_for_slow_tasks(job_dir: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        try:
            if run_record(job_dir)["stages"]["slow"]["status"] == "running":
                time.sleep(2.0)  # its tasks are scheduled and sleeping
                return
        except (AssertionError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError("the slow stage never started")


def ray_processes_of(session_pid: int) -> list[str]:
    """Live processes of the run's session (its Ray workers, raylet, GCS), but not zombies."""
    return [cmdline for _, cmdline in session_processes(session_pid)]


def session_processes(session_pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the live processes of a session, zombies left out."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            state, session = fields[0], int(fields[3])
        except (OSError, IndexError, ValueError):
            continue
        if session == session_pid and state != "Z":
            found.append((int(proc.name), (proc / "cmdline").read_text().replace("\0", " ")))
    return found


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"]
)
def test_an_interrupted_run_stops_commits_nothing_after_and_resumes(
    tmp_path: Path, signum: int, exit_code: int
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(data_dir=tmp_path / "data", seconds=60))
    job_dir = tmp_path / "data" / "jobs" / "slowjob"
    process = start_run(spec)
    wait_for_slow_tasks(job_dir, process)
    interrupted_at = time.monotonic()
    os.killpg(process.pid, signum)  # like Ctrl-C: the whole foreground group gets it
    output, _ = process.communicate(timeout=60)

    assert process.returncode == exit_code, output[-3000:]
    assert time.monotonic() - interrupted_at < 30, "stopped at the next safe point, not at 60 s"
    assert "interrupted" in output and "--resume" in output and "`slow`" in output
    assert "Traceback" not in output
    slow_dir = job_dir / "datasets" / "slow"
    assert not (slow_dir / "published").exists(), "nothing irreversible after the interrupt"
    assert not (slow_dir / "data" / "_manifest.json").exists()
    assert not (job_dir / "stages" / "slow.json").exists()
    record = run_record(job_dir)
    assert record["status"] == "interrupted"
    assert record["stages"]["make"]["status"] == "succeeded"
    assert record["stages"]["slow"]["status"] == "interrupted"
    assert record["stages"]["after"]["status"] == "pending"
    time.sleep(2.0)
    assert ray_processes_of(process.pid) == [], "the run's Ray was shut down"

    spec.write_text(SPEC.format(data_dir=tmp_path / "data", seconds=0))
    resumed = start_run(spec, "--resume")
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output[-3000:]
    record = run_record(job_dir)  # the same run, continued
    assert record["status"] == "succeeded" and record["attempts"] == 2
    assert record["stages"]["make"]["status"] == "cached"
    assert record["stages"]["slow"]["status"] == "succeeded"
    assert (slow_dir / "published").read_text() == record["run_id"]


def test_a_run_whose_local_ray_node_dies_says_so_and_exits_5(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(data_dir=tmp_path / "data", seconds=60))
    job_dir = tmp_path / "data" / "jobs" / "slowjob"
    process = start_run(spec)
    wait_for_slow_tasks(job_dir, process)
    raylets = [pid for pid, cmd in session_processes(process.pid) if "/raylet/raylet " in cmd]
    assert len(raylets) == 1
    os.kill(raylets[0], signal.SIGKILL)  # what the out-of-memory killer does
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 5, output[-3000:]
    assert "error: Run" in output and "the local Ray node died" in output
    assert "--resume" in output and "Traceback" not in output
    assert run_record(job_dir)["stages"]["slow"]["status"] == "interrupted"
    assert not (job_dir / "datasets" / "slow" / "published").exists()
