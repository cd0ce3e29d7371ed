"""Jobs submitted to a real two-node Ray cluster on 127.0.0.1, through Ray's job server.

One cluster (head + worker, 1 CPU each, token auth on) serves the module. The tests:
the churn job runs on both nodes; a worker node killed mid-job costs time, not data (same output
versions as a clean run); a killed driver resubmitted with ``--resume`` redoes no committed stage.
Tests that need both nodes call ``cluster.ensure_worker()`` (the worker-kill test leaves it dead).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from raypipe.driver.record import RunRecord
from raypipe.driver.state import DriverState
from raypipe.engine import submission as jobs
from tests.support.cluster import LocalCluster, local_cluster
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
TEST_JOB = Path(__file__).parent / "cluster_job" / "job.yaml"
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(cpus_per_node=1) as started:
        yield started


@pytest.fixture
def two_nodes(cluster: LocalCluster) -> LocalCluster:
    cluster.ensure_worker()
    return cluster


@pytest.fixture
def keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process CLI calls reconfigure the root logger onto pytest's capture: undo that."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    raypipe_logger = logging.getLogger("raypipe")
    monkeypatch.setattr(raypipe_logger, "level", raypipe_logger.level)


@pytest.fixture
def client(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> jobs.SubmissionClient:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(cluster.token_path))
    return jobs.connect(cluster.dashboard_url)


def submit_test_job(
    client: jobs.SubmissionClient,
    data_dir: Path,
    *,
    overrides: tuple[str, ...] = (),
    resume: bool = False,
    env_vars: dict[str, str] | None = None,
    spec: Path = TEST_JOB,
) -> str:
    return jobs.submit_job(
        client,
        jobs.JobSubmissionSpec(
            spec=spec,
            overrides=overrides,
            resume=resume,
            data_dir=str(data_dir),
            env_vars=env_vars or {},
            # `raypipe` plus the job folder's own stage kinds
            command=("python", f"{jobs.JOB_DIR}/run.py"),
        ),
    )


def follow(client: jobs.SubmissionClient, submission_id: str) -> tuple[jobs.JobOutcome, str]:
    lines: list[str] = []
    outcome = jobs.follow_job(client, submission_id, lines.append, timeout_s=JOB_TIMEOUT_S)
    return outcome, "".join(lines)


def only_run(data_dir: Path, job: str = "cluster-test") -> RunRecord:
    runs = sorted((data_dir / "jobs" / job / "runs").glob("*/run.json"))
    assert len(runs) == 1, runs
    return RunRecord.from_json(runs[0].read_text())


def output_versions(record: RunRecord) -> dict[str, str]:
    return {
        f"{stage.name}.{name}": output.version
        for stage in record.stages.values()
        for name, output in stage.outputs.items()
    }


def test_churn_job_submitted_through_the_cli_runs_on_both_nodes(
    two_nodes: LocalCluster,
    client: jobs.SubmissionClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from raypipe.spec import load_job

    churn = REPO / "jobs" / "churn.yaml"
    small = [
        "stages.events.with.players=2000",
        "stages.events.with.days=20",
        "stages.events.with.shard_players=500",  # 4 generation tasks: enough for both nodes
    ]
    # The README's job must load: a failure here is a defect, never a reason to skip.
    load_job(churn, overrides=small)
    import importlib.util

    import raypipe.cli.main as cli_main

    present = tuple(m for m in cli_main.COMMAND_MODULES if importlib.util.find_spec(m))
    wanted = present if "raypipe.cli.submit" in present else (*present, "raypipe.cli.submit")
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", wanted)
    data_dir = tmp_path / "data"
    args = ["submit", str(churn), "--address", two_nodes.dashboard_url, "--data-dir", str(data_dir)]
    for override in small:
        args += ["--set", override]
    cli_main.main(args)  # raises SystemExit unless the job SUCCEEDED

    out = capsys.readouterr().out
    submission_id = re.search(r"submitted (raysubmit_\w+)", out).group(1)  # type: ignore[union-attr]
    assert f"job {submission_id} SUCCEEDED" in out
    last_line = jobs.read_job_logs(client, submission_id).strip().splitlines()[-1]
    assert last_line in out  # followed to the end, last lines included
    record = only_run(data_dir, "churn")
    assert record.succeeded
    used = {node for stage in record.stages.values() for node in stage.node_ids}
    assert used == set(two_nodes.node_ids()), "work ran on both the head and the worker"


def test_the_cluster_refuses_a_client_with_the_wrong_token(cluster: LocalCluster) -> None:
    from raypipe.errors import RuntimeUnavailableError

    with pytest.raises(RuntimeUnavailableError, match="refused the auth token"):
        jobs.list_jobs(jobs.connect(cluster.dashboard_url, token="not-the-token"))


def test_run_address_finds_the_token_like_submit_without_ray_auth_mode(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    import subprocess
    import sys

    env = {key: value for key, value in cluster.env.items() if key != "RAY_AUTH_MODE"}
    env["HOME"] = str(tmp_path)  # the token comes from RAY_AUTH_TOKEN_PATH only
    result = subprocess.run(
        [
            sys.executable,
            str(TEST_JOB.parent / "run.py"),  # `raypipe` plus the job folder's stage kinds
            "run",
            str(TEST_JOB),
            "--address",
            cluster.gcs_address,
            "--data-dir",
            str(tmp_path / "data"),
            "--set",
            "stages.numbers.with.seconds=0",
            "--set",
            "stages.totals.with.seconds=0",
        ],
        cwd=REPO,  # workers import the test stages from the driver's folders
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert only_run(tmp_path / "data").succeeded


def test_killed_driver_resubmitted_with_resume_redoes_no_committed_stage(
    client: jobs.SubmissionClient, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    pid_file = tmp_path / "driver.pid"
    slow_totals = ("stages.totals.with.seconds=4",)
    submission_id = submit_test_job(
        client,
        data_dir,
        overrides=slow_totals,
        env_vars={"RAYPIPE_TEST_DRIVER_PID_FILE": str(pid_file)},
    )
    state = DriverState(str(data_dir), "cluster-test")

    def numbers_recorded() -> bool:
        runs = list((data_dir / "jobs" / "cluster-test" / "runs").glob("*/run.json"))
        try:
            record = RunRecord.from_json(runs[0].read_text()) if runs else None
        except ValueError:  # caught mid-write
            return False
        return record is not None and record.stages["numbers"].status == "succeeded"

    # The run record is written after the stage's commit: wait for both.
    wait_until(numbers_recorded, "`numbers` to be committed and recorded")
    assert state.read_stage_commit("totals") is None, "the driver must die mid-job"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    outcome, _ = follow(client, submission_id)
    assert outcome.status == "FAILED" and outcome.exit_code != 0
    killed = only_run(data_dir)
    assert killed.status == "running" and killed.stages["numbers"].status == "succeeded"

    resumed_id = submit_test_job(client, data_dir, overrides=slow_totals, resume=True)
    outcome, log = follow(client, resumed_id)
    assert outcome.exit_code == 0, log[-3000:]
    record = only_run(data_dir)  # the same run, continued: no second record
    assert record.run_id == killed.run_id and record.attempts == 2 and record.succeeded
    numbers, totals = record.stages["numbers"], record.stages["totals"]
    assert numbers.cached and numbers.status == "cached", log[-6000:]
    assert numbers.outputs["data"].version == killed.stages["numbers"].outputs["data"].version
    assert totals.status == "succeeded" and not totals.cached
    assert "stage numbers cached" in log
    assert jobs.read_job_logs(client, resumed_id).endswith(log[-200:])
    listed = {job.submission_id: job.status for job in jobs.list_jobs(client)}
    assert listed[submission_id] == "FAILED" and listed[resumed_id] == "SUCCEEDED"


def test_the_driver_never_runs_in_a_deleted_directory(
    client: jobs.SubmissionClient, tmp_path: Path
) -> None:
    # A working_dir this cluster has never seen (a new package): Ray 2.60 unpacks it a second
    # time, at the same path, under the running job; the driver must not be standing in it.
    job_dir = tmp_path / "job"
    shutil.copytree(TEST_JOB.parent, job_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (job_dir / "nonce.txt").write_text(str(tmp_path))
    cwd_file = tmp_path / "cwd"
    submission_id = submit_test_job(
        client,
        tmp_path / "data",
        overrides=("stages.numbers.with.seconds=0", "stages.totals.with.seconds=0"),
        env_vars={"RAYPIPE_TEST_CWD_FILE": str(cwd_file)},
        spec=job_dir / TEST_JOB.name,
    )
    outcome, log = follow(client, submission_id)
    assert outcome.exit_code == 0, log[-3000:]
    assert cwd_file.read_text() == "exists"


def test_a_failed_job_exits_with_its_drivers_own_code(
    client: jobs.SubmissionClient, tmp_path: Path
) -> None:
    # An invalid option only the cluster sees: the driver's SpecError exits 2.
    submission_id = submit_test_job(
        client, tmp_path / "data", overrides=("stages.numbers.with.parts=0",)
    )
    outcome, log = follow(client, submission_id)
    assert (outcome.status, outcome.exit_code) == ("FAILED", 2)
    assert "stages.numbers.with.parts" in log


def test_a_stopped_job_ends_stopped_and_exits_130(
    client: jobs.SubmissionClient, tmp_path: Path
) -> None:
    submission_id = submit_test_job(
        client, tmp_path / "data", overrides=("stages.numbers.with.seconds=30",)
    )
    wait_until(
        lambda: str(client.get_job_status(submission_id)) == "RUNNING",
        "the job to run",
    )
    assert jobs.stop_job(client, submission_id, wait_s=30) == "STOPPED"
    outcome, _ = follow(client, submission_id)
    assert (outcome.status, outcome.exit_code) == ("STOPPED", 130)


def test_worker_node_killed_mid_job_gives_the_clean_runs_output(
    two_nodes: LocalCluster, client: jobs.SubmissionClient, tmp_path: Path
) -> None:
    cluster = two_nodes
    clean_dir = tmp_path / "clean"
    outcome, log = follow(client, submit_test_job(client, clean_dir))
    assert outcome.exit_code == 0, log[-3000:]
    clean = only_run(clean_dir)
    assert {n for s in clean.stages.values() for n in s.node_ids} == set(cluster.node_ids())

    killed_dir = tmp_path / "killed"
    submission_id = submit_test_job(client, killed_dir)
    job_dir = killed_dir / "jobs" / "cluster-test"
    staged = job_dir / "datasets" / "numbers" / "data"
    # The first task's file is staged: tasks run on both nodes and nothing is committed yet.
    wait_until(lambda: any(staged.rglob("*.parquet")), "the first `numbers` task to write")
    assert not (job_dir / "stages").exists() or not any((job_dir / "stages").iterdir())
    worker_nodes = set(cluster.node_ids())
    cluster.kill_worker()  # tests that need it again call ensure_worker()
    outcome, log = follow(client, submission_id)
    assert outcome.exit_code == 0, log[-3000:]
    record = only_run(killed_dir)
    assert record.succeeded
    assert output_versions(record) == output_versions(clean)
    dead = worker_nodes - set(cluster.node_ids())
    assert len(dead) == 1, "the worker node is gone"
