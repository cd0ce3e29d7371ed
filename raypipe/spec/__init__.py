"""Job specs: pydantic models of ``JOB.yaml``, loading with every problem located."""

from __future__ import annotations

from raypipe.spec.job import InputRef, Job, JobStage
from raypipe.spec.loading import load_job, resolve_job
from raypipe.spec.models import JobSpec, StageSpec

__all__ = ["InputRef", "Job", "JobSpec", "JobStage", "StageSpec", "load_job", "resolve_job"]
