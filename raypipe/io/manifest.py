"""The manifest: the one file that makes a dataset (or artifact) exist.

``<url>/_manifest.json`` lists every data file with its rows, size, SHA-256 and partition values,
plus the exact schema. It is written atomically as the last step of a commit; files it does not
list are invisible. The ``version`` is a hash of the content (schema and the files' partition,
rows and checksums), not of names or times, so the same data written twice has the same version.

Every committed manifest is also kept as ``<url>/_versions/<version>.json`` (the dataset's last
few versions, see :mod:`raypipe.io.commit`), so a reader can open an older version by name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from raypipe.errors import DatasetNotCommittedError
from raypipe.io.fs import join_url, resolve_fs

__all__ = [
    "DATA_DIR",
    "MANIFEST_NAME",
    "VERSIONS_DIR",
    "FileEntry",
    "Manifest",
    "compute_version",
    "list_versions",
    "logical_name",
    "pinned_manifests",
    "with_pins",
    "read_manifest",
    "schema_from_text",
    "schema_to_text",
]

MANIFEST_NAME = "_manifest.json"
VERSIONS_DIR = "_versions"
DATA_DIR = "_data"
FORMAT_VERSION = 1

_PINS = threading.local()


def _pins() -> dict[str, Manifest]:
    """This thread's pinned manifests, URL (no trailing slash) -> manifest."""
    pins: dict[str, Manifest] = getattr(_PINS, "manifests", {})
    return pins


@dataclass(frozen=True)
class FileEntry:
    """One committed file: path relative to the dataset root, rows, size, SHA-256, partition."""

    path: str
    rows: int
    bytes: int
    sha256: str
    partition: dict[str, str | None] = field(default_factory=dict)


def logical_name(path: str) -> str:
    """An artifact file's name without its storage prefix (``_data/<attempt token>/``)."""
    if path.startswith(f"{DATA_DIR}/"):
        path = path[len(DATA_DIR) + 1 :]
    return path.split("/", 1)[-1]


def schema_to_text(schema: pa.Schema) -> str:
    """The exact serialized schema (Arrow IPC, base64)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    """Inverse of :func:`schema_to_text`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def compute_version(
    schema: pa.Schema,
    files: Iterable[FileEntry],
    *,
    partition_by: Sequence[str] = (),
    kind: str = "dataset",
    names: bool = False,
) -> str:
    """The content hash of a dataset: schema, partition columns and sorted file contents.

    ``names=True`` (artifacts) includes each file's name, since there the name is content.
    """
    items = sorted(
        json.dumps(
            [
                logical_name(entry.path) if names else "",
                sorted((entry.partition or {}).items()),
                entry.rows,
                entry.sha256,
            ],
            sort_keys=True,
        )
        for entry in files
    )
    digest = hashlib.sha256()
    digest.update(kind.encode())
    digest.update(schema_to_text(schema.remove_metadata()).encode())
    digest.update(json.dumps(list(partition_by)).encode())
    for item in items:
        digest.update(item.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A committed dataset's table of contents. ``version`` is its content hash."""

    version: str
    files: tuple[FileEntry, ...]
    rows: int
    bytes: int
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    kind: str = "dataset"
    sequence: int = 0

    def to_json(self) -> str:
        """The manifest as JSON text (what ``_manifest.json`` holds)."""
        document = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "version": self.version,
            "sequence": self.sequence,
            "created_at": self.created_at,
            "rows": self.rows,
            "bytes": self.bytes,
            "partition_by": list(self.partition_by),
            "columns": [
                {"name": item.name, "type": str(item.type), "nullable": item.nullable}
                for item in self.schema
            ],
            "schema": schema_to_text(self.schema),
            "metadata": dict(self.metadata),
            "files": [asdict(entry) for entry in self.files],
        }
        return json.dumps(document, indent=1, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse the text of a ``_manifest.json``."""
        document = json.loads(text)
        return cls(
            version=document["version"],
            files=tuple(FileEntry(**entry) for entry in document["files"]),
            rows=int(document["rows"]),
            bytes=int(document["bytes"]),
            schema=schema_from_text(document["schema"]),
            partition_by=tuple(document.get("partition_by", ())),
            metadata=document.get("metadata") or {},
            created_at=document.get("created_at", ""),
            kind=document.get("kind", "dataset"),
            sequence=int(document.get("sequence", 0)),
        )


def read_manifest(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
) -> Manifest:
    """The committed manifest of the dataset at ``url`` (its current version, or ``version``).

    Parameters
    ----------
    version
        A kept version of the dataset, whole or a unique prefix of at least 6 characters (as
        ``raypipe data versions URL`` lists them).

    Raises
    ------
    DatasetNotCommittedError
        ``url`` has no ``_manifest.json`` (the writer never committed), it is unreadable, or
        ``version`` is not one of the kept versions.
    """
    if version is not None:
        return _kept_version(url, version, storage_options)
    pinned = _pins().get(url.rstrip("/"))
    if pinned is not None:
        return pinned
    fs, path = resolve_fs(join_url(url, MANIFEST_NAME), storage_options)
    try:
        text = fs.cat_file(path).decode("utf-8")
    except FileNotFoundError as exc:
        if not fs.exists(path.rsplit("/", 1)[0]):
            raise DatasetNotCommittedError(
                f"`{url}` does not exist (no committed manifest there)",
                hint="check the URL; a job's stage outputs are under `<data_dir>/datasets/`",
            ) from exc
        raise DatasetNotCommittedError(
            f"`{url}` has no committed manifest (`{MANIFEST_NAME}` is missing)",
            hint="the writer did not finish; rerun the stage",
        ) from exc
    return _parse(url, MANIFEST_NAME, text)


@contextlib.contextmanager
def pinned_manifests(manifests: Mapping[str, Manifest]) -> Iterator[None]:
    """Within the block, this thread's reads of these URLs see these manifests.

    The driver pins each stage's inputs to the versions it fingerprinted (a kept version for
    ``<stage>.<output>@<version>``), so a stage that reads an input by URL reads exactly that
    version, even while another run commits a newer one.
    """
    previous = _pins()
    _PINS.manifests = {**previous, **{url.rstrip("/"): m for url, m in manifests.items()}}
    try:
        yield
    finally:
        _PINS.manifests = previous


def with_pins(fn: Any) -> Any:
    """``fn`` carrying this thread's pinned manifests into whatever process calls it.

    Pins live in the driver thread; a Ray task runs elsewhere and would read an input's current
    version. Executors wrap the function of every task with this, so a task that reads an input
    by URL reads the version the stage was pinned to (the driver's manifests travel pickled with
    the function), even while a rerun commits a newer one. Without pins, ``fn`` itself.
    """
    pins = dict(_pins())
    return _Pinned(fn, pins) if pins else fn


@dataclass(frozen=True)
class _Pinned:
    fn: Any
    pins: dict[str, Manifest]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with pinned_manifests(self.pins):
            return self.fn(*args, **kwargs)


def list_versions(url: str, storage_options: Mapping[str, Any] | None = None) -> list[Manifest]:
    """The kept versions of the dataset at ``url``, newest first (the current one included).

    Raises
    ------
    DatasetNotCommittedError
        ``url`` has never been committed.
    """
    current = read_manifest(url, storage_options)
    fs, path = resolve_fs(join_url(url, VERSIONS_DIR), storage_options)
    try:
        names = [name for name in fs.ls(path, detail=False) if name.endswith(".json")]
    except FileNotFoundError:
        names = []
    found = {current.version: current}
    for name in names:
        try:
            text = fs.cat_file(name).decode("utf-8")
        except FileNotFoundError:  # retired by a concurrent commit's clean-up
            continue
        manifest = _parse(url, name.rsplit("/", 1)[-1], text)
        if manifest.version not in found:
            found[manifest.version] = manifest
    return sorted(found.values(), key=lambda item: (item.sequence, item.created_at), reverse=True)


def _kept_version(url: str, version: str, storage_options: Mapping[str, Any] | None) -> Manifest:
    kept = list_versions(url, storage_options)
    matches = [item for item in kept if len(version) >= 6 and item.version.startswith(version)]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(f"`{item.version[:12]}`" for item in kept)
    problem = "matches several kept versions" if matches else "is not a kept version"
    raise DatasetNotCommittedError(
        f"`{url}`: version `{version}` {problem} (kept: {listed})",
        hint=f"`raypipe data versions {url}` lists the versions; give at least 6 characters",
    )


def _parse(url: str, name: str, text: str) -> Manifest:
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetNotCommittedError(
            f"`{url}` has an unreadable manifest `{name}`: {exc}",
            hint="the manifest was altered or truncated; rerun the stage that writes it",
        ) from exc
