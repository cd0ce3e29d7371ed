"""Batch scoring on the shared local Ray: actor pool, executor tasks, killed workers and drivers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from raypipe.inference.batch import executor_runner, run_batch_inference
from raypipe.inference.model import read_model
from raypipe.inference.planning import InferenceSpec
from raypipe.io.dataset import read_dataset
from tests.unit.inference.data import oracle_scores, train_model, write_files

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("model") / "model.ubj", trees=150)


def _assert_exactly_once(output: Path, model_path: Path, inputs: Path) -> None:
    table = read_dataset(str(output))
    ids = table["player_id"].to_pylist()
    expected = oracle_scores(model_path, inputs)
    assert len(ids) == len(set(ids)) == len(expected)
    got = dict(zip(ids, table["score"].to_pylist(), strict=True))
    keys = sorted(expected)
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], rtol=1e-6)


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _markers(output: Path) -> list[Path]:
    return list((output / "_inference" / "units").glob("*.json"))


def _run_and_kill_one_worker(
    runner_factory, tmp_path: Path, model_path: Path
) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    inputs = tmp_path / "in"
    write_files(inputs, files=16, rows=20_000)
    pids = tmp_path / "pids"
    output = tmp_path / "out"
    spec = InferenceSpec(
        input_url=str(inputs),
        output_url=str(output),
        id_columns=("player_id",),
        batch_rows=4096,
        worker_pid_dir=str(pids),
    )
    result: dict[str, object] = {}

    def drive() -> None:
        try:
            result["report"] = run_batch_inference(
                read_model(str(model_path)), spec, runner_factory()
            )
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    thread = threading.Thread(target=drive)
    thread.start()
    _wait_for(lambda: len(_markers(output)) >= 1)
    victim = int(sorted(pids.iterdir())[0].name)
    os.kill(victim, signal.SIGKILL)
    killed_at = len(_markers(output))
    thread.join(timeout=120)
    assert "error" not in result, result.get("error")
    assert killed_at < 16, "the kill landed after the run's last unit"
    _assert_exactly_once(output, model_path, inputs)
    return result["report"], victim


def test_the_actor_pool_survives_a_sigkilled_actor(
    ray_runtime: object, tmp_path: Path, model_path: Path
) -> None:
    from raypipe.engine.scoring import ActorPoolRunner, pool_shape

    shape = pool_shape(actors=2)
    assert (shape.actors, shape.threads, shape.num_cpus) == (2, 1, 0.0)
    report, victim = _run_and_kill_one_worker(lambda: ActorPoolRunner(shape), tmp_path, model_path)
    started = {int(path.name) for path in (tmp_path / "pids").iterdir()}
    assert victim in started and len(started) >= 2, "work went on in another worker process"
    assert report.rows_out == 16 * 20_000  # type: ignore[attr-defined]


def test_executor_tasks_survive_a_sigkilled_worker(
    ray_executor: object, tmp_path: Path, model_path: Path
) -> None:
    report, _ = _run_and_kill_one_worker(
        lambda: executor_runner(ray_executor, workers=2), tmp_path, model_path
    )
    assert report.rows_out == 16 * 20_000  # type: ignore[attr-defined]


def test_one_runner_keeps_its_actor_warm_across_runs_and_models(
    ray_runtime: object, tmp_path: Path, model_path: Path
) -> None:
    from raypipe.engine.scoring import ActorPoolRunner, pool_shape

    other_model = train_model(tmp_path / "other.ubj", trees=20)
    inputs = tmp_path / "in"
    write_files(inputs, files=3, rows=2_000)
    pids = tmp_path / "pids"  # each model load writes its process id here
    with ActorPoolRunner(pool_shape(1)) as runner:
        for index, model in enumerate((model_path, other_model, model_path)):
            output = tmp_path / f"out-{index}"
            spec = InferenceSpec(
                input_url=str(inputs),
                output_url=str(output),
                id_columns=("player_id",),
                worker_pid_dir=str(pids),
            )
            report = run_batch_inference(read_model(str(model)), spec, runner)
            assert report.scored_units == 3
            _assert_exactly_once(output, model, inputs)  # each run scored with its own model
        loaded_in = [int(path.name) for path in pids.iterdir()]
        assert len(loaded_in) == 1, "every run used the same actor process"
        # Warm between runs, the pool holds no CPU: a job's next stage gets the whole node
        # (a held reservation starved 1-CPU nodes and hung the two-node job test).
        import ray

        assert ray.available_resources().get("CPU") == ray.cluster_resources()["CPU"]
        assert runner.nodes.gather() == {ray_runtime.driver_node_id}  # type: ignore[attr-defined]
    _wait_for(lambda: _ended(loaded_in[0]), timeout=30)  # closing the runner ended it


def _ended(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()  # empty once a zombie
    except OSError:
        return True


DRIVER = """
import sys
from raypipe.engine.runtime import RayRuntime, RuntimeOptions
from raypipe.engine.scoring import ActorPoolRunner, pool_shape
from raypipe.inference import InferenceSpec, read_model, run_batch_inference
model, inputs, output, address = sys.argv[1:5]
with RayRuntime(RuntimeOptions(address=address)):
    spec = InferenceSpec(input_url=inputs, output_url=output, id_columns=("player_id",),
                         batch_rows=4096)
    run_batch_inference(read_model(model), spec, ActorPoolRunner(pool_shape(1)))
"""


def test_resume_after_the_driver_is_sigkilled_scores_only_the_rest(
    ray_runtime: object, tmp_path: Path, model_path: Path
) -> None:
    import ray

    from raypipe.engine.scoring import ActorPoolRunner, pool_shape

    inputs, output = tmp_path / "in", tmp_path / "out"
    write_files(inputs, files=16, rows=20_000)
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(model_path), str(inputs), str(output), address],
        cwd=Path(__file__).parents[2],
    )
    try:
        _wait_for(lambda: len(_markers(output)) >= 2 or driver.poll() is not None, timeout=90)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=30)
    spec = InferenceSpec(
        input_url=str(inputs), output_url=str(output), id_columns=("player_id",), batch_rows=4096
    )
    report = run_batch_inference(
        read_model(str(model_path)), spec, ActorPoolRunner(pool_shape(1)), resume=True
    )
    assert report.resumed_units >= 2 and report.scored_units == 16 - report.resumed_units
    assert report.scored_units > 0, "the driver finished before it was killed"
    _assert_exactly_once(output, model_path, inputs)
    again = run_batch_inference(read_model(str(model_path)), spec, ActorPoolRunner(pool_shape(1)))
    assert again.already_done


def test_cli_scores_quarantines_advises_and_reruns_as_a_no_op(
    ray_runtime: object, tmp_path: Path, model_path: Path
) -> None:
    import typer
    from typer.testing import CliRunner

    from raypipe.cli.infer import register

    app = typer.Typer()
    register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep `infer` a named sub-command
    inputs, output = tmp_path / "in", tmp_path / "out"
    write_files(inputs, files=3, rows=1000)
    (inputs / "broken.parquet").write_bytes(b"PAR1 not really")
    args = [
        "infer",
        "--model",
        str(model_path),
        "--input",
        str(inputs),
        "--output",
        str(output),
        "--id-columns",
        "player_id",
        "--actors",
        "2",
        "--on-bad-file",
        "quarantine",
    ]
    first = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert first.exit_code == 0, first.output
    assert "scored 3,000 rows" in first.output
    assert "quarantined" in first.output and "broken.parquet" in first.output
    assert "bottleneck" in first.output
    assert sorted(read_dataset(str(output))["player_id"].to_pylist()) == list(range(3000))
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "nothing to do" in again.output
