"""The backend capability the ``serve.deploy`` stage asks for: running an online service.

Declared here, beside the service spec it takes; ``raypipe.engine.backend.RayBackend`` provides
it on Ray Serve. The in-process backend has no long-lived server to host replicas, so a
``serve.deploy`` stage in an ``--inline`` run gets the clear error of
:func:`raypipe.stages.backend.require`. See :mod:`raypipe.stages.backend`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from raypipe.serving.spec import ServiceSpec

__all__ = ["ServingBackend"]


@runtime_checkable
class ServingBackend(Protocol):
    """Runs an online service on replicas that outlive the stage."""

    def deploy_service(self, spec: ServiceSpec) -> None:
        """Start (or update) the service ``spec`` describes; returns once it answers."""
        ...
