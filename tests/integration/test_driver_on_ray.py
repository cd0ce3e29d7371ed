"""The driver on the shared Ray runtime: stages run as Ray tasks and record their nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.driver import JobFailedError, RunOptions, StageStatus, run_job
from raypipe.engine.backend import RayBackend
from raypipe.errors import TaskError
from raypipe.spec import load_job
from tests.support.fake_stages import fake_kinds  # noqa: F401 - fixture

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("fake_kinds")]

SPEC = """\
name: on-ray
data_dir: {data_dir}
stages:
  make:  {{uses: test.make, with: {{rows: 1000, parts: 4}}}}
  left:  {{uses: test.double, inputs: {{data: make.data}}}}
  right: {{uses: test.double, inputs: {{data: make.data}}, with: {{factor: 3}}}}
"""


def test_stages_run_on_ray_and_record_node_ids(ray_runtime, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(data_dir=tmp_path / "data"))
    job = load_job(spec, env={})
    record = run_job(
        job,
        backend=RayBackend(ray_runtime),
        driver_node=lambda: ray_runtime.driver_node_id,
        options=RunOptions(),
    )
    assert record.status == StageStatus.SUCCEEDED
    assert record.stages["make"].node_ids == [ray_runtime.driver_node_id]
    assert record.stages["make"].rows_out == 1000
    assert record.stages["right"].metrics["sum"] == 3 * sum(range(1000))


def test_a_task_failure_fails_the_stage_with_the_workers_error(ray_runtime, tmp_path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(data_dir=tmp_path / "data"))
    job = load_job(spec, env={}, overrides=["stages.make.with.fail=true"])
    with pytest.raises(JobFailedError) as info:
        run_job(
            job,
            backend=RayBackend(ray_runtime),
            driver_node=lambda: ray_runtime.driver_node_id,
        )
    assert isinstance(info.value.first_error, TaskError)
    assert "ValueError: part" in info.value.first_error.message
    assert info.value.record.stages["left"].status == StageStatus.SKIPPED
