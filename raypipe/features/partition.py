"""Entity partitioning: key hashing, clustered-file grouping, and a file-based hash shuffle.

Feature computation is per entity, so it parallelizes over partitions that hold *all* rows of
their entities. Two ways to get them:

* **Clustered input.** A dataset whose manifest promises ``clustered_by: [keys]``
  (:mod:`raypipe.io.clustering`) is split into groups of whole parts; no shuffle (the synthetic
  telemetry is written per player shard this way).
* **Hash shuffle.** Otherwise map tasks read groups of files, split rows by ``hash(keys) % n`` and
  stage one Arrow IPC piece per partition under a scratch URL; reduce task ``i`` reads piece ``i``
  of every map task. Memory per task is bounded by its partition. The scratch folder lives
  inside the output dataset's hidden ``_data/`` folder under a per-attempt name
  (:func:`scratch_url_for`): raypipe owns it, plain readers skip it, and a killed build's pieces
  are removed by the dataset's next commit like any dead writer's staged files.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from raypipe.io.commit import attempt_token
from raypipe.io.fs import join_url, resolve_fs
from raypipe.io.manifest import DATA_DIR

__all__ = [
    "empty_frame",
    "hash_partition",
    "partition_of",
    "read_pieces",
    "remove_scratch",
    "scratch_url_for",
    "split_by",
    "write_pieces",
]

PARTITION = "__partition"
SEED = 20_240_917


def empty_frame(schema: pa.Schema) -> pl.DataFrame:
    """An empty frame of ``schema`` (``Schema.empty_table`` would import pandas)."""
    return pl.DataFrame(pa.Table.from_batches([], schema=schema))


def partition_of(keys: Sequence[str], partitions: int) -> pl.Expr:
    """The partition index (``UInt64``) of each row: a stable hash of ``keys`` modulo n."""
    hashed = pl.col(keys[0]).hash(seed=SEED) if len(keys) == 1 else pl.struct(*keys).hash(seed=SEED)
    return hashed % partitions


def hash_partition(frame: pl.DataFrame, keys: Sequence[str], partitions: int) -> list[pl.DataFrame]:
    """Split ``frame`` into ``partitions`` frames by key hash (order kept within each)."""
    if partitions <= 1 or not keys:
        return [frame] + [frame.clear() for _ in range(max(0, partitions - 1))]
    tagged = frame.with_columns(partition_of(keys, partitions).alias(PARTITION))
    groups = tagged.partition_by(PARTITION, as_dict=True, include_key=False, maintain_order=True)
    empty = frame.clear()
    return [groups.get((index,), empty) for index in range(partitions)]


def split_by(frame: pl.DataFrame, assign: pl.Expr, partitions: int) -> list[pl.DataFrame]:
    """Split ``frame`` by an expression giving each row's partition index (0..n-1)."""
    tagged = frame.with_columns(assign.cast(pl.Int64).alias(PARTITION))
    groups = tagged.partition_by(PARTITION, as_dict=True, include_key=False, maintain_order=True)
    empty = frame.clear()
    return [groups.get((index,), empty) for index in range(partitions)]


def write_pieces(
    scratch_url: str,
    map_index: int,
    frame: pl.DataFrame,
    keys: Sequence[str],
    partitions: int,
    storage_options: Mapping[str, Any] | None = None,
    *,
    assign: pl.Expr | None = None,
) -> list[str | None]:
    """Stage ``frame`` split by key hash (or by ``assign``): one Parquet piece per non-empty
    partition.

    Returns the piece URL per partition (None where empty), for :func:`read_pieces`.
    """
    fs, root = resolve_fs(scratch_url, storage_options)
    fs.makedirs(root, exist_ok=True)
    urls: list[str | None] = []
    pieces = (
        split_by(frame, assign, partitions)
        if assign is not None
        else hash_partition(frame, keys, partitions)
    )
    for index, piece in enumerate(pieces):
        if piece.height == 0:
            urls.append(None)
            continue
        sink = io.BytesIO()
        piece.write_ipc(sink, compression="uncompressed")  # scratch: fastest to write and read
        name = f"map{map_index:05d}-p{index:05d}.arrow"
        fs.pipe_file(f"{root.rstrip('/')}/{name}", sink.getvalue())
        urls.append(join_url(scratch_url, name))
    return urls


def read_pieces(
    urls: Sequence[str | None], schema: pa.Schema, storage_options: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Concatenate the staged pieces of one partition (an empty frame of ``schema`` if none)."""
    frames = []
    for url in urls:
        if url is None:
            continue
        fs, path = resolve_fs(url, storage_options)
        frames.append(pl.read_ipc(io.BytesIO(fs.cat_file(path))))
    if not frames:
        return empty_frame(schema)
    return pl.concat(frames, how="vertical_relaxed")


def scratch_url_for(out_url: str) -> str:
    """A fresh scratch folder for a shuffle that writes the dataset at ``out_url``.

    Never a sibling of the output (``<out>_shuffle`` could be a user's own folder, and the
    scratch is deleted recursively): a per-attempt folder under the output's hidden ``_data/``.
    """
    return join_url(out_url, DATA_DIR, f"_shuffle-{attempt_token()}")


def remove_scratch(scratch_url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete a shuffle's scratch folder (missing is fine)."""
    fs, root = resolve_fs(scratch_url, storage_options)
    if fs.exists(root):
        fs.rm(root, recursive=True)
