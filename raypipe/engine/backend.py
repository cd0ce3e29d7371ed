"""The Ray backend: what a stage may ask of the engine, built once per process by the CLI.

:class:`RayBackend` is the :class:`~raypipe.engine.tasks.RayExecutor` of a started
:class:`~raypipe.engine.runtime.RayRuntime` plus every capability a stage may ask for (see
:mod:`raypipe.stages.backend`): trial actors (``raypipe.training.search.TrialBackend``), Ray Tune
(``TuneBackend``), federated client actors (``raypipe.federated.backend.FederationBackend``),
the warm scoring pool (``raypipe.inference.pool.ScoringBackend``) and Ray Serve services
(``raypipe.serving.backend.ServingBackend``). Each factory is called on a
backend that holds a started runtime, so none of them looks at global Ray state to decide how to
run. :mod:`raypipe.engine.inline` is the in-process twin (``--inline`` and unit tests).

The scoring pool is the backend's, not a stage's: its actors start with the first request and
stay warm for every later ``inference.score`` stage (and ``raypipe infer``) of the process,
until :meth:`RayBackend.close`. A local Ray starts with the first capability that needs it
(:meth:`~raypipe.engine.runtime.RayRuntime.start`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from raypipe.engine.runtime import RayRuntime
from raypipe.engine.tasks import ProgressCallback, RayExecutor
from raypipe.stages.base import CancelToken

if TYPE_CHECKING:
    from raypipe.engine.scoring import ActorPoolRunner
    from raypipe.engine.tune_search import TuneSearchEngine
    from raypipe.federated.clients import ClientShard, FailureInjection
    from raypipe.federated.simulation import ClientBackend
    from raypipe.inference.ledger import UnitOutcome
    from raypipe.inference.planning import ScoringJob, ScoringUnit
    from raypipe.inference.pool import PoolShape, ScoringPool
    from raypipe.serving.spec import ServiceSpec
    from raypipe.training.search import TrialRunner
    from raypipe.training.trial import TrialData

__all__ = ["RayBackend"]


class _WarmPools:
    """The scoring pools of one backend and its stage views, by requested size."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: dict[int | None, _SharedPool] = {}


class _SharedPool:
    """An actor pool that one stage uses at a time (stages of a job may run concurrently)."""

    def __init__(self, runner: ActorPoolRunner) -> None:
        self._runner = runner
        self._lock = threading.Lock()

    def for_stage(self, node_ids: set[str]) -> _StagePool:
        return _StagePool(self, node_ids)

    @property
    def shape(self) -> PoolShape:
        return self._runner.shape

    @property
    def cluster_cpus(self) -> int:
        return self._runner.cluster_cpus

    def __call__(self, job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterator[UnitOutcome]:
        with self._lock:
            yield from self._runner(job, units)

    def node_ids(self) -> set[str]:
        return set(self._runner.nodes.gather())

    def close(self) -> None:
        self._runner.close()


class _StagePool:
    """A stage's use of a shared pool: the nodes of the pool's actors go in its record."""

    def __init__(self, shared: _SharedPool, node_ids: set[str]) -> None:
        self._shared = shared
        self._node_ids = node_ids
        self.shape = shared.shape
        self.cluster_cpus = shared.cluster_cpus

    def __call__(self, job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterator[UnitOutcome]:
        try:
            yield from self._shared(job, units)
        finally:
            self._node_ids |= self._shared.node_ids()


class RayBackend(RayExecutor):
    """Tasks, trial actors, Tune, federated actors and scoring pools on a started Ray.

    Parameters
    ----------
    runtime
        The started (or joined) runtime.
    on_progress, cancel_token
        As for :class:`~raypipe.engine.tasks.RayExecutor`; :meth:`for_stage` gives each stage
        its own.

    Examples
    --------
    >>> with RayRuntime() as runtime:  # doctest: +SKIP
    ...     backend = RayBackend(runtime)
    ...     try:
    ...         run_job(job, backend=backend)
    ...     finally:
    ...         backend.close()
    """

    name = "ray"

    def __init__(
        self,
        runtime: RayRuntime,
        on_progress: ProgressCallback | None = None,
        cancel_token: CancelToken | None = None,
        *,
        _pools: _WarmPools | None = None,
    ) -> None:
        super().__init__(runtime, on_progress, cancel_token)
        self._pools = _pools or _WarmPools()

    def for_stage(
        self, on_progress: ProgressCallback | None, cancel_token: CancelToken
    ) -> RayBackend:
        return RayBackend(self._runtime, on_progress, cancel_token, _pools=self._pools)

    def close(self) -> None:
        """End the warm scoring pools (the runtime itself is its owner's to stop)."""
        with self._pools.lock:
            pools, self._pools.pools = list(self._pools.pools.values()), {}
        for pool in pools:
            pool.close()

    # -- capabilities ------------------------------------------------------------------------

    def trial_runner(
        self, data: TrialData, *, actors: int | None = None, threads: int = 1
    ) -> TrialRunner:
        from raypipe.engine.search import ActorPoolRunner

        self._runtime.start()
        return ActorPoolRunner(data, actors=actors, threads=threads, node_ids=self.node_ids)

    def tune_search(
        self,
        data: TrialData,
        *,
        threads: int = 1,
        concurrency: int | None = None,
        grace_rounds: int = 10,
    ) -> TuneSearchEngine:
        from raypipe.engine.tune_search import TuneSearchEngine  # Tune is slow to import

        self._runtime.start()
        return TuneSearchEngine(
            data, threads=threads, concurrency=concurrency, grace_rounds=grace_rounds
        )

    def federation(
        self,
        shards: Sequence[ClientShard],
        *,
        num_cpus: float = 0.5,
        failures: FailureInjection | None = None,
    ) -> ClientBackend:
        from raypipe.engine.federation import RayFederation

        self._runtime.start()
        return RayFederation(shards, num_cpus=num_cpus, failures=failures, node_ids=self.node_ids)

    def deploy_service(self, spec: ServiceSpec) -> None:
        from raypipe.engine.serving import deploy

        self._runtime.start()
        deploy(spec)

    def scoring_pool(self, actors: int | None = None) -> ScoringPool:
        """The warm actor pool of ``actors`` actors (default: one per node, all its CPUs).

        On one machine whose Ray has not started, the default pool scores in this process:
        Ray would start and give one actor with all the CPUs, the same work seconds later
        (as ``raypipe infer`` does). Once Ray runs (another stage's tasks), the actor pool
        keeps the CPUs it uses accounted for in Ray. A stage that starts Ray while this process
        scores shares the CPUs with it unaccounted until the scoring ends.
        """
        if actors is None and self._runtime.is_local and not self._runtime.started:
            from raypipe.inference.pool import InlineScoringPool

            return InlineScoringPool()
        from raypipe.engine.scoring import ActorPoolRunner, pool_shape

        self._runtime.start()
        with self._pools.lock:
            pool = self._pools.pools.get(actors)
            if pool is None:
                runner = ActorPoolRunner(pool_shape(actors), cluster_cpus=self._runtime.cpus)
                runner.start()  # actors start while the caller reads the model and plans
                pool = self._pools.pools[actors] = _SharedPool(runner)
        return pool.for_stage(self.node_ids)
