from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.training.metrics import (
    binary_metrics,
    cost_threshold,
    expected_calibration_error,
    reliability_bins,
    reliability_svg,
)

labels_and_probs = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(
            st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0])
            | st.floats(0, 1, allow_nan=False),
            min_size=n,
            max_size=n,
        ),
    )
)


def _ece_oracle(y: list[int], p: list[float], bins: int) -> float:
    total = 0.0
    for b in range(bins):
        members = [
            (yi, pi)
            for yi, pi in zip(y, p, strict=True)
            if (b / bins <= pi < (b + 1) / bins) or (b == bins - 1 and pi == 1.0)
        ]
        if members:
            observed = sum(m[0] for m in members) / len(members)
            predicted = sum(m[1] for m in members) / len(members)
            total += len(members) * abs(observed - predicted)
    return total / len(y)


@settings(max_examples=60, deadline=None)
@given(labels_and_probs)
def test_ece_matches_brute_force(data: tuple[list[int], list[float]]) -> None:
    y, p = data
    # Probabilities on a bin edge can fall either side through float rounding; keep them off it.
    p = [pi if pi in (0.0, 1.0) or abs(pi * 10 - round(pi * 10)) > 1e-9 else pi + 1e-6 for pi in p]
    p = [min(pi, 1.0) for pi in p]
    assert expected_calibration_error(np.array(y), np.array(p), 10) == pytest.approx(
        _ece_oracle(y, p, 10), abs=1e-9
    )


@settings(max_examples=60, deadline=None)
@given(labels_and_probs, st.floats(0.1, 10), st.floats(0.1, 10))
def test_cost_threshold_is_the_cheapest_cut(
    data: tuple[list[int], list[float]], cost_fp: float, cost_fn: float
) -> None:
    y, p = np.array(data[0]), np.array(data[1])
    best = cost_threshold(y, p, cost_fp=cost_fp, cost_fn=cost_fn)
    cuts = [*sorted(set(p.tolist())), np.inf]
    oracle = min(
        cost_fp * np.sum((p >= t) & (y == 0)) + cost_fn * np.sum((p < t) & (y == 1)) for t in cuts
    )
    assert best.cost == pytest.approx(oracle)
    flagged = p >= best.threshold if best.tp + best.fp else np.zeros_like(p, bool)
    assert best.tp == int(np.sum(flagged & (y == 1)))
    assert best.fp == int(np.sum(flagged & (y == 0)))
    assert best.tp + best.fp + best.tn + best.fn == len(y)


def test_binary_metrics_of_a_perfect_and_a_constant_model() -> None:
    y = np.array([0, 0, 1, 1])
    perfect = binary_metrics(y, np.array([0.0, 0.0, 1.0, 1.0]))
    assert perfect["roc_auc"] == 1.0 and perfect["brier"] == 0.0 and perfect["ece"] == 0.0
    assert perfect["threshold_f1"] == 1.0
    constant = binary_metrics(y, np.full(4, 0.5))
    assert constant["roc_auc"] == 0.5
    assert constant["log_loss"] == pytest.approx(np.log(2))
    assert constant["ece"] == pytest.approx(0.0)


def test_reliability_svg_draws_one_point_per_filled_bin() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.95, 0.12, 0.91])
    bins = reliability_bins(y, p, 10)
    assert [b.count for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    svg = reliability_svg(bins, title="a < b")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<circle") == 3
    assert "a &lt; b" in svg
