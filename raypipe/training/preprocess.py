"""From an Arrow table to float32 model matrices: numeric columns, categoricals, missing values.

Numeric and boolean columns become float32 with nulls as NaN (every tree candidate handles NaN;
the linear candidate imputes inside its own pipeline). Categorical (string or dictionary) columns
are encoded one of two ways, per candidate:

- ``native``: the category's index in the sorted training categories (NaN for null or unseen),
  declared to XGBoost as feature type ``c`` and to HistGradientBoosting as categorical;
- ``target``: cross-fitted target encoding. Training rows get the smoothed label mean of their
  category computed on the *other* folds, so a row never sees its own label; other rows get the
  mean over all training rows. Unseen categories get the prior.

The fitted state is JSON (:meth:`TablePreprocessor.to_dict`), stored beside the model, so scoring
applies exactly the training encoding without unpickling anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.errors import DataError, ModelError

if TYPE_CHECKING:
    from raypipe.tracking.models import LoadedModel

__all__ = ["ENCODINGS", "Matrix", "TablePreprocessor", "predict_table"]

logger = logging.getLogger(__name__)

ENCODINGS = ("native", "target")
#: Pseudo-count pulling a rare category's mean toward the prior.
TARGET_SMOOTHING = 20.0
TARGET_FOLDS = 5


@dataclass(frozen=True)
class Matrix:
    """A float32 feature matrix with its column names and XGBoost feature types (``q``/``c``)."""

    values: np.ndarray
    feature_names: tuple[str, ...]
    feature_types: tuple[str, ...]

    @property
    def categorical_mask(self) -> np.ndarray:
        return np.array([kind == "c" for kind in self.feature_types], dtype=bool)


class TablePreprocessor:
    """Learns which columns are features and how to encode them; scikit-learn style.

    Parameters
    ----------
    exclude
        Columns that are never features (label, ids, time column).
    seed
        Seed of the target-encoding folds.
    """

    def __init__(self, exclude: Sequence[str] = (), seed: int = 0) -> None:
        self.exclude = tuple(exclude)
        self.seed = seed

    def fit(self, table: pa.Table, y: np.ndarray) -> TablePreprocessor:
        """Choose feature columns from ``table``'s schema and learn the categorical encodings."""
        numeric: list[str] = []
        categorical: list[str] = []
        skipped: list[str] = []
        for field in table.schema:
            if field.name in self.exclude:
                continue
            kind = _column_kind(field.type)
            if kind == "numeric":
                numeric.append(field.name)
            elif kind == "categorical":
                categorical.append(field.name)
            else:
                skipped.append(field.name)
        if skipped:
            logger.info("not used as features (type not numeric or categorical): %s", skipped)
        if not numeric and not categorical:
            raise DataError(
                "the table has no numeric or categorical feature columns besides "
                f"{', '.join(f'`{c}`' for c in self.exclude)}",
                hint="add features, or check `label` and `id_columns`",
            )
        y = np.asarray(y, dtype=np.float64)
        self.numeric_ = tuple(numeric)
        self.prior_ = float(np.mean(y)) if len(y) else 0.0
        self.categories_: dict[str, list[str]] = {}
        self.target_means_: dict[str, dict[str, float]] = {}
        self.train_codes_: dict[str, np.ndarray] = {}
        self.train_target_: dict[str, np.ndarray] = {}
        folds = np.random.default_rng(self.seed).integers(0, TARGET_FOLDS, size=len(y))
        for name in categorical:
            strings = _strings(table.column(name))
            present = sorted({value for value in strings if value is not None})
            self.categories_[name] = present
            codes = _codes(strings, present)
            self.train_codes_[name] = codes
            self.target_means_[name] = _target_means(codes, y, present, self.prior_)
            self.train_target_[name] = _cross_fitted(codes, y, folds, len(present), self.prior_)
        self.n_train_ = len(y)
        return self

    @property
    def categorical_(self) -> tuple[str, ...]:
        return tuple(self.categories_)

    def transform(self, table: pa.Table, encoding: str, *, training: bool = False) -> Matrix:
        """The feature matrix of ``table``; ``training=True`` for the rows ``fit`` saw.

        Training rows get the cross-fitted target encoding; ``training=True`` with another table
        is an error.
        """
        if training and table.num_rows != self.n_train_:
            raise ValueError("`training=True` needs the table `fit` saw")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, received {encoding!r}")
        missing = [c for c in (*self.numeric_, *self.categorical_) if c not in table.column_names]
        if missing:
            raise DataError(
                f"feature column(s) {', '.join(f'`{c}`' for c in missing)} are missing",
                hint="score a table with the columns the model was trained on",
            )
        columns = [_numeric(table.column(name)) for name in self.numeric_]
        types = ["q"] * len(self.numeric_)
        for name in self.categorical_:
            if training:
                codes = self.train_codes_[name]
                target = self.train_target_[name]
            else:
                codes = _codes(_strings(table.column(name)), self.categories_[name])
                target = None
            if encoding == "native":
                columns.append(np.where(codes < 0, np.nan, codes).astype(np.float32))
                types.append("c")
            else:
                if target is None:
                    means = self.target_means_[name]
                    lookup = np.array(
                        [means[c] for c in self.categories_[name]] + [self.prior_], dtype=np.float64
                    )
                    target = lookup[np.where(codes < 0, len(lookup) - 1, codes)]
                columns.append(target.astype(np.float32))
                types.append("q")
        values = np.column_stack(columns) if columns else np.empty((table.num_rows, 0), np.float32)
        return Matrix(
            values=np.asarray(values, dtype=np.float32),
            feature_names=(*self.numeric_, *self.categorical_),
            feature_types=tuple(types),
        )

    def to_dict(self, encoding: str) -> dict[str, Any]:
        """The JSON-able state ``from_dict`` restores for scoring (training-only arrays dropped)."""
        return {
            "encoding": encoding,
            "numeric": list(self.numeric_),
            "categories": self.categories_,
            "target_means": self.target_means_ if encoding == "target" else {},
            "prior": self.prior_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TablePreprocessor:
        self = cls()
        self.numeric_ = tuple(state["numeric"])
        self.categories_ = {k: list(v) for k, v in state["categories"].items()}
        self.target_means_ = {k: dict(v) for k, v in state.get("target_means", {}).items()}
        self.prior_ = float(state.get("prior", 0.0))
        self.train_codes_, self.train_target_, self.n_train_ = {}, {}, -1
        return self


def predict_table(loaded: LoadedModel, table: pa.Table) -> np.ndarray:
    """Scores of a loaded registry model on an Arrow table of raw training columns
    (categoricals as strings), encoded as in training (``loaded.preprocess``)."""
    if not loaded.preprocess:
        raise ModelError(f"`{loaded.uri}` has no preprocessing state; score a feature matrix")
    pre = TablePreprocessor.from_dict(loaded.preprocess)
    matrix = pre.transform(table, loaded.preprocess["encoding"]).values
    model = loaded.model
    if loaded.format.startswith("xgboost"):
        return np.asarray(model.inplace_predict(matrix, validate_features=False), np.float64)
    return np.asarray(model.predict(matrix), np.float64)


def _column_kind(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        return "categorical"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype):
        return "numeric"
    if pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "categorical"
    return "other"


def _numeric(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type):
        column = pc.cast(column, pa.float64())
    values = column.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32)


def _strings(column: pa.ChunkedArray) -> list[str | None]:
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, pa.string())
    strings: list[str | None] = column.to_pylist()
    return strings


def _codes(strings: list[str | None], categories: list[str]) -> np.ndarray:
    index = {value: i for i, value in enumerate(categories)}
    return np.array(
        [index.get(value, -1) if value is not None else -1 for value in strings], np.int64
    )


def _target_means(
    codes: np.ndarray, y: np.ndarray, categories: list[str], prior: float
) -> dict[str, float]:
    known = codes >= 0
    sums = np.bincount(codes[known], weights=y[known], minlength=len(categories))
    counts = np.bincount(codes[known], minlength=len(categories))
    means = (sums + TARGET_SMOOTHING * prior) / (counts + TARGET_SMOOTHING)
    return {value: float(means[i]) for i, value in enumerate(categories)}


def _cross_fitted(
    codes: np.ndarray, y: np.ndarray, folds: np.ndarray, n_categories: int, prior: float
) -> np.ndarray:
    out = np.full(len(codes), prior, dtype=np.float64)
    known = codes >= 0
    size = n_categories + 1
    total_sum = np.bincount(codes[known], weights=y[known], minlength=size)
    total_count = np.bincount(codes[known], minlength=size)
    for fold in range(TARGET_FOLDS):
        inside = known & (folds == fold)
        fold_sum = np.bincount(codes[inside], weights=y[inside], minlength=size)
        fold_count = np.bincount(codes[inside], minlength=size)
        other_sum = total_sum - fold_sum
        other_count = total_count - fold_count
        means = (other_sum + TARGET_SMOOTHING * prior) / (other_count + TARGET_SMOOTHING)
        out[inside] = means[codes[inside]]
    return out
