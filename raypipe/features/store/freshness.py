"""Freshness of a served view: how old its newest event is, and its last materialization.

Two lags, kept apart because they fail differently: ``event_lag_s`` (now - the newest event
time in the online store) grows when the *source* stops receiving data, even if materialization
runs on time; ``materialization_lag_s`` (now - the end of the last run) grows when the
*materialization* stops. The view's freshness SLA applies to the event lag, the one a model
sees. A breach is an alert: a log line at WARNING, a JSON POST to a webhook if one is
configured, and (in the CLI) exit code 7.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from raypipe.errors import RaypipeError
from raypipe.features.store.materialize import MaterializeState
from raypipe.features.store.online import from_micros
from raypipe.features.store.registry import ServedView

__all__ = ["Freshness", "FreshnessBreachError", "alert", "freshness_of"]

log = logging.getLogger(__name__)


class FreshnessBreachError(RaypipeError):
    """A served view's newest event is older than its freshness SLA."""

    exit_code = 7


@dataclass(frozen=True)
class Freshness:
    """The two lags of one view (seconds; None when never materialized) and the SLA verdict."""

    view: str
    version: str
    event_lag_s: float | None
    materialization_lag_s: float | None
    sla_s: float | None
    breached: bool

    def metrics(self) -> dict[str, Any]:
        """The run-record metrics, prefixed ``freshness_``."""
        return {
            "freshness_event_lag_s": _round(self.event_lag_s),
            "freshness_materialization_lag_s": _round(self.materialization_lag_s),
            "freshness_sla_s": self.sla_s,
            "freshness_sla_breached": self.breached,
        }

    def message(self) -> str:
        return (
            f"feature view `{self.view}` breaches its freshness SLA: newest event is "
            f"{self.event_lag_s:.0f}s old, SLA {self.sla_s:.0f}s "
            f"(last materialization {_round(self.materialization_lag_s)}s ago)"
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def freshness_of(
    view: ServedView, state: MaterializeState, now: dt.datetime | None = None
) -> Freshness:
    """The lags of ``view`` at ``now`` from its materialization state."""
    now = now or dt.datetime.now(dt.UTC)
    event_lag = materialization_lag = None
    if state.newest_event_us is not None:
        event_lag = (now - from_micros(state.newest_event_us)).total_seconds()
    if state.last_run_at is not None:
        materialization_lag = (now - dt.datetime.fromisoformat(state.last_run_at)).total_seconds()
    sla = view.freshness_sla_s
    # Never materialized counts as a breach when an SLA is set: nothing fresh is served.
    breached = sla is not None and (event_lag is None or event_lag > sla)
    return Freshness(view.name, view.version, event_lag, materialization_lag, sla, breached)


def alert(
    freshness: Freshness,
    *,
    webhook_url: str | None = None,
    timeout_s: float = 5.0,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Log a breach and POST it to ``webhook_url``; returns whether the webhook accepted it.

    A webhook that fails is logged, not raised: the alert's log line has been written already,
    and a monitoring outage must not fail the materialization that noticed the problem.
    """
    log.warning("%s", freshness.message())
    if not webhook_url:
        return False
    body = json.dumps(
        {
            "alert": "feature_freshness",
            "message": freshness.message(),
            **asdict(freshness),
            **dict(extra or {}),
        }
    ).encode()
    request = urllib.request.Request(
        webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status: int = response.status
            return 200 <= status < 300
    except OSError as exc:
        log.warning("freshness webhook %s failed: %s", webhook_url, exc)
        return False
