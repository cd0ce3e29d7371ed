"""Selection: filters, leakage flag, rankings and consensus on data with a known answer."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from raypipe.features.selection import FeatureSelector


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 3000
    signal_a = rng.normal(size=n)
    signal_b = rng.normal(size=n)
    logit = 1.5 * signal_a - 1.0 * signal_b
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pl.DataFrame(
        {
            "signal_a": signal_a,
            "signal_b": signal_b,
            "noise_1": rng.normal(size=n),
            "noise_2": rng.normal(size=n),
            "constant": np.full(n, 3.0),
            "copy_of_a": signal_a,
            "near_a": signal_a + rng.normal(scale=0.05, size=n),
            "leak": y.astype(float) + rng.normal(scale=0.01, size=n),
            "with_nulls": pl.Series(signal_b).scatter(np.flatnonzero(rng.random(n) < 0.2), None),
            "label_text": ["x"] * n,
        }
    )
    return frame, y


def test_filters_and_rankings(data) -> None:
    frame, y = data
    selector = FeatureSelector(k=2).fit(frame, y)
    scores = {s.name: s for s in selector.scores_}
    assert scores["constant"].reason == "constant"
    assert scores["copy_of_a"].reason == "duplicate of `signal_a`"
    assert "|r| > 0.95" in scores["near_a"].reason or "|r| > 0.95" in scores["signal_a"].reason
    assert scores["leak"].status == "leakage" and selector.leaky_ == ["leak"]
    assert scores["label_text"].reason == "not numeric"
    assert set(selector.selected_) <= {"signal_a", "near_a", "signal_b", "with_nulls"}
    assert len(selector.selected_) == 2
    ranked = [s for s in selector.scores_ if s.consensus_rank is not None]
    assert sorted(s.consensus_rank for s in ranked) == list(range(1, len(ranked) + 1))
    noise = [scores["noise_1"], scores["noise_2"]]
    assert all(s.consensus_rank > 2 for s in noise)
    for method in ("mi_rank", "rfe_rank", "l1_rank"):
        assert sorted(getattr(s, method) for s in ranked) == list(range(1, len(ranked) + 1))
    assert selector.correlation_.shape == (len(ranked), len(ranked))


def test_leaky_feature_can_be_kept(data) -> None:
    frame, y = data
    selector = FeatureSelector(k=1, drop_leaky=False).fit(frame, y)
    assert selector.selected_ == ["leak"]
    assert selector.leaky_ == ["leak"]


def test_regression_target(data) -> None:
    frame, _ = data
    y = 2 * frame["signal_a"].to_numpy() + frame["noise_1"].to_numpy()
    selector = FeatureSelector(k=1).fit(frame.drop("leak"), y)
    assert selector.task_ == "regression"
    assert selector.selected_[0] in {"signal_a", "near_a"}
