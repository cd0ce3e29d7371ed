"""Stage kinds: the contract every stage follows, and the table of kinds."""

from __future__ import annotations

from raypipe.stages.backend import Backend, require
from raypipe.stages.base import (
    DatasetInput,
    Executor,
    Stage,
    StageContext,
    StageOptions,
    StageResult,
)
from raypipe.stages.registry import (
    ENTRY_POINT_GROUP,
    STAGE_KINDS,
    StageKindError,
    installed_kinds,
    known_kinds,
    load_stage,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "STAGE_KINDS",
    "Backend",
    "DatasetInput",
    "Executor",
    "Stage",
    "StageContext",
    "StageOptions",
    "StageKindError",
    "StageResult",
    "installed_kinds",
    "known_kinds",
    "load_stage",
    "require",
]
