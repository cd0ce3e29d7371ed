"""Fraudulent purchases follow realistic patterns: new accounts, bursts, foreign cards, refunds."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from raypipe.synth import FRAUD_TRUTH_SCHEMA


@pytest.fixture(scope="module")
def purchases(base_tables: dict[str, pa.Table]) -> pl.DataFrame:
    players = pl.from_arrow(base_tables["players"]).select(
        "player_id", "install_date", home=pl.col("country"), channel="acquisition_channel"
    )
    return (
        pl.from_arrow(base_tables["events"])
        .filter(pl.col("event_type") == "purchase")
        .join(players, on="player_id")
        .with_columns(
            age=(pl.col("event_date") - pl.col("install_date")).dt.total_days(),
            foreign=pl.col("country") != pl.col("home"),
            per_session=pl.len().over("session_id"),
        )
    )


def test_fraud_exists_and_is_a_minority(purchases: pl.DataFrame) -> None:
    rate = purchases["is_fraud"].mean()
    assert purchases["is_fraud"].sum() >= 20
    assert 0.01 < rate < 0.6


def test_fraud_comes_from_new_accounts(purchases: pl.DataFrame) -> None:
    new = purchases.filter(pl.col("age") < 4)["is_fraud"].mean()
    old = purchases.filter(pl.col("age") >= 7)["is_fraud"].mean()
    assert new > 5 * old
    assert old == 0.0  # account takeover is not simulated: fraud accounts buy only when new


def test_fraud_comes_in_bursts(purchases: pl.DataFrame) -> None:
    fraud = purchases.filter(pl.col("is_fraud"))["per_session"].mean()
    legit = purchases.filter(~pl.col("is_fraud"))["per_session"].mean()
    assert fraud > 2.0 > legit


def test_fraud_uses_foreign_cards_and_larger_amounts(purchases: pl.DataFrame) -> None:
    by = purchases.group_by("is_fraud").agg(pl.col("foreign").mean(), pl.col("amount").median())
    fraud = by.filter(pl.col("is_fraud")).row(0, named=True)
    legit = by.filter(~pl.col("is_fraud")).row(0, named=True)
    assert fraud["foreign"] > 0.5 > 0.1 > legit["foreign"]
    assert fraud["amount"] > 3 * legit["amount"]


def test_fraud_is_more_common_from_paid_channels(purchases: pl.DataFrame) -> None:
    organic = purchases.filter(pl.col("channel") == "organic")["is_fraud"].mean()
    ad_network = purchases.filter(pl.col("channel") == "ad_network")["is_fraud"].mean()
    assert ad_network > organic


def test_refunds_follow_purchases_and_flag_fraud(base_tables: dict[str, pa.Table]) -> None:
    events = pl.from_arrow(base_tables["events"])
    buys = events.filter(pl.col("event_type") == "purchase")
    refunds = events.filter(pl.col("event_type") == "refund")
    assert refunds.height > 0
    matched = (
        refunds.join(
            buys.select("session_id", "amount", "is_fraud", bought_at="ts"),
            on=["session_id", "amount", "is_fraud"],
            how="left",
        )
        .group_by(pl.col("ts"), pl.col("session_id"), pl.col("amount"))
        .agg(pl.col("bought_at").min())
    )
    assert matched["bought_at"].null_count() == 0
    assert (matched["ts"] > matched["bought_at"]).all()
    refund_rate = (
        refunds.group_by("is_fraud")
        .len()
        .join(buys.group_by("is_fraud").len(), on="is_fraud", suffix="_buys")
        .with_columns(rate=pl.col("len") / pl.col("len_buys"))
    )
    fraud_rate = refund_rate.filter(pl.col("is_fraud"))["rate"].item()
    legit_rate = refund_rate.filter(~pl.col("is_fraud"))["rate"].item()
    assert fraud_rate > 5 * legit_rate


def test_fraud_truth_is_calibrated_and_matches_the_event_log(
    base_tables: dict[str, pa.Table],
) -> None:
    truth = pl.from_arrow(base_tables["fraud_truth"])
    assert base_tables["fraud_truth"].schema.equals(FRAUD_TRUTH_SCHEMA)
    buys = pl.from_arrow(base_tables["events"]).filter(pl.col("event_type") == "purchase")
    joined = buys.join(truth, on=["player_id", "ts", "session_id"], how="full", suffix="_t")
    assert joined.height == buys.height == truth.height  # one truth row per purchase
    assert (joined["is_fraud"] == joined["is_fraud_t"]).all()
    # Labels are drawn from the probabilities: the fraud rate in each band matches its mean.
    banded = (
        truth.filter(pl.col("fraud_probability") > 0)
        .group_by((pl.col("fraud_probability") * 5).floor().alias("band"))
        .agg(pl.col("is_fraud").mean().alias("rate"), pl.col("fraud_probability").mean(), pl.len())
        .filter(pl.col("len") >= 50)
    )
    assert banded.height >= 2
    for row in banded.iter_rows(named=True):
        tolerance = (
            4 * (row["fraud_probability"] * (1 - row["fraud_probability"]) / row["len"]) ** 0.5
        )
        assert abs(row["rate"] - row["fraud_probability"]) < tolerance + 1e-9
    assert truth.filter(pl.col("fraud_probability") == 0)["is_fraud"].sum() == 0
    assert (
        0 < truth.filter(pl.col("fraud_probability").is_between(0.5, 0.99))["is_fraud"].mean() < 1
    )
