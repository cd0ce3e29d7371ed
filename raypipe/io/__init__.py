"""raypipe's dataset layer: committed, versioned, Hive-partitioned Parquet over fsspec.

A dataset exists once its ``_manifest.json`` is committed; the manifest's ``version`` is a hash
of the content. See :mod:`raypipe.io.dataset` for tables and :mod:`raypipe.io.artifacts` for
non-tabular outputs.
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
from raypipe.io.manifest import FileEntry, Manifest, read_manifest

__all__ = [
    "DatasetWriter",
    "FileEntry",
    "Manifest",
    "iter_batches",
    "join_url",
    "read_artifact_file",
    "read_dataset",
    "read_manifest",
    "resolve_fs",
    "scan_dataset",
    "write_artifact",
    "write_dataset",
]
