"""The job driver: plans the stage DAG, runs it on Ray, caches, resumes, records."""

from __future__ import annotations

from raypipe.driver.record import OutputRecord, RunRecord, StageRecord, StageStatus
from raypipe.driver.run import (
    JobFailedError,
    JobInterruptedError,
    RunObserver,
    RunOptions,
    run_job,
)

__all__ = [
    "JobFailedError",
    "JobInterruptedError",
    "OutputRecord",
    "RunObserver",
    "RunOptions",
    "RunRecord",
    "StageRecord",
    "StageStatus",
    "run_job",
]
