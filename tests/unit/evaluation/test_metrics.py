"""Regression and ranking figures against hand-computed values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raypipe.errors import DataError
from raypipe.evaluation import (
    decile_calibration,
    join_on_keys,
    ndcg_at_k,
    normalized_gini,
    recall_at_k,
    rmse,
)


def test_rmse() -> None:
    assert rmse(np.array([0.0, 2.0]), np.array([1.0, 1.0])) == 1.0


def test_normalized_gini_perfect_reversed_and_random() -> None:
    rng = np.random.default_rng(0)
    y = rng.gamma(0.3, 10.0, size=5_000)
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) == pytest.approx(-1.0)
    assert abs(normalized_gini(y, rng.normal(size=5_000))) < 0.05
    # only the order counts
    assert normalized_gini(y, np.sqrt(y)) == pytest.approx(1.0)
    assert normalized_gini(np.zeros(3), np.arange(3.0)) == 0.0


def test_normalized_gini_hand_value() -> None:
    # order by prediction: y = [0, 10, 5, 0]; cumulative shares 0, 2/3, 1, 1 -> sum 8/3
    y = np.array([10.0, 0.0, 5.0, 0.0])
    gini = (8 / 3) / 4 - 5 / 8
    best = (2 / 3 + 1 + 1 + 1) / 4 - 5 / 8
    assert normalized_gini(y, np.array([3.0, 4.0, 2.0, 1.0])) == pytest.approx(gini / best)


def test_decile_calibration_groups_by_prediction() -> None:
    prediction = np.arange(100.0)
    y = prediction * 2
    rows = decile_calibration(y, prediction, truth=prediction, bins=10)
    assert [r["decile"] for r in rows] == list(range(1, 11))
    assert rows[0]["mean_prediction"] == pytest.approx(4.5)
    assert rows[0]["mean_outcome"] == pytest.approx(9.0)
    assert rows[-1]["mean_truth"] == pytest.approx(94.5)
    assert sum(r["rows"] for r in rows) == 100


def test_recall_and_ndcg() -> None:
    relevant = np.array([[True, False, True, False], [False, False, False, False]])
    recommended = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    assert recall_at_k(recommended, relevant, 1) == 1.0  # min(k, |relevant|) = 1
    assert recall_at_k(recommended, relevant, 2) == 0.5
    gain = relevant.astype(float)
    ideal = 1 + 1 / np.log2(3)
    assert ndcg_at_k(recommended, gain, 3) == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    assert ndcg_at_k(np.array([[2, 0, 1, 3]]), gain[:1], 2) == pytest.approx(1.0)


def test_join_on_keys_keeps_order_and_refuses_missing_keys() -> None:
    left = pa.table({"id": [3, 1, 2]})
    right = pa.table({"id": [1, 2, 3], "v": [10.0, 20.0, 30.0]})
    assert join_on_keys(left, right, ["id"], ["v"], name="t").column("v").to_pylist() == [
        30.0,
        10.0,
        20.0,
    ]
    with pytest.raises(DataError, match="no row for 1 of 3"):
        join_on_keys(left, right.slice(0, 2), ["id"], ["v"], name="t")
    with pytest.raises(DataError, match="lacks column"):
        join_on_keys(left, right, ["id"], ["w"], name="t")
