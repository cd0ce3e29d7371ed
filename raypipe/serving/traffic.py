"""Which variant answers a request: weighted A/B, canary ramp, shadow, blue-green, rollbacks.

* **Sticky assignment.** A row's entity key is hashed (BLAKE2b keyed by the service name) to a
  point ``u`` in ``[0, 1)``; A/B gives it the variant whose cumulative weight band holds ``u``,
  a canary gives it the candidate while ``u`` is below the current step's share. The same entity
  therefore sees the same variant on every replica, every request, and as a canary ramps up an
  entity moves from baseline to candidate at most once.
* **Shared control state.** What must be the same on every replica and survive a restart (the
  blue-green ``active`` variant, the canary's start, rolled-back variants) is one JSON file,
  ``<data_dir>/serving/<service>/control.json``, written atomically and re-read by every replica
  on its watch tick.
* **SLO guard.** Each replica keeps the last ``window`` outcomes of each variant; a variant
  other than the baseline whose error rate or p99 latency breaks the SLO is rolled back: the
  control file marks it disabled (so every replica stops sending it traffic) with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.serving.spec import ServiceSpec, SloSpec, TrafficSpec

__all__ = ["ControlState", "Router", "SloGuard", "control_path", "sticky_points"]

logger = logging.getLogger(__name__)


def control_path(data_dir: str, service: str) -> Path:
    return Path(data_dir).expanduser() / "serving" / service / "control.json"


@dataclass
class ControlState:
    """The replicated part of a service's routing (see the module docstring)."""

    active: str = ""
    started_at: float = 0.0
    disabled: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> ControlState:
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(
            active=str(document.get("active", "")),
            started_at=float(document.get("started_at", 0.0)),
            disabled=dict(document.get("disabled", {})),
        )

    def write(self, path: Path) -> None:
        """Write atomically (temporary file, then rename), so a replica never reads half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
        document = {"active": self.active, "started_at": self.started_at, "disabled": self.disabled}
        tmp.write_text(json.dumps(document, indent=1, sort_keys=True))
        tmp.replace(path)


def sticky_points(keys: Sequence[str], salt: str) -> np.ndarray:
    """Each key's fixed point in ``[0, 1)`` (BLAKE2b of the key, keyed by ``salt``)."""
    salt_bytes = salt.encode()[:64]
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, key=salt_bytes).digest())
            / 2.0**64
            for k in keys
        ]
    )


class Router:
    """Assigns rows to variants under ``spec.traffic`` and the shared control state."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.traffic: TrafficSpec = spec.traffic
        self.baseline = spec.baseline
        self.state = ControlState(active=self.traffic.active, started_at=time.time())

    def update(self, state: ControlState) -> None:
        """Adopt the control state a replica just read (blank fields keep the spec's)."""
        self.state = ControlState(
            active=state.active or self.traffic.active,
            started_at=state.started_at or self.state.started_at,
            disabled=dict(state.disabled),
        )

    def enabled(self, variant: str) -> bool:
        return variant == self.baseline or variant not in self.state.disabled

    def canary_share(self, now: float | None = None) -> float:
        """The candidate's share now: step ``floor(elapsed / hold_s)`` of the ramp."""
        traffic = self.traffic
        elapsed = (time.time() if now is None else now) - self.state.started_at
        step = min(max(int(elapsed // traffic.hold_s), 0), len(traffic.steps) - 1)
        return float(traffic.steps[step])

    def assign(self, keys: Sequence[str], now: float | None = None) -> list[str]:
        """The answering variant of each row, by its entity key."""
        kind = self.traffic.kind
        if kind in ("single", "shadow"):
            return [self.baseline] * len(keys)
        if kind == "bluegreen":
            active = self.state.active or self.baseline
            return [active if self.enabled(active) else self.baseline] * len(keys)
        points = sticky_points(keys, self.spec.name)
        if kind == "canary":
            candidate = self.traffic.candidate
            share = self.canary_share(now) if self.enabled(candidate) else 0.0
            return [candidate if u < share else self.baseline for u in points]
        weights = {v: w for v, w in self.traffic.weights.items() if self.enabled(v) and w > 0}
        if not weights:
            return [self.baseline] * len(keys)
        names = list(weights)
        bounds = np.cumsum([weights[n] for n in names]) / sum(weights.values())
        indexes = np.minimum(np.searchsorted(bounds, points, side="right"), len(names) - 1)
        return [names[i] for i in indexes]

    def shadow(self) -> str | None:
        """The variant mirroring every request (scored and logged, never answered)."""
        if self.traffic.kind == "shadow" and self.enabled(self.traffic.candidate):
            return self.traffic.candidate
        return None


class SloGuard:
    """Recent outcomes per variant; names the variants that break the SLO."""

    def __init__(self, slo: SloSpec) -> None:
        self.slo = slo
        self.recent: dict[str, deque[tuple[bool, float]]] = {}

    def record(self, variant: str, ok: bool, latency_ms: float) -> None:
        window = self.recent.setdefault(variant, deque(maxlen=self.slo.window))
        window.append((ok, latency_ms))

    def breach(self, variant: str) -> str | None:
        """Why ``variant`` breaks its SLO now, or ``None``."""
        # A snapshot: the request path appends while the watch thread judges.
        window = tuple(self.recent.get(variant, ()))
        if len(window) < self.slo.min_requests:
            return None
        errors = sum(1 for ok, _ in window if not ok) / len(window)
        if errors > self.slo.max_error_rate:
            return f"error rate {errors:.3f} > {self.slo.max_error_rate} over {len(window)}"
        p99 = float(np.percentile([ms for _, ms in window], 99))
        if p99 > self.slo.max_p99_ms:
            return f"p99 {p99:.1f} ms > {self.slo.max_p99_ms} ms over {len(window)}"
        return None

    def breaches(self, variants: Mapping[str, Any], baseline: str) -> dict[str, str]:
        found = {}
        for variant in variants:
            if variant != baseline and (reason := self.breach(variant)):
                found[variant] = reason
        return found
