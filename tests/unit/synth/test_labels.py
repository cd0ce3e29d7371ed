"""Churn labels: consistent with the generated sessions, exactly calibrated, learnable."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from raypipe.synth import CHURN_HORIZON_DAYS, TelemetryConfig
from raypipe.synth.engagement import MAX_LEVEL, session_rates, transition_probabilities
from raypipe.synth.labels import churn_probability
from raypipe.synth.players import Players
from raypipe.synth.simulate import simulate_players
from tests.unit.synth.conftest import BASE


def _labels(tables: dict[str, pa.Table]) -> tuple[np.ndarray, np.ndarray]:
    churned = tables["churn_labels"].column("churned").to_numpy(zero_copy_only=False)
    return churned, tables["churn_truth"].column("churn_probability").to_numpy()


def test_churned_means_no_session_in_the_14_days_after_the_cutoff(
    future_config: TelemetryConfig, future_tables: dict[str, pa.Table]
) -> None:
    cutoff = dt.datetime.combine(future_config.cutoff, dt.time())
    end = cutoff + dt.timedelta(days=CHURN_HORIZON_DAYS)
    events = pl.from_arrow(future_tables["events"])
    assert events["ts"].max() >= cutoff
    active = set(
        events.filter(
            (pl.col("event_type") == "session_start") & pl.col("ts").is_between(cutoff, end, "left")
        )["player_id"]
    )
    labels = pl.from_arrow(future_tables["churn_labels"])
    expected = ~labels["player_id"].is_in(list(active))
    assert (labels["churned"] == expected).all()
    assert (labels["cutoff"] == cutoff).all()


def test_future_days_do_not_change_the_history(
    base_tables: dict[str, pa.Table], future_tables: dict[str, pa.Table]
) -> None:
    cutoff = dt.datetime.combine(BASE.cutoff, dt.time())
    history = pl.from_arrow(future_tables["events"]).filter(pl.col("ts") < cutoff)
    assert history.equals(pl.from_arrow(base_tables["events"]).filter(pl.col("ts") < cutoff))
    for name in ("players", "churn_labels", "churn_truth"):
        assert base_tables[name].equals(future_tables[name])


def test_churn_rate_and_bayes_auc_in_range(base_tables: dict[str, pa.Table]) -> None:
    churned, probability = _labels(base_tables)
    assert 0.2 <= churned.mean() <= 0.4
    assert 0.8 <= roc_auc_score(churned, probability) <= 0.92


def test_truth_is_calibrated(base_tables: dict[str, pa.Table]) -> None:
    churned, probability = _labels(base_tables)
    assert abs(churned.mean() - probability.mean()) < 4 * np.sqrt(
        (probability * (1 - probability)).sum()
    ) / len(probability)
    bins = np.digitize(probability, [0.1, 0.3, 0.5, 0.7, 0.9])
    for b in np.unique(bins):
        inside = bins == b
        spread = np.sqrt((probability[inside] * (1 - probability[inside])).sum()) / inside.sum()
        assert abs(churned[inside].mean() - probability[inside].mean()) < 4 * spread + 1e-9


def _observed_features(tables: dict[str, pa.Table], config: TelemetryConfig) -> np.ndarray:
    cutoff = dt.datetime.combine(config.cutoff, dt.time())
    events = pl.from_arrow(tables["events"]).with_columns(
        days_before=(pl.lit(cutoff) - pl.col("ts")).dt.total_seconds() / 86_400
    )
    per_player = events.group_by("player_id").agg(
        recency=pl.col("days_before").min(),
        sessions_7=((pl.col("event_type") == "session_start") & (pl.col("days_before") < 7)).sum(),
        sessions_all=(pl.col("event_type") == "session_start").sum(),
        fails_7=((pl.col("event_type") == "level_fail") & (pl.col("days_before") < 7)).sum(),
        crashes=(pl.col("event_type") == "crash").sum(),
        purchases=(pl.col("event_type") == "purchase").sum(),
    )
    players = pl.from_arrow(tables["players"]).select(
        "player_id", age=(pl.lit(config.cutoff) - pl.col("install_date")).dt.total_days()
    )
    features = players.join(per_player, on="player_id", how="left").sort("player_id")
    features = features.with_columns(pl.col("recency").fill_null(pl.col("age") + 1)).fill_null(0)
    x = features.drop("player_id").to_numpy().astype(float)
    return np.column_stack([x, np.log1p(x[:, 1]), np.log1p(x[:, 2])])


def test_a_simple_model_gets_close_to_but_not_above_the_bayes_auc(
    base_tables: dict[str, pa.Table],
) -> None:
    churned, probability = _labels(base_tables)
    x = _observed_features(base_tables, BASE)
    model = LogisticRegression(max_iter=2_000)
    scores = cross_val_predict(
        model, (x - x.mean(0)) / (x.std(0) + 1e-9), churned, cv=3, method="predict_proba"
    )[:, 1]
    model_auc = roc_auc_score(churned, scores)
    bayes = roc_auc_score(churned, probability)
    assert model_auc > 0.7
    assert bayes - 0.12 < model_auc < bayes + 0.02


def _brute_force(rate: float, down_logit: float, up_logit: float, age: int, level: int) -> float:
    """P(no session for 14 days) as a product of explicit matrices."""
    size = MAX_LEVEL + 1
    levels = np.arange(size)
    survive = np.ones(size)
    for offset in reversed(range(CHURN_HORIZON_DAYS)):
        down, up = transition_probabilities(
            levels, np.full(size, down_logit), np.full(size, up_logit), np.full(size, age + offset)
        )
        matrix = np.zeros((size, size))
        for s in levels:
            if s > 0:
                matrix[s, s - 1] += down[s]
            if s < MAX_LEVEL:
                matrix[s, s + 1] += up[s]
            matrix[s, s] += 1.0 - down[s] - up[s]
        survive = np.diag(np.exp(-session_rates(levels, rate))) @ matrix @ survive
    return float(survive[level])


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(0.3, 3.0),
    down_logit=st.floats(-5.0, 3.0),
    up_logit=st.floats(-5.0, 3.0),
    install_day=st.integers(0, 9),
    level=st.integers(0, MAX_LEVEL),
)
def test_churn_probability_matches_the_matrix_product(
    rate: float, down_logit: float, up_logit: float, install_day: int, level: int
) -> None:
    config = TelemetryConfig(players=1, days=10)

    def one(value: float, dtype: type = np.float64) -> np.ndarray:
        return np.array([value], dtype=dtype)

    players = Players(
        player_id=one(0, np.int64),
        country=one(0, np.int8),
        platform=one(0, np.int8),
        install_day=one(install_day, np.int32),
        channel=one(0, np.int8),
        segment=one(0, np.int8),
        skill=one(0.0),
        fraudster=one(False, bool),
        down_logit=one(down_logit),
        up_logit=one(up_logit),
        rate_multiplier=one(rate),
        initial_level=one(3, np.int8),
    )
    got = churn_probability(config, players, one(level, np.int8))[0]
    expected = _brute_force(rate, down_logit, up_logit, config.days - install_day, level)
    assert got == np.float64(expected) or abs(got - expected) < 1e-12


@pytest.mark.parametrize(
    ("down_logit", "up_logit", "rate", "install_day"),
    [(-1.5, -1.6, 1.0, 0), (-0.5, -2.5, 0.6, 6), (-1.0, -1.6, 1.4, 9)],
)
def test_simulated_labels_follow_the_exact_probability(
    down_logit: float, up_logit: float, rate: float, install_day: int
) -> None:
    """Many copies of one player: churn frequency per level at the cutoff equals the formula."""
    n = 20_000
    config = TelemetryConfig(players=n, days=10, seed=0, shard_players=n)
    players = Players(
        player_id=np.arange(n, dtype=np.int64),
        country=np.zeros(n, np.int8),
        platform=np.zeros(n, np.int8),
        install_day=np.full(n, install_day, np.int32),
        channel=np.zeros(n, np.int8),
        segment=np.ones(n, np.int8),
        skill=np.zeros(n),
        fraudster=np.zeros(n, bool),
        down_logit=np.full(n, down_logit),
        up_logit=np.full(n, up_logit),
        rate_multiplier=np.full(n, rate),
        initial_level=np.full(n, 3, np.int8),
    )
    simulation = simulate_players(
        config, players, np.random.default_rng(1), np.random.default_rng(2)
    )
    churned = simulation.label_window_sessions == 0
    probability = churn_probability(config, players, simulation.level_at_cutoff)
    checked = 0
    for level in np.unique(simulation.level_at_cutoff):
        inside = simulation.level_at_cutoff == level
        if inside.sum() < 500:
            continue
        p = probability[inside][0]
        assert np.all(probability[inside] == p)
        error = np.sqrt(p * (1 - p) / inside.sum())
        assert abs(churned[inside].mean() - p) < 4.5 * error + 1e-9, level
        checked += 1
    assert checked >= 3
