"""Purchase fraud end to end, small: generate, build purchase-time features, train, replay a day.

The replay streams the last generated day's purchases through the stream operator (windows
pushed to the online store as they close) and the service (features read as of each purchase):
online scores must equal batch scores of the same features, and the alerts must find fraud.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from raypipe.features.purchase_time import (
    REQUEST_FIELDS,
    WINDOWS,
    feature_names,
    training_set,
    window_views,
)
from raypipe.features.store.online import StoreConfig
from raypipe.features.store.registry import register_view
from raypipe.features.streaming.operator import InlineStreamBackend, StreamConfig, StreamRunner
from raypipe.inference.model import ModelBlob
from raypipe.inference.predictor import Predictor
from raypipe.serving.replay import alert_metrics, replay
from raypipe.serving.service import OnlineService
from raypipe.serving.spec import ServiceSpec
from raypipe.synth import TelemetryConfig, generate_tables

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def purchases() -> pl.DataFrame:
    tables = generate_tables(TelemetryConfig(players=4_000, days=14, seed=5, shard_players=2_000))
    frames = {name: pl.from_arrow(tables[name]) for name in ("events", "players", "fraud_truth")}
    return training_set(frames["events"], frames["players"], frames["fraud_truth"])


def _train(frame: pl.DataFrame) -> ModelBlob:
    names = feature_names()
    matrix = frame.select(names).to_numpy().astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1, "seed": 0},
        xgb.DMatrix(matrix, label=frame["is_fraud"].to_numpy(), feature_names=names),
        40,
    )
    return ModelBlob.from_bytes(bytes(booster.save_raw("ubj")), format="xgboost-ubj", uri="fraud")


def test_replayed_day_scores_like_batch_and_finds_fraud(
    tmp_path: Path, purchases: pl.DataFrame
) -> None:
    last_day = purchases["ts"].max().date()  # type: ignore[union-attr]
    day_start = dt.datetime.combine(last_day, dt.time())
    history = purchases.filter(pl.col("ts") < day_start)
    day = purchases.filter(pl.col("ts") >= day_start).sort("ts")
    assert history["is_fraud"].sum() > 50 and day.height > 100
    blob = _train(history)

    store = StoreConfig("sqlite", path=str(tmp_path / "online.sqlite"))
    runners = []
    for view in window_views("purchase stream"):
        register_view(str(tmp_path), view)
        config = StreamConfig(
            WINDOWS[view.name],
            str(tmp_path / "stream" / view.name),
            partitions=1,
            store=store,
            namespace=view.namespace,
            write_windows=False,
        )
        runners.append(StreamRunner(config, InlineStreamBackend(config)))
    stream_columns = ["player_id", "ts", "amount"]
    for runner in runners:  # the stream has run up to the day's start
        runner.feed(history.select(stream_columns))

    def feed(event: pl.DataFrame) -> None:
        for runner in runners:
            runner.feed(event.select(stream_columns))

    spec = ServiceSpec(
        "fraud",
        {"champion": "models:/fraud@champion"},
        views=tuple(WINDOWS),
        full_feature_names=True,
        store=store,
        data_dir=str(tmp_path),
        log_requests=False,
    )
    service = OnlineService(spec, loader=lambda uri: (blob, "1"), resolver=lambda uri: None)
    report = replay(service, day, feed, REQUEST_FIELDS, alert_rate=0.1)
    summary = report.summary()

    batch = Predictor(blob)(day.select(feature_names()).to_arrow())["score"].to_numpy()
    equal = np.mean(report.scores.astype(np.float32) == batch)
    assert equal >= 0.99, f"online and batch scores agree on only {equal:.1%} of purchases"
    # Not vacuous: purchases in bursts read their windows from the stream's pushes.
    windowed = day["purchases_10m__count"].is_not_null().to_numpy()
    assert windowed.sum() >= 5
    assert (report.scores.astype(np.float32)[windowed] == batch[windowed]).all()
    base_rate = float(day["is_fraud"].mean())  # type: ignore[arg-type]
    assert summary["expected_precision"] > 2 * base_rate
    assert summary["expected_precision"] <= summary["oracle_expected_precision"] + 1e-9
    assert summary["recall"] > 0.2 and summary["p99_ms"] < 100
    # The same metrics from batch scores: the replay changed nothing but the path.
    offline = alert_metrics(
        batch, day["is_fraud"].to_numpy().astype(float), day["fraud_probability"].to_numpy(), 0.1
    )
    assert offline["expected_precision"] == pytest.approx(summary["expected_precision"], abs=0.02)
