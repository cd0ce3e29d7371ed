from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pyarrow as pa
import pytest

from raypipe.driver import JobFailedError, RunOptions, StageStatus, run_job
from raypipe.engine.inline import InlineBackend
from raypipe.errors import RaypipeError
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.spec import load_job
from tests.support.fake_stages import RUN_LOG, fake_kinds  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("fake_kinds")

SPEC = """\
name: chain
data_dir: {data_dir}
stages:
  make:   {{uses: test.make, with: {{rows: 30, parts: 3}}}}
  left:   {{uses: test.double, inputs: {{data: make.data}}, with: {{factor: 2}}}}
  right:  {{uses: test.double, inputs: {{data: make.data}}, with: {{factor: 5}}}}
  final:  {{uses: test.double, inputs: {{data: left.data, extra: right.data}}}}
"""


def load(tmp_path: Path, *overrides: str):
    spec = tmp_path / "chain.yaml"
    spec.write_text(SPEC.format(data_dir=tmp_path / "data"))
    return load_job(spec, overrides=overrides, env={})


def run(job, **options):
    progress: list[tuple[str, int, int]] = []
    record = run_job(
        job,
        backend=InlineBackend(),
        driver_node=lambda: "node-0",
        options=RunOptions(**options),
    )
    return record, progress


def test_runs_in_dependency_order_and_writes_a_run_record(tmp_path: Path) -> None:
    record, _ = run(load(tmp_path))
    assert RUN_LOG[0] == "make" and RUN_LOG[-1] == "final"
    assert record.status == StageStatus.SUCCEEDED
    make, left, final = (record.stages[name] for name in ("make", "left", "final"))
    assert make.rows_out == 30 and left.rows_in == 30
    assert left.metrics["sum"] == 2 * sum(range(30))
    assert final.metrics["sum"] == 4 * sum(range(30))
    assert final.inputs["data"].version == left.outputs["data"].version
    assert make.node_ids == ["node-0"]
    job_dir = tmp_path / "data" / "jobs" / "chain"
    saved = json.loads((job_dir / "runs" / record.run_id / "run.json").read_text())
    assert saved["status"] == "succeeded"
    assert saved["stages"]["left"]["outputs"]["data"]["version"] == left.outputs["data"].version


def test_the_driver_node_is_asked_as_each_stage_ends(tmp_path: Path) -> None:
    """A local Ray starts with the first stage that needs it: a stage that ran no task records
    the driver's node as it is when the stage ends, not when the run began."""
    nodes = iter(["", "node-1", "node-1", "node-1"])  # no Ray yet for `make`; started after
    record = run_job(load(tmp_path), backend=InlineBackend(), driver_node=lambda: next(nodes))
    assert record.stages["make"].node_ids == []
    assert record.stages["final"].node_ids == ["node-1"]


def test_unchanged_stages_are_cached_and_changed_ones_rerun(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raypipe.driver.run")
    first, _ = run(load(tmp_path))
    RUN_LOG.clear()
    second, _ = run(load(tmp_path))
    assert RUN_LOG == []
    assert all(stage.status == StageStatus.CACHED for stage in second.stages.values())
    assert second.stages["final"].outputs == first.stages["final"].outputs

    RUN_LOG.clear()
    third, _ = run(load(tmp_path, "stages.right.with.factor=6"))
    assert sorted(RUN_LOG) == ["final", "right"]
    assert third.stages["left"].cached and not third.stages["right"].cached
    reruns = [r.getMessage() for r in caplog.records if "runs again" in r.getMessage()]
    assert reruns == [
        f"stage {name} runs again: its code, options or inputs changed since its last commit"
        for name in ("right", "final")
    ]


def test_a_stage_whose_output_moved_since_its_commit_runs_again_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raypipe.driver.run")
    first, _ = run(load(tmp_path))
    output = first.stages["make"].outputs["data"]
    writer = DatasetWriter(output.url)
    moved = writer.commit(writer.write(pa.table({"x": [1]}), part=0))
    RUN_LOG.clear()
    again, _ = run(load(tmp_path))
    assert RUN_LOG == ["make"]  # it rewrote its rows: the same version, so the rest is cached
    assert again.stages["make"].outputs["data"].version == output.version
    assert (
        f"stage make runs again: output data is at version {moved.version}, "
        f"not its commit's {output.version}"
    ) in caplog.messages


def test_force_reruns_a_stage_and_same_data_keeps_its_version(tmp_path: Path) -> None:
    first, _ = run(load(tmp_path))
    RUN_LOG.clear()
    again, _ = run(load(tmp_path), force=frozenset({"make"}))
    assert RUN_LOG[0] == "make"
    # make rewrote identical rows: same version, so its consumers stay cached.
    make_version = first.stages["make"].outputs["data"].version
    assert again.stages["make"].outputs["data"].version == make_version
    assert again.stages["left"].cached


def test_a_failed_stage_skips_its_downstream_and_resume_finishes(tmp_path: Path) -> None:
    job = load(tmp_path, "stages.make.with.fail=true")
    with pytest.raises(JobFailedError) as info:
        run(job)
    record = info.value.record
    assert record.stages["make"].status == StageStatus.FAILED
    assert "told to fail" in (record.stages["make"].error or "")
    assert {record.stages[n].status for n in ("left", "right", "final")} == {StageStatus.SKIPPED}

    RUN_LOG.clear()
    resumed, _ = run(load(tmp_path), resume=True)
    assert resumed.run_id == record.run_id and resumed.attempts == 2
    assert resumed.status == StageStatus.SUCCEEDED
    assert RUN_LOG[0] == "make"


def test_resume_with_nothing_to_resume_says_so(tmp_path: Path) -> None:
    run(load(tmp_path))
    with pytest.raises(RaypipeError, match="Nothing to resume"):
        run(load(tmp_path), resume=True)


def test_resume_skips_stages_committed_before_a_crash(tmp_path: Path) -> None:
    job = load(tmp_path)
    run(job)
    # Simulate a crash after `make` and `left` committed: the run record says running.
    from raypipe.driver.state import DriverState

    state = DriverState(str(tmp_path / "data"), "chain")
    assert state.latest_unfinished_run() is None
    (tmp_path / "data" / "jobs" / "chain" / "stages" / "right.json").unlink()
    RUN_LOG.clear()
    second, _ = run(job)
    assert RUN_LOG == ["right"]
    assert second.stages["final"].cached  # right rewrote the same data: same version


def test_two_jobs_with_a_stage_of_the_same_name_share_a_data_dir_untouched(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    def job(name: str, rows: int):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(
            f"name: {name}\ndata_dir: {data_dir}\n"
            f"stages:\n  make: {{uses: test.make, with: {{rows: {rows}}}}}\n"
            "  left: {uses: test.double, inputs: {data: make.data}}\n"
        )
        return load_job(spec, env={})

    first, _ = run(job("churn", 30))
    other, _ = run(job("federated", 50))
    assert first.stages["make"].outputs["data"].url == str(
        data_dir / "jobs" / "churn" / "datasets" / "make" / "data"
    )
    assert other.stages["make"].outputs["data"].url.startswith(str(data_dir / "jobs" / "federated"))
    RUN_LOG.clear()
    again, _ = run(job("churn", 30))
    # The other job's run changed nothing of this one: every stage is cached, same versions.
    assert RUN_LOG == []
    assert again.stages["left"].outputs == first.stages["left"].outputs
    assert read_dataset(first.stages["left"].outputs["data"].url).num_rows == 30
    assert read_dataset(other.stages["left"].outputs["data"].url).num_rows == 50
    assert sorted(p.name for p in (data_dir / "jobs").iterdir()) == ["churn", "federated"]


def test_the_readme_jobs_write_to_separate_folders_of_one_data_dir(tmp_path: Path) -> None:
    from raypipe.stages.base import StageContext

    repo = Path(__file__).resolve().parents[3]
    urls = {}
    for name in ("churn", "federated"):
        job = load_job(repo / "jobs" / f"{name}.yaml", data_dir=str(tmp_path), env={})
        context = StageContext(
            stage_name="features",
            data_dir=job.data_dir,
            run_id="r",
            backend=None,  # type: ignore[arg-type]
            job_name=job.name,
        )
        urls[name] = context.output_url("training_set")
    assert urls["churn"] != urls["federated"]
    assert urls["churn"] == str(
        tmp_path / "jobs" / "churn" / "datasets" / "features" / "training_set"
    )


def test_a_cancelled_run_stops_between_tasks_is_recorded_interrupted_and_resumes(
    tmp_path: Path,
) -> None:
    from raypipe.driver import JobInterruptedError
    from raypipe.stages.base import CancelToken

    token = CancelToken()

    class CancelAfterFirstTask(InlineBackend):
        def for_stage(self, on_progress: object, cancel: CancelToken) -> InlineBackend:
            def progress(task: str, done: int, total: int) -> None:
                if done == 1:  # one `make` task ran: Ctrl-C now
                    token.cancel("SIGTERM", exit_code=143)

            return InlineBackend(progress, cancel)

    with pytest.raises(JobInterruptedError) as info:
        run_job(load(tmp_path), backend=CancelAfterFirstTask(), cancel_token=token)
    assert info.value.exit_code == 143 and info.value.stopped == ["make"]
    assert "interrupted (SIGTERM)" in info.value.message and "--resume" in (info.value.hint or "")
    record = info.value.record
    assert record.status == StageStatus.INTERRUPTED
    assert record.stages["make"].status == StageStatus.INTERRUPTED
    assert {record.stages[n].status for n in ("left", "right", "final")} == {StageStatus.PENDING}
    job_dir = tmp_path / "data" / "jobs" / "chain"
    assert not (job_dir / "datasets" / "make" / "data" / "_manifest.json").exists()
    assert not (job_dir / "stages").exists()

    RUN_LOG.clear()
    resumed, _ = run(load(tmp_path), resume=True)
    assert resumed.run_id == record.run_id and resumed.attempts == 2
    assert resumed.status == StageStatus.SUCCEEDED and RUN_LOG[0] == "make"


def test_a_stage_checks_the_token_before_what_it_cannot_take_back(tmp_path: Path) -> None:
    from raypipe.errors import RunInterruptedError
    from raypipe.stages.base import CancelToken, StageContext

    token = CancelToken()
    context = StageContext(
        stage_name="train",
        data_dir=str(tmp_path),
        run_id="r",
        backend=InlineBackend(),
        cancel_token=token,
    )
    context.raise_if_cancelled()  # not cancelled: nothing happens
    token.cancel("SIGINT")
    token.cancel("SIGTERM", exit_code=143)  # the first reason stays
    with pytest.raises(RunInterruptedError, match=r"stage `train` interrupted \(SIGINT\)") as info:
        context.raise_if_cancelled()
    assert info.value.exit_code == 130


def write_running_run(tmp_path: Path, heartbeat: dict | None) -> str:
    """A run of `chain` that a driver left `running`, with the given heartbeat."""
    from raypipe.driver.state import DriverState

    job = load(tmp_path)
    with pytest.raises(JobFailedError):
        run(load(tmp_path, "stages.make.with.fail=true"))
    state = DriverState(job.data_dir, job.name)
    record = state.latest_unfinished_run()
    assert record is not None
    record.status, record.heartbeat = StageStatus.RUNNING, heartbeat
    state.write_run(record)
    return record.run_id


def test_resume_refuses_a_run_whose_driver_still_beats(tmp_path: Path) -> None:
    from raypipe.driver.heartbeat import beat

    heartbeat = {**beat(), "host": "gpu-box-7", "pid": 4242}
    write_running_run(tmp_path, heartbeat)
    with pytest.raises(RaypipeError, match="still running") as info:
        run(load(tmp_path), resume=True)
    assert "pid 4242 on host `gpu-box-7`" in info.value.message
    assert "kill 4242" in (info.value.hint or "")


def test_resume_takes_over_a_stale_or_dead_driver(tmp_path: Path) -> None:
    import subprocess
    import sys
    from datetime import datetime, timedelta, timezone

    from raypipe.driver.heartbeat import beat

    old = datetime.now(timezone.utc) - timedelta(seconds=120)
    run_id = write_running_run(tmp_path, {**beat(old), "host": "gpu-box-7", "pid": 4242})
    resumed, _ = run(load(tmp_path), resume=True)
    assert resumed.run_id == run_id and resumed.succeeded

    # Fresh, but it names a process of this host that has exited (a SIGKILLed driver).
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    other = tmp_path / "other"
    other.mkdir()
    run_id = write_running_run(other, {**beat(), "pid": int(dead.stdout)})
    resumed, _ = run(load(other), resume=True)
    assert resumed.run_id == run_id and resumed.succeeded
    assert resumed.heartbeat is not None and resumed.heartbeat["pid"] == os.getpid()


_TAKE_OVER = """
import os, sys, time
from pathlib import Path
from raypipe.driver.state import DriverState
data_dir, job, run_id, sync = sys.argv[1:]
state = DriverState(data_dir, job)
print("READY", flush=True)
while not Path(sync, "go").exists():
    time.sleep(0.01)
try:
    lease = state.take_over(run_id)
except Exception as exc:
    print("REFUSED", exc.message, flush=True)
    sys.exit(3)
print("TOOK", os.getpid(), flush=True)
while not Path(sync, "stop").exists():
    time.sleep(0.05)
lease.release()
"""


def _drivers(n: int, job, run_id: str, sync: Path) -> list:
    """``n`` processes that try to take run ``run_id`` over at the same moment."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-c", _TAKE_OVER, job.data_dir, job.name, run_id, str(sync)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    (sync / "go").touch()
    return procs


def test_two_resumes_at_once_only_one_takes_the_run_and_the_other_names_it(
    tmp_path: Path,
) -> None:
    run_id = write_running_run(tmp_path, None)  # no heartbeat: any driver may resume it
    job, sync = load(tmp_path), tmp_path / "sync"
    sync.mkdir()
    procs = _drivers(2, job, run_id, sync)
    try:
        first = [proc.stdout.readline().split() for proc in procs]  # type: ignore[union-attr]
        took = [line for line in first if line[0] == "TOOK"]
        refused = [" ".join(line) for line in first if line[0] == "REFUSED"]
        assert len(took) == 1 and len(refused) == 1, first
        assert f"Run `{run_id}`" in refused[0] and f"pid {took[0][1]}" in refused[0]
        # The holder is alive: a --resume of this process is refused too, naming it.
        with pytest.raises(RaypipeError, match="already driven by") as info:
            run(job, resume=True)
        assert f"pid {took[0][1]}" in info.value.message
    finally:
        (sync / "stop").touch()
        for proc in procs:
            proc.wait(timeout=60)
    resumed, _ = run(job, resume=True)  # released: the run is free again
    assert resumed.run_id == run_id and resumed.succeeded
