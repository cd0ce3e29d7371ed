"""The append-only audit log of alias changes, and the compare-and-set that orders them.

Layout, under ``<data_dir>/registry/audit`` on any fsspec file system (local disk, ``s3://``,
``memory://``)::

    <model>/<stream>/<sequence:010d>.json     one AuditEntry, never rewritten

A *stream* is one alias (``champion``, ``challenger``) or ``gate`` for refusals. Entry ``n + 1``
of a stream is written with an exclusive create (``os.link`` of a finished temporary file on
local disk; ``If-None-Match: *`` on S3 through s3fs's ``"xb"`` mode; a process lock on
``memory://``), so of two writers that both read entry ``n`` as the head, exactly one creates
``n + 1`` and the other gets :class:`ConcurrentChangeError` having changed nothing. The stream is
therefore a single chain: each entry's ``from_version`` is the previous entry's ``to_version``.
See :class:`raypipe.tracking.registry.Registry` for how the MLflow alias follows the chain.

Hash chain
----------
Each entry also holds ``prev_hash``, the SHA-256 of entry ``n - 1`` as stored (its JSON object
without its own ``hash`` key, canonically serialized), and ``hash``, the same digest of itself.
:mod:`raypipe.tracking.verify` recomputes both: an edited entry no longer matches its ``hash``
or its successor's ``prev_hash``, and a deleted one leaves a gap in the numbers and a
``prev_hash`` that matches nothing. Entries written before chaining have no hash fields; they
are reported as unchained, and the first chained entry after them still pins their content.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from raypipe.errors import ModelError
from raypipe.io.fs import is_local, join_url, resolve_fs

__all__ = [
    "GATE_STREAM",
    "AuditEntry",
    "AuditLog",
    "ConcurrentChangeError",
    "content_hash",
    "current_user",
]

#: The stream of gate refusals (no alias moves; kept apart so they never race alias changes).
GATE_STREAM = "gate"

_MEMORY_LOCK = threading.Lock()


class ConcurrentChangeError(ModelError):
    """Another change of the same alias won the race (or the alias is not where it was expected).

    Nothing was changed by the call that raised it.
    """


@dataclass(frozen=True)
class AuditEntry:
    """One alias change. ``from_version`` is ``None`` when the alias was unset before.

    ``sequence`` numbers the entries of one stream (an alias, or the gate) from 1 without gaps.
    """

    at: str
    who: str
    model: str
    alias: str
    action: str  # "register", "promote", "rollback", "gate-refused"
    from_version: str | None
    to_version: str | None
    reason: str
    sequence: int = 0
    #: Evidence of the change (metrics, triggers, approvals), free-form JSON.
    details: dict[str, Any] = field(default_factory=dict, hash=False)
    prev_hash: str | None = None
    hash: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def content_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of an entry's JSON object without its ``hash`` key, canonically serialized."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def current_user() -> str:
    """The operating-system user, or ``RAYPIPE_USER`` when set (CI, service accounts)."""
    if os.environ.get("RAYPIPE_USER"):
        return os.environ["RAYPIPE_USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class AuditLog:
    """Append and read the audit entries under ``root`` (a local path or fsspec URL).

    Parameters
    ----------
    root
        The audit folder, normally :func:`raypipe.tracking.store.audit_path` of the data dir.
    storage_options
        fsspec options of ``root`` (the job's ``storage_options``).
    """

    def __init__(
        self, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> None:
        self.root = str(root)
        self.storage_options = dict(storage_options or {})

    def head(self, model: str, stream: str) -> tuple[int, AuditEntry | None]:
        """The last sequence number of ``stream`` of ``model`` (0 if empty) and its entry."""
        fs, folder = resolve_fs(self._stream_url(model, stream), self.storage_options)
        sequences = self._sequences(fs, folder)
        if not sequences:
            return 0, None
        last = sequences[-1]
        return last, self._read_entry(fs, f"{folder}/{last:010d}.json")

    def append(
        self,
        *,
        model: str,
        alias: str,
        action: str,
        from_version: str | None,
        to_version: str | None,
        reason: str,
        sequence: int,
        who: str | None = None,
        stream: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Create entry ``sequence`` of ``stream`` (default: ``alias``) if nobody has.

        The entry is chained to entry ``sequence - 1`` (its ``prev_hash``).

        Raises
        ------
        ConcurrentChangeError
            Entry ``sequence`` exists: another writer changed the stream since its head was read.
        """
        fs, folder = resolve_fs(self._stream_url(model, stream or alias), self.storage_options)
        prev_hash = None
        if sequence > 1:
            previous = self._read_record(fs, f"{folder}/{sequence - 1:010d}.json")
            if previous is None:
                raise ModelError(
                    f"audit entry {sequence - 1} of `{model}/{stream or alias}` is missing or "
                    f"unreadable, so entry {sequence} cannot be chained to it",
                    hint=f"check the trail with `raypipe models audit {model} --verify`",
                )
            prev_hash = content_hash(previous)
        entry = AuditEntry(
            at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            who=who or current_user(),
            model=model,
            alias=alias,
            action=action,
            from_version=from_version,
            to_version=to_version,
            reason=reason,
            sequence=sequence,
            details=dict(details or {}),
            prev_hash=prev_hash,
        )
        record = asdict(entry)
        entry = AuditEntry(**{**record, "hash": content_hash(record)})
        path = f"{folder}/{sequence:010d}.json"
        try:
            _create_exclusive(fs, path, (entry.to_json() + "\n").encode("utf-8"))
        except FileExistsError as exc:
            _, winner = self.head(model, stream or alias)
            by = f" ({winner.action} to `{winner.to_version}` by {winner.who})" if winner else ""
            raise ConcurrentChangeError(
                f"`{model}@{alias}` was changed by another writer while this {action} ran{by}; "
                "nothing was changed",
                hint=f"check the current state with `raypipe models show {model}` and repeat "
                "the command if it still applies",
            ) from exc
        return entry

    def read(self, model: str | None = None) -> list[AuditEntry]:
        """Every entry (of ``model`` if given) of every stream, oldest first."""
        fs, root = resolve_fs(self.root, self.storage_options)
        if model is not None:
            model_folders = [f"{root}/{_component(model)}"]
        else:
            model_folders = _children(fs, root)
        entries = []
        for model_folder in model_folders:
            for folder in _children(fs, model_folder):
                for sequence in self._sequences(fs, folder):
                    entry = self._read_entry(fs, f"{folder}/{sequence:010d}.json")
                    if entry is not None:
                        entries.append(entry)
        return sorted(entries, key=lambda e: (e.at, e.sequence))

    def append_next(
        self, *, model: str, stream: str, rounds: int = 50, **fields: Any
    ) -> AuditEntry:
        """Append to ``stream`` at whatever its next number is, retrying if another writer took
        it (for streams that need no compare-and-set: approvals, requests, refusals)."""
        for _ in range(rounds):
            sequence, _ = self.head(model, stream)
            try:
                return self.append(model=model, stream=stream, sequence=sequence + 1, **fields)
            except ConcurrentChangeError:
                continue
        raise ConcurrentChangeError(f"`{model}/{stream}` kept changing; the entry was not written")

    def read_stream(self, model: str, stream: str) -> list[AuditEntry]:
        """The entries of one stream, oldest first (unreadable ones left out)."""
        fs, folder = resolve_fs(self._stream_url(model, stream), self.storage_options)
        entries = [
            self._read_entry(fs, f"{folder}/{n:010d}.json") for n in self._sequences(fs, folder)
        ]
        return [e for e in entries if e is not None]

    def _stream_url(self, model: str, stream: str) -> str:
        return join_url(self.root, _component(model), _component(stream))

    @staticmethod
    def _sequences(fs: Any, folder: str) -> list[int]:
        names = [path.rstrip("/").rsplit("/", 1)[-1] for path in _children(fs, folder)]
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    @staticmethod
    def _read_record(fs: Any, path: str) -> dict[str, Any] | None:
        try:
            data = json.loads(fs.cat_file(path))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    @classmethod
    def _read_entry(cls, fs: Any, path: str) -> AuditEntry | None:
        data = cls._read_record(fs, path)
        if data is None:
            return None
        data.pop("stream", None)
        try:
            return AuditEntry(**data)
        except TypeError:
            return None


def _component(name: str) -> str:
    """A model or alias name as one path component (``/`` and other specials escaped)."""
    return quote(name, safe="")


def _children(fs: Any, folder: str) -> list[str]:
    try:
        return [str(path) for path in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []


def _create_exclusive(fs: Any, path: str, data: bytes) -> None:
    """Create ``path`` holding ``data``, or raise ``FileExistsError``; readers never see half.

    Local disk: a fsynced temporary file hard-linked to ``path`` (``link`` fails if it exists).
    ``memory://`` checks and creates under a process lock (its ``"xb"`` is not atomic across
    threads). Others (S3 through s3fs) use ``"xb"``, a conditional PUT.
    """
    if is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex[:12]}"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
        return
    if fs.protocol == "memory" or "memory" in (fs.protocol or ()):
        with _MEMORY_LOCK:
            if fs.exists(path):
                raise FileExistsError(path)
            fs.pipe_file(path, data)
        return
    with fs.open(path, "xb") as handle:
        handle.write(data)
