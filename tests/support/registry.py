"""A :class:`~raypipe.tracking.registry.Registry` without MLflow, for fast unit tests.

The compare-and-set logic, the audit streams and the hash chain are the real ones; only the
MLflow side (version lookup, alias writes, tags) is replaced: the alias is read from the audit
stream's head and every version listed in ``versions`` exists.
"""

from __future__ import annotations

from typing import Any

from raypipe.errors import ModelError
from raypipe.tracking.audit import AuditEntry, AuditLog
from raypipe.tracking.registry import Registry


class AuditOnlyRegistry(Registry):
    def __init__(self, audit: AuditLog) -> None:  # no MLflow client
        self.tracking_uri = "audit-only://"
        self.audit = audit
        self.versions: dict[str, dict[str, Any]] = {}

    def add_version(self, name: str, tags: dict[str, Any] | None = None) -> str:
        version = str(len(self.versions) + 1)
        self.versions[version] = dict(tags or {})
        return version

    def alias_version(self, name: str, alias: str) -> str | None:
        _, head = self.audit.head(name, alias)
        return head.to_version if head is not None else None

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return {k: str(v) for k, v in self.versions[version].items()}

    def sync_alias(self, name: str, alias: str) -> str | None:
        return self.alias_version(name, alias)

    def _require_version(self, name: str, version: str) -> None:
        if version not in self.versions:
            raise ModelError(f"model `{name}` has no version `{version}`")

    def _tag(self, name: str, version: str, alias: str, entry: AuditEntry) -> None:
        pass
