"""A training job as data: prepare the matrices, search every candidate, evaluate, choose.

:func:`prepare` splits the table (time or stratified), carves validation rows out of the
training rows the same way, fits the preprocessing on the fit rows and builds the
:class:`~raypipe.training.trial.TrialData` every trial shares. :func:`run_training` searches each
candidate on a :class:`~raypipe.training.search.TrialRunner` (or with a
:class:`~raypipe.training.search.SearchEngine`, such as Ray Tune's, if one is given), refits
each candidate's best configuration once (returning the model) and picks the best by
``select_metric`` on validation rows only: the refits' scores on the validation rows, or, when
the data is small (at most :data:`CV_MAX_ROWS` fit + validation rows), the mean over
:data:`CV_FOLDS`-fold cross-validation of each candidate's best configuration. The test rows are
never shown to a trial worker: the chosen model alone scores them, once, in the driver. The
:class:`Selection` in the report says how the winner was chosen.

Same seed, same data, same budget in trials (not seconds) give the same chosen model and the same
metrics, bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.errors import DataError
from raypipe.training.estimators import predict_scores
from raypipe.training.metrics import binary_metrics, regression_metrics
from raypipe.training.preprocess import ENCODINGS, TablePreprocessor
from raypipe.training.search import (
    SearchEngine,
    SearchResult,
    SearchSpec,
    TrialRunner,
    run_search,
)
from raypipe.training.spaces import SpaceSpec
from raypipe.training.split import Split, split_rows
from raypipe.training.trial import (
    TrialData,
    TrialRequest,
    TrialResult,
    TrialWorker,
    candidate_encoding,
)

__all__ = [
    "CandidateReport",
    "Prepared",
    "Selection",
    "TrainingReport",
    "TrainingSpec",
    "infer_task",
    "prepare",
    "run_training",
]

logger = logging.getLogger(__name__)

#: Metrics where lower is better.
LOWER_IS_BETTER = {"log_loss", "brier", "ece", "rmse", "mae", "threshold_cost"}
#: Up to this many fit + validation rows, candidates are compared by k-fold cross-validation:
#: one validation split of fewer than ~2,000 rows ranks candidates within noise (an AUC's
#: standard error there is about 0.01, the size of typical gaps between candidates).
CV_MAX_ROWS = 10_000
#: Folds of that cross-validation (stratified for a binary label).
CV_FOLDS = 5


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a training run depends on (the stage builds it from its options)."""

    label: str
    spaces: dict[str, SpaceSpec]
    trials: dict[str, int]
    task: str = "auto"
    id_columns: tuple[str, ...] = ()
    drop_columns: tuple[str, ...] = ()
    time_column: str | None = None
    test_fraction: float = 0.2
    valid_fraction: float = 0.2
    seed: int = 0
    time_budget_s: float | None = None
    max_rounds: int = 300
    early_stopping_rounds: int = 20
    stopping_metric: str | None = None
    row_fraction: float = 1.0
    sampler: str = "tpe"
    select_metric: str = "roc_auc"
    cost_fp: float = 1.0
    cost_fn: float = 1.0


@dataclass(frozen=True)
class Prepared:
    """The split, the fitted preprocessing and the shared trial data."""

    task: str
    split: Split
    valid_rows: np.ndarray  # indices into the table
    fit_rows: np.ndarray
    preprocessor: TablePreprocessor
    data: TrialData  # fit and validation rows only: trial workers never see the test rows
    y_test: np.ndarray
    x_test: dict[str, np.ndarray] = field(default_factory=dict)  # encoding -> test matrix
    #: Cross-validation folds of the fit + validation rows (small data only, else empty).
    cv_folds: tuple[TrialData, ...] = ()


@dataclass
class CandidateReport:
    candidate: str
    search: SearchResult
    final: TrialResult | None = None
    #: The selection metrics of this candidate: on the validation rows (its refit), or the
    #: means over the cross-validation folds.
    valid_metrics: dict[str, Any] = field(default_factory=dict)
    #: The selection metric per cross-validation fold (empty without cross-validation).
    cv_scores: list[float] = field(default_factory=list)
    #: Holdout metrics: only the chosen candidate has them (the test rows are scored once).
    test_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """How the winner was chosen: the metric, on which rows, and every candidate's score."""

    metric: str
    rows: str  # "validation" or "cross-validation"
    n_rows: int
    cv_folds: int
    scores: dict[str, float]
    chosen: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "rows": self.rows,
            "n_rows": self.n_rows,
            "cv_folds": self.cv_folds,
            "scores": dict(self.scores),
            "chosen": self.chosen,
            "test_rows_used": "scored once, by the chosen model only",
        }


@dataclass
class TrainingReport:
    """Per-candidate searches and holdout metrics, and the chosen one."""

    task: str
    candidates: list[CandidateReport]
    best: CandidateReport | None
    select_metric: str
    wall_s: float
    selection: Selection | None = None
    #: The chosen model's scores on the test rows.
    test_scores: np.ndarray | None = None

    @property
    def trials(self) -> list[TrialResult]:
        return [t for c in self.candidates for t in c.search.trials]


def infer_task(labels: pa.ChunkedArray, task: str) -> str:
    """``binary`` for a boolean or two-valued label, else ``regression`` (``task`` wins if set)."""
    if task != "auto":
        return task
    if pa.types.is_boolean(labels.type):
        return "binary"
    distinct = pc.unique(labels.drop_null())
    return "binary" if len(distinct) <= 2 else "regression"


def _labels(column: pa.ChunkedArray, task: str, name: str) -> np.ndarray:
    if column.null_count:
        raise DataError(
            f"label `{name}` has {column.null_count} null value(s)",
            hint="drop or fill unlabelled rows before training",
        )
    if pa.types.is_boolean(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
    if task == "binary":
        values = column.to_numpy(zero_copy_only=False)
        distinct = np.unique(values)
        if set(distinct.tolist()) <= {0, 1}:
            return np.asarray(values, dtype=np.float32)
        if len(distinct) != 2:
            raise DataError(f"binary label `{name}` has {len(distinct)} distinct values")
        positive: np.ndarray = (values == distinct[1]).astype(np.float32)
        return positive
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(f"regression label `{name}` must be numeric, received {column.type}")
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)


def prepare(table: pa.Table, spec: TrainingSpec) -> Prepared:
    """Split, preprocess and build the matrices of every candidate's encoding."""
    if spec.label not in table.column_names:
        raise DataError(
            f"label column `{spec.label}` is not in the table (columns: "
            f"{', '.join(table.column_names)})",
            hint="set `label:` to the column to predict",
        )
    task = infer_task(table.column(spec.label), spec.task)
    y_all = _labels(table.column(spec.label), task, spec.label)
    classification = task == "binary"
    split = split_rows(
        table,
        label=spec.label,
        time_column=spec.time_column,
        test_fraction=spec.test_fraction,
        seed=spec.seed,
        classification=classification,
    )
    train_table = table.take(pa.array(split.train))
    inner = split_rows(
        train_table,
        label=spec.label,
        time_column=spec.time_column if split.method == "time" else None,
        test_fraction=spec.valid_fraction,
        seed=spec.seed + 1,
        classification=classification,
    )
    fit_rows = split.train[inner.train]
    valid_rows = split.train[inner.test]
    exclude = (spec.label, *spec.id_columns, *spec.drop_columns)
    exclude += (spec.time_column,) if spec.time_column else ()
    fit_table = table.take(pa.array(fit_rows))
    pre = TablePreprocessor(exclude=exclude, seed=spec.seed).fit(fit_table, y_all[fit_rows])
    parts = {
        "valid": table.take(pa.array(valid_rows)),
        "test": table.take(pa.array(split.test)),
    }
    encodings = sorted({candidate_encoding(c) for c in spec.spaces} & set(ENCODINGS))
    x: dict[str, dict[str, np.ndarray]] = {}
    x_test: dict[str, np.ndarray] = {}
    types: dict[str, tuple[str, ...]] = {}
    for encoding in encodings:
        fit_matrix = pre.transform(fit_table, encoding, training=True)
        x[encoding] = {"fit": fit_matrix.values}
        types[encoding] = fit_matrix.feature_types
        x[encoding]["valid"] = pre.transform(parts["valid"], encoding).values
        x_test[encoding] = pre.transform(parts["test"], encoding).values
    data = TrialData(
        task=task,
        x=x,
        y={"fit": y_all[fit_rows], "valid": y_all[valid_rows]},
        feature_names=(*pre.numeric_, *pre.categorical_),
        feature_types=types,
    )
    logger.info(
        "%s split: %d fit, %d valid, %d test rows; %d numeric and %d categorical features",
        split.method,
        len(fit_rows),
        len(valid_rows),
        len(split.test),
        len(pre.numeric_),
        len(pre.categorical_),
    )
    folds: tuple[TrialData, ...] = ()
    if split.method != "time" and len(fit_rows) + len(valid_rows) <= CV_MAX_ROWS:
        folds = _cv_folds(table, y_all, split.train, spec, exclude, encodings, classification)
    return Prepared(task, split, valid_rows, fit_rows, pre, data, y_all[split.test], x_test, folds)


def _cv_folds(
    table: pa.Table,
    y_all: np.ndarray,
    rows: np.ndarray,
    spec: TrainingSpec,
    exclude: tuple[str, ...],
    encodings: list[str],
    classification: bool,
) -> tuple[TrialData, ...]:
    """:data:`CV_FOLDS` folds of the fit + validation ``rows``, each with its own preprocessing
    fitted on its training part (target encodings never see the held-out fold's labels)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    rows = np.sort(rows)
    y = y_all[rows]
    splitter: Any = (
        StratifiedKFold(CV_FOLDS, shuffle=True, random_state=spec.seed)
        if classification and np.bincount(y.astype(np.int64)).min() >= CV_FOLDS
        else KFold(CV_FOLDS, shuffle=True, random_state=spec.seed)
    )
    folds = []
    for train_index, held_index in splitter.split(np.zeros(len(rows)), y):
        train_table = table.take(pa.array(rows[train_index]))
        held_table = table.take(pa.array(rows[held_index]))
        pre = TablePreprocessor(exclude=exclude, seed=spec.seed).fit(train_table, y[train_index])
        x: dict[str, dict[str, np.ndarray]] = {}
        types: dict[str, tuple[str, ...]] = {}
        for encoding in encodings:
            train_matrix = pre.transform(train_table, encoding, training=True)
            x[encoding] = {
                "fit": train_matrix.values,
                "valid": pre.transform(held_table, encoding).values,
            }
            types[encoding] = train_matrix.feature_types
        folds.append(
            TrialData(
                task="binary" if classification else "regression",
                x=x,
                y={"fit": y[train_index], "valid": y[held_index]},
                feature_names=(*pre.numeric_, *pre.categorical_),
                feature_types=types,
            )
        )
    return tuple(folds)


def holdout_metrics(
    y: np.ndarray, scores: np.ndarray, task: str, spec: TrainingSpec
) -> dict[str, Any]:
    if task == "binary":
        return binary_metrics(y, scores, cost_fp=spec.cost_fp, cost_fn=spec.cost_fn)
    return regression_metrics(y, scores)


def run_training(
    prepared: Prepared,
    spec: TrainingSpec,
    runner: TrialRunner,
    *,
    search: SearchEngine | None = None,
) -> TrainingReport:
    """Search every candidate, choose the best on validation rows, score it on the test rows.

    ``search`` runs each candidate's search (default: :func:`run_search` on ``runner``);
    ``runner`` always runs the final refits.
    """
    started = time.perf_counter()
    maximize = prepared.data.maximize
    reports = []
    for candidate, space in spec.spaces.items():
        n_trials = spec.trials.get(candidate, 0)
        if n_trials <= 0:
            continue
        search_spec = SearchSpec(
            candidate=candidate,
            space=space,
            n_trials=n_trials,
            time_budget_s=spec.time_budget_s,
            seed=spec.seed,
            max_rounds=spec.max_rounds,
            early_stopping_rounds=spec.early_stopping_rounds,
            stopping_metric=spec.stopping_metric,
            sampler=spec.sampler,
            row_fraction=spec.row_fraction if candidate == "xgboost" else 1.0,
        )
        searched = (
            run_search(search_spec, runner, maximize=maximize)
            if search is None
            else search(search_spec, maximize=maximize)
        )
        reports.append(CandidateReport(candidate, searched))
    metric = (
        spec.select_metric
        if prepared.task == "binary"
        else (spec.select_metric if spec.select_metric in {"rmse", "mae", "r2"} else "rmse")
    )
    lower = metric in LOWER_IS_BETTER
    pending = [r for r in reports if r.search.best is not None]
    if prepared.cv_folds:
        for report in pending:
            _cross_validate(report, prepared, spec, metric)
        contenders = pending
    else:
        _refit(pending, spec, runner, prepared, metric)
        contenders = [r for r in pending if r.final is not None and r.final.ok]
    scored = [r for r in contenders if not math.isnan(float(r.valid_metrics.get(metric, "nan")))]
    chosen: CandidateReport | None = None
    if scored:
        # Ties go to the candidate listed first, so the choice never depends on timing.
        chosen = min(scored, key=lambda r: float(r.valid_metrics[metric]) * (1 if lower else -1))
    test_scores = None
    if chosen is not None and prepared.cv_folds:
        _refit([chosen], spec, runner, prepared, metric, keep_metrics=True)
        if chosen.final is None or not chosen.final.ok:
            chosen = None
    if chosen is not None:
        assert chosen.final is not None
        test_scores = _score_test(chosen.final, prepared)
        chosen.test_metrics = holdout_metrics(prepared.y_test, test_scores, prepared.task, spec)
    n_rows = len(prepared.fit_rows) + len(prepared.valid_rows)
    selection = Selection(
        metric=metric,
        rows="cross-validation" if prepared.cv_folds else "validation",
        n_rows=n_rows if prepared.cv_folds else len(prepared.valid_rows),
        cv_folds=len(prepared.cv_folds),
        scores={r.candidate: float(r.valid_metrics.get(metric, float("nan"))) for r in pending},
        chosen=None if chosen is None else chosen.candidate,
    )
    logger.info(
        "chose %s by %s on %s rows (%s)",
        selection.chosen,
        metric,
        selection.rows,
        ", ".join(f"{c} {v:.5f}" for c, v in selection.scores.items()),
    )
    return TrainingReport(
        task=prepared.task,
        candidates=reports,
        best=chosen,
        select_metric=metric,
        wall_s=time.perf_counter() - started,
        selection=selection,
        test_scores=test_scores,
    )


def _final_request(best: TrialResult, spec: TrainingSpec, **overrides: Any) -> TrialRequest:
    return TrialRequest(
        trial_id=-1,
        candidate=best.candidate,
        params=dict(best.params),
        seed=best.seed,
        max_rounds=spec.max_rounds,
        early_stopping_rounds=spec.early_stopping_rounds,
        stopping_metric=spec.stopping_metric,
        rung=1,
        **overrides,
    )


def _refit(
    reports: list[CandidateReport],
    spec: TrainingSpec,
    runner: TrialRunner,
    prepared: Prepared,
    metric: str,
    *,
    keep_metrics: bool = False,
) -> None:
    """Refit each report's best configuration on the fit rows (early stopping on the validation
    rows), returning the model; its validation metrics become the selection metrics unless
    ``keep_metrics`` (cross-validation already set them)."""
    by_candidate = {r.candidate: r for r in reports}
    queue = list(reports)
    running = 0
    while queue or running:
        while queue and running < runner.slots:
            best = queue.pop(0).search.best
            assert best is not None
            runner.submit(_final_request(best, spec, return_model=True))
            running += 1
        final = runner.next_result()
        running -= 1
        report = by_candidate[final.candidate]
        report.final = final
        if final.ok and "valid" in final.predictions and not keep_metrics:
            report.valid_metrics = holdout_metrics(
                prepared.data.y["valid"], final.predictions["valid"], prepared.task, spec
            )


def _cross_validate(
    report: CandidateReport, prepared: Prepared, spec: TrainingSpec, metric: str
) -> None:
    """Mean metrics of the candidate's best configuration over the folds (in this process, one
    thread: small data only). XGBoost trains the rounds its search found best, so no fold's
    held-out rows decide its own early stop."""
    best = report.search.best
    assert best is not None
    rounds = best.best_iteration + 1 if best.best_iteration is not None else None
    per_fold: list[dict[str, Any]] = []
    for fold in prepared.cv_folds:
        result = TrialWorker(fold, nthread=1)(
            _final_request(best, spec, return_model=True, fixed_rounds=rounds)
        )
        if not result.ok:
            logger.warning("%s: a cross-validation fold failed: %s", report.candidate, result.error)
            report.cv_scores = []
            report.valid_metrics = {}
            return
        per_fold.append(
            holdout_metrics(fold.y["valid"], result.predictions["valid"], prepared.task, spec)
        )
    report.cv_scores = [float(m[metric]) for m in per_fold]
    report.valid_metrics = {
        key: float(np.mean([float(m[key]) for m in per_fold]))
        for key, value in per_fold[0].items()
        if isinstance(value, (int, float))
    }


def _score_test(final: TrialResult, prepared: Prepared) -> np.ndarray:
    """The chosen model's scores on the test rows (the only time they are scored)."""
    assert final.model is not None and final.model_format is not None
    x = prepared.x_test[candidate_encoding(final.candidate)]
    if final.model_format.startswith("sklearn"):
        from raypipe.tracking.models import load_sklearn_model

        model: Any = load_sklearn_model(final.model, final.model_format)  # skops, allow-listed
    else:
        import xgboost as xgb

        model = xgb.Booster()
        model.load_model(bytearray(final.model))
        model.set_param({"nthread": 1})
    return predict_scores(model, x, prepared.task)
