"""Per-unit commit markers: which units of a run are done, and what they wrote.

A worker writes a unit's output files first (staged, invisible), then one small JSON marker
``<output>/_inference/units/<unit_id>.json`` naming them. The marker is written whole or not at
all (a temporary name, then a rename; a single PUT on object stores). So a marker means "this
unit's files exist", a retried unit overwrites the same deterministic file names, and a resumed
driver needs only the markers to know what is left.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["UnitLedger", "UnitOutcome"]

logger = logging.getLogger(__name__)

LEDGER_DIR = "_inference"


@dataclass(frozen=True)
class UnitOutcome:
    """What scoring one unit produced.

    ``entries`` are the output files as :class:`raypipe.io.manifest.FileEntry` fields (plain
    dicts, so markers are JSON). ``status`` is ``bad`` for a quarantined file, with ``reason``.
    """

    unit_id: str
    source: str
    status: Literal["ok", "bad"]
    rows_in: int = 0
    rows_out: int = 0
    entries: tuple[Mapping[str, Any], ...] = ()
    reason: str = ""
    read_s: float = 0.0
    predict_s: float = 0.0
    write_s: float = 0.0
    worker_pid: int = 0
    resumed: bool = field(default=False, compare=False)

    def to_json(self) -> str:
        record = asdict(self)
        record.pop("resumed")
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UnitOutcome:
        record = json.loads(text)
        record["entries"] = tuple(record.get("entries") or ())
        return cls(**record, resumed=True)


class UnitLedger:
    """The markers of one output dataset.

    Parameters
    ----------
    output_url
        The output dataset's URL; markers live under ``_inference/units/`` inside it.
    """

    def __init__(self, output_url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        from raypipe.io.fs import join_url, resolve_fs

        self.url = join_url(output_url, LEDGER_DIR, "units")
        self._storage_options = dict(storage_options or {})
        self._fs, self._path = resolve_fs(self.url, self._storage_options)

    def _marker(self, unit_id: str) -> str:
        return f"{self._path.rstrip('/')}/{unit_id}.json"

    def read(self, unit_id: str) -> UnitOutcome | None:
        """The unit's outcome if its marker exists."""
        path = self._marker(unit_id)
        try:
            with self._fs.open(path, "r") as handle:
                return UnitOutcome.from_json(handle.read())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            logger.warning("unreadable unit marker `%s` ignored; the unit will be rescored", path)
            return None

    def read_all(self, unit_ids: Sequence[str]) -> dict[str, UnitOutcome]:
        """Outcomes of the given units that have a marker."""
        try:
            present = {name.rsplit("/", 1)[-1] for name in self._fs.ls(self._path, detail=False)}
        except FileNotFoundError:
            return {}
        found = {}
        for unit_id in unit_ids:
            if f"{unit_id}.json" in present:
                outcome = self.read(unit_id)
                if outcome is not None:
                    found[unit_id] = outcome
        return found

    def write(self, outcome: UnitOutcome) -> None:
        """Write the unit's marker atomically."""
        self._fs.makedirs(self._path, exist_ok=True)
        final = self._marker(outcome.unit_id)
        temporary = f"{final}.{uuid.uuid4().hex}.tmp"
        with self._fs.open(temporary, "w") as handle:
            handle.write(outcome.to_json())
        self._fs.mv(temporary, final)

    def clear(self) -> None:
        """Remove every marker (a fresh run, or a run that committed)."""
        parent = self._path.rsplit("/", 1)[0]
        if self._fs.exists(parent):
            self._fs.rm(parent, recursive=True)
