"""One trial: fit a candidate with one configuration and score it on the validation rows.

:class:`TrialWorker` is a plain callable class. It receives the matrices once and builds each
XGBoost DMatrix once (per row fraction), then runs any number of trials against them, so a trial
costs only its training. Unit tests call it directly; the Ray shell
(:mod:`raypipe.engine.search`) runs it unchanged inside a few long-lived actors.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raypipe.training.estimators import (
    NamedModel,
    make_sklearn_estimator,
    predict_scores,
    xgboost_params,
)

__all__ = ["TrialData", "TrialRequest", "TrialResult", "TrialWorker", "candidate_encoding"]

logger = logging.getLogger(__name__)

#: Which categorical encoding each candidate trains on.
_ENCODING = {
    "xgboost": "native",
    "hist_gb": "native",
    "logistic": "target",
    "random_forest": "target",
}


def candidate_encoding(candidate: str) -> str:
    return _ENCODING[candidate]


@dataclass(frozen=True)
class TrialData:
    """The matrices every trial shares, shipped once to each worker.

    ``x[encoding][part]`` is a float32 matrix for parts ``fit``, ``valid`` and optionally
    ``test``; ``y[part]`` the labels. ``feature_types[encoding]`` holds ``q``/``c`` per column.
    """

    task: str
    x: Mapping[str, Mapping[str, np.ndarray]]
    y: Mapping[str, np.ndarray]
    feature_names: tuple[str, ...]
    feature_types: Mapping[str, tuple[str, ...]]

    @property
    def metric(self) -> str:
        return "auc" if self.task == "binary" else "rmse"

    @property
    def maximize(self) -> bool:
        return self.task == "binary"


@dataclass(frozen=True)
class TrialRequest:
    """What to train: a candidate, its parameters, and the fidelity (rows, rounds)."""

    trial_id: int
    candidate: str
    params: Mapping[str, Any]
    seed: int = 0
    max_rounds: int = 300
    early_stopping_rounds: int = 10
    stopping_metric: str | None = None
    row_fraction: float = 1.0
    fixed_rounds: int | None = None
    return_model: bool = False
    rung: int = 0


@dataclass(frozen=True)
class TrialResult:
    """A trial's outcome; ``error`` is set if it failed.

    ``score`` is the validation AUC or RMSE, on the validation rows of the trial's fidelity (all
    of them at ``row_fraction`` 1).
    """

    trial_id: int
    candidate: str
    params: Mapping[str, Any]
    score: float
    rung: int = 0
    row_fraction: float = 1.0
    seed: int = 0
    best_iteration: int | None = None
    history: tuple[float, ...] = ()
    train_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    error: str | None = None
    model: bytes | None = None
    model_format: str | None = None
    predictions: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, request: TrialRequest, *, started_at: float, error: str) -> TrialResult:
        """The result of ``request`` when its trial raised or its worker died."""
        return cls(
            trial_id=request.trial_id,
            candidate=request.candidate,
            params=dict(request.params),
            score=float("nan"),
            rung=request.rung,
            row_fraction=request.row_fraction,
            seed=request.seed,
            started_at=started_at,
            finished_at=time.time(),
            error=error,
        )


#: Validation rows a reduced-fidelity trial is scored on, at least (when there are that many).
#: Enough to rank configurations: they are compared on the same rows, so their AUCs move together.
MIN_RANKING_VALID_ROWS = 10_000


class TrialWorker:
    """Runs trials against data it holds; builds each DMatrix once.

    A trial at ``row_fraction < 1`` trains on that fraction of the fit rows and, for XGBoost,
    evaluates every boosting round on the same fraction of the validation rows (at least
    :data:`MIN_RANKING_VALID_ROWS`): per-round evaluation costs as much as training on small
    data, and a reduced-fidelity score only has to rank configurations.

    Parameters
    ----------
    data
        The shared matrices.
    nthread
        Threads of one trial (XGBoost ``nthread``, forest ``n_jobs``).
    """

    def __init__(self, data: TrialData, nthread: int = 1) -> None:
        self.data = data
        self.nthread = max(1, int(nthread))
        self._dmatrix: dict[tuple[str, float], Any] = {}
        self._rows: dict[tuple[str, float], np.ndarray] = {}

    def __call__(self, request: TrialRequest) -> TrialResult:
        """Run one trial; an exception becomes a failed result so the search continues."""
        started = time.time()
        try:
            return self._run(request, started)
        except Exception as exc:  # a bad configuration must not end the search
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            logger.warning(
                "trial %s (%s) failed: %s", request.trial_id, request.candidate, first_line
            )
            return TrialResult.failure(
                request,
                started_at=started,
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
            )

    def rows(self, fraction: float, part: str = "fit") -> np.ndarray:
        """The first ``fraction`` of a fixed permutation of ``part``'s rows (nested fractions).

        Validation rows keep at least :data:`MIN_RANKING_VALID_ROWS`.
        """
        key = (part, fraction)
        if key not in self._rows:
            n = len(self.data.y[part])
            keep = max(2, round(n * fraction)) if fraction < 1.0 else n
            if part == "valid":
                keep = max(keep, min(n, MIN_RANKING_VALID_ROWS))
            if keep >= n:
                self._rows[key] = np.arange(n)
            else:
                order = np.random.default_rng(12345).permutation(n)
                self._rows[key] = np.sort(order[:keep])
        return self._rows[key]

    def _run(self, request: TrialRequest, started: float) -> TrialResult:
        fitted: tuple[Any, int | None, list[float], bytes, str]
        if request.candidate == "xgboost":
            fitted = self._fit_xgboost(request)
        else:
            fitted = self._fit_sklearn(request)
        model, best_iteration, history, model_bytes, model_format = fitted
        encoding = candidate_encoding(request.candidate)
        predictions: dict[str, np.ndarray] = {}
        if (
            request.candidate == "xgboost"
            and not request.return_model
            and best_iteration is not None
        ):
            # The per-round validation metric at the best round: no extra prediction pass.
            score = history[best_iteration]
        else:
            valid_pred = predict_scores(model, self.data.x[encoding]["valid"], self.data.task)
            score = _score(self.data.y["valid"], valid_pred, self.data.task)
            if request.return_model:
                predictions["valid"] = valid_pred
                if "test" in self.data.x[encoding]:
                    predictions["test"] = predict_scores(
                        model, self.data.x[encoding]["test"], self.data.task
                    )
        finished = time.time()
        return TrialResult(
            trial_id=request.trial_id,
            candidate=request.candidate,
            params=dict(request.params),
            score=score,
            rung=request.rung,
            row_fraction=request.row_fraction,
            seed=request.seed,
            best_iteration=best_iteration,
            history=tuple(history),
            train_s=finished - started,
            started_at=started,
            finished_at=finished,
            model=model_bytes if request.return_model else None,
            model_format=model_format if request.return_model else None,
            predictions=predictions,
        )

    def xgb_matrices(self, fraction: float) -> tuple[Any, Any]:
        """The fit and validation DMatrix of ``fraction`` (see :meth:`rows`), each built once."""
        import xgboost as xgb

        key = ("fit", fraction)
        if key not in self._dmatrix:
            x = self.data.x["native"]
            types = list(self.data.feature_types["native"])
            names = list(self.data.feature_names)
            rows = self.rows(fraction)
            valid_rows = self.rows(fraction, "valid")
            dfit = xgb.QuantileDMatrix(
                _take(x["fit"], rows),
                label=_take(self.data.y["fit"], rows),
                feature_names=names,
                feature_types=types,
                enable_categorical=True,
                nthread=self.nthread,
            )
            dvalid = xgb.QuantileDMatrix(
                _take(x["valid"], valid_rows),
                label=_take(self.data.y["valid"], valid_rows),
                feature_names=names,
                feature_types=types,
                enable_categorical=True,
                ref=dfit,
                nthread=self.nthread,
            )
            self._dmatrix[key] = (dfit, dvalid)
        matrices: tuple[Any, Any] = self._dmatrix[key]
        return matrices

    def _fit_xgboost(self, request: TrialRequest) -> tuple[Any, int, list[float], bytes, str]:
        import xgboost as xgb

        dfit, dvalid = self.xgb_matrices(request.row_fraction)
        params = xgboost_params(
            dict(request.params), task=self.data.task, seed=request.seed, nthread=self.nthread
        )
        stopping = request.stopping_metric
        if stopping == "logloss" and self.data.task != "binary":
            stopping = None  # log loss needs probabilities; a regression stops on RMSE
        if stopping and stopping != self.data.metric:
            # XGBoost stops on the last metric; the score stays the first (AUC or RMSE).
            params["eval_metric"] = [self.data.metric, stopping]
        evals_result: dict[str, Any] = {}
        rounds = request.fixed_rounds or request.max_rounds
        booster = xgb.train(
            params,
            dfit,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=None if request.fixed_rounds else request.early_stopping_rounds,
            evals_result=evals_result,
            verbose_eval=False,
        )
        history = [float(v) for v in evals_result["valid"][self.data.metric]]
        if request.fixed_rounds:
            best_iteration = rounds - 1
        else:
            best_iteration = int(booster.best_iteration)
            if request.return_model and booster.num_boosted_rounds() > best_iteration + 1:
                booster = booster[: best_iteration + 1]
        booster.set_param({"nthread": self.nthread})
        raw = bytes(booster.save_raw("ubj")) if request.return_model else b""
        return booster, best_iteration, history, raw, "xgboost-ubj"

    def _fit_sklearn(self, request: TrialRequest) -> tuple[Any, None, list[float], bytes, str]:
        encoding = candidate_encoding(request.candidate)
        x = self.data.x[encoding]
        rows = self.rows(request.row_fraction)
        mask = np.array([t == "c" for t in self.data.feature_types[encoding]], dtype=bool)
        estimator = make_sklearn_estimator(
            request.candidate,
            dict(request.params),
            task=self.data.task,
            seed=request.seed,
            nthread=self.nthread,
            categorical_mask=mask,
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.nthread):
            # A copy even at all rows: in an actor the shared matrices are read-only object-store
            # buffers, and a scikit-learn candidate fails on them (an integration test shows it).
            estimator.fit(x["fit"][rows], self.data.y["fit"][rows])
        model = NamedModel(estimator, self.data.feature_names, self.data.task)
        raw = model.to_bytes() if request.return_model else b""
        return model, None, [], raw, "sklearn-skops"


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]``, without a copy when ``rows`` are all of them (in order)."""
    return values if len(rows) == len(values) else values[rows]


def _score(y_true: np.ndarray, y_pred: np.ndarray, task: str) -> float:
    if task == "binary":
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(y_true, y_pred))
    return float(np.sqrt(np.mean((np.asarray(y_true, float) - y_pred) ** 2)))
