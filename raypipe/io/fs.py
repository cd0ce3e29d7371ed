"""Filesystem access through fsspec: local paths, ``file://``, ``memory://``, ``s3://`` and more.

Every raypipe read and write goes through :func:`resolve_fs`, so a dataset URL works the same on
a laptop and on an object store. ``storage_options`` pass through to the fsspec filesystem (for
S3: ``endpoint_url``, ``key``, ``secret``, ...); s3fs also honours ``AWS_ENDPOINT_URL`` and the
other ``AWS_*`` environment variables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "fsync_dir",
    "is_local",
    "join_url",
    "resolve_fs",
    "write_bytes",
    "write_bytes_atomic",
]


def join_url(base: str, *parts: str) -> str:
    """Join ``parts`` onto ``base`` with ``/``, keeping a ``scheme://`` prefix intact.

    Examples
    --------
    >>> join_url("s3://bucket/x", "a", "b.parquet")
    's3://bucket/x/a/b.parquet'
    >>> join_url("memory://x/", "y")
    'memory://x/y'
    """
    scheme, sep, rest = base.partition("://")
    if not sep:
        rest = base
    cleaned = [str(part).strip("/") for part in parts if str(part).strip("/")]
    head = rest.rstrip("/")
    if head:
        joined = "/".join([head, *cleaned])
    else:
        joined = ("/" if rest.startswith("/") else "") + "/".join(cleaned)
    return f"{scheme}://{joined}" if sep else joined


def resolve_fs(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the path inside it.

    Parameters
    ----------
    url
        A local path, or a URL with a scheme fsspec knows (``file://``, ``memory://``, ``s3://``).
    storage_options
        Keyword arguments for the filesystem's constructor.
    """
    fs, path = url_to_fs(url, **dict(storage_options or {}))
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk."""
    return isinstance(fs, LocalFileSystem)


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a new file whole (on local disk flushed with ``fsync``, so a commit that lists it
    after a crash of the machine never lists a file that is not on disk)."""
    if is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        fs.pipe_file(path, data)


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new content, never half.

    Local disk: write a temporary sibling, ``fsync`` it, ``os.replace`` it over ``path``, then
    ``fsync`` the directory so the rename itself survives a power loss. Object stores (and
    ``memory://``): a single PUT of the final key is atomic.
    """
    if is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temporary = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_dir(os.path.dirname(path) or ".")
    else:
        fs.pipe_file(path, data)


def fsync_dir(path: str) -> None:
    """Flush a local directory's entries (renames, creates, deletes) to disk."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # not a directory we can open (e.g. on Windows): nothing to flush
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
