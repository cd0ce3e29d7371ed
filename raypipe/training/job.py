"""A training job as data: prepare the matrices, search every candidate, evaluate, choose.

:func:`prepare` splits the table (time or stratified), carves validation rows out of the
training rows the same way, fits the preprocessing on the fit rows and builds the
:class:`~raypipe.training.trial.TrialData` every trial shares. :func:`run_training` searches each
candidate on a :class:`~raypipe.training.search.TrialRunner` (or with a
:class:`~raypipe.training.search.SearchEngine`, such as Ray Tune's, if one is given), refits
each candidate's best configuration once (returning the model), scores every finalist on the
same test rows and picks the best by ``select_metric``.
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
from raypipe.training.trial import TrialData, TrialRequest, TrialResult, candidate_encoding

__all__ = [
    "CandidateReport",
    "Prepared",
    "TrainingReport",
    "TrainingSpec",
    "infer_task",
    "prepare",
    "run_training",
]

logger = logging.getLogger(__name__)

#: Metrics where lower is better.
LOWER_IS_BETTER = {"log_loss", "brier", "ece", "rmse", "mae", "threshold_cost"}


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
    data: TrialData
    y_test: np.ndarray


@dataclass
class CandidateReport:
    candidate: str
    search: SearchResult
    final: TrialResult | None = None
    test_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingReport:
    """Per-candidate searches and holdout metrics, and the chosen one."""

    task: str
    candidates: list[CandidateReport]
    best: CandidateReport | None
    select_metric: str
    wall_s: float

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
        return (values == distinct[1]).astype(np.float32)
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
    types: dict[str, tuple[str, ...]] = {}
    for encoding in encodings:
        fit_matrix = pre.transform(fit_table, encoding, training=True)
        x[encoding] = {"fit": fit_matrix.values}
        types[encoding] = fit_matrix.feature_types
        for part, part_table in parts.items():
            x[encoding][part] = pre.transform(part_table, encoding).values
    data = TrialData(
        task=task,
        x=x,
        y={"fit": y_all[fit_rows], "valid": y_all[valid_rows], "test": y_all[split.test]},
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
    return Prepared(task, split, valid_rows, fit_rows, pre, data, y_all[split.test])


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
    """Search, refit and evaluate every candidate; choose the best on the test rows.

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
    # Refit each candidate's best once, all rows, returning the model and its holdout scores.
    pending = [r for r in reports if r.search.best is not None]
    by_candidate = {r.candidate: r for r in pending}
    queue = list(pending)
    running = 0
    while queue or running:
        while queue and running < runner.slots:
            report = queue.pop(0)
            best = report.search.best
            assert best is not None
            runner.submit(
                TrialRequest(
                    trial_id=-1,
                    candidate=report.candidate,
                    params=dict(best.params),
                    seed=best.seed,
                    max_rounds=spec.max_rounds,
                    early_stopping_rounds=spec.early_stopping_rounds,
                    stopping_metric=spec.stopping_metric,
                    return_model=True,
                    rung=1,
                )
            )
            running += 1
        final = runner.next_result()
        running -= 1
        report = by_candidate[final.candidate]
        report.final = final
        if final.ok and "test" in final.predictions:
            report.test_metrics = holdout_metrics(
                prepared.y_test, final.predictions["test"], prepared.task, spec
            )
    metric = (
        spec.select_metric
        if prepared.task == "binary"
        else (spec.select_metric if spec.select_metric in {"rmse", "mae", "r2"} else "rmse")
    )
    lower = metric in LOWER_IS_BETTER
    finalists = [
        r
        for r in reports
        if r.test_metrics and not math.isnan(float(r.test_metrics.get(metric, float("nan"))))
    ]
    chosen: CandidateReport | None = None
    if finalists:
        chosen = min(finalists, key=lambda r: float(r.test_metrics[metric]) * (1 if lower else -1))
    return TrainingReport(
        task=prepared.task,
        candidates=reports,
        best=chosen,
        select_metric=metric,
        wall_s=time.perf_counter() - started,
    )
