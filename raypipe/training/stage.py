"""The ``train.search`` stage kind: train, evaluate, register and promote in one step.

Input ``data``: a table with a label column (``churned`` by default) and features; optional input
``truth`` (``player_id``, ``churn_probability``) gives ``bayes_auc``, the AUC of the true
probabilities on the same test rows. Outputs: ``model`` (an artifact with the model file,
``preprocess.json``, ``metrics.json`` and ``report.html``) and ``holdout`` (test rows: ids, label,
score). With ``engine: pool`` (the default) trials run on the backend's trial runner (a pool of
Ray actors in real runs, this process with ``--inline`` and in unit tests); with ``engine: tune``
each candidate's search is a Ray Tune experiment asked of the backend (OptunaSearch or random
search, ASHA on XGBoost rounds). The driver is the only MLflow writer.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.training.experiment import (
    LOWER_IS_BETTER,
    TrainingReport,
    TrainingSpec,
    prepare,
    run_training,
)
from raypipe.training.metrics import reliability_bins, reliability_svg
from raypipe.training.search import LARGE_TABLE_ROW_FRACTION
from raypipe.training.spaces import CANDIDATES, resolve_spaces
from raypipe.training.split import detect_time_column

__all__ = ["GateOptions", "TrainSearchOptions", "TrainSearchStage"]

logger = logging.getLogger(__name__)

DEFAULT_TRIALS = {"xgboost": 24, "logistic": 3, "random_forest": 3, "hist_gb": 4}


class GateOptions(StageOptions):
    """Blessing gate: ``metric`` (a holdout metric name) >= ``threshold`` and not worse than the
    champion by more than ``margin``."""

    metric: str | None = Field(
        default=None, description="holdout metric; default `roc_auc` (binary) or `rmse`"
    )
    threshold: float | None = Field(
        default=None, description="absolute bar (a minimum; a maximum for losses); none if null"
    )
    margin: float = Field(default=0.01, ge=0)
    promote: bool = True


class TrainSearchOptions(StageOptions):
    """Options of ``train.search``."""

    label: str = "churned"
    task: Literal["auto", "binary", "regression"] = "auto"
    id_columns: list[str] = Field(default_factory=lambda: ["player_id"])
    drop_columns: list[str] = Field(default_factory=list)
    time_column: str | None = "auto"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    valid_fraction: float = Field(default=0.2, gt=0, lt=1)
    candidates: list[str] = Field(default_factory=lambda: list(CANDIDATES))
    trials: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TRIALS))
    spaces: dict[str, dict[str, Any]] = Field(default_factory=dict)
    time_budget_s: float | None = Field(default=None, gt=0)
    max_rounds: int = Field(default=300, ge=1)
    early_stopping_rounds: int = Field(default=20, ge=1)
    stopping_metric: str | None = Field(
        default="logloss",
        description="XGBoost early-stopping metric (logloss keeps probabilities calibrated; "
        "`null` stops on the selection metric, AUC or RMSE)",
    )
    row_fraction: float | Literal["auto"] = "auto"
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    select_metric: str = "roc_auc"
    cost_fp: float = Field(default=1.0, ge=0)
    cost_fn: float = Field(default=1.0, ge=0)
    model_name: str | None = None
    experiment: str | None = None
    tracking_uri: str | None = None
    gate: GateOptions = Field(default_factory=GateOptions)
    engine: Literal["pool", "tune"] = Field(
        default="pool",
        description="`pool`: driver-side TPE on long-lived actors, multi-fidelity on rows; "
        "`tune`: Ray Tune (OptunaSearch or random search, ASHA on XGBoost rounds; all rows, "
        "`row_fraction` unused)",
    )
    grace_rounds: int = Field(
        default=10, ge=1, description="engine `tune`: ASHA's first rung, in boosting rounds"
    )
    actors: int | None = Field(
        default=None, ge=1, description="trials at once (default: CPUs // threads)"
    )
    threads: int = Field(default=1, ge=1)


class TrainSearchStage(Stage[TrainSearchOptions]):
    """Search every candidate, evaluate on one holdout, register the best, gate the champion."""

    kind = "train.search"
    options = TrainSearchOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("truth",)
    outputs: ClassVar[tuple[str, ...]] = ("model", "holdout")

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: TrainSearchOptions
    ) -> StageResult:
        from raypipe.io.artifacts import write_artifact
        from raypipe.io.dataset import read_dataset, write_dataset
        from raypipe.redaction import redact_url
        from raypipe.tracking.audit import AuditLog
        from raypipe.tracking.models import model_file_name
        from raypipe.tracking.publish import GateSpec, publish_training
        from raypipe.tracking.store import audit_path, resolve_tracking_uri

        storage = dict(context.storage_options)
        table = read_dataset(inputs["data"].url, storage_options=storage)
        spec = training_spec(table, options)
        prepared = prepare(table, spec)
        report_progress = getattr(context.backend, "report_progress", None)
        report = _search(context, prepared, spec, options, report_progress)
        context.raise_if_cancelled()  # a search that ran past Ctrl-C must not publish
        if report.best is None or report.best.final is None:
            from raypipe.errors import StageError

            failures = [t.error for t in report.trials if t.error][:3]
            raise StageError(
                f"stage `{context.stage_name}`: no candidate produced a model "
                f"({len(report.trials)} trials); first errors: {failures}",
                hint="check the label and features, or widen the search spaces",
            )
        best = report.best
        final = best.final
        assert final is not None and final.model is not None and final.model_format
        test_table = table.take(pa.array(prepared.split.test))
        scores = report.test_scores
        assert scores is not None and report.selection is not None
        metrics: dict[str, Any] = {f"test_{k}": v for k, v in best.test_metrics.items()}
        if prepared.task == "binary":
            metrics["test_auc"] = best.test_metrics["roc_auc"]
            if "truth" in inputs:
                bayes = bayes_auc(
                    test_table,
                    read_dataset(inputs["truth"].url, storage_options=storage),
                    prepared.y_test,
                    options.id_columns,
                )
                metrics["bayes_auc"] = bayes
                metrics["auc_ratio"] = metrics["test_auc"] / bayes if bayes else float("nan")
        html = report_html(report, prepared, scores, context.stage_name)
        preprocess = prepared.preprocessor.to_dict(_encoding(best.candidate))
        model_file = model_file_name(final.model_format)
        files = {
            model_file: final.model,
            "preprocess.json": json.dumps(preprocess, sort_keys=True).encode(),
            "report.html": html.encode(),
        }
        model_name = options.model_name or context.stage_name
        gate_metric = options.gate.metric or ("roc_auc" if prepared.task == "binary" else "rmse")
        tracking_uri = resolve_tracking_uri(options.tracking_uri, context.data_dir)
        version = inputs["data"].version
        upstream = {
            str(k): str(v)
            for k, v in inputs["data"].manifest.metadata.items()
            if str(k).endswith("_version") and isinstance(v, (str, int))
        }
        lineage = {
            **upstream,
            "run_id": context.run_id,
            "stage": context.stage_name,
            "data_version": version,
            "feature_version": str(
                inputs["data"].manifest.metadata.get("feature_version", version)
            ),
        }
        # Registering and promoting cannot be taken back: the last safe point of an interrupt.
        context.raise_if_cancelled()
        if report_progress is not None:
            report_progress("registering in MLflow", 0, 1)
        published = publish_training(
            tracking_uri=tracking_uri,
            experiment=options.experiment or model_name,
            model_name=model_name,
            run_name=f"{context.stage_name}-{context.run_id}",
            lineage=lineage,
            trials=report.trials,
            candidate_metrics={best.candidate: best.test_metrics},  # test rows: chosen only
            chosen=final,
            chosen_metrics=best.test_metrics,
            model_files=files,
            input_example=prepared.x_test[_encoding(best.candidate)][:5],
            feature_names=list(prepared.data.feature_names),
            report_html=html,
            audit_log=AuditLog(audit_path(context.data_dir), storage),
            gate=GateSpec(
                metric=gate_metric,
                threshold=options.gate.threshold,
                margin=options.gate.margin,
                maximize=gate_metric not in LOWER_IS_BETTER and gate_metric != "rmse",
                promote=options.gate.promote,
            ),
            score_name="valid_auc" if prepared.task == "binary" else "valid_rmse",
            champion_scorer=_champion_scorer(test_table, prepared, options, tracking_uri),
        )
        metrics.update(
            best_candidate=best.candidate,
            best_params=dict(final.params),
            split=prepared.split.method,
            trials=len(report.trials),
            failed_trials=sum(1 for t in report.trials if not t.ok),
            search_engine=options.engine,
            search_s=round(report.wall_s, 3),
            candidates={c.candidate: _short(c.valid_metrics) for c in report.candidates},
            selection=report.selection.to_dict(),
            mlflow_run_id=published.run_id,
            tracking_uri=redact_url(tracking_uri),  # a record: no password (issue 13.8)
            model_name=model_name,
            model_version=published.version,
            model_sha256=published.sha256,
            promoted=published.promoted,
            champion_version=published.champion_version,
            gate_reasons=list(published.gate.reasons),
        )
        if options.engine == "tune":
            # Trials that ASHA (or the time budget) stopped before their own end.
            metrics["stopped_trials"] = sum(1 for t in report.trials if t.ok and t.rung == 0)
        files["metrics.json"] = json.dumps(_clean(metrics), sort_keys=True, default=str).encode()
        model_manifest = write_artifact(
            context.output_url("model"),
            files,
            metadata={
                "model_name": model_name,
                "model_version": published.version,
                "format": final.model_format,
            },
            storage_options=storage,
        )
        holdout = _holdout_table(test_table, options, spec.label, prepared.y_test, scores)
        holdout_manifest = write_dataset(
            context.output_url("holdout"), holdout, storage_options=storage
        )
        return StageResult(
            outputs={"model": model_manifest, "holdout": holdout_manifest},
            metrics=_clean(metrics),
            rows_in=table.num_rows,
            rows_out=holdout.num_rows,
        )


def training_spec(table: pa.Table, options: TrainSearchOptions) -> TrainingSpec:
    """The frozen training spec of ``options`` for ``table`` (resolves the ``auto`` values)."""
    ids = tuple(c for c in options.id_columns if c in table.column_names)
    time_column = options.time_column
    if time_column == "auto":
        time_column = detect_time_column(table.schema, exclude=(options.label, *ids))
    spaces = resolve_spaces(list(options.candidates), options.spaces)
    row_fraction = options.row_fraction
    if options.engine == "tune":
        row_fraction = 1.0  # Tune's ASHA cuts boosting rounds, not rows
    elif row_fraction == "auto":
        # Multi-fidelity pays off when a tenth of the rows still ranks configurations.
        row_fraction = LARGE_TABLE_ROW_FRACTION if table.num_rows >= 100_000 else 1.0
    return TrainingSpec(
        label=options.label,
        spaces=spaces,
        trials={c: options.trials.get(c, DEFAULT_TRIALS.get(c, 4)) for c in options.candidates},
        task=options.task,
        id_columns=ids,
        drop_columns=tuple(options.drop_columns),
        time_column=time_column,
        test_fraction=options.test_fraction,
        valid_fraction=options.valid_fraction,
        seed=options.seed,
        time_budget_s=options.time_budget_s,
        max_rounds=options.max_rounds,
        early_stopping_rounds=options.early_stopping_rounds,
        stopping_metric=options.stopping_metric,
        row_fraction=float(row_fraction),
        sampler=options.sampler,
        select_metric=options.select_metric,
        cost_fp=options.cost_fp,
        cost_fn=options.cost_fn,
    )


def _search(
    context: StageContext,
    prepared: Any,
    spec: TrainingSpec,
    options: TrainSearchOptions,
    report_progress: Any = None,
) -> TrainingReport:
    """Search on the backend's trial actors, or with Ray Tune (``engine: tune``)."""
    from raypipe.stages.backend import require
    from raypipe.training.search import TrialBackend, TuneBackend

    if options.engine == "tune":
        tune = require(context.backend, TuneBackend, stage=context.stage_name)
        engine = tune.tune_search(
            prepared.data,
            threads=options.threads,
            concurrency=options.actors,
            grace_rounds=options.grace_rounds,
        )
        try:
            return run_training(prepared, spec, engine, search=engine)
        finally:
            engine.close()
    trials = require(context.backend, TrialBackend, stage=context.stage_name)
    runner: Any = trials.trial_runner(prepared.data, actors=options.actors, threads=options.threads)
    if report_progress is not None:
        from raypipe.training.progress import ReportingRunner

        searched = [name for name in spec.spaces if spec.trials.get(name, 0) > 0]
        # One refit per candidate, or only the chosen one when candidates are cross-validated.
        refits = 1 if prepared.cv_folds else len(searched)
        planned = sum(spec.trials[name] for name in searched) + refits
        runner = ReportingRunner(runner, report_progress, planned)
    try:
        return run_training(prepared, spec, runner)
    finally:
        close = getattr(runner, "close", None)
        if close is not None:
            close()


def bayes_auc(
    test_table: pa.Table, truth: pa.Table, y_test: np.ndarray, id_columns: list[str]
) -> float:
    """AUC of the generator's true probabilities on the test rows (joined on the id column)."""
    import polars as pl
    from sklearn.metrics import roc_auc_score

    from raypipe.errors import DataError

    keys = [c for c in id_columns if c in truth.column_names and c in test_table.column_names]
    prob = next((c for c in truth.column_names if c.endswith("probability")), None)
    if not keys or prob is None:
        raise DataError(
            f"input `truth` needs the id column(s) {id_columns} and a `*probability` column, "
            f"received {truth.column_names}",
        )
    left = pl.DataFrame(test_table.select(keys)).with_row_index("_row")
    right = pl.DataFrame(truth.select([*keys, prob])).unique(subset=keys)
    joined = left.join(right, on=keys, how="left").sort("_row")
    values = joined[prob].to_numpy()
    if np.isnan(values).any():
        raise DataError(f"input `truth` lacks `{prob}` for {int(np.isnan(values).sum())} test rows")
    return float(roc_auc_score(y_test, values))


def report_html(report: TrainingReport, prepared: Any, scores: np.ndarray, title: str) -> str:
    """A small self-contained HTML page: candidates' holdout metrics and the reliability plot."""
    rows = []
    keys = (
        ["roc_auc", "pr_auc", "log_loss", "brier", "ece"]
        if report.task == "binary"
        else ["rmse", "mae", "r2"]
    )
    for c in report.candidates:
        cells = "".join(f"<td>{_num(c.valid_metrics.get(k))}</td>" for k in keys)
        mark = " (chosen)" if report.best is c else ""
        rows.append(f"<tr><td>{c.candidate}{mark}</td><td>{len(c.search.trials)}</td>{cells}</tr>")
    head = "".join(f"<th>{k}</th>" for k in keys)
    svg = ""
    if report.task == "binary":
        svg = reliability_svg(reliability_bins(prepared.y_test, scores), title="reliability (test)")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}: training report</h1><p>split: {prepared.split.method}; "
        f"test rows: {len(prepared.y_test)}</p>{_selection_html(report)}"
        f"<table border='1'><tr><th>candidate</th><th>trials</th>{head}</tr>{''.join(rows)}"
        f"</table>{svg}</body></html>"
    )


def _selection_html(report: TrainingReport) -> str:
    """How the winner was chosen; the table below shows the candidates' selection metrics."""
    chosen = report.selection
    if chosen is None or report.best is None:
        return ""
    where = (
        f"{chosen.cv_folds}-fold cross-validation over {chosen.n_rows} fit + validation rows"
        if chosen.rows == "cross-validation"
        else f"{chosen.n_rows} validation rows"
    )
    test = ", ".join(
        f"{k} {_num(v)}"
        for k, v in report.best.test_metrics.items()
        if isinstance(v, float) and not k.startswith("threshold_")
    )
    return (
        f"<p>chosen: <b>{chosen.chosen}</b> by {chosen.metric} on {where} (the table); the test "
        f"rows were scored once, by the chosen model: {test}</p>"
    )


def _champion_scorer(
    test_table: pa.Table, prepared: Any, options: TrainSearchOptions, tracking_uri: str
) -> Any:
    def score(uri: str) -> float | None:
        from raypipe.training.experiment import holdout_metrics

        try:
            from raypipe.tracking.models import load_model
            from raypipe.training.preprocess import predict_table

            loaded = load_model(uri, tracking_uri=tracking_uri)
            predictions = predict_table(loaded, test_table)
            metrics = holdout_metrics(prepared.y_test, predictions, prepared.task, _spec_stub())
            return float(
                metrics[options.gate.metric or ("roc_auc" if prepared.task == "binary" else "rmse")]
            )
        except Exception as exc:  # a champion that cannot score these rows: use its record
            logger.info("champion %s not re-scored on this holdout: %s", uri, exc)
            return None

    return score


def _spec_stub() -> Any:
    return TrainingSpec(label="", spaces={}, trials={})


def _holdout_table(
    test_table: pa.Table,
    options: TrainSearchOptions,
    label: str,
    y: np.ndarray,
    scores: np.ndarray,
) -> pa.Table:
    columns = {c: test_table.column(c) for c in options.id_columns if c in test_table.column_names}
    columns[label] = pa.array(y)
    columns["score"] = pa.array(np.asarray(scores, dtype=np.float32))
    return pa.table(columns)


def _encoding(candidate: str) -> str:
    from raypipe.training.trial import candidate_encoding

    return candidate_encoding(candidate)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def _short(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: round(v, 5) if isinstance(v, float) else v
        for k, v in metrics.items()
        if not k.startswith("threshold_")
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
