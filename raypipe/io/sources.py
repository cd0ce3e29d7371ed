"""What a URL to read names: a committed dataset (any kept version), or plain Parquet.

Every raypipe reader that takes a URL goes through :func:`locate_dataset`, so the CLI commands
and stages read the same things: a dataset raypipe committed (its ``_manifest.json``), a single
Parquet file, a folder of Parquet files, or Hive partitions (``column=value/``) as pandas,
pyarrow or Spark write them. Plain Parquet gets a manifest built from the listing (files whose
path has a segment starting with ``_`` or ``.`` are skipped, as those tools do); its version is
a hash of the files' names, sizes and modification times. A folder that holds raypipe's own
records but no manifest is a writer that did not finish, and is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from raypipe.errors import DataError, DatasetNotCommittedError, SchemaError
from raypipe.io.fs import resolve_fs
from raypipe.io.hive import decode_segment
from raypipe.io.manifest import MANIFEST_NAME, FileEntry, Manifest, read_manifest

__all__ = ["PLAIN_SOURCE", "hive_partition", "locate_dataset", "open_dataset"]

PLAIN_SOURCE = "plain parquet"


def open_dataset(
    url: str, storage_options: Mapping[str, Any] | None = None, *, version: str | None = None
) -> Manifest:
    """The manifest of what ``url`` names: a committed dataset or plain Parquet.

    Parameters
    ----------
    url
        A committed dataset, a Parquet file, a folder of Parquet files or Hive partitions.
    version
        A kept version of a committed dataset (see ``raypipe data versions URL``).

    Raises
    ------
    DataError
        ``url`` does not exist or holds no Parquet files.
    DatasetNotCommittedError
        A raypipe writer started at ``url`` but did not commit, or ``version`` is not kept.
    """
    return locate_dataset(url, storage_options, version=version)[0]


def locate_dataset(
    url: str, storage_options: Mapping[str, Any] | None = None, *, version: str | None = None
) -> tuple[Manifest, fsspec.AbstractFileSystem, str]:
    """Like :func:`open_dataset`, also returning the filesystem and the root its paths are in."""
    from raypipe.io.lease import is_raypipe_name

    fs, path = resolve_fs(url, storage_options)
    path = path.rstrip("/") or path
    if fs.exists(f"{path}/{MANIFEST_NAME}") or version is not None:
        return read_manifest(url, storage_options, version=version), fs, path
    if not fs.exists(path):
        raise DatasetNotCommittedError(
            f"`{url}` does not exist",
            hint="pass a committed dataset, a Parquet file or a folder of Parquet files",
        )
    if not fs.isdir(path):
        parent, _, name = path.rpartition("/")
        return _plain_manifest(url, fs, parent, {name: _size(fs.info(path))}), fs, parent
    listing = {
        found[len(path) + 1 :]: info
        for found, info in fs.find(path, detail=True).items()
        if found.startswith(path + "/")
    }
    files = {
        relative: _size(info)
        for relative, info in listing.items()
        if relative.endswith(".parquet")
        and not any(part.startswith(("_", ".")) for part in relative.split("/"))
    }
    if not files:
        if any(is_raypipe_name(relative.split("/", 1)[0]) for relative in listing):
            raise DatasetNotCommittedError(
                f"`{url}` has no committed manifest (`{MANIFEST_NAME}` is missing)",
                hint="the writer did not finish; rerun the stage",
            )
        raise DataError(
            f"`{url}` holds no Parquet files",
            hint="files must end in `.parquet`; names starting with `_` or `.` are skipped",
        )
    stamps = {relative: _stamp(listing[relative]) for relative in files}
    return _plain_manifest(url, fs, path, files, stamps), fs, path


def _plain_manifest(
    url: str,
    fs: fsspec.AbstractFileSystem,
    root: str,
    files: Mapping[str, int],
    stamps: Mapping[str, str] | None = None,
) -> Manifest:
    partitions = {relative: hive_partition(relative) for relative in files}
    keys = {tuple(values) for values in partitions.values()}
    if len(keys) > 1:
        layouts = ", ".join(sorted("/".join(key) or "(none)" for key in keys))
        raise SchemaError(
            f"`{url}` mixes partition layouts ({layouts})",
            hint="point at one dataset whose files all sit at the same partition depth",
        )
    ordered = sorted(files)
    entries = []
    schema: pa.Schema | None = None
    for relative in ordered:
        with fs.open(f"{root}/{relative}", "rb") as handle:
            parquet = pq.ParquetFile(handle)
            rows = parquet.metadata.num_rows
            if schema is None:
                schema = parquet.schema_arrow.remove_metadata()
        entries.append(FileEntry(relative, rows, files[relative], "", partitions[relative]))
    assert schema is not None
    partition_by = [column for column in next(iter(keys)) if column not in schema.names]
    for column in partition_by:
        values = [entry.partition[column] for entry in entries]
        schema = schema.append(pa.field(column, _partition_type(values)))
    entries = [
        FileEntry(e.path, e.rows, e.bytes, "", {c: e.partition[c] for c in partition_by})
        for e in entries
    ]
    digest = hashlib.sha256(json.dumps(sorted((stamps or {}).items()) + ordered).encode())
    digest.update(json.dumps(sorted(files.items())).encode())
    return Manifest(
        version=digest.hexdigest(),
        files=tuple(entries),
        rows=sum(entry.rows for entry in entries),
        bytes=sum(entry.bytes for entry in entries),
        schema=schema,
        partition_by=tuple(partition_by),
        metadata={"source": PLAIN_SOURCE},
    )


def hive_partition(relative: str) -> dict[str, str | None]:
    """The Hive partition values in a file's path relative to the dataset root.

    Examples
    --------
    >>> hive_partition("country=DE/day=1/part-0.parquet")
    {'country': 'DE', 'day': '1'}
    """
    values: dict[str, str | None] = {}
    for segment in relative.split("/")[:-1]:
        if "=" not in segment:
            continue  # a plain sub-folder, not a partition
        column, value = decode_segment(segment)
        values[column] = value
    return values


def _partition_type(values: list[str | None]) -> pa.DataType:
    present = [value for value in values if value is not None]
    try:
        [int(value) for value in present]
    except ValueError:
        return pa.string()
    return pa.int64() if present else pa.string()


def _size(info: Mapping[str, Any]) -> int:
    return int(info.get("size") or 0)


def _stamp(info: Mapping[str, Any]) -> str:
    return str(info.get("mtime") or info.get("LastModified") or info.get("ETag") or "")
