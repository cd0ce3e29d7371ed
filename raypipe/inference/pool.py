"""Scoring pools: warm workers that each hold the model, and the backend capability giving one.

``raypipe infer`` and the ``inference.score`` stage score on the same kind of pool, asked of the
backend (:class:`ScoringBackend`): on Ray, a few long-lived actors (``raypipe.engine.scoring``)
that the backend keeps warm for every stage and command of the process; in-process, this
process with all its CPUs (:class:`InlineScoringPool`). :func:`score_on_pool` is the one call
both make.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from raypipe.inference.batch import InferenceReport, inline_runner, run_batch_inference
from raypipe.inference.ledger import UnitOutcome
from raypipe.inference.model import ModelBlob
from raypipe.inference.planning import InferenceSpec, ScoringJob, ScoringUnit

__all__ = [
    "InlineScoringPool",
    "PoolShape",
    "ScoringBackend",
    "ScoringPool",
    "score_on_pool",
]


@dataclass(frozen=True)
class PoolShape:
    """How many workers; the threads of each (units scored at once, one XGBoost thread each, or
    the threads of fewer units); the CPUs each reserves."""

    actors: int
    threads: int
    num_cpus: float


class ScoringPool(Protocol):
    """A :data:`~raypipe.inference.batch.UnitRunner` with its shape, for the advice."""

    @property
    def shape(self) -> PoolShape: ...

    @property
    def cluster_cpus(self) -> int: ...

    def __call__(self, job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterable[UnitOutcome]:
        """Score ``units``, yielding their outcomes in any order; raise on the first failure."""
        ...


@runtime_checkable
class ScoringBackend(Protocol):
    """A warm pool of scoring workers, each holding the model once."""

    def scoring_pool(self, actors: int | None = None) -> ScoringPool:
        """The backend's pool of ``actors`` workers (default: one per node), started now and
        kept warm for the backend's next calls; the backend ends it when it closes."""
        ...


class InlineScoringPool:
    """Scores in this process on all its CPUs, one unit per CPU at once, like an actor of the Ray
    pool (one machine without a started Ray, ``--inline``, unit tests)."""

    def __init__(self) -> None:
        cpus = os.cpu_count() or 1
        self.shape = PoolShape(actors=1, threads=cpus, num_cpus=float(cpus))
        self.cluster_cpus = cpus

    def __call__(self, job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterable[UnitOutcome]:
        return inline_runner(job, units)


def score_on_pool(
    model: ModelBlob, spec: InferenceSpec, pool: ScoringPool, *, resume: bool
) -> InferenceReport:
    """Score ``spec`` with ``model`` on ``pool`` (see
    :func:`~raypipe.inference.batch.run_batch_inference`)."""
    return run_batch_inference(
        model,
        spec,
        pool,
        resume=resume,
        workers=pool.shape.actors,
        threads_per_worker=pool.shape.threads,
        cluster_cpus=pool.cluster_cpus,
    )
