"""One writer per dataset: a lease file, and the check that a folder is raypipe's to write.

A writer holds ``<url>/_lease.json`` (owner host, pid and run id, a random token, an expiry) from
before it stages its first file until after its commit; a daemon thread renews the expiry while
the writer lives. A second writer gets :class:`DatasetLeaseError` naming the holder. A lease
whose expiry passed, or whose holder process on this host is gone, is taken over.

What makes the check-and-set atomic depends on the filesystem (also in ``ARCHITECTURE.md``):

- local disk: an ``fcntl.flock`` on ``<url>/_lease.lock`` around read-decide-write; exact
  between processes of one host (not across NFS clients).
- ``memory://``: a process-wide lock; the memory filesystem exists in one process only.
- ``s3://`` (s3fs): ``PutObject`` with ``If-None-Match: *`` to create and ``If-Match: <etag>`` to
  take over or renew, so two hosts cannot both win; S3 and stores that implement conditional
  writes answer 412 to the loser.
- other stores: create if absent, then read back the token; a narrow race remains.

The commit checks the lease token again just before it writes the manifest, so a writer that
lost its lease (it stalled past the expiry and another took over) cannot publish.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec

from raypipe.errors import DataError
from raypipe.io.fs import is_local, resolve_fs, write_bytes_atomic
from raypipe.io.manifest import DATA_DIR, MANIFEST_NAME, VERSIONS_DIR

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "LEASE_NAME",
    "DatasetLease",
    "DatasetLeaseError",
    "ForeignFolderError",
    "ensure_writable_dataset",
    "held_lease",
    "hold_dataset_leases",
    "is_raypipe_name",
]

logger = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"
LOCK_NAME = "_lease.lock"
DEFAULT_LEASE_SECONDS = 120.0
# Top-level names a raypipe writer creates in a dataset folder (``_inference`` holds the
# per-unit markers of batch inference); anything else there belongs to someone else.
RAYPIPE_NAMES = frozenset(
    {MANIFEST_NAME, VERSIONS_DIR, DATA_DIR, LEASE_NAME, LOCK_NAME, "_inference"}
)
RAYPIPE_PREFIXES = (f"{MANIFEST_NAME}.tmp-", f"{LEASE_NAME}.tmp-")

_MEMORY_LOCK = threading.Lock()
_HELD: dict[str, DatasetLease] = {}
_HELD_LOCK = threading.Lock()


class ForeignFolderError(DataError):
    """The output folder holds files raypipe did not write."""


class DatasetLeaseError(DataError):
    """Another live writer holds the dataset's lease."""


def is_raypipe_name(name: str) -> bool:
    """Whether a top-level entry of a dataset folder is one raypipe writes."""
    return name in RAYPIPE_NAMES or name.startswith(RAYPIPE_PREFIXES)


def ensure_writable_dataset(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse to write at ``url`` unless it is absent, empty, or a raypipe dataset.

    Call it before any work starts (the CLI commands and the driver do): raypipe only ever deletes
    files its own manifests listed, and it never mixes its files into a folder of someone else's.

    Raises
    ------
    ForeignFolderError
        ``url`` is a file, or a folder with entries raypipe did not write and no manifest.
    """
    fs, root = resolve_fs(url, storage_options)
    root = root.rstrip("/")
    with contextlib.suppress(Exception):
        fs.invalidate_cache(root)
    if not fs.exists(root):
        return
    if not fs.isdir(root):
        raise ForeignFolderError(
            f"Output `{url}` is an existing file, not a dataset folder",
            hint="choose a new or empty folder for the output; raypipe does not overwrite files "
            "it did not write",
        )
    names = sorted(path.rstrip("/").rsplit("/", 1)[-1] for path in fs.ls(root, detail=False))
    if MANIFEST_NAME in names:
        return
    foreign = [name for name in names if not is_raypipe_name(name)]
    if foreign:
        shown = ", ".join(f"`{name}`" for name in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ForeignFolderError(
            f"Output `{url}` is a folder raypipe did not write: it holds {shown}{more} and no "
            f"`{MANIFEST_NAME}`",
            hint="choose a new or empty folder for the output (raypipe never deletes or mixes "
            "files it did not write), or move those files away first",
        )


@dataclass(frozen=True)
class _Owner:
    host: str
    pid: int
    run_id: str


class DatasetLease:
    """The lease of one dataset; a context manager that renews itself while held.

    Parameters
    ----------
    url
        The dataset root.
    run_id
        Recorded as part of the owner, shown to a writer that is refused.
    seconds
        How long the lease lasts without renewal; renewed every third of it.
    keep_versions
        Versions the holder's commits keep (see :mod:`raypipe.io.commit`); ``None``: default.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        run_id: str = "",
        seconds: float = DEFAULT_LEASE_SECONDS,
        keep_versions: int | None = None,
    ) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.owner = _Owner(socket.gethostname(), os.getpid(), run_id)
        self.seconds = float(seconds)
        self.keep_versions = keep_versions
        self.token = uuid.uuid4().hex
        self._fs, root = resolve_fs(url, self.storage_options)
        self._root = root.rstrip("/")
        self._path = f"{self._root}/{LEASE_NAME}"
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._depth = 0
        # The lease this process already held when this one was acquired: released through it.
        self._nested_in: DatasetLease | None = None

    # -- public ---------------------------------------------------------------------------

    def acquire(self) -> DatasetLease:
        """Take the lease (refused while another live writer holds it)."""
        key = _key(self._fs, self._path)
        with _HELD_LOCK:
            held = _HELD.get(key)
            if held is not None:  # this process holds it already: nest
                held._depth += 1
                self._nested_in = held
                return held
        ensure_writable_dataset(self.url, self.storage_options)
        self._set(create=True)
        self._depth = 1
        with _HELD_LOCK:
            _HELD[key] = self
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease:{self.url}", daemon=True
        )
        self._thread.start()
        return self

    def release(self) -> None:
        """Give the lease back (only if this writer still holds it)."""
        if self._nested_in is not None:  # a nested hold: the outer one counts it down
            outer, self._nested_in = self._nested_in, None
            outer.release()
            return
        key = _key(self._fs, self._path)
        with _HELD_LOCK:
            self._depth -= 1
            if self._depth > 0:
                return
            _HELD.pop(key, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._mutex():
            current, _ = self._read()
            if current is not None and current.get("token") == self.token:
                with contextlib.suppress(FileNotFoundError):
                    self._fs.rm_file(self._path)

    def check(self) -> None:
        """Raise :class:`DatasetLeaseError` unless this writer still holds the lease."""
        current, _ = self._read()
        if current is None or current.get("token") != self.token:
            holder = _describe(current) if current else "nobody"
            raise DatasetLeaseError(
                f"`{self.url}`: this writer lost its lease (now held by {holder}); not committing",
                hint="the run stalled past its lease; rerun it",
            )

    def __enter__(self) -> DatasetLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- internals ------------------------------------------------------------------------

    def _document(self) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "owner": {
                    "host": self.owner.host,
                    "pid": self.owner.pid,
                    "run_id": self.owner.run_id,
                },
                "token": self.token,
                "acquired_at": _iso(now),
                "expires_at": now + self.seconds,
            }
        ).encode("utf-8")

    def _set(self, *, create: bool) -> None:
        """Create (or, when ``create`` is false, renew) the lease file under the store's CAS."""
        with self._mutex():
            current, etag = self._read()
            if create and current is not None and not _claimable(current):
                raise DatasetLeaseError(
                    f"`{self.url}` is being written by {_describe(current)}",
                    hint="wait for that writer to finish; if it was killed, its lease expires at "
                    f"{_iso(float(current.get('expires_at', 0)))} and the next write takes it "
                    "over",
                )
            if not create and (current is None or current.get("token") != self.token):
                return  # lost: `check` refuses the commit
            if create and current is not None:
                logger.warning(
                    "taking over the lease of `%s` from %s", self.url, _describe(current)
                )
            self._write(self._document(), previous_etag=etag if current is not None else None)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._set(create=False)
            except Exception:  # a failed renewal is retried; `check` guards the commit
                logger.warning("could not renew the lease of `%s`", self.url, exc_info=True)

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        if is_local(self._fs):
            import fcntl

            os.makedirs(self._root, exist_ok=True)
            with open(f"{self._root}/{LOCK_NAME}", "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        elif "memory" in _protocols(self._fs):
            with _MEMORY_LOCK:
                yield
        else:
            yield

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        with contextlib.suppress(Exception):
            self._fs.invalidate_cache(self._root)
        try:
            data = self._fs.cat_file(self._path)
        except FileNotFoundError:
            return None, None
        etag = None
        if _is_s3(self._fs):
            with contextlib.suppress(Exception):
                etag = self._fs.info(self._path).get("ETag")
        try:
            return json.loads(data), etag
        except ValueError:
            return {"token": "", "expires_at": 0}, etag  # a torn lease file is claimable

    def _write(self, data: bytes, *, previous_etag: str | None) -> None:
        if is_local(self._fs):
            write_bytes_atomic(self._fs, self._path, data)
            return
        if _is_s3(self._fs):
            bucket, key, _ = self._fs.split_path(self._path)
            condition = {"IfMatch": previous_etag} if previous_etag else {"IfNoneMatch": "*"}
            try:
                self._fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
            except Exception as exc:  # 412 PreconditionFailed: another writer won the race
                current, _ = self._read()
                if current is not None and current.get("token") == self.token:
                    return
                raise DatasetLeaseError(
                    f"`{self.url}` is being written by "
                    f"{_describe(current) if current else 'another writer'}",
                    hint="wait for that writer to finish, then rerun",
                ) from exc
            return
        self._fs.pipe_file(self._path, data)
        current, _ = self._read()
        if current is None or current.get("token") != self.token:
            raise DatasetLeaseError(
                f"`{self.url}` is being written by "
                f"{_describe(current) if current else 'another writer'}",
                hint="wait for that writer to finish, then rerun",
            )


def held_lease(url: str, storage_options: Mapping[str, Any] | None = None) -> DatasetLease | None:
    """The lease this process holds on ``url``, if any."""
    fs, root = resolve_fs(url, storage_options)
    with _HELD_LOCK:
        return _HELD.get(_key(fs, f"{root.rstrip('/')}/{LEASE_NAME}"))


@contextlib.contextmanager
def hold_dataset_leases(
    urls: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    run_id: str = "",
    keep_versions: int | None = None,
    seconds: float = DEFAULT_LEASE_SECONDS,
) -> Iterator[list[DatasetLease]]:
    """Check every URL is writable, then hold all their leases for the ``with`` block.

    The one call a command or the driver makes before it starts writing outputs.
    """
    for url in urls:
        ensure_writable_dataset(url, storage_options)
    with contextlib.ExitStack() as stack:
        leases = [
            stack.enter_context(
                DatasetLease(
                    url,
                    storage_options,
                    run_id=run_id,
                    keep_versions=keep_versions,
                    seconds=seconds,
                )
            )
            for url in urls
        ]
        yield leases


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _key(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return f"{_protocols(fs)[0]}://{path}"


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    return bool({"s3", "s3a"} & set(_protocols(fs))) and hasattr(fs, "call_s3")


def _claimable(lease: Mapping[str, Any]) -> bool:
    if float(lease.get("expires_at", 0)) < time.time():
        return True
    owner = lease.get("owner") or {}
    if owner.get("host") != socket.gethostname():
        return False
    pid = int(owner.get("pid", 0))
    if pid == os.getpid():
        # A lease of this very process that it no longer tracks (released without deleting).
        return not any(held.token == lease.get("token") for held in _HELD.values())
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(lease: Mapping[str, Any]) -> str:
    owner = lease.get("owner") or {}
    run = f", run `{owner['run_id']}`" if owner.get("run_id") else ""
    return (
        f"host `{owner.get('host', '?')}` pid {owner.get('pid', '?')}{run} (lease until "
        f"{_iso(float(lease.get('expires_at', 0)))})"
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")
