"""The driver's heartbeat in its run record, and whether a recorded driver is still alive.

A running driver rewrites ``heartbeat`` (UTC time, host name, process id) in ``run.json`` every
:data:`HEARTBEAT_S` seconds. ``--resume`` must not take over a run whose driver still works on it
(two drivers would write the same outputs), so a ``running`` record counts as alive while its
heartbeat is younger than :data:`STALE_AFTER_S` — unless it names this host and a process that no
longer exists, which is known at once (a driver killed with SIGKILL is taken over immediately).
Across hosts the check trusts the clocks to agree within ``STALE_AFTER_S``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "beat", "live_driver"]

HEARTBEAT_S = 10.0
#: Six missed beats: a driver this late is dead or cut off from the storage.
STALE_AFTER_S = 60.0


def beat(now: datetime | None = None) -> dict[str, Any]:
    """A heartbeat of this process: ``{"at": ISO time, "host": ..., "pid": ...}``."""
    at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    return {"at": at, "host": socket.gethostname(), "pid": os.getpid()}


def live_driver(
    heartbeat: Mapping[str, Any] | None, now: datetime | None = None
) -> tuple[str, int, float] | None:
    """``(host, pid, seconds since the beat)`` of a driver that may still run, else ``None``.

    ``None`` when there is no heartbeat (a record from before heartbeats), when it is older than
    :data:`STALE_AFTER_S`, or when it names this process or a process of this host that is gone.
    """
    if not heartbeat:
        return None
    try:
        at = datetime.fromisoformat(str(heartbeat["at"]))
        host, pid = str(heartbeat["host"]), int(heartbeat["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    age = ((now or datetime.now(timezone.utc)) - at).total_seconds()
    if age > STALE_AFTER_S:
        return None
    if host == socket.gethostname() and (pid == os.getpid() or not _process_exists(pid)):
        return None
    return host, pid, max(age, 0.0)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
