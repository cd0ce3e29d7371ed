"""The append-only audit log of alias changes: who moved which alias, when, from what, to what, why.

One JSON object per line in ``<data_dir>/registry/audit.jsonl``. Lines are only ever appended
(opened with ``"a"``, flushed and fsynced), never rewritten, so the file is the history MLflow's
registry does not keep. Each entry is mirrored as an MLflow tag by :mod:`raypipe.tracking.registry`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["AuditEntry", "AuditLog", "current_user"]


@dataclass(frozen=True)
class AuditEntry:
    """One alias change. ``from_version`` is ``None`` when the alias was unset before."""

    at: str
    who: str
    model: str
    alias: str
    action: str  # "register", "promote", "rollback", "gate-refused"
    from_version: str | None
    to_version: str | None
    reason: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def current_user() -> str:
    """The operating-system user, or ``RAYPIPE_USER`` when set (CI, service accounts)."""
    if os.environ.get("RAYPIPE_USER"):
        return os.environ["RAYPIPE_USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class AuditLog:
    """Append and read the JSONL audit log at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(
        self,
        *,
        model: str,
        alias: str,
        action: str,
        from_version: str | None,
        to_version: str | None,
        reason: str,
        who: str | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            who=who or current_user(),
            model=model,
            alias=alias,
            action=action,
            from_version=from_version,
            to_version=to_version,
            reason=reason,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(entry.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def read(self, model: str | None = None) -> list[AuditEntry]:
        """Every entry (of ``model`` if given), oldest first; a torn last line is skipped."""
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = AuditEntry(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            if model is None or entry.model == model:
                entries.append(entry)
        return entries
