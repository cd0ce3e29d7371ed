"""raypipe's dataset layer: committed, versioned, Hive-partitioned Parquet over fsspec.

A dataset exists once its ``_manifest.json`` is committed; the manifest's ``version`` is a hash
of the content, and the last few versions stay readable. One writer at a time holds the
dataset's lease. Readers also take plain Parquet. See :mod:`raypipe.io.commit` for the layout,
:mod:`raypipe.io.dataset` for tables, :mod:`raypipe.io.artifacts` for non-tabular outputs and
:mod:`raypipe.io.lease` for writers.
"""

from __future__ import annotations

from raypipe.io.artifacts import read_artifact_file, write_artifact
from raypipe.io.dataset import (
    DatasetWriter,
    iter_batches,
    read_dataset,
    scan_dataset,
    write_dataset,
)
from raypipe.io.fs import join_url, resolve_fs
from raypipe.io.lease import (
    DatasetLease,
    DatasetLeaseError,
    ForeignFolderError,
    ensure_writable_dataset,
    hold_dataset_leases,
)
from raypipe.io.manifest import FileEntry, Manifest, list_versions, read_manifest
from raypipe.io.sources import open_dataset

__all__ = [
    "DatasetLease",
    "DatasetLeaseError",
    "DatasetWriter",
    "FileEntry",
    "ForeignFolderError",
    "Manifest",
    "ensure_writable_dataset",
    "hold_dataset_leases",
    "iter_batches",
    "join_url",
    "list_versions",
    "open_dataset",
    "read_artifact_file",
    "read_dataset",
    "read_manifest",
    "resolve_fs",
    "scan_dataset",
    "write_artifact",
    "write_dataset",
]
