"""Predictor: load a model once, score Arrow batches by the model's feature names.

A plain callable class: unit tests call it directly, and Ray runs it unchanged inside a
long-lived actor (the shape of Ray Data's ``map_batches(Predictor, ...)``). Arrow columns go to
one F-ordered float32 matrix with a single memcpy per column (a float32 column without nulls is
viewed, not converted), then ``Booster.inplace_predict`` with ``nthread`` threads. Scoring a
batch reuses its thread's matrix of the previous batch: a fresh one is fresh memory, which the
kernel zeroes page by page before the copy writes it.

Missing values: nulls and NaNs in feature columns are allowed and mean "missing", which XGBoost
routes down each tree's default branch, exactly as in training. Integer and boolean feature
columns are cast to float32; any other type is a :class:`~raypipe.errors.SchemaError`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe import collector
from raypipe.errors import ModelError, SchemaError
from raypipe.inference.model import ModelBlob

if TYPE_CHECKING:  # imported where it is used: loading a model without one stays light
    from raypipe.training.preprocess import TablePreprocessor

__all__ = ["SCORE_COLUMN", "SHAP_PREFIX", "Predictor", "check_feature_types"]

logger = logging.getLogger(__name__)

SCORE_COLUMN = "score"
SHAP_PREFIX = "shap_"


def _is_numeric(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_floating(data_type)
        or pa.types.is_integer(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_null(data_type)
    )


def check_feature_types(
    schema: pa.Schema,
    feature_names: Sequence[str],
    source: str,
    categorical: Sequence[str] = (),
) -> None:
    """Raise a :class:`SchemaError` naming ``source`` and the first bad column, if any.

    Every feature must be present and numeric (float, integer or boolean), except the
    ``categorical`` ones of a raypipe-trained model, which may be of any type.
    """
    names = set(schema.names)
    missing = [name for name in feature_names if name not in names]
    if missing:
        shown = ", ".join(f"`{name}`" for name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SchemaError(
            f"`{source}` lacks feature column(s) {shown}{more} that the model needs",
            hint="score data with the columns the model was trained on (see the model's "
            "feature names), or choose the model trained on this data",
        )
    for name in feature_names:
        if name in categorical:
            continue
        data_type = schema.field(name).type
        if not _is_numeric(data_type):
            raise SchemaError(
                f"`{source}`: feature column `{name}` has type `{data_type}`, expected a number "
                "(float, integer or boolean)",
                hint="cast the column to float before scoring; missing values may be null or NaN",
            )


class Predictor:
    """Scores Arrow batches with one model loaded once.

    Parameters
    ----------
    model
        The model as bytes (see :func:`raypipe.inference.model.read_model`).
    nthread
        Threads XGBoost uses per batch; set it to the CPUs the worker owns.
    id_columns
        Columns copied from the input to the output, before ``score``.
    shap
        Also output one ``shap_<feature>`` column per feature and ``shap_bias`` (XGBoost's
        ``pred_contribs``).

    Attributes
    ----------
    feature_names_
        The model's feature names, in its order; input columns are taken by these names.
    categorical_
        Those of them that are categorical (raypipe-trained models with an encoding state).
    """

    def __init__(
        self,
        model: ModelBlob,
        *,
        nthread: int = 1,
        id_columns: Sequence[str] = (),
        shap: bool = False,
    ) -> None:
        self.model = model
        self.nthread = max(1, int(nthread))
        self.id_columns = tuple(id_columns)
        self.shap = shap
        self._booster: Any = None
        self._sklearn: Any = None
        self._openmp: Any = None
        self._scratch = threading.local()  # per scoring thread: the matrix batches are copied into
        self._preprocessor: TablePreprocessor | None = None
        self._encoding = "native"
        self.categorical_: tuple[str, ...] = ()
        self.feature_names_: tuple[str, ...] = ()
        self._load()

    def _load(self) -> None:
        if self.model.format.startswith("xgboost"):
            xgb = _import_xgboost()
            try:
                booster = xgb.Booster(model_file=_xgboost_binary(self.model))
            except xgb.core.XGBoostError as exc:
                raise ModelError(
                    f"Model `{self.model.uri}` is not a valid XGBoost model: "
                    f"{str(exc).splitlines()[0]}",
                    hint="save it with `booster.save_model('model.ubj')` and do not edit it",
                ) from exc
            booster.set_param({"nthread": self.nthread})
            self._booster = booster
            names = booster.feature_names
        elif self.model.format in ("sklearn-skops", "sklearn"):
            self._sklearn = _load_sklearn(self.model)
            if self.shap and not self.explainable:
                raise ModelError(
                    f"SHAP contributions need an XGBoost or linear model; `{self.model.uri}` is a "
                    f"scikit-learn `{_estimator_name(self._sklearn)}`",
                    hint="drop `--shap`, use `shap: auto` in a stage, or score an XGBoost model",
                )
            names = list(getattr(self._sklearn, "feature_names_in_", []) or [])
        else:
            raise ModelError(f"Model `{self.model.uri}` has unknown format `{self.model.format}`")
        if self.model.preprocess:
            from raypipe.training.preprocess import TablePreprocessor

            state = dict(self.model.preprocess)
            self._preprocessor = TablePreprocessor.from_dict(state)
            self._encoding = str(state.get("encoding", "native"))
            self.categorical_ = tuple(state.get("categories", {}))
            names = [*state.get("numeric", []), *self.categorical_]
        if not names:
            raise ModelError(
                f"Model `{self.model.uri}` has no feature names, so columns cannot be matched "
                "by name",
                hint="train from a named table (DataFrame, or DMatrix with `feature_names=`)",
            )
        self.feature_names_ = tuple(str(name) for name in names)

    @property
    def explainable(self) -> bool:
        """Whether :meth:`contributions` works: XGBoost, or a linear scikit-learn candidate."""
        return self._booster is not None or bool(getattr(self._sklearn, "has_contributions", False))

    @property
    def output_names(self) -> list[str]:
        """The output columns after the id columns."""
        names = [SCORE_COLUMN]
        if self.shap:
            names += [f"{SHAP_PREFIX}{name}" for name in self.feature_names_]
            names.append(f"{SHAP_PREFIX}bias")
        return names

    def feature_matrix(
        self, batch: pa.Table | pa.RecordBatch, *, reuse: bool = False
    ) -> np.ndarray:
        """The batch's feature columns as one F-ordered float32 matrix (one copy per column).

        With ``reuse`` the matrix is this thread's scratch matrix, overwritten by its next call
        with ``reuse``: for a caller that is done with it before then (:meth:`__call__`).
        A raypipe-trained model with an encoding state applies that state instead (categoricals
        as codes or target means, exactly as in training).
        """
        if self._preprocessor is not None:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            return self._preprocessor.transform(table, self._encoding).values
        shape = (batch.num_rows, len(self.feature_names_))
        if reuse:
            matrix = self._scratch_matrix(shape)
        else:
            matrix = np.empty(shape, dtype=np.float32, order="F")
        for index, name in enumerate(self.feature_names_):
            column = batch.column(name)
            if column.type != pa.float32():
                column = pc.cast(column, pa.float32())
            if isinstance(column, pa.ChunkedArray) and column.num_chunks == 1:
                column = column.chunk(0)
            matrix[:, index] = column.to_numpy(zero_copy_only=False)
        return matrix

    def _scratch_matrix(self, shape: tuple[int, int]) -> np.ndarray:
        """This thread's F-ordered matrix of ``shape``: a prefix of cells that grow to the
        largest batch and then stay (F-contiguous for any row count, so a file's short last
        batch takes no new memory)."""
        size = shape[0] * shape[1]
        cells = getattr(self._scratch, "cells", None)
        if cells is None or cells.size < size:
            cells = self._scratch.cells = np.empty(size, dtype=np.float32)
        return cells[:size].reshape(shape, order="F")

    def _threads(self) -> Any:
        """Let OpenMP use ``nthread`` threads for the call (restored afterwards).

        Ray workers run with ``OMP_NUM_THREADS=1`` (so N tasks on N CPUs do not oversubscribe),
        and XGBoost caps ``nthread`` at OpenMP's limit: without this, ``nthread=2`` in a worker
        silently predicts on one thread.
        """
        if self.nthread <= 1:
            return contextlib.nullcontext()
        if self._openmp is None:
            from threadpoolctl import ThreadpoolController

            self._openmp = ThreadpoolController()
        return self._openmp.limit(limits=self.nthread, user_api="openmp")

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of a feature matrix: probability of the positive class, or the regression."""
        if self._booster is not None:
            with self._threads():
                scores = self._booster.inplace_predict(matrix, validate_features=False)
        else:
            model = self._sklearn
            if hasattr(model, "predict_proba"):
                scores = model.predict_proba(matrix)[:, -1]
            else:
                scores = model.predict(matrix)
        return np.asarray(scores, dtype=np.float32)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """SHAP contributions, one column per feature plus the bias (XGBoost ``pred_contribs``).

        Linear scikit-learn candidates give their exact values in the same margin space.
        """
        if self._booster is None:
            return np.asarray(self._sklearn.contributions(matrix), dtype=np.float32)
        import xgboost as xgb

        dmatrix = xgb.DMatrix(matrix, feature_names=list(self.feature_names_), nthread=self.nthread)
        with self._threads():
            contributions = self._booster.predict(dmatrix, pred_contribs=True)
        return np.asarray(contributions, dtype=np.float32)

    def __call__(self, batch: pa.Table | pa.RecordBatch) -> pa.Table:
        """Score a batch: its id columns, then ``score`` (then the SHAP columns)."""
        matrix = self.feature_matrix(batch, reuse=True)  # scores and contributions are copies
        scores = self.predict(matrix)
        columns: dict[str, Any] = {name: batch.column(name) for name in self.id_columns}
        if scores.ndim == 1:
            columns[SCORE_COLUMN] = pa.array(scores)
        else:
            columns[SCORE_COLUMN] = pa.FixedSizeListArray.from_arrays(
                pa.array(scores.ravel()), scores.shape[1]
            )
        if self.shap:
            contributions = self.contributions(matrix)
            if contributions.ndim != 2:
                raise ModelError(
                    f"SHAP contributions of multi-output model `{self.model.uri}` are not supported"
                )
            for index, name in enumerate(self.output_names[1:]):
                columns[name] = pa.array(contributions[:, index])
        return pa.table(columns)


@functools.lru_cache(maxsize=1)  # one model's binary form: a process scores with one at a time
def _parsed_binary(data: bytes) -> bytes:
    import xgboost as xgb

    return bytes(xgb.Booster(model_file=bytearray(data)).save_raw("ubj"))


def _xgboost_binary(model: ModelBlob) -> bytearray:
    """The model in XGBoost's binary form (UBJSON), parsed from its bytes once per process.

    A process loads the same model more than once (``raypipe infer`` checks it, reads its output
    names, then scores with it): a 1.2 MB JSON model parses in ~30 ms, its binary form in ~2.
    Keyed by the model's bytes (the last model only, so a long-lived process that moves to a new
    version holds no old one); each load still makes its own Booster.
    """
    if model.format != "xgboost-json":
        return bytearray(model.data)
    return bytearray(_parsed_binary(bytes(model.data)))


def _import_xgboost() -> Any:
    """``import xgboost`` with the collector paused (see :mod:`raypipe.collector`)."""
    with collector.paused():
        import xgboost
    return xgboost


def _estimator_name(model: Any) -> str:
    return type(getattr(model, "estimator", model)).__name__


def _load_sklearn(model: ModelBlob) -> Any:
    """A scikit-learn model read by ``read_model``: skops with the type allow-list, or a legacy
    pickle that ``load_model`` already let through (registry checksum and explicit opt-in)."""
    from raypipe.tracking.models import load_sklearn_model

    return load_sklearn_model(model.data, model.format, allow_pickle=model.format == "sklearn")
