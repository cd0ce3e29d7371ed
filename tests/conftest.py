"""Shared fixtures: one Ray runtime for the whole session, started only if a test asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("POLARS_MAX_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: Small object store: tests move little data, and the machine runs other things.
TEST_OBJECT_STORE_BYTES = 256 * 1024**2


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[object]:
    """A local Ray (2 CPUs, small object store, no dashboard) shared by every Ray test."""
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions

    runtime = RayRuntime(RuntimeOptions(num_cpus=2, object_store_bytes=TEST_OBJECT_STORE_BYTES))
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def ray_executor(ray_runtime: object) -> Iterator[object]:
    """A fresh Ray backend, whose ``map`` is the Ray executor (node ids and progress are its own);
    its warm pools end with the test."""
    from raypipe.engine.backend import RayBackend

    backend = RayBackend(ray_runtime)  # type: ignore[arg-type]
    yield backend
    backend.close()
