"""The search loop: Optuna TPE asks in the driver, trials run on a pool, results are told back.

The loop is engine-agnostic: it talks to a :class:`TrialRunner` (``submit`` a request, wait for
``next_result``). :class:`InlineRunner` runs trials in this process (unit tests); the Ray shell's
``ActorPoolRunner`` (:mod:`raypipe.engine.search`) runs them on long-lived actors that hold the
data, so a trial's overhead is a method call, not a process start.

Multi-fidelity on rows (asynchronous successive halving): every configuration is first trained on
``row_fraction`` of the fit rows, with XGBoost's early stopping on the full validation rows; its
validation score is what TPE learns from. A configuration whose score is in the best
``1 / eta`` of the rung-0 scores so far is promoted and trained on all rows; promotions run before
new configurations. Unlike ASHA on boosting rounds, a slow-learning configuration is never cut
mid-training: each trial runs to its own early stop, so low learning rates compete fairly.

Budgets: ``n_trials`` configurations and/or ``time_budget_s`` seconds (no new work is started
after it; running trials finish). A failed trial is recorded and told to Optuna as failed; the
search goes on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from raypipe.training.spaces import SpaceSpec
from raypipe.training.trial import TrialRequest, TrialResult, TrialWorker

__all__ = [
    "InlineRunner",
    "SearchEngine",
    "SearchResult",
    "SearchSpec",
    "TrialRunner",
    "run_search",
]

logger = logging.getLogger(__name__)


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
        Promotion rate: the best ``1/eta`` of rung-0 configurations are trained on all rows.
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
    eta: float = 3.0
    n_startup_trials: int = 10


@dataclass
class SearchResult:
    """Every trial result in completion order, and the best full-fidelity one."""

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
    if spec.sampler == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=spec.seed,
            n_startup_trials=min(spec.n_startup_trials, max(1, spec.n_trials // 3)),
            constant_liar=True,
        )
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    distributions = spec.space.distributions()
    multi = spec.row_fraction < 1.0
    started = time.perf_counter()
    result = SearchResult(candidate=spec.candidate, maximize=maximize)
    pending: dict[int, Any] = {}  # trial id -> optuna trial (rung 0 only)
    rung0: dict[int, float] = {}  # trial id -> rung-0 score
    params_of: dict[int, dict[str, Any]] = {}
    promoted: set[int] = set()
    asked = 0
    running = 0

    def out_of_time() -> bool:
        return (
            spec.time_budget_s is not None and time.perf_counter() - started >= spec.time_budget_s
        )

    def promotion() -> int | None:
        if not multi:
            return None
        done = sorted(rung0.items(), key=lambda kv: kv[1], reverse=maximize)
        done = [(tid, s) for tid, s in done if not math.isnan(s)]
        top = max(1, math.floor(len(done) / spec.eta)) if len(done) >= spec.eta else 0
        for tid, _ in done[:top]:
            if tid not in promoted:
                return tid
        return None

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
        nonlocal asked, running
        while running < runner.slots and not out_of_time():
            tid = promotion()
            if tid is not None:
                promoted.add(tid)
                runner.submit(request(tid, params_of[tid], rung=1))
            elif asked < spec.n_trials:
                trial = study.ask(distributions)
                tid = trial.number
                pending[tid] = trial
                params_of[tid] = dict(trial.params)
                asked += 1
                runner.submit(request(tid, params_of[tid], rung=0))
            else:
                return
            running += 1

    fill()
    while running:
        outcome = runner.next_result()
        running -= 1
        result.trials.append(outcome)
        if on_result is not None:
            on_result(outcome)
        if outcome.rung == 0 and outcome.trial_id in pending:
            trial = pending.pop(outcome.trial_id)
            if outcome.ok and not math.isnan(outcome.score):
                study.tell(trial, outcome.score)
                rung0[outcome.trial_id] = outcome.score
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        full = outcome.rung == 1 or not multi
        if (
            outcome.ok
            and full
            and (result.best is None or _better(outcome.score, result.best.score, maximize))
        ):
            result.best = outcome
        fill()
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
        len(promoted),
        len(result.failures),
        result.wall_s,
        None if result.best is None else round(result.best.score, 5),
    )
    return result
