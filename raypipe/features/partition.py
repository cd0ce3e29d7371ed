"""Entity partitioning: key hashing, clustered-file grouping, and a file-based hash shuffle.

Feature computation is per entity, so it parallelizes over partitions that hold *all* rows of
their entities. Two ways to get them:

* **Clustered input.** A dataset whose manifest metadata says ``clustered_by: [keys]`` promises
  that files written under different ``part`` ids (the ``part-<id>-`` prefix that
  :class:`~raypipe.io.dataset.DatasetWriter` gives file names) hold disjoint entities. Groups of
  such parts are partitions already; no shuffle (the synthetic telemetry is written per player
  shard this way).
* **Hash shuffle.** Otherwise map tasks read groups of files, split rows by ``hash(keys) % n`` and
  stage one Arrow IPC piece per partition under a scratch URL; reduce task ``i`` reads piece ``i``
  of every map task. Memory per task is bounded by its partition.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from raypipe.io.fs import join_url, resolve_fs
from raypipe.io.manifest import FileEntry, Manifest

__all__ = [
    "CLUSTERED_BY",
    "balance",
    "clustered_groups",
    "empty_frame",
    "hash_partition",
    "partition_of",
    "read_pieces",
    "remove_scratch",
    "split_by",
    "write_pieces",
]

#: Manifest metadata key: the columns by which files (by writer part id) are clustered.
CLUSTERED_BY = "clustered_by"
PARTITION = "__partition"
SEED = 20_240_917
_PART = re.compile(r"(?:^|/)part-(.+?)-[0-9a-f]{16}-\d{5}\.parquet$")


def empty_frame(schema: pa.Schema) -> pl.DataFrame:
    """An empty frame of ``schema`` (``Schema.empty_table`` would import pandas)."""
    return pl.DataFrame(pa.Table.from_batches([], schema=schema))


def partition_of(keys: Sequence[str], partitions: int) -> pl.Expr:
    """The partition index (``UInt64``) of each row: a stable hash of ``keys`` modulo n."""
    hashed = (pl.col(keys[0]).hash(seed=SEED) if len(keys) == 1
              else pl.struct(*keys).hash(seed=SEED))
    return hashed % partitions


def hash_partition(frame: pl.DataFrame, keys: Sequence[str],
                   partitions: int) -> list[pl.DataFrame]:
    """Split ``frame`` into ``partitions`` frames by key hash (order kept within each)."""
    if partitions <= 1 or not keys:
        return [frame] + [frame.clear() for _ in range(max(0, partitions - 1))]
    tagged = frame.with_columns(partition_of(keys, partitions).alias(PARTITION))
    groups = tagged.partition_by(PARTITION, as_dict=True, include_key=False,
                                 maintain_order=True)
    empty = frame.clear()
    return [groups.get((index,), empty) for index in range(partitions)]


def clustered_groups(manifest: Manifest, keys: Sequence[str]) -> list[list[FileEntry]] | None:
    """The files of ``manifest`` grouped by writer part id, if it is clustered by ``keys``.

    None when the metadata makes no such promise or a file name carries no part id.
    """
    declared = manifest.metadata.get(CLUSTERED_BY)
    if isinstance(declared, str):
        declared = [declared]
    if not declared or list(declared) != list(keys):
        return None
    groups: dict[str, list[FileEntry]] = {}
    for entry in manifest.files:
        match = _PART.search(entry.path)
        if match is None:
            return None
        groups.setdefault(match.group(1), []).append(entry)
    return list(groups.values())


def balance(groups: Sequence[Sequence[FileEntry]], tasks: int) -> list[list[FileEntry]]:
    """Pack file groups into at most ``tasks`` bins of similar total bytes (greedy, largest first).

    Groups are never split, so a bin holds whole clusters.
    """
    bins: list[list[FileEntry]] = [[] for _ in range(max(1, min(tasks, len(groups))))]
    sizes = [0] * len(bins)
    for group in sorted(groups, key=lambda g: -sum(e.bytes for e in g)):
        smallest = sizes.index(min(sizes))
        bins[smallest].extend(group)
        sizes[smallest] += sum(e.bytes for e in group)
    return [b for b in bins if b]


def split_by(frame: pl.DataFrame, assign: pl.Expr, partitions: int) -> list[pl.DataFrame]:
    """Split ``frame`` by an expression giving each row's partition index (0..n-1)."""
    tagged = frame.with_columns(assign.cast(pl.Int64).alias(PARTITION))
    groups = tagged.partition_by(PARTITION, as_dict=True, include_key=False,
                                 maintain_order=True)
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
    pieces = (split_by(frame, assign, partitions) if assign is not None
              else hash_partition(frame, keys, partitions))
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


def read_pieces(urls: Sequence[str | None], schema: pa.Schema,
                storage_options: Mapping[str, Any] | None = None) -> pl.DataFrame:
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


def remove_scratch(scratch_url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete a shuffle's scratch folder (missing is fine)."""
    fs, root = resolve_fs(scratch_url, storage_options)
    if fs.exists(root):
        fs.rm(root, recursive=True)
