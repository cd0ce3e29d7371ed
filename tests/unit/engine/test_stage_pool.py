"""A stage's use of the backend's warm scoring pool records the pool's nodes (no Ray started)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from raypipe.engine.backend import _SharedPool
from raypipe.inference.pool import PoolShape


class _FakeNodes:
    def __init__(self) -> None:
        self.ids = {"node-a", "node-b"}

    def gather(self) -> set[str]:
        return self.ids


class _FakeRunner:
    """Stands in for the engine's actor pool: yields one outcome per unit."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.shape = PoolShape(actors=2, threads=1, num_cpus=0.0)
        self.cluster_cpus = 2
        self.nodes = _FakeNodes()
        self.fail_after = fail_after

    def __call__(self, job: Any, units: Sequence[int]) -> Iterator[int]:
        for done, unit in enumerate(units):
            if self.fail_after is not None and done == self.fail_after:
                raise RuntimeError("a unit failed")
            yield unit


def test_each_stage_records_the_nodes_of_the_pool_it_scored_on() -> None:
    shared = _SharedPool(_FakeRunner())  # type: ignore[arg-type]
    first: set[str] = {"task-node"}
    second: set[str] = set()
    pool = shared.for_stage(first)
    assert (pool.shape.actors, pool.cluster_cpus) == (2, 2)  # the advice reads them
    assert list(pool(None, [1, 2])) == [1, 2]  # type: ignore[arg-type]
    assert first == {"task-node", "node-a", "node-b"}
    assert second == set(), "a stage that did not score records nothing of the pool"
    list(shared.for_stage(second)(None, [3]))  # type: ignore[arg-type]
    assert second == {"node-a", "node-b"}


def test_a_failed_scoring_still_records_where_it_ran() -> None:
    shared = _SharedPool(_FakeRunner(fail_after=1))  # type: ignore[arg-type]
    node_ids: set[str] = set()
    with pytest.raises(RuntimeError, match="a unit failed"):
        list(shared.for_stage(node_ids)(None, [1, 2, 3]))  # type: ignore[arg-type]
    assert node_ids == {"node-a", "node-b"}
