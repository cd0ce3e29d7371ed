"""Shared generated data: small sizes, generated once per session."""

from __future__ import annotations

import pyarrow as pa
import pytest

from raypipe.synth import TelemetryConfig, generate_tables

#: Enough players for stable rates, small enough to generate in about a second.
BASE = TelemetryConfig(players=6_000, days=30, seed=11, shard_players=2_000)


@pytest.fixture(scope="session")
def base_tables() -> dict[str, pa.Table]:
    return generate_tables(BASE)


@pytest.fixture(scope="session")
def future_config() -> TelemetryConfig:
    return TelemetryConfig(
        players=6_000, days=30, seed=11, shard_players=2_000, include_future_days=14
    )


@pytest.fixture(scope="session")
def future_tables(future_config: TelemetryConfig) -> dict[str, pa.Table]:
    return generate_tables(future_config)
