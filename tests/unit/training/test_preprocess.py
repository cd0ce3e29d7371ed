from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raypipe.errors import DataError
from raypipe.training.preprocess import TARGET_SMOOTHING, TablePreprocessor


def _table() -> tuple[pa.Table, np.ndarray]:
    table = pa.table(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "x": [1.0, None, 3.0, 4.0, 5.0, 6.0],
            "flag": [True, False, True, False, True, None],
            "city": ["a", "a", "b", None, "a", "solo"],
            "y": [1, 1, 1, 0, 1, 1],
        }
    )
    return table, np.array([1, 1, 1, 0, 1, 1], dtype=float)


def test_native_encoding_codes_nulls_and_unseen_as_missing() -> None:
    table, y = _table()
    pre = TablePreprocessor(exclude=("id", "y")).fit(table, y)
    assert pre.numeric_ == ("x", "flag") and pre.categorical_ == ("city",)
    other = pa.table({"x": [1.0], "flag": [False], "city": ["new"]})
    matrix = pre.transform(other, "native")
    assert matrix.feature_types == ("q", "q", "c")
    assert np.isnan(matrix.values[0, 2])
    codes = pre.transform(table, "native").values[:, 2]
    assert codes[0] == codes[1] == codes[4] == pre.categories_["city"].index("a")
    assert np.isnan(codes[3])
    assert np.isnan(pre.transform(table, "native").values[1, 0])


def test_cross_fitted_target_encoding_never_sees_the_rows_own_label() -> None:
    table, y = _table()
    pre = TablePreprocessor(exclude=("id", "y")).fit(table, y)
    train = pre.transform(table, "target", training=True).values[:, 2]
    # `solo` occurs once: out of fold it has no other rows, so it gets exactly the prior.
    assert train[5] == pytest.approx(np.mean(y))
    # Scoring rows get the smoothed mean over all training rows.
    scored = pre.transform(pa.table({"x": [0.0], "flag": [True], "city": ["a"]}), "target")
    expected = (3 + TARGET_SMOOTHING * np.mean(y)) / (3 + TARGET_SMOOTHING)  # labels 1, 1, 1
    assert scored.values[0, 2] == pytest.approx(expected, rel=1e-6)


def test_state_round_trips_through_json() -> None:
    table, y = _table()
    pre = TablePreprocessor(exclude=("id", "y")).fit(table, y)
    restored = TablePreprocessor.from_dict(pre.to_dict("target"))
    for encoding in ("native", "target"):
        np.testing.assert_array_equal(
            restored.transform(table, encoding).values, pre.transform(table, encoding).values
        )


def test_missing_feature_columns_are_named() -> None:
    table, y = _table()
    pre = TablePreprocessor(exclude=("id", "y")).fit(table, y)
    with pytest.raises(DataError, match="`city`"):
        pre.transform(table.drop(["city"]), "native")
