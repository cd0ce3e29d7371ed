"""Model selection: candidates compared on validation rows only, test rows scored once, and the
same seed giving the same chosen model and metrics bit for bit (in-process, no Ray)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from raypipe.training import experiment
from raypipe.training.experiment import TrainingSpec, prepare, run_training
from raypipe.training.search import InlineRunner
from raypipe.training.spaces import resolve_spaces
from raypipe.training.trial import TrialWorker
from tests.unit.training.data import churn_table

CANDIDATES = ["xgboost", "logistic", "hist_gb", "random_forest"]


def _spec(seed: int = 7) -> TrainingSpec:
    return TrainingSpec(
        label="churned",
        spaces=resolve_spaces(CANDIDATES),
        trials={"xgboost": 4, "logistic": 2, "hist_gb": 2, "random_forest": 2},
        id_columns=("player_id",),
        drop_columns=("cutoff",),
        seed=seed,
        max_rounds=40,
        early_stopping_rounds=5,
    )


def _train(rows: int, seed: int = 7):
    table, _ = churn_table(rows, seed=3)
    spec = _spec(seed)
    prepared = prepare(table, spec)
    report = run_training(prepared, spec, InlineRunner(TrialWorker(prepared.data, nthread=1)))
    return prepared, report


def _fingerprint(report) -> tuple:
    """Everything that must repeat bit for bit: choice, params, model bytes, every metric."""
    best = report.best
    return (
        best.candidate,
        sorted(best.final.params.items()),
        best.final.model if not best.final.model_format.startswith("sklearn") else None,
        pickle.dumps(sorted(best.test_metrics.items())),
        report.test_scores.tobytes(),
        pickle.dumps(report.selection.to_dict()),
        pickle.dumps(
            [(c.candidate, sorted(c.valid_metrics.items()), c.cv_scores) for c in report.candidates]
        ),
        pickle.dumps(
            [(t.candidate, t.trial_id, t.score, sorted(t.params.items())) for t in report.trials]
        ),
    )


@pytest.mark.parametrize("cross_validation", [True, False])
def test_same_seed_same_data_gives_the_same_model_and_metrics_bit_for_bit(
    cross_validation: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not cross_validation:
        monkeypatch.setattr(experiment, "CV_MAX_ROWS", 0)
    prepared, first = _train(1200)
    _, second = _train(1200)
    assert bool(prepared.cv_folds) is cross_validation
    assert _fingerprint(first) == _fingerprint(second)


def test_winner_is_chosen_on_validation_rows_and_only_it_scores_the_test_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(experiment, "CV_MAX_ROWS", 0)
    prepared, report = _train(1200)
    for matrices in prepared.data.x.values():
        assert set(matrices) == {"fit", "valid"}  # trial workers never hold test rows
    assert set(prepared.data.y) == {"fit", "valid"}
    selection = report.selection
    assert selection.rows == "validation" and selection.cv_folds == 0
    assert selection.n_rows == len(prepared.valid_rows)
    assert set(selection.scores) == set(CANDIDATES)
    best_valid = max(selection.scores, key=selection.scores.__getitem__)
    assert selection.chosen == report.best.candidate == best_valid
    for candidate in report.candidates:
        assert math.isclose(
            candidate.valid_metrics["roc_auc"], selection.scores[candidate.candidate]
        )
        assert bool(candidate.test_metrics) == (candidate is report.best)
        assert "test" not in candidate.final.predictions
    assert report.test_scores.shape == prepared.y_test.shape


def test_small_data_is_compared_by_cross_validation_with_fold_scores() -> None:
    prepared, report = _train(1200)
    selection = report.selection
    assert len(prepared.cv_folds) == experiment.CV_FOLDS == selection.cv_folds
    assert selection.rows == "cross-validation"
    assert selection.n_rows == len(prepared.fit_rows) + len(prepared.valid_rows)
    for candidate in report.candidates:
        assert len(candidate.cv_scores) == experiment.CV_FOLDS
        assert math.isclose(np.mean(candidate.cv_scores), selection.scores[candidate.candidate])
    chosen = max(selection.scores, key=selection.scores.__getitem__)
    assert report.best.candidate == chosen and report.best.final.model is not None
    assert 0.5 < report.best.test_metrics["roc_auc"] <= 1.0


@pytest.mark.parametrize("candidate", ["random_forest", "logistic"])
def test_a_scikit_learn_winner_scores_the_test_rows_from_its_skops_bytes(candidate: str) -> None:
    table, _ = churn_table(3_000, seed=3)
    spec = _spec()
    spec = TrainingSpec(
        **{**spec.__dict__, "spaces": resolve_spaces([candidate]), "trials": {candidate: 2}}
    )
    prepared = prepare(table, spec)
    report = run_training(prepared, spec, InlineRunner(TrialWorker(prepared.data, nthread=1)))
    assert report.best.candidate == candidate
    assert report.best.final.model_format == "sklearn-skops"
    assert len(report.test_scores) == len(prepared.y_test)
    assert 0.5 < report.best.test_metrics["roc_auc"] <= 1.0
