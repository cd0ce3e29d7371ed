"""One replica's service: look up features, route, score, answer, log, watch for promotions.

:class:`OnlineService` is everything a replica does, without Ray: the Serve deployment in
:mod:`raypipe.engine.serving` only moves HTTP bodies in and out of :meth:`OnlineService.score`,
and tests drive it directly. :meth:`score` takes the requests of one dynamic batch and answers
them with one feature read per view and one model call per variant.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.features.store.online import open_store
from raypipe.features.store.registry import current_view
from raypipe.serving.lookup import FeatureLookup
from raypipe.serving.metrics import ServiceMetrics
from raypipe.serving.requestlog import RequestLog, log_row
from raypipe.serving.requests import ParsedRequest, RequestError
from raypipe.serving.scorer import (
    LoadedModel,
    ModelSlot,
    alias_resolver,
    registry_loader,
    score_rows,
)
from raypipe.serving.spec import ServiceSpec
from raypipe.serving.traffic import ControlState, Router, SloGuard, control_path
from raypipe.tracking.store import resolve_tracking_uri

__all__ = ["OnlineService", "request_log_root"]

logger = logging.getLogger(__name__)


def request_log_root(spec: ServiceSpec) -> Path:
    return Path(spec.data_dir).expanduser() / "serving" / spec.name / "requests"


class OnlineService:
    """Scores requests for one service spec (see the module docstring).

    Parameters
    ----------
    spec
        The service.
    replica
        This replica's id (metrics label, request-log file names).
    loader, resolver
        Model loading and alias resolution (default: the registry's); tests pass their own.
    """

    def __init__(
        self,
        spec: ServiceSpec,
        replica: str = "local",
        *,
        loader: Any = None,
        resolver: Any = None,
    ) -> None:
        self.spec = spec
        tracking_uri = resolve_tracking_uri(spec.tracking_uri, spec.data_dir)
        loader = loader or registry_loader(tracking_uri)
        resolver = resolver or alias_resolver(tracking_uri)
        self.slots = {name: ModelSlot(uri, loader, resolver) for name, uri in spec.variants.items()}
        self.lookup: FeatureLookup | None = None
        if spec.views:
            assert spec.store is not None
            views = [current_view(spec.data_dir, name) for name in spec.views]
            self.lookup = FeatureLookup(
                open_store(spec.store), views, full_feature_names=spec.full_feature_names
            )
        self._versions_json = json.dumps(self.lookup.versions if self.lookup else {})
        self.router = Router(spec)
        self.guard = SloGuard(spec.traffic.slo)
        self.metrics = ServiceMetrics(spec.name, replica)
        self._control = control_path(spec.data_dir, spec.name)
        self.log = (
            RequestLog(request_log_root(spec), replica, spec.log_flush_rows, spec.log_flush_s)
            if spec.log_requests
            else None
        )
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.refresh_control()
        self._note_versions()

    # -- the request path -------------------------------------------------------------------

    def score(
        self, requests: Sequence[ParsedRequest], now: dt.datetime | None = None
    ) -> list[dict[str, Any]]:
        """Answer each request (one dict each: ``score`` or ``predictions``).

        ``now`` is the time features are read as of (default: the clock); a replay of a
        recorded stream passes each event's time.
        """
        started = time.perf_counter()
        rows = [row for request in requests for row in request.rows]
        statuses: list[dict[str, str]] = [{} for _ in rows]
        if self.lookup is not None:
            result = self.lookup.merge(rows, now=now)
            rows, statuses = result.rows, result.statuses
            self.metrics.observe_features(statuses)
        entity = self.spec.entity
        keys = [str(row[entity]) for row in rows]
        variants = self.router.assign(keys)
        scores = np.empty(len(rows), dtype=np.float64)
        # One model for the whole batch per variant, even mid-swap; variants whose models have
        # the same content share one model call. First-seen order, not set order: a batch is
        # scored (and, when models fail, counted) the same way in every process.
        models = {variant: self.slots[variant].current for variant in dict.fromkeys(variants)}
        groups: dict[str, list[str]] = {}
        for variant, model in models.items():
            groups.setdefault(model.content, []).append(variant)
        # each group's rows are fixed before any group scores: rows that fall back to the
        # baseline are scored by the fallback alone, not again by the baseline's group
        indexes = [[i for i, v in enumerate(variants) if v in group] for group in groups.values()]
        for group, index in zip(groups.values(), indexes, strict=True):
            self._score_group(group, index, models, rows, variants, scores)
        versions = {variant: models[variant].version for variant in set(variants)}
        shadow = self.router.shadow()
        shadow_scores = None
        if shadow is not None:
            try:
                shadow_scores = score_rows(self.slots[shadow].current.predictor, rows)
            except Exception:  # a broken shadow must never fail the answer
                logger.exception("shadow variant `%s` failed", shadow)
                self.guard.record(shadow, False, 0.0)
        latency_ms = (time.perf_counter() - started) * 1000
        answers = []
        position = 0
        for request in requests:
            count = len(request.rows)
            predictions = [
                {
                    "score": float(scores[i]),
                    "variant": variants[i],
                    "version": versions[variants[i]],
                    **({"features": statuses[i]} if statuses[i] else {}),
                }
                for i in range(position, position + count)
            ]
            answers.append({"predictions": predictions} if request.batch else predictions[0])
            position += count
        self._account(keys, variants, versions, scores, latency_ms, statuses, shadow, shadow_scores)
        return answers

    def _score_group(
        self,
        group: list[str],
        index: list[int],
        models: dict[str, LoadedModel],
        rows: Sequence[Mapping[str, Any]],
        variants: list[str],
        scores: np.ndarray,
    ) -> None:
        """Score the rows ``index`` of ``group``'s variants with their (one) model, in place.

        A failing variant must not fail the request: unless the group holds the baseline, its
        rows fall back to the baseline (``variants`` is updated), and the failures count
        against each variant's SLO (rollback).
        """
        try:
            scores[index] = score_rows(models[group[0]].predictor, [rows[i] for i in index])
            return
        except RequestError:
            raise
        except Exception:
            baseline = self.spec.baseline
            if baseline in group:
                raise
            logger.exception("variants %s failed; their rows go to `%s`", sorted(group), baseline)
        for variant in group:
            count = sum(1 for i in index if variants[i] == variant)
            self.metrics.observe(variant, "500", 0.0, count)
            for _ in range(count):
                self.guard.record(variant, False, 0.0)
        for i in index:
            variants[i] = baseline
        # The batch's baseline model if it has one (even mid-swap); ``versions`` reads it back.
        fallback = models.setdefault(baseline, self.slots[baseline].current)
        scores[index] = score_rows(fallback.predictor, [rows[i] for i in index])

    def _account(
        self,
        keys: list[str],
        variants: list[str],
        versions: dict[str, str],
        scores: np.ndarray,
        latency_ms: float,
        statuses: list[dict[str, str]],
        shadow: str | None,
        shadow_scores: np.ndarray | None,
    ) -> None:
        for variant in versions:
            count = variants.count(variant)
            self.metrics.observe(variant, "200", latency_ms, count)
            self.guard.record(variant, True, latency_ms)
        if shadow is not None and shadow_scores is not None:
            self.guard.record(shadow, True, latency_ms)
        if self.log is None:
            return
        now_us = time.time_ns() // 1000
        for i, key in enumerate(keys):
            mirrored = (
                (shadow, float(shadow_scores[i]))
                if shadow is not None and shadow_scores is not None
                else None
            )
            self.log.append(
                log_row(
                    now_us,
                    key,
                    variants[i],
                    versions[variants[i]],
                    float(scores[i]),
                    latency_ms,
                    200,
                    self._versions_json,
                    statuses[i],
                    mirrored,
                )
            )

    def failed(self, variant: str, code: int, latency_ms: float, rows: int = 1) -> None:
        """Count a request that was not answered with a score (``code``: HTTP status)."""
        self.metrics.observe(variant, str(code), latency_ms, rows)
        if code >= 500:
            self.guard.record(variant, False, latency_ms)

    # -- health, promotions, rollbacks -------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "service": self.spec.name,
            "variants": {
                name: {"uri": slot.uri, "version": slot.current.version}
                for name, slot in self.slots.items()
            },
            "disabled": self.router.state.disabled,
            "pid": os.getpid(),
        }

    def _note_versions(self) -> None:
        self.metrics.versions = {name: slot.current.version for name, slot in self.slots.items()}
        self.metrics.swaps = sum(slot.swaps for slot in self.slots.values())

    def refresh_control(self) -> None:
        """Re-read the shared control state; roll back variants that broke their SLO here."""
        state = ControlState.read(self._control)
        breaches = {
            v: r
            for v, r in self.guard.breaches(self.slots, self.spec.baseline).items()
            if v not in state.disabled
        }
        if breaches:
            for variant, reason in breaches.items():
                logger.warning("variant `%s` rolled back: %s", variant, reason)
                self.metrics.rollbacks += 1
            state.disabled.update(breaches)
            state.write(self._control)
        self.router.update(state)

    def refresh_models(self) -> None:
        """Reload every variant whose alias moved (the old model answers until then)."""
        for name, slot in self.slots.items():
            try:
                slot.refresh()
            except Exception:  # a failed reload keeps serving the current model
                logger.exception("variant `%s`: reloading `%s` failed", name, slot.uri)
        self._note_versions()

    def start_watching(self) -> None:
        """Check for promotions and control changes every ``reload_interval_s`` in a thread."""
        if self._watcher is not None:
            return

        def watch() -> None:
            while not self._stop.wait(self.spec.reload_interval_s):
                self.refresh_models()
                try:
                    self.refresh_control()
                except OSError:
                    logger.exception("control state `%s` unreadable", self._control)

        self._watcher = threading.Thread(target=watch, name="model-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self.log is not None:
            self.log.close()
