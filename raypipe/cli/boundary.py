"""The CLI's error boundary: a failure raypipe did not raise on purpose becomes one clear error.

Domain code raises :class:`~raypipe.errors.RaypipeError` where it knows what went wrong. What
escapes from a library below it (botocore, the operating system, pyarrow) reaches the command
line here, once, and is named by the option the user gave: the bucket of ``--input``, the folder
of ``--json``. A user sees the traceback only with ``--debug``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from raypipe.errors import DataError, RaypipeError, StorageError

if TYPE_CHECKING:  # fsspec is imported when a URL is resolved, not with the CLI
    import fsspec

__all__ = ["explain", "option_of", "require_exists", "require_writable"]

_CREDENTIALS_HINT = (
    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for "
    "an S3-compatible store); `aws sts get-caller-identity` shows what the AWS tools find"
)
_DEBUG_HINT = "rerun with `--debug` for the traceback"


def explain(exc: BaseException, argv: Sequence[str]) -> RaypipeError:
    """The :class:`RaypipeError` a user should see for ``exc``, which raypipe did not expect.

    Parameters
    ----------
    exc
        The exception that reached the command line.
    argv
        The command's arguments, to name the option whose value failed.
    """
    for link in _chain(exc):
        explained = _explain_one(link, argv)
        if explained is not None:
            explained.__cause__ = exc
            return explained
    return RaypipeError(
        f"unexpected {type(exc).__name__}: {_first_line(exc)}",
        hint=f"{_DEBUG_HINT}, and report it with the command you ran",
    )


def require_exists(url: str, option: str) -> None:
    """Raise a :class:`DataError` naming ``option`` when nothing is at ``url``.

    Said before anything else is read, so a mistyped path reads as "not found" and not as a
    dataset whose writer did not finish.
    """
    from raypipe.io.fs import resolve_fs

    fs, path = resolve_fs(url)
    if fs.exists(path):
        return
    _require_bucket(fs, url, option)
    raise DataError(f"`{url}` (`{option}`) not found", hint=f"check the path given to `{option}`")


def require_writable(url: str, option: str) -> None:
    """Raise a :class:`StorageError` naming ``option`` when ``url`` cannot be written.

    Checked before any work and without creating anything: the nearest existing folder above a
    local path must be a writable folder; an object store's bucket must exist.
    """
    import os
    from pathlib import Path

    from raypipe.io.fs import is_local, resolve_fs

    fs, path = resolve_fs(url)
    if not is_local(fs):
        _require_bucket(fs, url, option)
        return
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == Path(path) and existing.is_file():
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(
            f"cannot write `{url}` (`{option}`): `{existing}` is a file, not a folder",
            hint=f"give `{option}` a path whose parents are folders",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(
            f"cannot write `{url}` (`{option}`): no permission to write in `{existing}`",
            hint=f"give `{option}` a folder you can write to",
        )


def _require_bucket(fs: fsspec.AbstractFileSystem, url: str, option: str) -> None:
    """An object store URL whose bucket does not exist fails with the bucket's name."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("s3", "s3a", "gs", "gcs", "abfs", "az") or not rest:
        return
    bucket = rest.split("/", 1)[0]
    if not fs.exists(bucket):
        raise StorageError(
            f"bucket `{bucket}` of `{url}` (`{option}`) does not exist, or these credentials "
            "cannot see it",
            hint="check the bucket's name and AWS_ENDPOINT_URL; `aws s3 ls` lists the buckets "
            "these credentials see",
        )


def option_of(value: str, argv: Sequence[str]) -> str | None:
    """The option (``--input``) whose value is ``value``, a folder above it or a path below it."""
    best: tuple[int, str] | None = None
    for index, arg in enumerate(argv):
        name, sep, inline = arg.partition("=")
        if not name.startswith("--"):
            continue
        given = inline if sep else (argv[index + 1] if index + 1 < len(argv) else "")
        candidates = {given.rstrip("/"), given.removeprefix("file://").rstrip("/")}
        for candidate in candidates:
            related = candidate and (_within(value, candidate) or _within(candidate, value))
            if related and (best is None or len(candidate) > best[0]):
                best = (len(candidate), name)
    return best[1] if best else None


def _explain_one(exc: BaseException, argv: Sequence[str]) -> RaypipeError | None:
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        urls = [arg for arg in _values(argv) if arg.startswith(("s3://", "s3a://"))]
        where = ", ".join(_named(url, argv) for url in urls) or "S3"
        return StorageError(f"no AWS credentials to read or write {where}", hint=_CREDENTIALS_HINT)
    if name == "NoSuchBucket" or "NoSuchBucket" in str(exc) or "bucket does not exist" in str(exc):
        urls = [arg for arg in _values(argv) if arg.startswith(("s3://", "s3a://"))]
        buckets = sorted({url.split("/")[2] for url in urls if len(url.split("/")) > 2})
        return StorageError(
            f"bucket {', '.join(f'`{b}`' for b in buckets) or '(unknown)'} does not exist "
            f"(in {', '.join(_named(url, argv) for url in urls) or 'S3'})",
            hint="check the bucket name and AWS_ENDPOINT_URL; `aws s3 ls` lists your buckets",
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        return _explain_os_error(exc, argv)
    if name in ("ArrowInvalid", "ArrowIOError") and "parquet" in str(exc).lower():
        return DataError(
            f"a file is not readable Parquet: {_first_line(exc)}",
            hint="the file is truncated or not Parquet; write it again or move it out of "
            "the input folder",
        )
    return None


def _explain_os_error(exc: OSError, argv: Sequence[str]) -> RaypipeError | None:
    path = str(exc.filename) if exc.filename else ""
    where = _named(path, argv) if path else "a path"
    if exc.errno == errno.ENOTDIR:
        return StorageError(
            f"cannot create {where}: a part of it is a file, not a folder",
            hint="choose a folder whose parents are folders",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"no permission to write {where} ({exc.strerror})",
            hint="choose a folder you can write to",
        )
    if exc.errno == errno.ENOENT:
        return DataError(f"{where} not found", hint="check the path")
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"no space left writing {where}", hint="free space, or choose another disk"
        )
    return None


def _named(path: str, argv: Sequence[str]) -> str:
    option = option_of(path, argv)
    return f"`{path}` (`{option}`)" if option else f"`{path}`"


def _within(path: str, folder: str) -> bool:
    path = path.removeprefix("file://").rstrip("/")
    return path == folder or path.startswith(folder + "/")


def _values(argv: Sequence[str]) -> Iterator[str]:
    for arg in argv:
        yield arg.partition("=")[2] if arg.startswith("--") and "=" in arg else arg


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
