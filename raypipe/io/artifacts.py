"""Artifacts: committed non-tabular outputs (models, HTML reports, JSON).

The same manifest, atomic commit and kept versions as datasets: files are staged under
``<url>/_data/<attempt token>/<name>``, ``_manifest.json`` is written last, leftovers of dead
attempts are deleted by the next commit, and :func:`read_artifact_file` verifies the SHA-256 of
what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from raypipe.errors import DataError, DatasetNotCommittedError
from raypipe.io.commit import attempt_token, publish, sha256_bytes
from raypipe.io.fs import resolve_fs, write_bytes
from raypipe.io.lease import DatasetLease
from raypipe.io.manifest import DATA_DIR, FileEntry, Manifest, logical_name, read_manifest

__all__ = ["artifact_names", "read_artifact_file", "write_artifact"]


def write_artifact(
    url: str,
    files: Mapping[str, bytes],
    *,
    metadata: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """Commit ``files`` (name -> content) as the artifact at ``url``, replacing any previous one.

    Names are relative paths (``model.json``, ``plots/roc.html``); they must not be empty or
    start with ``_`` or ``.``.
    """
    bad = [
        name
        for name in files
        if not name.strip("/") or name.startswith(("_", ".", "/")) or ".." in name.split("/")
    ]
    if bad:
        raise DataError(
            f"artifact file name(s) {', '.join(f'`{n}`' for n in bad)} are not allowed",
            hint="use plain relative names such as `model.json`",
        )
    fs, root = resolve_fs(url, storage_options)
    root = root.rstrip("/")
    token = attempt_token()
    with DatasetLease(url, storage_options):
        entries = []
        for name, data in files.items():
            relative = f"{DATA_DIR}/{token}/{name}"
            write_bytes(fs, f"{root}/{relative}", bytes(data))
            entries.append(FileEntry(relative, 0, len(data), sha256_bytes(bytes(data)), {}))
        return publish(
            fs,
            root,
            entries,
            schema=pa.schema([]),
            metadata=metadata,
            kind="artifact",
            url=url,
            storage_options=storage_options,
        )


def artifact_names(manifest: Manifest) -> list[str]:
    """The logical names of an artifact's files."""
    return [logical_name(entry.path) for entry in manifest.files]


def read_artifact_file(
    url: str, name: str, *, storage_options: Mapping[str, Any] | None = None
) -> bytes:
    """The content of file ``name`` of the committed artifact at ``url`` (SHA-256 verified).

    Raises
    ------
    DatasetNotCommittedError
        No manifest, or the file is missing or does not match its checksum.
    DataError
        The artifact has no file called ``name``.
    """
    manifest = read_manifest(url, storage_options)
    fs, root = resolve_fs(url, storage_options)
    for entry in manifest.files:
        if logical_name(entry.path) == name or entry.path.rsplit("/", 1)[-1] == name:
            try:
                data: bytes = fs.cat_file(f"{root.rstrip('/')}/{entry.path}")
            except FileNotFoundError as exc:
                raise DatasetNotCommittedError(
                    f"`{url}` lists file `{name}` but it is missing",
                    hint="the artifact was half-deleted; rerun the stage that writes it",
                ) from exc
            if len(data) != entry.bytes or sha256_bytes(data) != entry.sha256:
                raise DatasetNotCommittedError(
                    f"`{url}` file `{name}` does not match its SHA-256 in the manifest",
                    hint="the file was altered after the commit; rerun the stage that writes it",
                )
            return data
    names = artifact_names(manifest)
    raise DataError(
        f"artifact `{url}` has no file `{name}` (it has "
        f"{', '.join(f'`{n}`' for n in names) or 'no files'})",
        hint="check the file name",
    )
