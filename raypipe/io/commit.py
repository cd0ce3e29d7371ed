"""Publishing a manifest: the atomic last step of every dataset or artifact write.

Shared by :mod:`raypipe.io.dataset` and :mod:`raypipe.io.artifacts`. Layout of a dataset root::

    _manifest.json          the current version (the commit point: one atomic write)
    _versions/<v>.json      every kept version's manifest, the current one included
    _data/...               data files of every kept version, and staged files of running writers
    _lease.json             the writer's lease (see :mod:`raypipe.io.lease`)

Data files are written under ``_data/`` (hidden from pandas, DuckDB, Spark and pyarrow, which
skip names starting with ``_``) and never move: the manifest points into ``_data/``. So a killed
writer leaves nothing a plain reader would pick up, and a reader that opened an older manifest
keeps reading its files while reruns commit.

A commit (holding the lease):

1. reads the kept versions (``_versions/`` plus the current ``_manifest.json``, which a commit
   killed between its two writes may not have recorded yet);
2. writes ``_manifest.json`` atomically (tmp, fsync, rename, directory fsync) - the commit point;
3. records it as ``_versions/<v>.json``;
4. retires versions past the newest ``keep_versions`` once ``grace_seconds`` have passed since a
   newer version replaced them: first their ``_versions`` record, then their files that no kept
   version lists;
5. deletes what dead writers left: files under ``_data/`` that no kept version lists and temp
   files of interrupted atomic writes.

Nothing else is ever deleted: files outside ``_data/`` are removed only when an earlier manifest
of this dataset listed them (datasets written before this layout). Killing the process at any
point leaves the old or the new version readable whole; the next commit finishes the clean-up.
Writing the same content again (same version) reuses the files already committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import fsspec
import pyarrow as pa

from raypipe.errors import DatasetNotCommittedError
from raypipe.io.fs import fsync_dir, is_local, write_bytes_atomic
from raypipe.io.manifest import (
    DATA_DIR,
    MANIFEST_NAME,
    VERSIONS_DIR,
    FileEntry,
    Manifest,
    compute_version,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_KEEP_VERSIONS",
    "attempt_token",
    "publish",
    "sha256_bytes",
    "verify_files",
]

logger = logging.getLogger(__name__)

DEFAULT_KEEP_VERSIONS = 3
DEFAULT_GRACE_SECONDS = 3600.0


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
    url: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    keep_versions: int | None = None,
    grace_seconds: float | None = None,
) -> Manifest:
    """Commit ``entries`` as the dataset's new version, then retire old versions and leftovers.

    Holds the dataset's lease for the commit (or uses the one this process holds already, with
    its ``keep_versions``), and refuses a folder raypipe did not write.

    Parameters
    ----------
    keep_versions
        How many versions stay readable (the new one included); default: the held lease's
        setting, else :data:`DEFAULT_KEEP_VERSIONS`.
    grace_seconds
        How long a version past ``keep_versions`` stays readable after a newer one replaced it.
    """
    from raypipe.io.lease import DatasetLease, held_lease

    root = root.rstrip("/")
    url = url or root
    lease = held_lease(url, storage_options)
    if lease is None:
        with DatasetLease(url, storage_options, keep_versions=keep_versions) as lease:
            return publish(
                fs,
                root,
                entries,
                schema=schema,
                partition_by=partition_by,
                metadata=metadata,
                kind=kind,
                url=url,
                storage_options=storage_options,
                keep_versions=keep_versions,
                grace_seconds=grace_seconds,
            )
    keep = max(1, int(keep_versions or lease.keep_versions or DEFAULT_KEEP_VERSIONS))
    grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else float(grace_seconds)
    history = _read_history(fs, root)
    listing = _listing(fs, root)
    ordered = tuple(sorted(entries, key=lambda entry: entry.path))
    version = compute_version(
        schema, ordered, partition_by=partition_by, kind=kind, names=kind == "artifact"
    )
    previous = history.get(version)
    if previous is not None and _all_present(previous.files, listing):
        ordered = previous.files  # same content: keep the files readers may hold open
    elif not _all_present(ordered, listing):
        missing = [entry.path for entry in ordered if listing.get(entry.path) != entry.bytes]
        raise DatasetNotCommittedError(
            f"`{url}`: {len(missing)} staged file(s) are missing or resized (first: "
            f"`{missing[0]}`); not committing",
            hint="another writer's commit removed them; a writer must hold the dataset's lease "
            "(`hold_dataset_leases`) from its first staged file to its commit, as the CLI and "
            "the driver do. Rerun the write",
        )
    now = datetime.now(timezone.utc)
    manifest = Manifest(
        version=version,
        files=ordered,
        rows=sum(entry.rows for entry in ordered),
        bytes=sum(entry.bytes for entry in ordered),
        schema=schema,
        partition_by=tuple(partition_by),
        metadata=dict(metadata or {}),
        created_at=now.isoformat(timespec="microseconds"),
        kind=kind,
        sequence=max((item.sequence for item in history.values()), default=0) + 1,
    )
    lease.check()
    text = manifest.to_json().encode("utf-8")
    write_bytes_atomic(fs, f"{root}/{MANIFEST_NAME}", text)
    write_bytes_atomic(fs, f"{root}/{VERSIONS_DIR}/{version}.json", text)
    history[version] = manifest
    _retire(fs, root, history, listing, keep=keep, grace=grace, now=now)
    logger.info(
        "committed %s: %d files, %d rows, version %s",
        url,
        len(ordered),
        manifest.rows,
        manifest.version[:12],
    )
    return manifest


def _read_history(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Manifest]:
    """Kept versions by version, the current manifest included (a killed commit may not have
    recorded it under ``_versions/``)."""
    found: dict[str, Manifest] = {}
    with contextlib.suppress(Exception):
        fs.invalidate_cache(root)
    try:
        names = [name for name in fs.ls(f"{root}/{VERSIONS_DIR}", detail=False)]
    except FileNotFoundError:
        names = []
    for path in [*names, f"{root}/{MANIFEST_NAME}"]:
        if not path.endswith(".json"):
            continue
        try:
            manifest = Manifest.from_json(fs.cat_file(path).decode("utf-8"))
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable manifest `%s`", path)
            continue
        known = found.get(manifest.version)
        if known is None or manifest.sequence > known.sequence:
            found[manifest.version] = manifest
    return found


def _listing(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, int]:
    """Every file under ``root`` (relative path -> size)."""
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    prefix = root + "/"
    return {
        path[len(prefix) :]: int(info.get("size") or 0)
        for path, info in found.items()
        if path.startswith(prefix)
    }


def _all_present(files: Sequence[FileEntry], listing: Mapping[str, int]) -> bool:
    return all(listing.get(entry.path) == entry.bytes for entry in files)


def _retire(
    fs: fsspec.AbstractFileSystem,
    root: str,
    history: dict[str, Manifest],
    listing: Mapping[str, int],
    *,
    keep: int,
    grace: float,
    now: datetime,
) -> None:
    newest_first = sorted(history.values(), key=lambda item: item.sequence, reverse=True)
    retired: list[Manifest] = []
    for index, manifest in enumerate(newest_first):
        if index < keep:
            continue
        replaced_at = _parse_time(newest_first[index - 1].created_at)
        if replaced_at is not None and (now - replaced_at).total_seconds() < grace:
            continue  # readers that opened it shortly before it was replaced may still read
        retired.append(manifest)
    for manifest in retired:
        # The record goes first: once it is gone no reader can open this version, and a kill
        # before the files are gone leaves only unlisted files that the next commit removes.
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{root}/{VERSIONS_DIR}/{manifest.version}.json")
        del history[manifest.version]
    listed = {entry.path for manifest in history.values() for entry in manifest.files}
    once_listed = {entry.path for manifest in retired for entry in manifest.files}
    stale = [
        path
        for path in listing
        if path not in listed
        and (path.startswith(f"{DATA_DIR}/") or path in once_listed or _is_temp(path))
    ]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{root}/{path}")
    if stale:
        logger.info(
            "removed %d unlisted file(s) of old versions or dead writers under %s", len(stale), root
        )
        if is_local(fs):
            _remove_empty_dirs(f"{root}/{DATA_DIR}")
            fsync_dir(root)


def _is_temp(path: str) -> bool:
    """A temp file of an interrupted atomic write of this dataset's own records."""
    from raypipe.io.lease import RAYPIPE_PREFIXES

    if "/" not in path:
        return path.startswith(RAYPIPE_PREFIXES)
    return path.startswith(f"{VERSIONS_DIR}/") and ".tmp-" in path


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _remove_empty_dirs(top: str) -> None:
    for current, _, _ in sorted(os.walk(top), key=lambda item: -len(item[0])):
        if current.rstrip("/") != top.rstrip("/") and not os.listdir(current):
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
