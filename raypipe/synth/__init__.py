"""Synthetic game telemetry with ground truth: players, events, churn and fraud truth.

>>> from raypipe.synth import TelemetryConfig, generate_shard
>>> tables = generate_shard(TelemetryConfig(players=1_000, days=30, seed=7), shard_index=0)
>>> sorted(tables)
['churn_labels', 'churn_truth', 'events', 'fraud_truth', 'players']
"""

from __future__ import annotations

from raypipe.synth.config import (
    CHURN_HORIZON_DAYS,
    DEFAULT_CUTOFF,
    DEFAULT_SHARD_PLAYERS,
    DriftConfig,
    TelemetryConfig,
)
from raypipe.synth.events import EVENT_TYPES, EVENTS_SCHEMA, FRAUD_TRUTH_SCHEMA
from raypipe.synth.generate import (
    SCHEMAS,
    TABLES,
    generate_shard,
    generate_tables,
    run_generate,
    write_shard,
)
from raypipe.synth.labels import CHURN_LABELS_SCHEMA, CHURN_TRUTH_SCHEMA, churn_probability
from raypipe.synth.players import PLAYERS_SCHEMA

__all__ = [
    "CHURN_HORIZON_DAYS",
    "CHURN_LABELS_SCHEMA",
    "CHURN_TRUTH_SCHEMA",
    "DEFAULT_CUTOFF",
    "DEFAULT_SHARD_PLAYERS",
    "EVENTS_SCHEMA",
    "EVENT_TYPES",
    "FRAUD_TRUTH_SCHEMA",
    "PLAYERS_SCHEMA",
    "SCHEMAS",
    "TABLES",
    "DriftConfig",
    "TelemetryConfig",
    "churn_probability",
    "generate_shard",
    "generate_tables",
    "run_generate",
    "write_shard",
]
