"""A stage kind from an installed package runs in a job on Ray, its tasks on Ray workers."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from raypipe.driver import RunOptions, StageStatus, run_job
from raypipe.engine.backend import RayBackend
from raypipe.spec import load_job
from tests.support.plugin_package import PACKAGE, plugin_package  # noqa: F401 - fixture

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("plugin_package")]

SPEC = """\
name: plugin-on-ray
data_dir: {data_dir}
stages:
  squares: {{uses: plugin.squares, with: {{rows: 1000, parts: 4}}}}
  total:   {{uses: '{package}.stages:TotalStage', inputs: {{data: squares.data}}}}
"""


@pytest.fixture
def stages_shipped_by_value(request: pytest.FixtureRequest) -> Iterator[None]:
    """Ship the package's task functions to the workers inside the tasks.

    Installed for real, the package is importable on every node; here it lives in a temporary
    folder that the session's already running workers do not have on their path.
    """
    request.getfixturevalue("plugin_package")
    module = importlib.import_module(f"{PACKAGE}.stages")
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.usefixtures("stages_shipped_by_value")
def test_installed_stage_kinds_run_on_ray(ray_runtime, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(data_dir=tmp_path / "data", package=PACKAGE))
    job = load_job(spec, env={})
    record = run_job(
        job,
        backend=RayBackend(ray_runtime),
        driver_node=lambda: ray_runtime.driver_node_id,
        options=RunOptions(),
    )
    assert record.status == StageStatus.SUCCEEDED
    squares = record.stages["squares"]
    assert squares.rows_out == 1000
    assert squares.node_ids == [ray_runtime.driver_node_id]  # its 4 tasks ran on Ray
    assert record.stages["total"].metrics["total"] == sum(v * v for v in range(1000))
