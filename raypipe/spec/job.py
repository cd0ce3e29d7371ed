"""A validated job: every stage's kind resolved, options typed, inputs wired, order known."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raypipe.stages.base import Stage, StageOptions

__all__ = ["InputRef", "Job", "JobStage"]


@dataclass(frozen=True)
class InputRef:
    """An input of a stage: output ``output`` of stage ``stage`` (its kept ``version``, if set)."""

    stage: str
    output: str
    version: str | None = None

    def __str__(self) -> str:
        pinned = f"@{self.version}" if self.version else ""
        return f"{self.stage}.{self.output}{pinned}"


@dataclass(frozen=True)
class JobStage:
    """One stage of a validated job."""

    name: str
    kind: str
    stage_class: type[Stage[Any]]  # any kind of stage: loaded by name from the job file
    options: StageOptions
    inputs: Mapping[str, InputRef] = field(default_factory=dict)

    @property
    def depends_on(self) -> frozenset[str]:
        return frozenset(ref.stage for ref in self.inputs.values())

    def options_dict(self) -> dict[str, Any]:
        """The options with defaults filled in, as plain JSON-able data (for the cache key)."""
        return self.options.model_dump(mode="json")


@dataclass(frozen=True)
class Job:
    """A validated job spec. Stages are listed in a dependency order."""

    name: str
    data_dir: str
    stages: tuple[JobStage, ...]
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    keep_versions: int = 3

    def stage(self, name: str) -> JobStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def downstream_of(self, name: str) -> set[str]:
        """Every stage that depends on ``name``, directly or not."""
        found: set[str] = set()
        frontier = {name}
        while frontier:
            frontier = {
                stage.name
                for stage in self.stages
                if stage.depends_on & frontier and stage.name not in found
            }
            found |= frontier
        return found
