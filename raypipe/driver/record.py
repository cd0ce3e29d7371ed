"""The run record: what a run did, stage by stage.

Written to ``<data_dir>/jobs/<job>/runs/<run_id>/run.json`` as the run goes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OutputRecord", "RunRecord", "StageRecord", "StageStatus"]


class StageStatus:
    """The states a stage goes through in a run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: Stopped by Ctrl-C or SIGTERM; ``--resume`` continues it.
    INTERRUPTED = "interrupted"

    FINISHED = frozenset({SUCCEEDED, CACHED})


@dataclass
class OutputRecord:
    url: str
    version: str
    rows: int


@dataclass
class StageRecord:
    """One stage of a run."""

    name: str
    kind: str
    status: str = StageStatus.PENDING
    cached: bool = False
    fingerprint: str = ""
    seconds: float = 0.0
    rows_in: int = 0
    rows_out: int = 0
    inputs: dict[str, OutputRecord] = field(default_factory=dict)
    outputs: dict[str, OutputRecord] = field(default_factory=dict)
    node_ids: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageRecord:
        values = dict(data)
        values["inputs"] = {k: OutputRecord(**v) for k, v in values.get("inputs", {}).items()}
        values["outputs"] = {k: OutputRecord(**v) for k, v in values.get("outputs", {}).items()}
        return cls(**values)


@dataclass
class RunRecord:
    """A whole run. ``status`` is ``running`` until the driver finishes it.

    ``heartbeat`` (``at``, ``host``, ``pid``) is rewritten by the driver every few seconds while
    it runs; ``--resume`` refuses a ``running`` run whose heartbeat is fresh.
    """

    run_id: str
    job: str
    spec: str
    data_dir: str
    raypipe_version: str
    started_at: str
    status: str = StageStatus.RUNNING
    finished_at: str | None = None
    seconds: float = 0.0
    attempts: int = 1
    stages: dict[str, StageRecord] = field(default_factory=dict)
    heartbeat: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == StageStatus.SUCCEEDED

    @property
    def failed_stages(self) -> list[StageRecord]:
        return [stage for stage in self.stages.values() if stage.status == StageStatus.FAILED]

    def to_json(self) -> str:
        """The record as JSON, with credentials and query strings of URLs redacted."""
        from raypipe.redaction import redact_record

        return json.dumps(redact_record(asdict(self)), indent=2, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        data["stages"] = {k: StageRecord.from_dict(v) for k, v in data["stages"].items()}
        return cls(**data)
