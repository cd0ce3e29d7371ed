"""The backend capability the ``federated.train`` stage asks for: client groups in actors.

Declared here, beside the types it speaks; the engine's backends provide it
(``raypipe.engine.backend.RayBackend`` hosts each group in a Ray actor, the in-process backend
calls the groups in this process). See :mod:`raypipe.stages.backend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from raypipe.federated.clients import ClientShard, FailureInjection
from raypipe.federated.simulation import ClientBackend

__all__ = ["FederationBackend"]


@runtime_checkable
class FederationBackend(Protocol):
    """Hosts simulated federated clients, a group of them per worker."""

    def federation(
        self,
        shards: Sequence[ClientShard],
        *,
        num_cpus: float = 0.5,
        failures: FailureInjection | None = None,
    ) -> ClientBackend:
        """One worker per shard, started now; the caller closes the returned backend."""
        ...
