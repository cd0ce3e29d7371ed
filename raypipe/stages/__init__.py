"""Stage kinds: the contract every stage follows, and the table of kinds."""

from __future__ import annotations

from raypipe.stages.base import (
    DatasetInput,
    Executor,
    Stage,
    StageContext,
    StageOptions,
    StageResult,
)
from raypipe.stages.registry import STAGE_KINDS, known_kinds, load_stage

__all__ = [
    "STAGE_KINDS",
    "DatasetInput",
    "Executor",
    "Stage",
    "StageContext",
    "StageOptions",
    "StageResult",
    "known_kinds",
    "load_stage",
]
