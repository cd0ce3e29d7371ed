"""Batch scoring on Ray: a few long-lived actors, each holding one loaded model.

Why actors and not Ray Data: on the measured 2-CPU machine Ray Data spends 60 % of the time on
its own overheads and its object-store round trips, while one process using all its CPUs is close
to the model's limit. So each actor owns a share of a node's CPUs and scores that many units
(files) at once, each on one XGBoost thread, as the in-process pool does
(:func:`~raypipe.inference.work.units_at_once` says why), while the units share the process's
model and libraries. Actors read their files straight from
storage and write their output straight to storage: the only things that cross the object store
are the model bytes (put once per run) and small outcome records.

The pool's actors are the only processes that load the model, so memory is one process per actor
whatever the dataset's size. (Plain tasks were measured to grow it: each Ray worker process a task
ever lands on keeps the scoring libraries and model loaded, and a 4x run landed on a second one,
1.22 GiB -> 1.58 GiB for all processes; the actor pool stays at 1.10-1.13 GiB.)

Fault tolerance: an actor whose process dies is restarted by Ray (``max_restarts``) and the call
it was running is resubmitted (``max_task_retries``). A unit's output names are deterministic and
its marker is written last, so a retried unit overwrites its own staged files and every row is
scored exactly once. Exceptions raised by the scoring code are not retried (the same input fails
the same way); they end the run before anything is committed.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import RayError

from raypipe.engine.nodes import ActorNodes, NodeReporting
from raypipe.errors import RaypipeError, TaskError
from raypipe.inference.ledger import UnitOutcome
from raypipe.inference.planning import ScoringJob, ScoringUnit
from raypipe.inference.pool import PoolShape
from raypipe.inference.work import UnitWorker, units_at_once

__all__ = ["ActorPoolRunner", "pool_shape"]

logger = logging.getLogger(__name__)

#: Restarts of a dead actor, and resubmissions of the call it was running.
ACTOR_MAX_RESTARTS = 4
#: Calls queued per actor beyond those it runs, so it never waits for the driver between units.
CALLS_QUEUED = 1


def pool_shape(actors: int | None = None) -> PoolShape:
    """Size the pool from the cluster: by default one actor per node, threads = CPUs per node.

    The actors reserve no CPU. A pool stays warm for the job's later scoring stages, so any
    reservation would be held while other stages run: on nodes of one CPU, two actors holding
    0.5 each left no node with room for a 1-CPU task, and the job's next stage waited forever
    (the 2-CPU Ray Data hang, in another form). The CPUs a pool uses are its threads, which
    this function sizes to the cluster.
    """
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    node_cpus = [int(node.get("Resources", {}).get("CPU", 0)) for node in nodes]
    node_cpus = [cpus for cpus in node_cpus if cpus > 0] or [1]
    total = sum(node_cpus)
    count = actors or len(node_cpus)
    threads = max(1, total // count)
    return PoolShape(actors=count, threads=threads, num_cpus=0.0)


class _ScoringActor(NodeReporting):
    """The Ray actor: the :class:`UnitWorker` of the run it serves; exceptions become data.

    The job comes with every call as a reference inside a list, which Ray passes through
    unresolved; the actor fetches it and loads the model when it first sees a run's token. So an
    actor kept warm for the next run, or restarted after its process died, loads the right model,
    and no constructor argument lives in the object store.
    """

    def __init__(self) -> None:
        import threading

        self.token: str | None = None
        self.worker: UnitWorker | None = None
        self._lock = threading.Lock()  # units run on concurrent threads; one model load

    def score(
        self, token: str, job: list[Any], nthread: int, unit: ScoringUnit
    ) -> tuple[UnitOutcome | None, BaseException | None, str]:
        try:
            with self._lock:
                if token != self.token or self.worker is None:
                    self.worker = None  # the previous run's model goes before the next one loads
                    self.worker = UnitWorker(ray.get(job[0]), nthread=nthread)
                    self.token = token
                worker = self.worker
            return worker(unit), None, ""
        except Exception as exc:
            return None, _picklable(exc), traceback.format_exc()


def _picklable(exc: BaseException) -> BaseException | None:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return None
    return exc


class ActorPoolRunner:
    """A :class:`~raypipe.inference.pool.ScoringPool` of scoring actors.

    The actors start with :meth:`start` or the first run, and stay for this runner's next runs
    (a driver that scores several inputs pays their start-up once: about 5 s of process start,
    imports and model load on the measured 2-CPU machine); :meth:`close`, the end of a ``with``
    block, or dropping the runner ends them. Memory is one process per actor, whatever the rows
    or the runs.

    Parameters
    ----------
    shape
        Actors, threads and reserved CPUs (see :func:`pool_shape`). Requires a started Ray.
    cluster_cpus
        CPUs of the cluster, for the advice (default: the pool's threads).
    """

    def __init__(self, shape: PoolShape, *, cluster_cpus: int | None = None) -> None:
        self.shape = shape
        self.cluster_cpus = cluster_cpus or shape.actors * shape.threads
        self.nodes = ActorNodes()
        self._actors: list[Any] = []

    def start(self) -> None:
        """Start every actor now, without waiting: their process start and imports overlap
        whatever the caller does next (reading the model, listing the input files)."""
        self._pool(self.shape.actors)

    def __enter__(self) -> ActorPoolRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the pool's actors."""
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []

    def _pool(self, count: int) -> list[Any]:
        if len(self._actors) < count:
            actor_class = ray.remote(_ScoringActor).options(
                num_cpus=self.shape.num_cpus,
                max_restarts=ACTOR_MAX_RESTARTS,
                max_task_retries=ACTOR_MAX_RESTARTS,
                scheduling_strategy="SPREAD",
                max_concurrency=self.shape.threads,
            )
            self._actors += [
                self.nodes.watch(actor_class.remote()) for _ in range(count - len(self._actors))
            ]
        return self._actors[:count]

    def __call__(self, job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterator[UnitOutcome]:
        import uuid

        if not units:
            return
        token = uuid.uuid4().hex
        job_box = [ray.put(job)]  # held until the run ends: a restarted actor fetches it again
        actors = self._pool(max(1, min(self.shape.actors, len(units))))
        at_once, nthread = units_at_once(self.shape.threads, math.ceil(len(units) / len(actors)))
        queue = list(reversed(units))
        in_flight: dict[Any, tuple[Any, ScoringUnit]] = {}

        def submit(actor: Any) -> None:
            unit = queue.pop()
            in_flight[actor.score.remote(token, job_box, nthread, unit)] = (actor, unit)

        finished = False
        try:
            for actor in actors:
                for _ in range(at_once + CALLS_QUEUED):
                    if queue:
                        submit(actor)
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor, unit = in_flight.pop(ready[0])
                outcome = self._get(ready[0], unit)
                if queue:
                    submit(actor)
                yield outcome
            finished = True
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=False)
            if not finished:
                self.close()  # a failed or abandoned run keeps no actor (dead, or still busy)

    @staticmethod
    def _get(ref: Any, unit: ScoringUnit) -> UnitOutcome:
        try:
            fetched: tuple[UnitOutcome | None, BaseException | None, str] = ray.get(ref)
            outcome, error, remote_traceback = fetched
        except RayError as exc:
            raise TaskError(
                f"Scoring `{unit.file.url}` could not finish: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
                hint="a scoring actor died more often than its restarts allow (out of memory? "
                "killed?); see `ray status` and the Ray logs; `--resume` keeps the units done",
            ) from exc
        if outcome is not None:
            return outcome
        if isinstance(error, RaypipeError):
            raise error
        lines = remote_traceback.strip().splitlines()
        raise TaskError(
            f"Scoring `{unit.file.url}` raised {lines[-1] if lines else 'an error'}",
            remote_traceback=remote_traceback,
            hint="the traceback is shown with --debug",
        )
