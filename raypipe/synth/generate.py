"""Generate telemetry: one shard in memory, one shard written, or every shard as Ray tasks.

:func:`generate_shard` is the pure core. :func:`run_generate` maps :func:`write_shard` over the
shard indices with the stage's executor (one task per shard, so memory is bounded by the shard)
and commits each table on the driver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.synth.config import TelemetryConfig
from raypipe.synth.events import (
    EVENTS_SCHEMA,
    FRAUD_TRUTH_SCHEMA,
    events_table,
    fraud_truth_table,
)
from raypipe.synth.labels import (
    CHURN_LABELS_SCHEMA,
    CHURN_TRUTH_SCHEMA,
    churn_labels_table,
    churn_probability,
    churn_truth_table,
)
from raypipe.synth.players import PLAYERS_SCHEMA, draw_players, players_table
from raypipe.synth.simulate import simulate_players

__all__ = [
    "SCHEMAS",
    "TABLES",
    "generate_shard",
    "generate_tables",
    "run_generate",
    "write_shard",
]

logger = logging.getLogger(__name__)

#: The generated tables, in output order.
TABLES = ("players", "events", "churn_labels", "churn_truth", "fraud_truth")
SCHEMAS: Mapping[str, pa.Schema] = {
    "players": PLAYERS_SCHEMA,
    "events": EVENTS_SCHEMA,
    "churn_labels": CHURN_LABELS_SCHEMA,
    "churn_truth": CHURN_TRUTH_SCHEMA,
    "fraud_truth": FRAUD_TRUTH_SCHEMA,
}

# Independent random streams of a shard: default_rng([seed, shard, stream]).
ATTRIBUTES_STREAM = 0
DYNAMICS_STREAM = 1
DETAIL_STREAM = 2
NULLS_STREAM = 3


def generate_shard(config: TelemetryConfig, shard_index: int) -> dict[str, pa.Table]:
    """Generate the tables of one shard.

    Parameters
    ----------
    config
        What to generate.
    shard_index
        Which shard, ``0 .. config.shards - 1``; its players are
        ``shard_index * shard_players`` onwards.

    Returns
    -------
    dict
        ``players``, ``events``, ``churn_labels`` and ``churn_truth`` tables.

    Examples
    --------
    >>> tables = generate_shard(TelemetryConfig(players=100, days=10, seed=1), 0)
    >>> tables["players"].num_rows
    100
    """

    def stream(index: int) -> np.random.Generator:
        return np.random.default_rng([config.seed, shard_index, index])

    players = draw_players(config, shard_index, stream(ATTRIBUTES_STREAM))
    simulation = simulate_players(config, players, stream(DYNAMICS_STREAM), stream(DETAIL_STREAM))
    probability = churn_probability(config, players, simulation.level_at_cutoff)
    return {
        "players": players_table(config, players),
        "events": events_table(config, players, simulation.rows, stream(NULLS_STREAM)),
        "churn_labels": churn_labels_table(config, players, simulation.label_window_sessions),
        "churn_truth": churn_truth_table(players, probability),
        "fraud_truth": fraud_truth_table(config, players, simulation.rows),
    }


def generate_tables(config: TelemetryConfig) -> dict[str, pa.Table]:
    """Every shard in this process, concatenated (small data and tests only)."""
    shards = [generate_shard(config, index) for index in range(config.shards)]
    return {name: pa.concat_tables([shard[name] for shard in shards]) for name in TABLES}


def write_shard(
    config: TelemetryConfig,
    writers: Mapping[str, Any],
    shard_index: int,
) -> dict[str, list[Any]]:
    """Generate one shard and stage its tables with the writers; returns the file entries."""
    started = time.perf_counter()
    tables = generate_shard(config, shard_index)
    entries = {name: writers[name].write(tables[name], part=shard_index) for name in TABLES}
    logger.info(
        "synth shard %d: %d players, %d events in %.2f s",
        shard_index,
        tables["players"].num_rows,
        tables["events"].num_rows,
        time.perf_counter() - started,
    )
    return entries


def run_generate(
    config: TelemetryConfig,
    out_url: str | Mapping[str, str],
    executor: Any,
    *,
    partition_events_by: tuple[str, ...] = (),
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate every shard as a task of ``executor`` and commit every table.

    Parameters
    ----------
    config
        What to generate.
    out_url
        Base URL (tables go to ``join_url(out_url, name)``) or a URL per table name.
    executor
        A :class:`~raypipe.stages.base.Executor`; one task per shard.
    partition_events_by
        Hive partition columns of ``events`` (e.g. ``("event_date",)``).
    storage_options
        fsspec options of the output filesystem.

    Returns
    -------
    dict
        The committed :class:`~raypipe.io.manifest.Manifest` of each table.
    """
    from raypipe.io.dataset import DatasetWriter
    from raypipe.io.fs import join_url
    from raypipe.io.lease import hold_dataset_leases

    urls = (
        {name: join_url(out_url, name) for name in TABLES}
        if isinstance(out_url, str)
        else dict(out_url)
    )
    writers = {
        name: DatasetWriter(
            urls[name],
            partition_by=partition_events_by if name == "events" else (),
            storage_options=dict(storage_options) if storage_options else None,
        )
        for name in TABLES
    }
    started = time.perf_counter()
    with hold_dataset_leases(list(urls.values()), storage_options):
        manifests = _write_all(config, writers, executor)
    logger.info(
        "synth: %d players, %d events in %d shards, %.2f s",
        manifests["players"].rows,
        manifests["events"].rows,
        config.shards,
        time.perf_counter() - started,
    )
    return manifests


def _write_all(
    config: TelemetryConfig, writers: Mapping[str, Any], executor: Any
) -> dict[str, Any]:
    results = executor.map(
        partial(write_shard, config, writers), list(range(config.shards)), name="synth.shard"
    )
    metadata = {
        "generator": "raypipe.synth",
        "seed": config.seed,
        "players": config.players,
        "days": config.days,
        "cutoff": config.cutoff.isoformat(),
        # Each shard's files hold a disjoint set of players: per-player work needs no shuffle.
        "clustered_by": ["player_id"],
    }
    return {
        name: writers[name].commit(
            [entry for result in results for entry in result[name]],
            metadata=metadata,
            schema=SCHEMAS[name],
        )
        for name in TABLES
    }
