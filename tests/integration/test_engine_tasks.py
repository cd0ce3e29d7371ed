"""The Ray task executor on the shared local runtime."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from raypipe.engine.tasks import RayExecutor
from raypipe.errors import DataError, TaskError

pytestmark = pytest.mark.ray

logger = logging.getLogger("tests.worker")


def square(value: int) -> int:
    return value * value


def fail_loudly(value: int) -> int:
    logger.info("about to look at item %d", value)
    if value == 3:
        raise ZeroDivisionError("item 3 cannot be divided")
    return value


def raise_data_error(value: int) -> int:
    raise DataError(
        f"`file-{value}.csv` line 7, column `amount`: expected float64, received 'x'",
        hint="fix the file",
    )


def die_once(marker_dir: str, value: int) -> int:
    """Kill this worker process the first time it sees item 1 (a marker file remembers)."""
    marker = Path(marker_dir) / f"died-{value}"
    if value == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return value * 10


def test_results_come_back_in_order_with_node_ids(ray_runtime: object) -> None:
    progress: list[tuple[str, int, int]] = []
    executor = RayExecutor(ray_runtime, lambda *event: progress.append(event))  # type: ignore[arg-type]
    assert executor.map(square, list(range(12)), name="square", num_cpus=0.5) == [
        value * value for value in range(12)
    ]
    assert executor.node_ids == {ray_runtime.driver_node_id}  # type: ignore[attr-defined]
    assert progress[0] == ("square", 0, 12) and progress[-1] == ("square", 12, 12)


def test_a_failing_task_reports_its_error_and_log_lines(ray_executor: RayExecutor) -> None:
    with pytest.raises(TaskError) as info:
        ray_executor.map(fail_loudly, [1, 2, 3, 4], name="fragile")
    error = info.value
    assert "ZeroDivisionError: item 3 cannot be divided" in error.message
    assert "`fragile`" in error.message
    assert any("about to look at item 3" in line for line in error.log_lines)
    assert "Traceback" in error.remote_traceback


def test_raypipe_errors_keep_their_type_and_hint(ray_executor: RayExecutor) -> None:
    with pytest.raises(DataError) as info:
        ray_executor.map(raise_data_error, [5], name="ingest")
    assert "`file-5.csv` line 7" in info.value.message
    assert info.value.hint == "fix the file"


def test_a_killed_worker_is_retried(ray_executor: RayExecutor, tmp_path: Path) -> None:
    from functools import partial

    results = ray_executor.map(partial(die_once, str(tmp_path)), [0, 1, 2], name="fragile")
    assert results == [0, 10, 20]
    assert (tmp_path / "died-1").exists()


def read_generations(url: str, _item: int) -> list[int]:
    """A task that reads its input by URL alone, in a Ray worker (no pins of its own)."""
    from raypipe.io.dataset import read_dataset

    return sorted(read_dataset(url)["gen"].to_pylist())


def test_tasks_read_the_version_their_stage_was_pinned_to(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    from functools import partial

    import pyarrow as pa

    from raypipe.io.dataset import DatasetWriter
    from raypipe.io.manifest import pinned_manifests, read_manifest

    url = str(tmp_path / "ds")

    def commit(generation: int) -> None:
        writer = DatasetWriter(url, keep_versions=1, grace_seconds=3600)
        table = pa.table({"gen": pa.array([generation] * (4 + generation), pa.int64())})
        writer.commit(writer.write(table), schema=table.schema)

    commit(0)
    with pinned_manifests({url: read_manifest(url)}):  # the stage opened v1
        commit(1)  # a rerun commits v2
        seen = ray_executor.map(partial(read_generations, url), [0, 1], name="read")
    assert seen == [[0] * 4, [0] * 4]
