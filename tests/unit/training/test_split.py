from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from raypipe.errors import DataError
from raypipe.training.split import detect_time_column, split_rows


def test_time_split_trains_strictly_before_it_tests() -> None:
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i % 20) for i in range(200)]
    table = pa.table({"day": pa.array(days, pa.date32()), "y": [i % 2 for i in range(200)]})
    split = split_rows(
        table, label="y", time_column="day", test_fraction=0.25, seed=0, classification=True
    )
    assert split.method == "time"
    train_days = [days[i] for i in split.train]
    test_days = [days[i] for i in split.test]
    assert max(train_days) < min(test_days)
    assert sorted([*split.train, *split.test]) == list(range(200))
    assert 0.15 < len(split.test) / 200 < 0.35


def test_a_single_valued_time_column_falls_back_to_stratified() -> None:
    y = np.array([1] * 30 + [0] * 70)
    table = pa.table({"cutoff": pa.array([dt.date(2026, 1, 1)] * 100, pa.date32()), "y": y})
    assert detect_time_column(table.schema, exclude=("y",)) == "cutoff"
    split = split_rows(
        table, label="y", time_column="cutoff", test_fraction=0.2, seed=1, classification=True
    )
    assert split.method == "stratified"
    assert y[split.test].sum() == 6 and len(split.test) == 20
    assert not set(split.train) & set(split.test)


def test_unknown_time_column_is_an_error() -> None:
    table = pa.table({"y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="`when`"):
        split_rows(
            table, label="y", time_column="when", test_fraction=0.5, seed=0, classification=True
        )
