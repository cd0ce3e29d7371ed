"""Publishing a manifest: the atomic last step of every dataset or artifact write.

Shared by :mod:`raypipe.io.dataset` and :mod:`raypipe.io.artifacts`: build the manifest, write
``_manifest.json`` atomically, then delete files under the root that it does not reference
(leftovers of failed or superseded attempts).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import fsspec
import pyarrow as pa

from raypipe.errors import DatasetNotCommittedError
from raypipe.io.fs import is_local, write_bytes_atomic
from raypipe.io.manifest import MANIFEST_NAME, FileEntry, Manifest, compute_version

__all__ = ["attempt_token", "publish", "sha256_bytes", "verify_files"]

logger = logging.getLogger(__name__)


def attempt_token() -> str:
    """A fresh per-attempt token for staged file names."""
    return uuid.uuid4().hex[:16]


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def publish(
    fs: fsspec.AbstractFileSystem,
    root: str,
    entries: Sequence[FileEntry],
    *,
    schema: pa.Schema,
    partition_by: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    kind: str = "dataset",
    is_garbage: Callable[[str], bool] = lambda relative: True,
) -> Manifest:
    """Write the manifest of ``entries`` atomically, then garbage-collect unreferenced files."""
    ordered = tuple(sorted(entries, key=lambda entry: entry.path))
    manifest = Manifest(
        version=compute_version(
            schema, ordered, partition_by=partition_by, kind=kind, names=kind == "artifact"
        ),
        files=ordered,
        rows=sum(entry.rows for entry in ordered),
        bytes=sum(entry.bytes for entry in ordered),
        schema=schema,
        partition_by=tuple(partition_by),
        metadata=dict(metadata or {}),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        kind=kind,
    )
    write_bytes_atomic(fs, f"{root}/{MANIFEST_NAME}", manifest.to_json().encode("utf-8"))
    _collect_garbage(fs, root, {entry.path for entry in ordered}, is_garbage)
    logger.info(
        "committed %s: %d files, %d rows, version %s",
        root,
        len(ordered),
        manifest.rows,
        manifest.version[:12],
    )
    return manifest


def _collect_garbage(
    fs: fsspec.AbstractFileSystem,
    root: str,
    keep: set[str],
    is_garbage: Callable[[str], bool],
) -> None:
    try:
        found = fs.find(root)
    except FileNotFoundError:
        return
    prefix = root.rstrip("/") + "/"
    stale = []
    for path in found:
        relative = path[len(prefix) :] if path.startswith(prefix) else path
        if relative == MANIFEST_NAME or relative in keep or not is_garbage(relative):
            continue
        stale.append(path)
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    if stale:
        logger.info("removed %d stale files under %s", len(stale), root)
        if is_local(fs):
            _remove_empty_dirs(root)


def _remove_empty_dirs(root: str) -> None:
    for current, _, _ in sorted(os.walk(root), key=lambda item: -len(item[0])):
        if current.rstrip("/") != root.rstrip("/") and not os.listdir(current):
            with contextlib.suppress(OSError):
                os.rmdir(current)


def verify_files(
    fs: fsspec.AbstractFileSystem, root: str, url: str, entries: Sequence[FileEntry]
) -> None:
    """Check every listed file exists with its recorded size (one listing of the root)."""
    if not entries:
        return
    try:
        sizes = {path: info.get("size") for path, info in fs.find(root, detail=True).items()}
    except FileNotFoundError:
        sizes = {}
    prefix = root.rstrip("/") + "/"
    for entry in entries:
        size = sizes.get(prefix + entry.path)
        if size is None:
            raise DatasetNotCommittedError(
                f"`{url}` lists file `{entry.path}` but it is missing",
                hint="the dataset was half-deleted or altered; rerun the stage that writes it",
            )
        if int(size) != entry.bytes:
            raise DatasetNotCommittedError(
                f"`{url}` file `{entry.path}` has {size} bytes, the manifest says {entry.bytes}",
                hint="the file was half-written or altered; rerun the stage that writes it",
            )
