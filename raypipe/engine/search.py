"""The Ray side of hyperparameter search: a small pool of long-lived trial actors.

Each actor wraps :class:`raypipe.training.trial.TrialWorker` unchanged. The matrices are put in
the object store once and every actor builds its XGBoost DMatrix once, so dispatching a trial is
one actor method call (milliseconds), against about 3 s for Tune's fresh actor per trial on the
measured 2-CPU machine. The driver keeps Optuna's sampler and is the only MLflow writer.

Actors reserve fractional CPUs (``threads * 0.5``) so that, on a 2-CPU node, two 1-thread actors
leave room for the driver's other tasks (actors asking 1 CPU each starve tasks and hang). An actor
whose process dies (e.g. out of memory) is replaced and its trial is reported as failed; the
search goes on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from raypipe.engine.nodes import ActorNodes, NodeReporting
from raypipe.training.trial import TrialData, TrialRequest, TrialResult, TrialWorker

__all__ = ["ActorPoolRunner"]

logger = logging.getLogger(__name__)

ACTOR_MAX_RESTARTS = 2


class _TrialActor(NodeReporting):
    def __init__(self, data: TrialData, nthread: int) -> None:
        self.worker = TrialWorker(data, nthread=nthread)

    def ready(self) -> bool:
        return True

    def run(self, request: TrialRequest) -> TrialResult:
        return self.worker(request)


class ActorPoolRunner:
    """A :class:`~raypipe.training.search.TrialRunner` over ``actors`` Ray actors.

    Parameters
    ----------
    data
        Matrices shared by every trial; put in the object store once.
    actors
        Pool size (default: cluster CPUs // ``threads``, at least 1).
    threads
        Threads per trial.
    node_ids
        Where the nodes of the pool's actors are added (the stage backend's ``node_ids``).
    """

    def __init__(
        self,
        data: TrialData,
        *,
        actors: int | None = None,
        threads: int = 1,
        node_ids: set[str] | None = None,
    ) -> None:
        self.threads = max(1, threads)
        self.nodes = ActorNodes(node_ids)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.size = max(1, actors or cpus // self.threads)
        started = time.perf_counter()
        # Held for the pool's life: a replacement actor is built from this same object.
        self._data_ref: Any = ray.put(data)
        self.put_s = time.perf_counter() - started
        # Ray's own restarts warn when constructor arguments live in the object store, so a dead
        # actor is replaced here instead (its trial is reported as failed).
        self._remote_cls = ray.remote(_TrialActor).options(num_cpus=0.5 * self.threads)
        self.replaced = 0
        self._actors: list[Any] = [self._new_actor() for _ in range(self.size)]
        self._idle = list(range(self.size))
        self._inflight: dict[Any, tuple[int, TrialRequest, float]] = {}

    def _new_actor(self) -> Any:
        return self.nodes.watch(self._remote_cls.remote(self._data_ref, self.threads))

    @property
    def slots(self) -> int:
        return self.size

    def wait_ready(self) -> float:
        """Block until every actor is constructed; returns the seconds it took."""
        started = time.perf_counter()
        ray.get([actor.ready.remote() for actor in self._actors])
        return time.perf_counter() - started

    def submit(self, request: TrialRequest) -> None:
        if not self._idle:
            raise RuntimeError("no idle trial actor: submit at most `slots` trials at once")
        index = self._idle.pop()
        ref = self._actors[index].run.remote(request)
        self._inflight[ref] = (index, request, time.time())

    def next_result(self) -> TrialResult:
        ready, _ = ray.wait(list(self._inflight), num_returns=1)
        ref = ready[0]
        index, request, submitted = self._inflight.pop(ref)
        self._idle.append(index)
        try:
            result: TrialResult = ray.get(ref)
            return result
        except RayError as exc:
            logger.warning("trial %s lost its actor: %s", request.trial_id, exc)
            if isinstance(exc, RayActorError) and self.replaced < ACTOR_MAX_RESTARTS * self.size:
                self._actors[index] = self._new_actor()
                self.replaced += 1
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            return TrialResult.failure(
                request, started_at=submitted, error=f"{type(exc).__name__}: {first_line}"
            )

    def close(self) -> None:
        """Kill the pool's actors (their data goes with them)."""
        self.nodes.gather()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        self._idle = []
        self._data_ref = None
