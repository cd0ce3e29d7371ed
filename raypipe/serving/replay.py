"""Replay a recorded stream of purchases through a service, as it would have seen them live.

Each purchase, in time order, is first fed to the stream operator (its windows close and the
newest closed window of each player is pushed to the online store), then scored by the service
with features read as of the purchase's time. The report gives precision and recall of the
alerts at a fixed alert rate, against the drawn labels and in expectation against the true
probabilities, beside what the true probabilities themselves would achieve at that rate, and
the service's latency per purchase.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from raypipe.serving.requests import ParsedRequest
from raypipe.serving.service import OnlineService

__all__ = ["ReplayReport", "alert_metrics", "replay"]


def alert_metrics(
    scores: np.ndarray, labels: np.ndarray, truth: np.ndarray, alert_rate: float
) -> dict[str, float]:
    """Precision/recall of alerting on the top ``alert_rate`` share of ``scores``.

    ``precision``/``recall`` count the drawn labels; ``expected_*`` use the true probabilities
    (the precision a very long run would show); ``oracle_*`` alert on the true probabilities at
    the same rate, the best any model can do in expectation.
    """
    count = max(1, round(alert_rate * len(scores)))

    def top(values: np.ndarray) -> np.ndarray:
        chosen = np.zeros(len(values), dtype=bool)
        chosen[np.argsort(-values, kind="stable")[:count]] = True
        return chosen

    alerts, oracle = top(scores), top(truth)
    positives = max(float(labels.sum()), 1.0)
    expected = max(float(truth.sum()), 1e-12)
    return {
        "alerts": count,
        "precision": float(labels[alerts].mean()),
        "recall": float(labels[alerts].sum() / positives),
        "expected_precision": float(truth[alerts].mean()),
        "expected_recall": float(truth[alerts].sum() / expected),
        "oracle_expected_precision": float(truth[oracle].mean()),
        "oracle_expected_recall": float(truth[oracle].sum() / expected),
    }


@dataclass(frozen=True)
class ReplayReport:
    scores: np.ndarray
    latencies_ms: np.ndarray
    metrics: dict[str, float]

    def summary(self) -> dict[str, Any]:
        return {
            **{k: round(v, 4) for k, v in self.metrics.items()},
            "purchases": len(self.scores),
            "p50_ms": round(float(np.percentile(self.latencies_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(self.latencies_ms, 99)), 3),
        }


def replay(
    service: OnlineService,
    purchases: pl.DataFrame,
    feed: Callable[[pl.DataFrame], Any],
    request_fields: Sequence[str],
    *,
    alert_rate: float,
) -> ReplayReport:
    """Stream ``purchases`` (sorted by ``ts``; with ``is_fraud`` and ``fraud_probability``).

    ``feed`` gets each purchase as a one-row frame before it is scored (the stream operator's
    ``StreamRunner.feed``); the request carries the entity key and ``request_fields``.
    """
    entity = service.spec.entity
    scores = np.empty(purchases.height)
    latencies = np.empty(purchases.height)
    columns = [entity, *request_fields]
    for index in range(purchases.height):
        event = purchases.slice(index, 1)
        feed(event)
        row = event.select(columns).row(0, named=True)
        now = event["ts"][0].replace(tzinfo=dt.UTC)
        started = time.perf_counter()
        answer = service.score([ParsedRequest([row], batch=False)], now=now)[0]
        latencies[index] = (time.perf_counter() - started) * 1000
        scores[index] = answer["score"]
    metrics = alert_metrics(
        scores,
        purchases["is_fraud"].to_numpy().astype(np.float64),
        purchases["fraud_probability"].to_numpy(),
        alert_rate,
    )
    return ReplayReport(scores, latencies, metrics)
