"""Records of running services, so ``raypipe serve status | stop`` find them from any shell.

``<data_dir>/serving/<name>/service.json`` holds the URL, the process that owns the service
(``raypipe serve`` in the foreground), the Ray address it runs on and the variants. It is
written atomically before the service can answer (``ready`` false: from the first request a
client can make, ``stop`` finds the owner), again once it is deployed, and removed when the owner
stops it. ``status`` asks the service itself (``GET /healthz``): a record whose service does not
answer reads ``STARTING`` while its owner is deploying it, ``DOWN`` otherwise.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raypipe.errors import RaypipeError

__all__ = ["ServiceRecord", "list_records", "probe", "process_alive", "record_path"]


def record_path(data_dir: str, name: str) -> Path:
    return Path(data_dir).expanduser() / "serving" / name / "service.json"


@dataclass(frozen=True)
class ServiceRecord:
    """Where service ``name`` runs and who owns it.

    ``direct_urls`` are the replicas' own ports (throughput mode): one hop less than ``url``,
    but they change when a replica restarts, and ``url`` balances over replicas. ``ready`` is
    false while the owner is still deploying the service.
    """

    name: str
    url: str
    pid: int
    address: str | None
    variants: dict[str, str]
    started_at: float = field(default_factory=time.time)
    direct_urls: list[str] = field(default_factory=list)
    ready: bool = True

    @property
    def owner_alive(self) -> bool:
        """Whether the process that owns the service (``raypipe serve`` in the foreground) runs."""
        return self.pid > 0 and process_alive(self.pid)

    @property
    def starting(self) -> bool:
        """Whether the service is still being deployed by a live owner."""
        return not self.ready and self.owner_alive

    def write(self, data_dir: str) -> Path:
        path = record_path(data_dir, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def find(cls, data_dir: str, name: str) -> ServiceRecord | None:
        """The record of service ``name``, or None when none is recorded."""
        try:
            return cls(**json.loads(record_path(data_dir, name).read_text()))
        except FileNotFoundError:
            return None

    @classmethod
    def read(cls, data_dir: str, name: str) -> ServiceRecord:
        """The record of service ``name``; a clear error naming the recorded ones if none."""
        record = cls.find(data_dir, name)
        if record is None:
            known = ", ".join(f"`{r.name}`" for r in list_records(data_dir)) or "none"
            raise RaypipeError(
                f"no service `{name}` is recorded under "
                f"`{record_path(data_dir, name).parent.parent}` (running: {known})",
                hint="start one with `raypipe serve models:/NAME@ALIAS`, or pass its `--data-dir`",
            )
        return record

    def remove(self, data_dir: str) -> None:
        record_path(data_dir, self.name).unlink(missing_ok=True)


def list_records(data_dir: str) -> list[ServiceRecord]:
    root = Path(data_dir).expanduser() / "serving"
    records = []
    for path in sorted(root.glob("*/service.json")):
        try:
            records.append(ServiceRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return records


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal check
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def probe(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The service's ``/healthz`` answer, or ``None`` when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except (urllib.error.URLError, OSError, ValueError):
        return None
