from __future__ import annotations

import math

import numpy as np
import pytest

from raypipe.errors import SpecError
from raypipe.training.search import InlineRunner, SearchSpec, run_search
from raypipe.training.spaces import ParamSpec, SpaceSpec, resolve_spaces
from raypipe.training.trial import TrialData, TrialRequest, TrialResult, TrialWorker


class FakeRunner:
    """Two slots; score = a known function of the params, better with more rows; some fail."""

    slots = 2

    def __init__(self) -> None:
        self.queue: list[TrialRequest] = []
        self.seen: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        assert len(self.queue) < self.slots
        self.queue.append(request)
        self.seen.append(request)

    def next_result(self) -> TrialResult:
        request = self.queue.pop(0)
        x = float(request.params["x"])
        if x > 0.9:
            return TrialResult(
                request.trial_id,
                request.candidate,
                dict(request.params),
                math.nan,
                rung=request.rung,
                error="ValueError: x too large",
            )
        score = 1.0 - (x - 0.3) ** 2 + 0.01 * request.row_fraction
        return TrialResult(
            request.trial_id,
            request.candidate,
            dict(request.params),
            score,
            rung=request.rung,
            row_fraction=request.row_fraction,
        )


SPACE = SpaceSpec(params={"x": ParamSpec(type="float", low=0.0, high=1.0)}, fixed={"k": 1})


def test_budget_failures_and_promotions() -> None:
    runner = FakeRunner()
    spec = SearchSpec(
        candidate="fake", space=SPACE, n_trials=30, seed=3, row_fraction=0.25, eta=3.0
    )
    result = run_search(spec, runner, maximize=True)
    rung0 = [r for r in runner.seen if r.rung == 0]
    rung1 = [r for r in runner.seen if r.rung == 1]
    assert len(rung0) == 30  # the trial budget counts configurations
    assert all(r.row_fraction == 0.25 for r in rung0) and all(r.row_fraction == 1.0 for r in rung1)
    assert all(r.params["k"] == 1 for r in runner.seen)
    ok_rung0 = [t for t in result.trials if t.rung == 0 and t.ok]
    assert len(rung1) >= len(ok_rung0) // 3  # the best third was promoted to all rows
    # Promoted configurations are the best rung-0 ones.
    best_rung0 = sorted(ok_rung0, key=lambda t: -t.score)[: len(ok_rung0) // 3]
    assert {t.trial_id for t in best_rung0} <= {r.trial_id for r in rung1}
    assert result.best is not None and result.best.rung == 1
    failures = [t for t in result.trials if not t.ok]
    assert len(failures) == len(result.failures)
    assert abs(result.best.params["x"] - 0.3) < 0.15


def test_same_seed_same_configurations() -> None:
    first, second = FakeRunner(), FakeRunner()
    spec = SearchSpec(candidate="fake", space=SPACE, n_trials=12, seed=7)
    run_search(spec, first, maximize=True)
    run_search(spec, second, maximize=True)
    assert [r.params for r in first.seen] == [r.params for r in second.seen]


def test_time_budget_stops_asking() -> None:
    runner = FakeRunner()
    spec = SearchSpec(candidate="fake", space=SPACE, n_trials=1000, time_budget_s=0.0)
    result = run_search(spec, runner, maximize=True)
    assert result.trials == [] and result.best is None


def test_real_worker_records_a_failing_configuration_and_goes_on() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(np.float32)
    data = TrialData(
        task="binary",
        x={"native": {"fit": x[:300], "valid": x[300:]}},
        y={"fit": y[:300], "valid": y[300:]},
        feature_names=("a", "b", "c"),
        feature_types={"native": ("q", "q", "q")},
    )
    space = SpaceSpec(params={"max_depth": ParamSpec(type="int", low=-2, high=4)})
    spec = SearchSpec(candidate="xgboost", space=space, n_trials=12, seed=0, max_rounds=20)
    result = run_search(spec, InlineRunner(TrialWorker(data)), maximize=True)
    assert len(result.trials) == 12
    assert result.failures and all("max_depth" in t.error for t in result.failures)
    assert result.best is not None and result.best.score > 0.7
    assert result.best.history and result.best.best_iteration is not None


def test_spaces_defaults_and_overrides() -> None:
    spaces = resolve_spaces(["xgboost"], {"xgboost": {"fixed": {"max_bin": 64}}})
    assert spaces["xgboost"].fixed["max_bin"] == 64
    assert spaces["xgboost"].fixed["tree_method"] == "hist"
    assert "learning_rate" in spaces["xgboost"].params
    with pytest.raises(SpecError) as info:
        resolve_spaces(["xgboost", "svm"], {"xgboost": {"params": {"eta": {"type": "float"}}}})
    text = str(info.value)
    assert "`svm`" in text and "spaces.xgboost" in text


def test_promotions_wait_for_the_whole_rung_and_go_best_first() -> None:
    runner = FakeRunner()
    spec = SearchSpec(candidate="fake", space=SPACE, n_trials=24, seed=5, row_fraction=0.1, eta=4)
    result = run_search(spec, runner, maximize=True)
    rungs = [r.rung for r in runner.seen]
    assert rungs == sorted(rungs)  # no full-row trial before every rung-0 trial was submitted
    rung0 = {t.trial_id: t.score for t in result.trials if t.rung == 0 and t.ok}
    ranked = sorted(rung0, key=lambda tid: -rung0[tid])
    promoted = [r.trial_id for r in runner.seen if r.rung == 1]
    assert promoted == ranked[: math.ceil(len(ranked) / 4)]  # the rung's top quarter, in order


def test_a_time_budget_leaves_half_for_the_promotions(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 0.0}
    monkeypatch.setattr("raypipe.training.search.time.perf_counter", lambda: clock["now"])

    class TickingRunner(FakeRunner):
        def next_result(self) -> TrialResult:
            clock["now"] += 1.0  # every trial takes one second of the budget
            return super().next_result()

    runner = TickingRunner()
    spec = SearchSpec(
        candidate="fake", space=SPACE, n_trials=1000, time_budget_s=20.0, row_fraction=0.1
    )
    run_search(spec, runner, maximize=True)
    started_rung0 = [r for r in runner.seen if r.rung == 0]
    assert 10 <= len(started_rung0) <= 12  # new configurations stop at half the budget
    assert any(r.rung == 1 for r in runner.seen)
    assert clock["now"] <= 20.0 + runner.slots


class ShuffledRunner(FakeRunner):
    """Three slots; trials finish in an order drawn from ``order_seed`` (like actors would)."""

    slots = 3

    def __init__(self, order_seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(order_seed)
        self.finished: list[tuple[int, int]] = []

    def next_result(self) -> TrialResult:
        pick = int(self.rng.integers(len(self.queue)))
        self.queue.insert(0, self.queue.pop(pick))
        self.finished.append((self.queue[0].rung, self.queue[0].trial_id))
        return super().next_result()


@pytest.mark.parametrize("row_fraction", [1.0, 0.25])
def test_completion_order_does_not_change_the_search(row_fraction: float) -> None:
    """The same seed gives the same configurations and winner whatever order trials finish in."""
    spec = SearchSpec(
        candidate="fake",
        space=SPACE,
        n_trials=24,
        seed=5,
        row_fraction=row_fraction,
        eta=3.0,
        n_startup_trials=4,
    )
    runs, finish_orders = [], set()
    for order_seed in range(4):
        runner = ShuffledRunner(order_seed)
        result = run_search(spec, runner, maximize=True)
        asked = sorted((r.rung, r.trial_id, r.params["x"]) for r in runner.seen)
        finish_orders.add(tuple(runner.finished))
        runs.append(
            (
                asked,
                [(t.rung, t.trial_id, t.score) for t in result.trials],
                result.best.trial_id,
                result.best.rung,
            )
        )
    assert len(finish_orders) > 1  # the runs did finish their trials in different orders
    assert all(run == runs[0] for run in runs[1:])
