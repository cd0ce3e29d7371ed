"""The search loop: Optuna TPE asks in the driver, trials run on a pool, results are told back.

The loop is engine-agnostic: it talks to a :class:`TrialRunner` (``submit`` a request, wait for
``next_result``). :class:`InlineRunner` runs trials in this process (unit tests); the Ray shell's
``ActorPoolRunner`` (:mod:`raypipe.engine.search`) runs them on long-lived actors that hold the
data, so a trial's overhead is a method call, not a process start.

Multi-fidelity on rows (successive halving): every configuration is first trained on
``row_fraction`` of the fit rows, with XGBoost's early stopping on the same fraction of the
validation rows (at least 10,000; see :class:`~raypipe.training.trial.TrialWorker`); that score
is what TPE learns from. When every configuration has its rung-0 score, the best ``1 / eta`` of
them are trained on all rows, best first. Waiting for the whole rung costs at most one short
rung-0 trial per slot, and it picks the true top of the rung: promoting asynchronously (ASHA)
spends full-size trials on configurations that ranked well only among the few scored so far.
Unlike ASHA on boosting rounds, no configuration is cut mid-training: each trial runs to its own
early stop, so slow learners (low learning rates) compete fairly.

Budgets: ``n_trials`` configurations and/or ``time_budget_s`` seconds (no new work is started
after it; running trials finish). With multi-fidelity, rung 0 gets the first
:data:`RUNG0_BUDGET_SHARE` of the time budget, and the promotions the rest. A failed trial is
recorded and told to Optuna as failed; the search goes on.

Determinism: with several slots, trials finish in an order that depends on timing. So that the
same seed gives the same configurations (and the same winner), results are told to Optuna in
trial order, and configuration ``k`` is asked only after trials ``0 .. k - slots`` are told: what
TPE knows at each ask never depends on which trial happened to finish first. Ties are broken by
trial number, and :attr:`SearchResult.trials` is sorted by (rung, trial). A ``time_budget_s``
is the one budget that is not reproducible (how many trials fit depends on the machine).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from raypipe.training.spaces import SpaceSpec
from raypipe.training.trial import TrialData, TrialRequest, TrialResult, TrialWorker

__all__ = [
    "InlineRunner",
    "SearchEngine",
    "SearchResult",
    "SearchSpec",
    "TrialBackend",
    "TrialRunner",
    "TuneBackend",
    "TuneSearch",
    "run_search",
]

logger = logging.getLogger(__name__)

#: Rung-0 row fraction for large tables (the training stage's ``row_fraction: auto`` on 100k+
#: rows): rung-0 trials then cost about a fifth of a full one, mostly fixed per-round work.
LARGE_TABLE_ROW_FRACTION = 0.1
#: Share of a time budget in which new configurations are started when there are promotions.
RUNG0_BUDGET_SHARE = 0.5


class TrialRunner(Protocol):
    """Where trials run: ``slots`` at once."""

    @property
    def slots(self) -> int: ...

    def submit(self, request: TrialRequest) -> None: ...

    def next_result(self) -> TrialResult:
        """Block until any submitted trial finishes; return its result."""
        ...


class InlineRunner:
    """Runs each trial in this process when its result is asked for (one slot)."""

    slots = 1

    def __init__(self, worker: TrialWorker) -> None:
        self.worker = worker
        self._queue: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    def next_result(self) -> TrialResult:
        return self.worker(self._queue.pop(0))


@dataclass(frozen=True)
class SearchSpec:
    """How to search one candidate.

    Parameters
    ----------
    sampler
        ``tpe`` (Optuna's TPE, ask/tell) or ``random``.
    row_fraction
        Rows of the first rung; 1.0 disables the multi-fidelity scheme.
    eta
        Promotion rate: the best ``1/eta`` of rung-0 configurations (rounded up) are trained on
        all rows. With rung 0 on a tenth of the rows its ranking is noisy (in a measured 50-trial
        search the best full-row model ranked 8th at rung 0), so the default keeps a sixth.
    """

    candidate: str
    space: SpaceSpec
    n_trials: int = 50
    time_budget_s: float | None = None
    seed: int = 0
    max_rounds: int = 300
    early_stopping_rounds: int = 10
    stopping_metric: str | None = None
    sampler: str = "tpe"
    row_fraction: float = 1.0
    eta: float = 6.0
    n_startup_trials: int = 10


@dataclass
class SearchResult:
    """Every trial result, by (rung, trial number), and the best full-fidelity one."""

    candidate: str
    trials: list[TrialResult] = field(default_factory=list)
    best: TrialResult | None = None
    wall_s: float = 0.0
    maximize: bool = True

    @property
    def failures(self) -> list[TrialResult]:
        return [t for t in self.trials if not t.ok]


class SearchEngine(Protocol):
    """Runs a whole search of one candidate (e.g. the Ray Tune engine,
    :mod:`raypipe.engine.tune_search`), instead of :func:`run_search` on a runner."""

    def __call__(self, spec: SearchSpec, *, maximize: bool) -> SearchResult: ...


class TuneSearch(SearchEngine, TrialRunner, Protocol):
    """A whole-search engine that also runs the final refits, and ends its work on ``close``."""

    def close(self) -> None: ...


@runtime_checkable
class TrialBackend(Protocol):
    """Trial runners over data shared by every trial (``train.search``, ``engine: pool``)."""

    def trial_runner(
        self, data: TrialData, *, actors: int | None = None, threads: int = 1
    ) -> TrialRunner:
        """A runner of ``actors`` slots (default: one per ``threads`` CPUs of the cluster);
        the caller closes it when its ``close`` exists."""
        ...


@runtime_checkable
class TuneBackend(Protocol):
    """Ray Tune searches (``train.search`` with ``engine: tune``)."""

    def tune_search(
        self,
        data: TrialData,
        *,
        threads: int = 1,
        concurrency: int | None = None,
        grace_rounds: int = 10,
    ) -> TuneSearch:
        """A Tune engine over ``data``; the caller closes it."""
        ...


def _better(a: float, b: float, maximize: bool) -> bool:
    if math.isnan(b):
        return not math.isnan(a)
    return (a > b) if maximize else (a < b)


def run_search(
    spec: SearchSpec,
    runner: TrialRunner,
    *,
    maximize: bool,
    on_result: Callable[[TrialResult], None] | None = None,
) -> SearchResult:
    """Search ``spec.candidate``'s space on ``runner``; see the module docstring."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = min(spec.n_startup_trials, max(1, spec.n_trials // 3))
    if spec.sampler == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=spec.seed, n_startup_trials=startup, constant_liar=True
        )
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    distributions = spec.space.distributions()
    multi = spec.row_fraction < 1.0
    started = time.perf_counter()
    result = SearchResult(candidate=spec.candidate, maximize=maximize)
    pending: dict[int, Any] = {}  # trial id -> optuna trial (rung 0 only)
    rung0: dict[int, float] = {}  # trial id -> rung-0 score
    params_of: dict[int, dict[str, Any]] = {}
    promotions: list[int] | None = None  # decided once rung 0 is over, best first
    asked = 0
    running = 0
    told = 0  # rung-0 trials 0 .. told - 1 are told to Optuna
    finished: dict[int, TrialResult] = {}  # rung-0 results waiting for their turn

    def elapsed() -> float:
        return time.perf_counter() - started

    def out_of_time() -> bool:
        return spec.time_budget_s is not None and elapsed() >= spec.time_budget_s

    def rung0_open() -> bool:
        if asked >= spec.n_trials:
            return False
        share = RUNG0_BUDGET_SHARE if multi else 1.0
        return spec.time_budget_s is None or elapsed() < share * spec.time_budget_s

    def best_of_rung0() -> list[int]:
        scored = [(tid, s) for tid, s in rung0.items() if not math.isnan(s)]
        # Best first; equal scores in trial order, whatever order they finished in.
        scored.sort(key=lambda kv: (-kv[1] if maximize else kv[1], kv[0]))
        return [tid for tid, _ in scored[: math.ceil(len(scored) / spec.eta)]]

    def request(tid: int, params: dict[str, Any], rung: int) -> TrialRequest:
        return TrialRequest(
            trial_id=tid,
            candidate=spec.candidate,
            params={**spec.space.fixed, **params},
            seed=spec.seed * 1_000_003 + tid,
            max_rounds=spec.max_rounds,
            early_stopping_rounds=spec.early_stopping_rounds,
            stopping_metric=spec.stopping_metric,
            row_fraction=spec.row_fraction if rung == 0 else 1.0,
            rung=rung,
        )

    def fill() -> None:
        nonlocal asked, running, promotions
        while running < runner.slots and not out_of_time():
            if rung0_open():
                # Exactly trials 0 .. asked - slots are told at this ask, never more or fewer.
                tell_in_order(asked - runner.slots + 1)
                if told < asked - runner.slots + 1:
                    return  # wait for them
                trial = study.ask(distributions)
                tid = trial.number
                pending[tid] = trial
                params_of[tid] = dict(trial.params)
                asked += 1
                runner.submit(request(tid, params_of[tid], rung=0))
            elif multi:
                if promotions is None:
                    if running:
                        return  # rung 0's last trials are still running
                    tell_in_order(None)
                    promotions = best_of_rung0()
                if not promotions:
                    return
                tid = promotions.pop(0)
                runner.submit(request(tid, params_of[tid], rung=1))
            else:
                return
            running += 1

    def tell_in_order(limit: int | None) -> None:
        """Tell the finished rung-0 results in trial order, up to trial ``limit - 1``."""
        nonlocal told
        while told in finished and (limit is None or told < limit):
            outcome = finished.pop(told)
            trial = pending.pop(told)
            if outcome.ok and not math.isnan(outcome.score):
                study.tell(trial, outcome.score)
                rung0[told] = outcome.score
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            told += 1

    fill()
    while running:
        outcome = runner.next_result()
        running -= 1
        result.trials.append(outcome)
        if on_result is not None:
            on_result(outcome)
        if outcome.rung == 0 and outcome.trial_id in pending:
            finished[outcome.trial_id] = outcome
        fill()
    tell_in_order(None)
    result.trials.sort(key=lambda t: (t.rung, t.trial_id))
    for outcome in result.trials:  # in trial order: ties go to the earlier trial
        full = outcome.rung == 1 or not multi
        if (
            outcome.ok
            and full
            and (result.best is None or _better(outcome.score, result.best.score, maximize))
        ):
            result.best = outcome
    if result.best is None:
        # Every full-fidelity trial failed (or none ran): fall back to the best rung-0 result.
        ok = [t for t in result.trials if t.ok and not math.isnan(t.score)]
        if ok:
            result.best = max(ok, key=lambda t: t.score if maximize else -t.score)
    result.wall_s = time.perf_counter() - started
    logger.info(
        "%s: %d trial runs (%d configurations, %d promoted, %d failed) in %.1fs; best %s",
        spec.candidate,
        len(result.trials),
        asked,
        sum(1 for t in result.trials if t.rung == 1),
        len(result.failures),
        result.wall_s,
        None if result.best is None else round(result.best.score, 5),
    )
    return result
