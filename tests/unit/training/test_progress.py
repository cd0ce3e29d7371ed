"""The training stage reports its search trials as they finish, then its refits and MLflow."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.io.dataset import write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.training.progress import ReportingRunner
from raypipe.training.stage import TrainSearchOptions, TrainSearchStage
from raypipe.training.trial import TrialRequest, TrialResult
from tests.unit.training.data import churn_table


class _TwoSlotRunner:
    slots = 2

    def __init__(self) -> None:
        self.queue: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        self.queue.append(request)

    def next_result(self) -> TrialResult:
        request = self.queue.pop(0)
        return TrialResult(request.trial_id, request.candidate, params={}, score=0.5)


def _request(trial_id: int) -> TrialRequest:
    return TrialRequest(trial_id=trial_id, candidate="xgboost", params={}, seed=0)


def test_each_finished_trial_is_reported_and_the_total_grows_with_submissions() -> None:
    seen: list[tuple[str, int, int]] = []
    runner = ReportingRunner(_TwoSlotRunner(), lambda *event: seen.append(event), planned=2)
    for trial_id in (0, 1, 2):
        runner.submit(_request(trial_id))
    runner.submit(_request(-1))
    results = [runner.next_result() for _ in range(4)]
    assert [r.trial_id for r in results] == [0, 1, 2, -1]
    assert runner.slots == 2
    assert seen == [
        ("xgboost trials", 1, 4),
        ("xgboost trials", 2, 4),
        ("xgboost trials", 3, 4),
        ("refit", 4, 4),
    ]


@pytest.mark.slow
def test_the_training_stage_reports_trials_refits_and_registration(tmp_path: Path) -> None:
    table, _ = churn_table(800, seed=2)
    url = str(tmp_path / "in")
    data = DatasetInput(url, write_dataset(url, table))
    seen: list[tuple[str, int, int]] = []
    context = StageContext(
        stage_name="train",
        data_dir=str(tmp_path),
        run_id="r",
        backend=InlineBackend(lambda *event: seen.append(event)),
    )
    options = TrainSearchOptions(
        candidates=["logistic", "random_forest"],  # the chosen model is a scikit-learn one
        trials={"logistic": 3, "random_forest": 1},
        max_rounds=20,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TrainSearchStage().run(context, {"data": data}, options)
    # MLflow checks the logged model on a named input example: no "fitted without feature names".
    assert not [w for w in caught if "feature names" in str(w.message)]
    trials = [event for event in seen if event[0].endswith("trials")]
    assert [done for _, done, _ in trials] == [1, 2, 3, 4]
    assert {task for task, _, _ in trials} == {"logistic trials", "random_forest trials"}
    refits = [event for event in seen if event[0] == "refit"]
    # 800 rows are cross-validated: only the chosen candidate is refit, and the bar completes.
    assert [done for _, done, _ in refits] == [5] and refits[-1][2] == 5
    assert seen[-1] == ("registering in MLflow", 0, 1)


def test_a_named_frame_scores_like_the_matrix_and_quietly() -> None:
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    from raypipe.training.estimators import NamedModel

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    model = NamedModel(
        RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), "abc", "binary"
    )
    frame = pd.DataFrame(X[:, ::-1], columns=["c", "b", "a"])  # other order: taken by name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(model.predict(frame), model.predict(X))
        np.testing.assert_array_equal(model.predict_proba(frame), model.predict_proba(X))
