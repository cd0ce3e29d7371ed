"""Run any per-shard table generator as Ray tasks and commit its tables atomically.

The studio generators (spend, recommendations, build QA) are pure functions
``generate(config, shard_index) -> {table: pa.Table}``; :func:`run_sharded` maps one task per
shard over the stage's executor (memory bounded by the shard), each task staging its files, and
commits every table on the driver. Same config and shard size, same data, whatever the workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["ShardedGenerator", "run_sharded", "shard_bounds", "shard_rng", "shard_count"]

logger = logging.getLogger(__name__)

#: ``generate(config, shard_index)`` -> one table per output name.
ShardedGenerator = Callable[[Any, int], Mapping[str, pa.Table]]


def shard_count(rows: int, shard_rows: int) -> int:
    """How many shards ``rows`` split into, ``shard_rows`` each (the last may be smaller)."""
    return -(-rows // shard_rows)


def shard_bounds(rows: int, shard_rows: int, shard_index: int) -> tuple[int, int]:
    """Global ids ``[start, stop)`` of shard ``shard_index``."""
    start = shard_index * shard_rows
    return start, min(rows, start + shard_rows)


def shard_rng(seed: int, shard_index: int, stream: int) -> np.random.Generator:
    """An independent random stream of one shard: ``default_rng([seed, shard, stream])``."""
    return np.random.default_rng([seed, shard_index, stream])


def _write_shard(
    generate: ShardedGenerator, config: Any, writers: Mapping[str, Any], shard_index: int
) -> dict[str, list[Any]]:
    started = time.perf_counter()
    tables = generate(config, shard_index)
    entries = {name: writers[name].write(tables[name], part=shard_index) for name in writers}
    logger.info(
        "shard %d: %s in %.2f s",
        shard_index,
        ", ".join(f"{name} {table.num_rows} rows" for name, table in tables.items()),
        time.perf_counter() - started,
    )
    return entries


def run_sharded(
    generate: ShardedGenerator,
    config: Any,
    shards: int,
    urls: Mapping[str, str],
    schemas: Mapping[str, pa.Schema],
    executor: Any,
    *,
    task_name: str,
    metadata: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate every shard as a task of ``executor`` and commit one dataset per table.

    Parameters
    ----------
    generate
        A module-level (picklable) function ``generate(config, shard_index)``.
    config
        Its frozen, picklable config.
    shards
        Number of shards (tasks).
    urls, schemas
        Where each table is committed and its schema, by table name.
    executor
        A :class:`~raypipe.stages.base.Executor`.
    task_name
        The tasks' name in logs and progress.
    metadata
        Written into every manifest.

    Returns
    -------
    dict
        The committed :class:`~raypipe.io.manifest.Manifest` of each table.
    """
    from raypipe.io.dataset import DatasetWriter

    writers = {
        name: DatasetWriter(
            urls[name], storage_options=dict(storage_options) if storage_options else None
        )
        for name in schemas
    }
    results = executor.map(
        partial(_write_shard, generate, config, writers), list(range(shards)), name=task_name
    )
    return {
        name: writers[name].commit(
            [entry for result in results for entry in result[name]],
            metadata=dict(metadata or {}),
            schema=schemas[name],
        )
        for name in schemas
    }
