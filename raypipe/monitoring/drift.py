"""Column and dataset drift: Evidently's default test per column, its thresholds, and more.

:func:`choose_method` is Evidently's ``_get_default_stattest``; :func:`column_drift` runs the
chosen test and, beside it, PSI, KL, Hellinger, Jensen-Shannon (distance, ln; divergence, log2)
and TFDV's L-infinity. A dataset drifts when the share of drifted columns is ``>= drift_share``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from raypipe.monitoring import stattests as st
from raypipe.monitoring.stattests import Sample
from raypipe.validation.stats import column_kind

__all__ = [
    "DEFAULT_DRIFT_SHARE",
    "METHODS",
    "ColumnDrift",
    "DriftMethod",
    "DriftReport",
    "choose_method",
    "column_drift",
    "column_role",
    "detect_drift",
    "drift_columns",
    "sample_of",
    "skipped_columns",
    "summarize",
]

#: Evidently's ``drift_share``: the dataset drifts when at least this share of columns drift.
DEFAULT_DRIFT_SHARE = 0.5
#: Reference rows above which Evidently switches to distance-based defaults.
SMALL_REFERENCE_ROWS = 1000
#: Histograms with more bins than this are not kept for the report (e.g. id-like columns).
MAX_BINS_KEPT = 60
#: Column names whose role is not "feature": not tested for drift unless asked for by name.
#: ``churned`` is the label that raypipe's stages default to.
LABEL_NAMES = frozenset({"label", "target", "y", "class", "outcome", "churned"})
PREDICTION_NAMES = frozenset({"score", "prediction", "predicted", "probability", "proba"})
ID_SUFFIXES = ("_id", "_uuid", "_key")
PREDICTION_SUFFIXES = ("_score", "_prediction", "_probability", "_proba")


@dataclass(frozen=True)
class DriftMethod:
    """A drift test: ``p_value`` tests drift below the threshold, distances at/above it."""

    name: str
    score: str
    threshold: float
    strict: bool = False  # TFDV compares with ``>``, Evidently with ``>=`` (p-values: ``<``)

    def drifted(self, score: float, threshold: float) -> bool:
        if math.isnan(score):
            return False
        if self.score == "p_value":
            return score <= threshold if self.name == "ks" else score < threshold
        return score > threshold if self.strict else score >= threshold


METHODS: dict[str, DriftMethod] = {
    method.name: method
    for method in (
        DriftMethod("ks", "p_value", 0.05),
        DriftMethod("chisquare", "p_value", 0.05),
        DriftMethod("z", "p_value", 0.05),
        DriftMethod("wasserstein", "distance", 0.1),
        DriftMethod("jensenshannon", "distance", 0.1),
        DriftMethod("psi", "distance", 0.1),
        DriftMethod("kl_div", "distance", 0.1),
        DriftMethod("hellinger", "distance", 0.1),
        DriftMethod("linf", "distance", 0.01, strict=True),
        DriftMethod("js_divergence_log2", "distance", 0.01, strict=True),
    )
}


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column: the deciding test and every other score, for the report."""

    column: str
    type: str
    method: str
    score: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    n_unique: int
    scores: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    #: Bins of the report's histogram (at most ``MAX_BINS_KEPT``): labels, reference and
    #: current shares.
    bins: tuple[str, ...] = ()
    reference_shares: tuple[float, ...] = ()
    current_shares: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scores"] = {k: _finite_or_none(v) for k, v in self.scores.items()}
        out["score"] = _finite_or_none(self.score)
        return out


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift and the dataset verdict."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    reference_rows: int = 0
    current_rows: int = 0
    #: Columns not tested, each with its role (id, label, timestamp, prediction).
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def number_drifted(self) -> int:
        return sum(column.drifted for column in self.columns)

    @property
    def share_drifted(self) -> float:
        return self.number_drifted / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drifted(self) -> bool:
        return bool(self.columns) and self.share_drifted >= self.drift_share

    def column(self, name: str) -> ColumnDrift:
        for column in self.columns:
            if column.column == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "share_drifted": self.share_drifted,
            "number_drifted": self.number_drifted,
            "number_of_columns": len(self.columns),
            "drift_share": self.drift_share,
            "dataset_drifted": self.dataset_drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "not_tested": {name: role for name, role in self.skipped},
            "columns": {column.column: column.to_dict() for column in self.columns},
        }


def choose_method(reference_rows: int, numerical: bool, n_unique: int) -> str:
    """Evidently's default test for a column (``n_unique`` over reference | current)."""
    if reference_rows <= SMALL_REFERENCE_ROWS:
        if n_unique <= 2:
            return "z"
        if not numerical or n_unique <= 5:
            return "chisquare"
        return "ks"
    if numerical and n_unique > 5:
        return "wasserstein"
    return "jensenshannon"


def column_drift(
    name: str,
    reference: Sample,
    current: Sample,
    *,
    numerical: bool,
    method: str | None = None,
    threshold: float | None = None,
    extra_scores: bool = True,
) -> ColumnDrift:
    """Test one column; ``method``/``threshold`` default to Evidently's choice and threshold."""
    n_unique = st.union_nunique(reference, current)
    chosen = method or choose_method(reference.size, numerical, n_unique)
    if chosen not in METHODS:
        raise ValueError(f"unknown drift method `{chosen}`; expected one of {', '.join(METHODS)}")
    spec = METHODS[chosen]
    limit = spec.threshold if threshold is None else threshold
    base: dict[str, Any] = {
        "column": name,
        "type": "num" if numerical else "cat",
        "method": chosen,
        "threshold": limit,
        "reference_rows": reference.size,
        "current_rows": current.size,
        "n_unique": n_unique,
    }
    if reference.size == 0 or current.size == 0:
        side = "reference" if reference.size == 0 else "current"
        return ColumnDrift(**base, score=math.nan, drifted=False, note=f"no {side} values")
    scores = _all_scores(reference, current, numerical) if extra_scores else {}
    score = _score(chosen, reference, current, numerical, scores)
    view: dict[str, Any] = {}
    if extra_scores:
        labels, ref_shares, cur_shares = st.binned_view(reference, current, numerical=numerical)
        if len(labels) <= MAX_BINS_KEPT:
            view = {
                "bins": tuple(labels),
                "reference_shares": tuple(float(x) for x in ref_shares),
                "current_shares": tuple(float(x) for x in cur_shares),
            }
    return ColumnDrift(
        **base, score=score, drifted=spec.drifted(score, limit), scores=scores, **view
    )


def _all_scores(reference: Sample, current: Sample, numerical: bool) -> dict[str, float]:
    filled = st.binned_percents(reference, current, numerical=numerical, feel_zeroes=True)
    raw = st.binned_percents(reference, current, numerical=numerical, feel_zeroes=False)
    scores = {
        "psi": st.psi(*filled),
        "kl_div": st.kl_div(*filled),
        "jensenshannon": st.js_distance(*raw),
        "js_divergence_log2": st.js_divergence_log2(*raw),
        "hellinger": st.hellinger(*raw),
    }
    if not numerical or reference.nunique() <= st.BINNING_UNIQUE:
        scores["linf"] = st.linf_distance(reference, current)
    return scores


def _score(
    method: str, reference: Sample, current: Sample, numerical: bool, scores: dict[str, float]
) -> float:
    if method in scores:
        return scores[method]
    if method == "ks":
        return st.ks_pvalue(reference, current)
    if method == "wasserstein":
        value = st.wasserstein_normed(reference, current)
        scores["wasserstein"] = value
        return value
    if method == "chisquare":
        return st.chisquare_pvalue(reference, current)
    if method == "z":
        return st.z_pvalue(reference, current)
    if method == "linf":
        return st.linf_distance(reference, current)
    if method in ("psi", "kl_div"):
        filled = st.binned_percents(reference, current, numerical=numerical, feel_zeroes=True)
        return st.psi(*filled) if method == "psi" else st.kl_div(*filled)
    if method in ("jensenshannon", "js_divergence_log2", "hellinger"):
        raw = st.binned_percents(reference, current, numerical=numerical, feel_zeroes=False)
        if method == "jensenshannon":
            return st.js_distance(*raw)
        return st.js_divergence_log2(*raw) if method == "js_divergence_log2" else st.hellinger(*raw)
    raise ValueError(f"drift method `{method}` does not apply to this column")


def sample_of(column: pa.ChunkedArray | pa.Array) -> tuple[Sample, bool]:
    """The testable values of a column (nulls, NaN and ±inf dropped) and whether it is numerical."""
    kind = column_kind(column.type)
    series = pl.Series("v", column).drop_nulls()
    if kind == "numeric":
        values = series.cast(pl.Float64).to_numpy()
        return Sample(values=values[np.isfinite(values)]), True
    return Sample(values=np.asarray(series.cast(pl.String).to_list(), dtype=object)), False


def column_role(
    name: str, dtype: pa.DataType, roles: Mapping[str, str] | None = None
) -> str | None:
    """``id``, ``label``, ``timestamp`` or ``prediction`` for a column that is not a feature.

    ``roles`` (column -> role, e.g. the stage's keys, label and score) wins; otherwise the name
    decides (``id``/``*_id``, ``label``/``target``/..., ``score``/``*_probability``/``shap_*``)
    and a temporal type is a timestamp.
    """
    if roles and name in roles:
        return roles[name]
    lower = name.lower()
    if column_kind(dtype) == "temporal":
        return "timestamp"
    if lower == "id" or lower.endswith(ID_SUFFIXES):
        return "id"
    if lower in LABEL_NAMES:
        return "label"
    if lower in PREDICTION_NAMES or lower.endswith(PREDICTION_SUFFIXES) or lower[:5] == "shap_":
        return "prediction"
    return None


def drift_columns(
    schema: pa.Schema,
    columns: Sequence[str] | None = None,
    *,
    roles: Mapping[str, str] | None = None,
) -> list[str]:
    """Columns a drift check covers: the ``columns`` asked for, else every numeric, boolean and
    string column that is a feature (not an id, label, timestamp or prediction, see
    :func:`column_role`)."""
    if columns is not None:
        return list(columns)
    return [
        f.name
        for f in schema
        if column_kind(f.type) in ("numeric", "boolean", "categorical")
        and column_role(f.name, f.type, roles) is None
    ]


def skipped_columns(
    schema: pa.Schema, tested: Sequence[str], roles: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """The columns of ``schema`` left out of ``tested`` because of their role, with the role."""
    chosen = set(tested)
    return tuple(
        (f.name, role)
        for f in schema
        if f.name not in chosen and (role := column_role(f.name, f.type, roles)) is not None
    )


def detect_drift(
    reference: pa.Table,
    current: pa.Table,
    *,
    columns: Sequence[str] | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> DriftReport:
    """Single-process drift of two in-memory tables (the oracle of the distributed run)."""
    results = []
    names = drift_columns(reference.schema, columns)
    for name in names:
        ref, numerical = sample_of(reference.column(name))
        cur, _ = sample_of(current.column(name))
        results.append(
            column_drift(
                name,
                ref,
                cur,
                numerical=numerical,
                method=(methods or {}).get(name),
                threshold=(thresholds or {}).get(name),
            )
        )
    skipped = skipped_columns(reference.schema, names)
    return summarize(results, drift_share, reference.num_rows, current.num_rows, skipped)


def summarize(
    results: Sequence[ColumnDrift],
    drift_share: float,
    reference_rows: int,
    current_rows: int,
    skipped: Sequence[tuple[str, str]] = (),
) -> DriftReport:
    return DriftReport(tuple(results), drift_share, reference_rows, current_rows, tuple(skipped))


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
