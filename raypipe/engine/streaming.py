"""Stream partitions as Ray actors: each actor holds one :class:`PartitionOperator` unchanged.

An actor keeps its partition's open windows in memory between micro-batches, which is what
makes incremental windows cheap. Actors restart when they die (``max_restarts=-1``) and Ray
retries the interrupted call (``max_task_retries=-1``): the restarted actor reloads its
checkpoint (state + stream position) in ``__init__`` and the retried batch is processed as if
for the first time; sinks are idempotent, so nothing is counted twice. Actors ask for a fraction
of a CPU (see ARCHITECTURE.md: whole-CPU actors starve tasks on small machines).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import ray

from raypipe.features.streaming.operator import PartitionOperator, PartitionReport, StreamConfig

__all__ = ["RayStreamBackend"]


class RayStreamBackend:
    """A :class:`~raypipe.features.streaming.operator.StreamBackend` of Ray actors."""

    def __init__(self, config: StreamConfig, *, num_cpus: float = 0.25) -> None:
        actor_cls = ray.remote(PartitionOperator).options(
            num_cpus=num_cpus,
            max_restarts=-1,
            max_task_retries=-1,
            runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1"}},
        )
        self._actors: list[Any] = [actor_cls.remote(config, p) for p in range(config.partitions)]

    @property
    def actors(self) -> list[Any]:
        """The actor handles, in partition order (tests kill one to check resuming)."""
        return list(self._actors)

    def positions(self) -> list[int]:
        return list(ray.get([a.position.remote() for a in self._actors]))

    def watermarks(self) -> list[int]:
        return list(ray.get([a.watermark.remote() for a in self._actors]))

    def process(
        self, parts: Sequence[pl.DataFrame], max_event_ts: int | None, position: int
    ) -> list[PartitionReport]:
        refs = [
            a.process.remote(part, max_event_ts, position)
            for a, part in zip(self._actors, parts, strict=True)
        ]
        return list(ray.get(refs))

    def flush(self, position: int) -> list[PartitionReport]:
        return list(ray.get([a.flush.remote(position) for a in self._actors]))

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []
