from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.errors import DataError
from raypipe.federated.partition import partition_by_column, partition_dirichlet, partition_iid


def _is_partition(parts: list[np.ndarray], n: int) -> bool:
    joined = np.sort(np.concatenate(parts))
    return bool(np.array_equal(joined, np.arange(n)))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["de", "fr", "us", None]), min_size=1, max_size=60))
def test_partition_by_column_groups_rows_by_value(values):
    names, parts = partition_by_column(np.array(values, dtype=object))
    assert _is_partition(parts, len(values))
    for name, rows in zip(names, parts, strict=False):
        assert {("<null>" if values[r] is None else values[r]) for r in rows} == {name}


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 500), clients=st.integers(1, 10), seed=st.integers(0, 99))
def test_iid_is_a_balanced_partition(n, clients, seed):
    parts = partition_iid(n, clients, seed)
    assert _is_partition(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=20, deadline=None)
@given(alpha=st.sampled_from([0.5, 1.0, 100.0]), seed=st.integers(0, 99))
def test_dirichlet_is_a_partition_with_minimum_size(alpha, seed):
    labels = np.random.default_rng(seed).integers(0, 2, 2000)
    parts = partition_dirichlet(labels, 10, alpha, min_partition_size=10, seed=seed)
    assert _is_partition(parts, 2000)
    assert min(len(p) for p in parts) >= 10


def test_small_alpha_skews_labels_more_than_large_alpha():
    labels = np.random.default_rng(0).integers(0, 2, 20_000)

    def spread(alpha: float) -> float:
        parts = partition_dirichlet(labels, 20, alpha, min_partition_size=1, seed=3)
        return float(np.std([labels[p].mean() for p in parts]))

    assert spread(0.3) > 3 * spread(100.0)


def test_impossible_dirichlet_split_is_a_clear_error():
    with pytest.raises(DataError, match=r"min_partition_size|cannot give"):
        partition_dirichlet(np.zeros(50, int), 10, 0.5, min_partition_size=10)
