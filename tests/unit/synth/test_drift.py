"""Drift options change the data from their start day on, and only then."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from raypipe.synth import DriftConfig, TelemetryConfig, generate_tables

START_DAY = 20


def _drifted(**drift: object) -> tuple[TelemetryConfig, dict[str, pl.DataFrame]]:
    config = TelemetryConfig(
        players=3_000,
        days=30,
        seed=5,
        shard_players=1_500,
        drift=DriftConfig(start_day=START_DAY, **drift),  # type: ignore[arg-type]
    )
    return config, {name: pl.from_arrow(t) for name, t in generate_tables(config).items()}


def _start(config: TelemetryConfig) -> dt.date:
    return config.start_date + dt.timedelta(days=START_DAY)


def test_new_platform_appears_only_for_installs_from_the_start_day() -> None:
    config, tables = _drifted(new_platform="switch")
    players = tables["players"]
    new = players.filter(pl.col("platform") == "switch")
    assert new.height > 0
    assert (new["install_date"] >= _start(config)).all()
    share = new.height / players.filter(pl.col("install_date") >= _start(config)).height
    assert 0.3 < share < 0.5
    events = tables["events"].filter(pl.col("platform") == "switch")
    assert events.height > 0 and (events["event_date"] >= _start(config)).all()
    crash_rate = (
        tables["events"]
        .group_by(pl.col("platform") == "switch")
        .agg(
            (pl.col("event_type") == "crash").sum()
            / (pl.col("event_type") == "session_start").sum()
        )
    )
    assert (
        crash_rate.sort("platform")["event_type"].to_list()[1]
        > 2 * crash_rate.sort("platform")["event_type"].to_list()[0]
    )


def test_price_multiplier_scales_amounts_after_the_start_day() -> None:
    config, tables = _drifted(price_multiplier=1.5)
    buys = tables["events"].filter(pl.col("event_type") == "purchase")
    before = buys.filter(pl.col("event_date") < _start(config))["amount"]
    after = buys.filter(pl.col("event_date") >= _start(config))["amount"]
    tiers = np.array([0.99, 1.99, 4.99, 9.99, 19.99, 49.99, 99.99])
    assert set(before.to_list()) <= set(tiers.tolist())
    assert set(after.to_list()) <= set(np.round(tiers * 1.5, 2).tolist())
    assert after.len() > 0 and not set(after.to_list()) & set(tiers.tolist())


def test_logging_bug_writes_nulls_after_the_start_day() -> None:
    config, tables = _drifted(null_rate={"amount": 0.3, "level": 0.5})
    events = tables["events"]
    before = events.filter(pl.col("event_date") < _start(config))
    after = events.filter(pl.col("event_date") >= _start(config))
    levels = pl.col("event_type").is_in(["level_start", "level_complete", "level_fail"])
    assert before.filter(levels)["level"].null_count() == 0
    assert after.filter(levels)["level"].null_count() / after.filter(levels).height == (
        pytest.approx(0.5, abs=0.03)
    )
    money = after.filter(pl.col("event_type").is_in(["purchase", "refund"]))
    assert 0.1 < money["amount"].null_count() / money.height < 0.5
    assert events["player_id"].null_count() == 0


def test_drift_in_the_future_window_only_shows_there() -> None:
    config = TelemetryConfig(
        players=1_000,
        days=20,
        seed=5,
        include_future_days=20,
        drift=DriftConfig(start_day=25, null_rate={"platform": 1.0}),
    )
    events = pl.from_arrow(generate_tables(config)["events"])
    nulls = events.filter(pl.col("platform").is_null())
    assert nulls.height > 0
    assert (nulls["event_date"] >= config.start_date + dt.timedelta(days=25)).all()
    assert events["event_date"].max() >= config.cutoff


@pytest.mark.parametrize(
    "bad",
    [
        {"start_day": -1},
        {"price_multiplier": 0.0},
        {"null_rate": {"nope": 0.1}},
        {"null_rate": {"amount": 1.5}},
        {"social_by_level": (1.0, 2.0)},
        {"social_by_level": (1.0, 1.0, 1.0, 1.0, 1.0, -0.1)},
    ],
)
def test_invalid_drift_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DriftConfig(**bad)  # type: ignore[arg-type]


def test_social_by_level_changes_what_social_activity_says_about_churn() -> None:
    """Social events per session rise with engagement; the drift can turn that around."""
    reversed_social = (0.3, 4.0, 3.0, 2.0, 1.0, 0.3)

    def social_gap(drift: DriftConfig) -> float:
        config = TelemetryConfig(players=2_000, days=20, seed=3, drift=drift)
        tables = {name: pl.from_arrow(t) for name, t in generate_tables(config).items()}
        recent = config.cutoff - dt.timedelta(days=7)  # the engagement that decides churn
        events = tables["events"].filter(pl.col("event_date") >= recent)
        rates = (
            events.join(tables["churn_labels"], on="player_id")
            .group_by("churned")
            .agg(
                (pl.col("event_type") == "social").sum()
                / (pl.col("event_type") == "session_start").sum()
            )
        )
        stayed, churned = (
            rates.filter(pl.col("churned") == c)["event_type"][0] for c in (False, True)
        )
        return float(stayed) - float(churned)

    assert social_gap(DriftConfig()) > 0.3  # the engaged stay, and are the social ones
    assert social_gap(DriftConfig(social_by_level=reversed_social)) < -0.15
    # Days before the start day are the same with and without it.
    before = TelemetryConfig(players=500, days=20, seed=3)
    later = TelemetryConfig(
        players=500, days=20, seed=3, drift=DriftConfig(start_day=10, social_by_level=(1.0,) * 6)
    )
    start = before.start_date + dt.timedelta(days=10)
    early = [
        pl.from_arrow(generate_tables(c)["events"]).filter(pl.col("event_date") < start)
        for c in (before, later)
    ]
    assert early[0].equals(early[1])


def test_the_drift_block_takes_social_by_level_and_checks_it() -> None:
    from pydantic import ValidationError

    from raypipe.synth.stage import DriftOptions

    rates = [0.3, 4.0, 3.0, 2.0, 1.0, 0.3]
    assert DriftOptions(social_by_level=rates).to_config().social_by_level == tuple(rates)
    assert DriftOptions().to_config() == DriftConfig()
    with pytest.raises(ValidationError, match="expected 6 rates >= 0"):
        DriftOptions(social_by_level=[1.0, 2.0])
