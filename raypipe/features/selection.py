"""Feature selection: filters, three rankings and their consensus, and a leakage flag.

:class:`FeatureSelector` follows scikit-learn's conventions (``fit`` returns ``self``, learned
state ends in ``_``). In order:

1. drop **constant** candidates (one distinct non-null value, or all null);
2. drop **duplicates** (identical to an earlier candidate, nulls included);
3. flag **leakage**: a candidate that alone separates the label almost perfectly (binary label:
   ROC AUC of the raw value, either direction, >= ``leakage_auc``; numeric label: |Spearman r|
   >= ``leakage_auc``). Flagged candidates are dropped before ranking (``drop_leaky=False``
   keeps them);
4. drop **correlated** candidates: greedily, in order of mutual information, a candidate with
   |Pearson r| > ``max_correlation`` to one already kept is dropped;
5. rank the survivors by **mutual information** (``mutual_info_classif``/``_regression``),
   **recursive feature elimination** (logistic/linear regression on standardized values) and
   **L1** (|coefficient| of an L1-penalized logistic regression / Lasso); the **consensus** is
   the mean of the three ranks; the best ``k`` by consensus are selected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import polars as pl

__all__ = ["FeatureScore", "FeatureSelector"]

logger = logging.getLogger(__name__)


class _Ranks(TypedDict, total=False):
    """One feature's ranks (1 = best) by each method, and its |L1 coefficient|."""

    mi: int
    rfe: int
    l1: int
    l1_coef: float
    consensus: float


@dataclass(frozen=True)
class FeatureScore:
    """One candidate's fate and scores (ranks start at 1; None when not ranked)."""

    name: str
    status: str
    reason: str = ""
    mutual_information: float | None = None
    mi_rank: int | None = None
    rfe_rank: int | None = None
    l1_coefficient: float | None = None
    l1_rank: int | None = None
    consensus_rank: int | None = None
    single_feature_score: float | None = None
    selected: bool = False


class FeatureSelector:
    """Select features from candidate columns.

    Parameters
    ----------
    k
        How many to select by consensus rank (default: half the ranked survivors, at most 30).
    max_correlation
        |Pearson r| above which the later of two candidates is dropped.
    leakage_auc
        Single-feature AUC (or |Spearman r| for a numeric label) from which a candidate is
        flagged as likely leakage.
    drop_leaky
        Drop flagged candidates before ranking.
    max_rows
        Rows sampled for MI, RFE and L1 (all rows are used for the filters).
    random_state
        Seed of the sampling and of the estimators.
    """

    def __init__(
        self,
        k: int | None = None,
        *,
        max_correlation: float = 0.95,
        leakage_auc: float = 0.98,
        drop_leaky: bool = True,
        max_rows: int = 50_000,
        random_state: int = 0,
    ) -> None:
        self.k = k
        self.max_correlation = max_correlation
        self.leakage_auc = leakage_auc
        self.drop_leaky = drop_leaky
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, frame: pl.DataFrame, target: pl.Series | np.ndarray) -> FeatureSelector:
        """Fit on the numeric/boolean columns of ``frame`` against ``target``."""
        y = np.asarray(target)
        if y.dtype == bool:
            y = y.astype(np.int64)
        values = np.unique(y[~_isnan(y)])
        self.task_ = "classification" if len(values) <= 2 else "regression"
        numeric = [
            c
            for c in frame.columns
            if frame.schema[c].is_numeric() or frame.schema[c] == pl.Boolean
        ]
        skipped = [c for c in frame.columns if c not in numeric]
        matrix = (
            frame.select(pl.col(numeric).cast(pl.Float64)).to_numpy()
            if numeric
            else np.empty((frame.height, 0))
        )
        status: dict[str, tuple[str, str]] = {c: ("dropped", "not numeric") for c in skipped}
        single: dict[str, float] = {}
        alive: list[int] = []
        seen: dict[bytes, str] = {}
        for index, name in enumerate(numeric):
            column = matrix[:, index]
            present = column[~np.isnan(column)]
            if present.size == 0 or np.all(present == present[0]):
                status[name] = ("dropped", "constant")
                continue
            digest = np.nan_to_num(column, nan=np.inf).tobytes()
            if digest in seen:
                status[name] = ("dropped", f"duplicate of `{seen[digest]}`")
                continue
            seen[digest] = name
            single[name] = _single_score(column, y, self.task_)
            if single[name] >= self.leakage_auc:
                status[name] = ("leakage", f"alone scores {single[name]:.3f}")
                if self.drop_leaky:
                    continue
            alive.append(index)
        filled = _impute(matrix)
        x_sample, y_sample = self._sample(filled, y)
        mi = self._mutual_information(x_sample[:, alive], y_sample) if alive else np.array([])
        mi_of = {numeric[i]: float(m) for i, m in zip(alive, mi, strict=True)}
        kept: list[int] = []
        for position in np.argsort(-mi, kind="stable"):
            index = alive[int(position)]
            partner = self._correlated_with(filled, index, kept)
            if partner is not None:
                status[numeric[index]] = (
                    "dropped",
                    f"|r| > {self.max_correlation} with `{numeric[partner]}`",
                )
                continue
            kept.append(index)
        kept.sort()
        names = [numeric[i] for i in kept]
        ranks = self._rank(x_sample[:, kept], y_sample, names, mi_of) if kept else {}
        k = self.k if self.k is not None else min(30, max(1, len(names) // 2))
        order = sorted(names, key=lambda n: (ranks[n]["consensus"], n))
        consensus = {name: position + 1 for position, name in enumerate(order)}
        selected = set(order[:k])
        scores = []
        for name in [*numeric, *skipped]:
            state, reason = status.get(name, ("kept", ""))
            rank = ranks.get(name, {})
            scores.append(
                FeatureScore(
                    name=name,
                    status=state if name not in names or state == "leakage" else "kept",
                    reason=reason,
                    mutual_information=mi_of.get(name),
                    mi_rank=rank.get("mi"),
                    rfe_rank=rank.get("rfe"),
                    l1_coefficient=rank.get("l1_coef"),
                    l1_rank=rank.get("l1"),
                    consensus_rank=consensus.get(name),
                    single_feature_score=single.get(name),
                    selected=name in selected,
                )
            )
        self.scores_ = scores
        self.selected_ = [name for name in order if name in selected]
        self.leaky_ = [s.name for s in scores if s.status == "leakage"]
        self.correlation_ = (
            np.corrcoef(filled[:, kept], rowvar=False).reshape(len(kept), len(kept))
            if kept
            else np.empty((0, 0))
        )
        self.correlation_names_ = names
        logger.info(
            "selection: %d candidates, %d ranked, %d selected, %d flagged as leakage",
            len(frame.columns),
            len(names),
            len(self.selected_),
            len(self.leaky_),
        )
        return self

    def _sample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(y) <= self.max_rows:
            return x, y
        rng = np.random.default_rng(self.random_state)
        rows = np.sort(rng.choice(len(y), self.max_rows, replace=False))
        return x[rows], y[rows]

    def _mutual_information(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

        function = mutual_info_classif if self.task_ == "classification" else mutual_info_regression
        scores: np.ndarray = function(x, y, random_state=self.random_state)
        return scores

    def _correlated_with(self, x: np.ndarray, index: int, kept: list[int]) -> int | None:
        column = x[:, index]
        for other in kept:
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.corrcoef(column, x[:, other])[0, 1]
            if np.isfinite(r) and abs(r) > self.max_correlation:
                return other
        return None

    def _rank(
        self, x: np.ndarray, y: np.ndarray, names: list[str], mi_of: dict[str, float]
    ) -> dict[str, _Ranks]:
        from sklearn.feature_selection import RFE
        from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaled = StandardScaler().fit_transform(x)
        if self.task_ == "classification":
            base = LogisticRegression(max_iter=500)
            l1 = LogisticRegression(
                l1_ratio=1.0, solver="liblinear", C=0.05, random_state=self.random_state
            )
        else:
            base = LinearRegression()
            l1 = Lasso(alpha=0.01, random_state=self.random_state)
        rfe = RFE(base, n_features_to_select=1, step=max(1, len(names) // 20)).fit(scaled, y)
        coefficients = np.abs(np.ravel(l1.fit(scaled, y).coef_))
        mi_order = _ranks([-mi_of[n] for n in names])
        l1_order = _ranks(list(-coefficients))
        out: dict[str, _Ranks] = {}
        for position, name in enumerate(names):
            rfe_rank = int(rfe.ranking_[position])
            out[name] = {
                "mi": mi_order[position],
                "rfe": rfe_rank,
                "l1": l1_order[position],
                "l1_coef": float(coefficients[position]),
            }
        rfe_order = _ranks([out[n]["rfe"] for n in names])
        for position, name in enumerate(names):
            out[name]["rfe"] = rfe_order[position]
            out[name]["consensus"] = (out[name]["mi"] + out[name]["rfe"] + out[name]["l1"]) / 3
        return out


def _ranks(values: list[float]) -> list[int]:
    """1-based ranks, smallest value first, ties by position."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    ranks = [0] * len(values)
    for rank, index in enumerate(order, start=1):
        ranks[index] = rank
    return ranks


def _isnan(values: np.ndarray) -> np.ndarray:
    return (
        np.isnan(values)
        if np.issubdtype(values.dtype, np.floating)
        else np.zeros(len(values), dtype=bool)
    )


def _impute(matrix: np.ndarray) -> np.ndarray:
    """Nulls and infinities replaced by the column median (0 if none)."""
    filled = np.where(np.isfinite(matrix), matrix, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(filled, axis=0) if filled.size else np.array([])
    medians = np.where(np.isfinite(medians), medians, 0.0)
    return np.where(np.isnan(filled), medians, filled)


def _single_score(column: np.ndarray, y: np.ndarray, task: str) -> float:
    """How well one raw column alone predicts ``y`` (AUC either way, or |Spearman r|)."""
    present = np.isfinite(column) & ~_isnan(y)
    if present.sum() < 3:
        return 0.0
    x, t = column[present], y[present]
    if task == "classification":
        if len(np.unique(t)) < 2:
            return 0.0
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(t, x))
        return max(auc, 1 - auc)
    from scipy.stats import spearmanr

    r = spearmanr(x, t).statistic
    return float(abs(r)) if np.isfinite(r) else 0.0
