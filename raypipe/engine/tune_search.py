"""The Ray Tune engine of ``train.search`` (``engine: tune``): Tuner, OptunaSearch, ASHA.

Each candidate's search is one :class:`ray.tune.Tuner` run:

- search algorithm: Tune's ``OptunaSearch`` over the candidate's Optuna distributions (TPE,
  seeded, ``constant_liar`` like the pool's sampler) or, for ``sampler: random``, Tune's
  ``BasicVariantGenerator`` over the equivalent Tune domains (seeded ``random_state``);
- scheduler: ``ASHAScheduler(time_attr="training_iteration", max_t=max_rounds)`` for XGBoost,
  fed once per boosting round by an XGBoost callback that reports the validation metric (and
  applies early stopping itself, so the last report tells a trial that ran to its own end from
  one that ASHA stopped); other candidates report once and run first-in first-out;
- trials: a function trainable given the shared :class:`~raypipe.training.trial.TrialData`
  through ``tune.with_parameters``, with fractional CPUs (``0.5 * threads``: on a 2-CPU node,
  actors asking 1 CPU each starve tasks), ``max_concurrent_trials`` slots and
  ``reuse_actors=True``;
- budget: ``num_samples`` configurations and/or ``time_budget_s``.

Tune's results map back to the :class:`~raypipe.training.trial.TrialResult` and
:class:`~raypipe.training.search.SearchResult` objects the pool engine returns, so evaluation,
MLflow, registry and metrics downstream do not know which engine ran. A trial that raises (a bad
parameter, an actor lost to OOM) is an errored Tune trial: it becomes a failed ``TrialResult`` and
the search goes on. Tune trial ``rung``: 1 when the trial ran to its own early stop or
``max_rounds``, 0 when ASHA (or the time budget) stopped it.

:class:`TuneSearchEngine` is also a :class:`~raypipe.training.search.TrialRunner` for the final
refits (each one Ray task over the data put once in the object store).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
import xgboost as xgb
from ray import tune

from raypipe.training.estimators import xgboost_params
from raypipe.training.search import SearchResult, SearchSpec
from raypipe.training.trial import TrialData, TrialRequest, TrialResult, TrialWorker

__all__ = ["TuneSearchEngine"]

logger = logging.getLogger(__name__)

#: XGBoost metrics where higher is better (as XGBoost's own early stopping decides).
_MAXIMIZED = ("auc", "aucpr", "map", "ndcg", "pre")

# One TrialWorker per trial process, for the engine (token) that last used it: a reused Tune
# actor builds its XGBoost matrices once per search engine, like the pool's actors.
_WORKERS: dict[str, TrialWorker] = {}


@dataclass(frozen=True)
class _TuneJob:
    """What every trial of one candidate's search shares besides the data."""

    token: str
    candidate: str
    fixed: dict[str, Any]
    seed: int
    threads: int
    max_rounds: int
    early_stopping_rounds: int
    stopping_metric: str | None


class _TrialFailedError(RuntimeError):
    """A non-XGBoost trial failed; raised so that Tune records the trial as errored."""


def _worker(token: str, data: TrialData, threads: int) -> TrialWorker:
    worker = _WORKERS.get(token)
    if worker is None:
        _WORKERS.clear()
        worker = _WORKERS[token] = TrialWorker(data, nthread=threads)
    return worker


def _trial_index() -> int:
    """This trial's number in its experiment (from the folder :class:`_TrialDirName` names)."""
    return _index_from_dir(tune.get_context().get_trial_dir() or "")


def _index_from_dir(path: str) -> int:
    parts = str(path).rstrip("/").rsplit("/", 1)[-1].split("_")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "trial" and parts[1].isdigit() else -1


@dataclass(frozen=True)
class _TrialDirName:
    """Names a trial's folder ``trial_<number>_<id>``; numbers start at 0 in both generators
    (Tune's ``SearchGenerator`` counts its experiment tags from 1, ``BasicVariantGenerator``
    from 0)."""

    first: int

    def __call__(self, trial: Any) -> str:
        counter = str(trial.experiment_tag).split("_", 1)[0]
        number = int(counter) - self.first if counter.isdigit() else 0
        return f"trial_{number:05d}_{trial.trial_id}"


class _RoundReporter(xgb.callback.TrainingCallback):
    """Reports each boosting round to Tune and stops early like XGBoost's ``EarlyStopping``.

    ``score`` is the validation metric at the best round so far (by the stopping metric), the
    score the trial would return if stopped now; ``complete`` is true in the last report of a
    trial that ended by itself (early stop or ``max_rounds``).
    """

    def __init__(self, metric: str, stop_metric: str, patience: int, max_rounds: int) -> None:
        super().__init__()
        self.metric = metric
        self.stop_metric = stop_metric
        self.maximize_stop = stop_metric.startswith(_MAXIMIZED)
        self.patience = patience
        self.max_rounds = max_rounds
        self.best: float | None = None
        self.best_iteration = 0

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        valid = evals_log["valid"]
        value = float(valid[self.stop_metric][-1])
        if (
            self.best is None
            or (self.maximize_stop and value > self.best)
            or (not self.maximize_stop and value < self.best)
        ):
            self.best, self.best_iteration = value, epoch
        history = valid[self.metric]
        done = epoch - self.best_iteration >= self.patience or epoch + 1 >= self.max_rounds
        report: dict[str, Any] = {
            "score": float(history[self.best_iteration]),
            "round_score": float(history[-1]),
            "best_iteration": self.best_iteration,
            "complete": done,
        }
        if done:
            report["history"] = [float(v) for v in history]
        tune.report(report)
        return done


def _fit_xgboost(worker: TrialWorker, request: TrialRequest, job: _TuneJob) -> None:
    data = worker.data
    # The worker's matrices, built once per process (see _WORKERS).
    dfit, dvalid = worker.xgb_matrices(1.0)
    params = xgboost_params(
        dict(request.params), task=data.task, seed=request.seed, nthread=job.threads
    )
    stopping = job.stopping_metric
    if stopping == "logloss" and data.task != "binary":
        stopping = None  # log loss needs probabilities; a regression stops on RMSE
    if stopping and stopping != data.metric:
        params["eval_metric"] = [data.metric, stopping]
    reporter = _RoundReporter(
        data.metric, stopping or data.metric, job.early_stopping_rounds, job.max_rounds
    )
    xgb.train(
        params,
        dfit,
        num_boost_round=job.max_rounds,
        evals=[(dvalid, "valid")],
        callbacks=[reporter],
        verbose_eval=False,
    )


def _trainable(config: dict[str, Any], data: TrialData, job: _TuneJob) -> None:
    """Tune's function trainable: one configuration of ``job.candidate``."""
    index = _trial_index()
    worker = _worker(job.token, data, job.threads)
    request = TrialRequest(
        trial_id=index,
        candidate=job.candidate,
        params={**job.fixed, **config},
        seed=job.seed * 1_000_003 + index,
        max_rounds=job.max_rounds,
        early_stopping_rounds=job.early_stopping_rounds,
        stopping_metric=job.stopping_metric,
    )
    if job.candidate == "xgboost":
        _fit_xgboost(worker, request, job)
        return
    result = worker(request)
    if not result.ok:
        raise _TrialFailedError(result.error)
    tune.report({"score": result.score, "complete": True, "best_iteration": 0})


def _refit(data: TrialData, threads: int, request: TrialRequest) -> TrialResult:
    return TrialWorker(data, nthread=threads)(request)


class TuneSearchEngine:
    """Runs each candidate's search as a Ray Tune experiment; refits run as Ray tasks.

    Parameters
    ----------
    data
        Matrices shared by every trial.
    threads
        Threads per trial; each trial reserves ``0.5 * threads`` CPUs.
    concurrency
        Trials at once (default: cluster CPUs // ``threads``, at least 1).
    grace_rounds
        ASHA's first rung, in boosting rounds (capped at ``max_rounds``).
    reduction_factor
        ASHA's reduction factor.
    storage_path
        Where Tune writes its experiment folders; default a temporary folder removed by
        :meth:`close`.
    """

    def __init__(
        self,
        data: TrialData,
        *,
        threads: int = 1,
        concurrency: int | None = None,
        grace_rounds: int = 10,
        reduction_factor: float = 3.0,
        storage_path: str | None = None,
    ) -> None:
        self.data = data
        self.threads = max(1, threads)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.size = max(1, concurrency or cpus // self.threads)
        self.grace_rounds = max(1, grace_rounds)
        self.reduction_factor = reduction_factor
        self._own_storage = storage_path is None
        self.storage_path = storage_path or tempfile.mkdtemp(prefix="raypipe-tune-")
        self._token = uuid.uuid4().hex
        self._data_ref: Any = None
        self._remote = ray.remote(_refit).options(num_cpus=0.5 * self.threads)
        self._inflight: dict[Any, tuple[TrialRequest, float]] = {}

    # -- the search --------------------------------------------------------------------------

    def search(self, spec: SearchSpec, *, maximize: bool) -> SearchResult:
        """Search ``spec.candidate``'s space with Tune; see the module docstring."""
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
        from ray.tune.search import BasicVariantGenerator

        started = time.perf_counter()
        job = _TuneJob(
            token=self._token,
            candidate=spec.candidate,
            fixed=dict(spec.space.fixed),
            seed=spec.seed,
            threads=self.threads,
            max_rounds=spec.max_rounds,
            early_stopping_rounds=spec.early_stopping_rounds,
            stopping_metric=spec.stopping_metric,
        )
        if spec.row_fraction < 1.0:
            logger.info("engine tune trains on all rows; `row_fraction` is not used")
        param_space: dict[str, Any] = {}
        if spec.sampler == "random" or not spec.space.params:
            search_alg: Any = BasicVariantGenerator(
                random_state=spec.seed, max_concurrent=self.size
            )
            first = 0
            param_space = {
                name: getattr(tune, function)(*args)
                for name, (function, args) in spec.space.tune_samplers().items()
            }
        else:
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(
                seed=spec.seed,
                n_startup_trials=min(spec.n_startup_trials, max(1, spec.n_trials // 3)),
                constant_liar=True,
            )
            search_alg = OptunaSearch(
                spec.space.distributions(),
                metric="score",
                mode="max" if maximize else "min",
                sampler=sampler,
            )
            first = 1
        scheduler: Any = FIFOScheduler()
        if spec.candidate == "xgboost":
            scheduler = ASHAScheduler(
                time_attr="training_iteration",
                max_t=spec.max_rounds,
                grace_period=min(self.grace_rounds, spec.max_rounds),
                reduction_factor=self.reduction_factor,
            )
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, data=self.data, job=job),
            {"cpu": 0.5 * self.threads},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="score",
                mode="max" if maximize else "min",
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=spec.n_trials,
                time_budget_s=spec.time_budget_s,
                max_concurrent_trials=None if first == 0 else self.size,
                reuse_actors=True,
                trial_dirname_creator=_TrialDirName(first),
            ),
            run_config=tune.RunConfig(
                name=f"{spec.candidate}-{uuid.uuid4().hex[:8]}",
                storage_path=self.storage_path,
                verbose=0,
            ),
        )
        with _quiet_console():
            grid = tuner.fit()
        result = SearchResult(candidate=spec.candidate, maximize=maximize)
        # ResultGrid is a sequence by `__len__`/`__getitem__`; it declares no `__iter__`.
        outcomes = [_trial_result(grid[i], spec) for i in range(len(grid))]
        result.trials = sorted(outcomes, key=lambda t: (t.finished_at, t.trial_id))
        complete = [t for t in result.trials if t.ok and t.rung == 1 and not math.isnan(t.score)]
        ok = complete or [t for t in result.trials if t.ok and not math.isnan(t.score)]
        if ok:
            result.best = max(ok, key=lambda t: t.score if maximize else -t.score)
        result.wall_s = time.perf_counter() - started
        logger.info(
            "%s (tune): %d trials (%d stopped early by ASHA or the budget, %d failed) in %.1fs; "
            "best %s",
            spec.candidate,
            len(result.trials),
            sum(1 for t in result.trials if t.ok and t.rung == 0),
            len(result.failures),
            result.wall_s,
            None if result.best is None else round(result.best.score, 5),
        )
        return result

    def __call__(self, spec: SearchSpec, *, maximize: bool) -> SearchResult:
        return self.search(spec, maximize=maximize)

    # -- the TrialRunner for refits -----------------------------------------------------------

    @property
    def slots(self) -> int:
        return self.size

    def submit(self, request: TrialRequest) -> None:
        if self._data_ref is None:
            self._data_ref = ray.put(self.data)
        ref = self._remote.remote(self._data_ref, self.threads, request)
        self._inflight[ref] = (request, time.time())

    def next_result(self) -> TrialResult:
        from ray.exceptions import RayError

        ready, _ = ray.wait(list(self._inflight), num_returns=1)
        request, submitted = self._inflight.pop(ready[0])
        try:
            result: TrialResult = ray.get(ready[0])
            return result
        except RayError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            return TrialResult.failure(
                request, started_at=submitted, error=f"{type(exc).__name__}: {first_line}"
            )

    def close(self) -> None:
        """Drop the data reference and remove Tune's temporary experiment folders."""
        self._data_ref = None
        if self._own_storage:
            shutil.rmtree(self.storage_path, ignore_errors=True)


def _trial_result(result: Any, spec: SearchSpec) -> TrialResult:
    metrics = dict(result.metrics or {})
    config = dict(result.config or {})
    index = _index_from_dir(str(getattr(result, "path", "") or ""))
    finished = float(metrics.get("timestamp", time.time()))
    train_s = float(metrics.get("time_total_s", 0.0))
    request = TrialRequest(
        trial_id=index,
        candidate=spec.candidate,
        params={**spec.space.fixed, **config},
        seed=spec.seed * 1_000_003 + index,
        max_rounds=spec.max_rounds,
    )
    if result.error is not None or "score" not in metrics:
        error = result.error or RuntimeError("the trial reported no result")
        return TrialResult.failure(request, started_at=finished - train_s, error=_message(error))
    return TrialResult(
        trial_id=index,
        candidate=spec.candidate,
        params=dict(request.params),
        score=float(metrics["score"]),
        rung=1 if metrics.get("complete") else 0,
        seed=request.seed,
        best_iteration=int(metrics.get("best_iteration", 0)),
        history=tuple(metrics.get("history") or ()),
        train_s=train_s,
        started_at=finished - train_s,
        finished_at=finished,
    )


def _message(error: BaseException) -> str:
    """The trial's own exception (Tune wraps it in a ``RayTaskError``), first line first."""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, _TrialFailedError):
        return str(cause)[:2000]  # already `<Type>: <message>` and the trial's traceback
    return f"{type(cause).__name__}: {str(cause)[:2000]}"


@contextmanager
def _quiet_console() -> Iterator[None]:
    """Tune's legacy console output, which ``verbose=0`` silences (the new one prints boxes)."""
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous
