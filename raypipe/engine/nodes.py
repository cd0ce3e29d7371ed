"""Where a pool's actors run, for the run record's node ids.

A stage whose work runs on actors (trial search, federated groups, scoring) has no tasks to
report their nodes: each actor is asked once as it starts (one call queued behind its
constructor) and the answers are gathered when the pool ends or its stage asks. A restarted
actor keeps its Ray handle, so the node it moved to is not recorded: the record names the nodes
the pool started on.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import ray
from ray.exceptions import RayError

__all__ = ["ActorNodes", "NodeReporting"]

#: How long :meth:`ActorNodes.gather` waits for actors that have not answered yet (one that
#: never started, for want of resources, never will).
GATHER_TIMEOUT_S = 1.0


class NodeReporting:
    """Base of raypipe's actor classes: says which Ray node the actor runs on."""

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


class ActorNodes:
    """The node ids of the actors of one pool, added to ``into`` as they are gathered.

    Parameters
    ----------
    into
        Where the ids go: the stage backend's ``node_ids`` (shared, not copied).
    """

    def __init__(self, into: set[str] | None = None) -> None:
        self.ids: set[str] = into if into is not None else set()
        self._asked: list[Any] = []
        self._lock = threading.Lock()  # a shared scoring pool grows while a stage gathers

    def watch(self, actor: Any) -> Any:
        """Ask ``actor`` (a handle of a :class:`NodeReporting` actor) for its node; returns it."""
        with self._lock:
            self._asked.append(actor.node_id.remote())
        return actor

    def gather(self, timeout_s: float = GATHER_TIMEOUT_S) -> set[str]:
        """Add the answers that came (waiting up to ``timeout_s`` for the rest) to :attr:`ids`."""
        with self._lock:
            asked, self._asked = self._asked, []
        if asked:
            answered, unanswered = ray.wait(asked, num_returns=len(asked), timeout=timeout_s)
            for ref in answered:
                with contextlib.suppress(RayError):  # the actor died before it could answer
                    self.ids.add(str(ray.get(ref)))
            with self._lock:
                self._asked += unanswered
        return self.ids
