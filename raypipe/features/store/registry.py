"""The registry of served feature views: every definition ever served, by content version.

A :class:`ServedView` is what the online store serves under a name: the entity key(s), the
event-time column, the source dataset, the value columns, the feature definitions they come from
(a :class:`~raypipe.features.views.FeatureView` document, when there is one) and the maximum age
a value may have when read. Its ``version`` is the SHA-256 of exactly those fields, so a changed
definition is a new version and can never hide behind the same name; owner, freshness SLA,
quality checks and description are governance metadata that may change without a new version.

Under ``data_dir`` (any fsspec URL)::

    registry/features/<name>/<version>.json      one record per definition ever registered
    registry/features/<name>/_current.json       the version served now and the history

Both are written atomically; the version file before the pointer, so a reader never sees a
pointer to a missing version.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from raypipe.errors import DataError, SpecError
from raypipe.io.fs import join_url, resolve_fs, write_bytes_atomic

__all__ = [
    "ServedView",
    "current_view",
    "definition_version",
    "diff_views",
    "list_views",
    "load_view",
    "register_view",
    "registry_url",
    "served_view_of",
    "view_history",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Fields that define what is served; a change to any of them is a new version.
DEFINITION_FIELDS = ("entities", "timestamp", "source", "columns", "definition", "max_age_s")


@dataclass(frozen=True)
class ServedView:
    """One version of a served feature view.

    Parameters
    ----------
    name
        The view's name, as users ask for it (``raypipe features get NAME``).
    entities
        Entity key column(s).
    timestamp
        Event-time column of the source; the online conflict rule and the age use it.
    source
        Where the values come from (a dataset URL or ``stage.output``), recorded for lineage.
    columns
        The value columns served, in order.
    definition
        How the columns are computed: feature view documents (``views_to_yaml`` form), or empty.
    max_age_s
        A read older than this returns ``OUTSIDE_MAX_AGE`` (None: values never expire).
    owner, freshness_sla_s, checks, description
        Governance metadata (not part of the version).
    recompute
        The job an SLA breach launches (:mod:`raypipe.features.store.recompute`): ``job``,
        ``stage``, ``set``, ``cooldown_s``; operational metadata, not part of the version.
    """

    name: str
    entities: tuple[str, ...]
    timestamp: str
    source: str
    columns: tuple[str, ...]
    definition: tuple[Mapping[str, Any], ...] = ()
    max_age_s: float | None = None
    owner: str = ""
    freshness_sla_s: float | None = None
    checks: tuple[Mapping[str, Any], ...] = ()
    description: str = ""
    recompute: Mapping[str, Any] | None = None
    version: str = ""
    registered_at: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append(f"view name `{self.name}` is not an identifier")
        if not self.entities:
            problems.append(f"view `{self.name}`: `entities` must name at least one column")
        if not self.columns:
            problems.append(f"view `{self.name}`: serves no columns")
        clash = set(self.entities) & set(self.columns)
        if clash:
            problems.append(f"view `{self.name}`: key column(s) {sorted(clash)} also in `columns`")
        if problems:
            raise SpecError(problems, hint="fix the served view's definition")
        if not self.version:
            object.__setattr__(self, "version", definition_version(self))

    @property
    def namespace(self) -> str:
        """Key prefix in online stores: name and short version, so versions never mix."""
        return f"{self.name}@{self.version[:12]}"

    def to_json(self) -> str:
        document = asdict(self)
        return json.dumps(document, indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> ServedView:
        document = json.loads(text)
        for name in ("entities", "columns"):
            document[name] = tuple(document[name])
        for name in ("definition", "checks"):
            document[name] = tuple(document[name])
        return cls(**document)


def definition_version(view: ServedView) -> str:
    """SHA-256 of the definition fields (canonical JSON), independent of metadata."""
    document = {name: getattr(view, name) for name in DEFINITION_FIELDS}
    text = json.dumps(document, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def registry_url(data_dir: str) -> str:
    """The folder of the feature view registry under ``data_dir``."""
    return join_url(data_dir, "registry", "features")


@dataclass(frozen=True)
class _Pointer:
    version: str
    history: list[dict[str, str]] = field(default_factory=list)


def _read_text(url: str, storage_options: Mapping[str, Any] | None) -> str | None:
    fs, path = resolve_fs(url, storage_options)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return str(handle.read().decode())


def _write_text(url: str, text: str, storage_options: Mapping[str, Any] | None) -> None:
    fs, path = resolve_fs(url, storage_options)
    write_bytes_atomic(fs, path, text.encode())


def _pointer(data_dir: str, name: str, storage_options: Mapping[str, Any] | None) -> _Pointer:
    text = _read_text(join_url(registry_url(data_dir), name, "_current.json"), storage_options)
    if text is None:
        known = ", ".join(f"`{v.name}`" for v in list_views(data_dir, storage_options)) or "none"
        raise DataError(
            f"feature view `{name}` is not registered under `{registry_url(data_dir)}` "
            f"(registered: {known})",
            hint="run the job that materializes it, or `raypipe features list` to see names",
        )
    document = json.loads(text)
    return _Pointer(document["version"], document.get("history", []))


def register_view(
    data_dir: str, view: ServedView, *, storage_options: Mapping[str, Any] | None = None
) -> tuple[ServedView, bool]:
    """Record ``view`` and make it the current version of its name.

    Returns the stored record and whether its version is new. Registering the same definition
    again keeps its version (and its first registration time) and updates the metadata.
    """
    base = join_url(registry_url(data_dir), view.name)
    version_url = join_url(base, f"{view.version}.json")
    existing = _read_text(version_url, storage_options)
    now = dt.datetime.now(dt.UTC).isoformat()
    registered_at = ServedView.from_json(existing).registered_at if existing else now
    record = replace(view, registered_at=registered_at)
    _write_text(version_url, record.to_json(), storage_options)
    pointer_text = _read_text(join_url(base, "_current.json"), storage_options)
    history = json.loads(pointer_text)["history"] if pointer_text else []
    if not history or history[-1]["version"] != view.version:
        history.append({"version": view.version, "at": now})
    pointer = {"version": view.version, "history": history}
    _write_text(join_url(base, "_current.json"), json.dumps(pointer, indent=1), storage_options)
    return record, existing is None


def load_view(
    data_dir: str,
    name: str,
    version: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> ServedView:
    """One version of ``name`` (the current one by default; a unique version prefix is enough)."""
    pointer = _pointer(data_dir, name, storage_options)
    wanted = version or pointer.version
    matches = [h["version"] for h in pointer.history if h["version"].startswith(wanted)]
    matches = list(dict.fromkeys(matches))
    if len(matches) != 1:
        known = ", ".join(f"`{h['version'][:12]}`" for h in pointer.history)
        raise DataError(
            f"feature view `{name}` has {'no' if not matches else 'several'} version(s) "
            f"matching `{wanted}` (versions: {known})",
            hint="give a version prefix from `raypipe features show NAME`",
        )
    text = _read_text(join_url(registry_url(data_dir), name, f"{matches[0]}.json"), storage_options)
    if text is None:
        raise DataError(
            f"feature view `{name}` version `{matches[0]}` is listed but missing",
            hint="register the view again (rerun the job that materializes it)",
        )
    return ServedView.from_json(text)


def current_view(
    data_dir: str, name: str, *, storage_options: Mapping[str, Any] | None = None
) -> ServedView:
    """The version of ``name`` served now."""
    return load_view(data_dir, name, storage_options=storage_options)


def view_history(
    data_dir: str, name: str, *, storage_options: Mapping[str, Any] | None = None
) -> list[dict[str, str]]:
    """Every version of ``name`` in registration order: ``{"version", "at"}``."""
    return list(_pointer(data_dir, name, storage_options).history)


def list_views(data_dir: str, storage_options: Mapping[str, Any] | None = None) -> list[ServedView]:
    """The current version of every registered view, by name."""
    fs, root = resolve_fs(registry_url(data_dir), storage_options)
    if not fs.exists(root):
        return []
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    views = []
    for name in names:
        if _read_text(join_url(registry_url(data_dir), name, "_current.json"), storage_options):
            views.append(current_view(data_dir, name, storage_options=storage_options))
    return views


def diff_views(old: ServedView, new: ServedView) -> list[str]:
    """A unified diff of two versions' records (empty when they are equal)."""
    old_lines = old.to_json().splitlines()
    new_lines = new.to_json().splitlines()
    return list(
        difflib.unified_diff(
            old_lines,
            new_lines,
            f"{old.name}@{old.version[:12]}",
            f"{new.name}@{new.version[:12]}",
            lineterm="",
        )
    )


def served_view_of(
    name: str,
    views: Sequence[Any],
    *,
    entities: Sequence[str],
    timestamp: str,
    source: str,
    columns: Sequence[str],
    **metadata: Any,
) -> ServedView:
    """A :class:`ServedView` whose definition is the documents of feature ``views``."""
    from raypipe.features.spec import view_to_dict

    return ServedView(
        name=name,
        entities=tuple(entities),
        timestamp=timestamp,
        source=source,
        columns=tuple(columns),
        definition=tuple(view_to_dict(v) for v in views),
        **metadata,
    )
