"""Continual learning: watch each new period, retrain on a trigger, challenge, then promote.

:meth:`WatchLoop.step` takes one new period of data and:

1. scores it with the champion (the ``production`` alias) and evaluates the triggers
   (:func:`raypipe.monitoring.triggers.evaluate_triggers`) against the newest period the
   champion was trained on;
2. if a trigger fired and the cool-down allows, retrains on the last ``train_periods`` periods
   (holdout rows of every period are never trained on), registers the challenger (it enters
   development), moves it to staging (validation: its holdout metric is finite; tests: it
   scores every holdout row with a probability), and challenges the champion: it must beat it on
   the fresh holdout of this period by ``fresh_margin`` and trail it by at most
   ``replay_tolerance`` on a replay sample of the holdouts of older periods;
3. if the challenge passes, requests the move to production, which waits for the approvals the
   policy asks for (``raypipe models approve``) and retires the replaced champion when it moves.

Every period's decision is an audit entry of the ``watch`` stream (hash-chained like the rest),
so :mod:`raypipe.tracking.history` can tell why each version came and went. The loop's state
(periods seen, the cool-down, the champion's reference period) is a JSON file written whole.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from raypipe.monitoring.triggers import Cooldown, Firing, evaluate_triggers
from raypipe.tracking.lifecycle import Evidence, Lifecycle, TransitionOutcome

__all__ = [
    "WATCH_STREAM",
    "ChallengeResult",
    "Period",
    "PeriodOutcome",
    "Retrainer",
    "WatchLoop",
    "WatchState",
    "holdout_mask",
]

logger = logging.getLogger(__name__)

#: Audit stream of the watch loop's per-period decisions.
WATCH_STREAM = "watch"
#: Share of each period's rows (by id hash) kept out of all training: fresh and replay data.
HOLDOUT_FRACTION = 0.25


@dataclass(frozen=True)
class Period:
    """One period of data: features, the label when known, and when the period starts."""

    name: str
    start: dt.datetime
    table: pa.Table


class Retrainer(Protocol):
    """Trains and scores models for the loop (in process, or by running the training job)."""

    def retrain(self, train: pa.Table, *, champion: str | None) -> dict[str, Any]:
        """Fitted models by variant (``scratch``; ``warm`` when continuing the champion)."""
        ...

    def register(self, model: Any, *, tags: Mapping[str, Any]) -> str:
        """Register ``model`` as a new version; returns the version."""
        ...

    def score(self, model: Any, table: pa.Table) -> np.ndarray:
        """Probabilities of ``model`` (a fitted model or a registered version) on ``table``."""
        ...


@dataclass
class WatchState:
    """What the loop remembers between periods (and runs of ``raypipe watch``)."""

    processed: list[str] = field(default_factory=list)
    since_retrain: int | None = None
    champion: str | None = None
    reference_period: str | None = None
    reference_metric: float | None = None
    trained_at: str | None = None

    @classmethod
    def load(cls, path: str) -> WatchState:
        try:
            with open(path, encoding="utf-8") as handle:
                return cls(**json.load(handle))
        except FileNotFoundError:
            return cls()

    def save(self, path: str) -> None:
        """Write the state whole (a temporary file renamed over the old one)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temporary = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.replace(temporary, path)


@dataclass(frozen=True)
class ChallengeResult:
    """Challenger against champion on fresh data and on the replay of older periods."""

    passed: bool
    metric: str
    fresh: dict[str, float]
    replay: dict[str, float]
    reasons: tuple[str, ...]
    variants: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PeriodOutcome:
    """What the loop did with one period."""

    period: str
    champion: str | None
    metric: float | None
    firings: tuple[Firing, ...] = ()
    retrained: bool = False
    cooling_down: bool = False
    challenger: str | None = None
    challenge: ChallengeResult | None = None
    transition: TransitionOutcome | None = None


def holdout_mask(table: pa.Table, id_columns: Sequence[str], fraction: float) -> np.ndarray:
    """Rows kept out of training: a fixed share by a hash of the ids (same rows every run)."""
    mixed = np.zeros(table.num_rows, dtype=np.uint64)
    for column in id_columns:
        values = np.asarray(table.column(column).to_numpy(zero_copy_only=False)).astype(np.uint64)
        mixed = (mixed ^ values) * np.uint64(0x9E3779B97F4A7C15)
    mixed ^= mixed >> np.uint64(29)
    return (mixed % np.uint64(10_000)).astype(np.float64) / 10_000 < fraction


class WatchLoop:
    """Evaluate triggers on each new period; retrain, challenge and request promotion.

    Parameters
    ----------
    lifecycle
        The model's lifecycle (registry, policy, roles).
    retrainer
        Trains, registers and scores models.
    state_path
        Where the loop's :class:`WatchState` is kept.
    who
        The identity the loop acts as (recorded in the audit trail).
    label, id_columns
        The label column and the id columns of the period tables.
    """

    def __init__(
        self,
        lifecycle: Lifecycle,
        retrainer: Retrainer,
        *,
        state_path: str,
        who: str,
        label: str = "churned",
        id_columns: Sequence[str] = ("player_id",),
    ) -> None:
        self.lifecycle = lifecycle
        self.policy = lifecycle.policy
        self.retrainer = retrainer
        self.state_path = state_path
        self.state = WatchState.load(state_path)
        self.who = who
        self.label = label
        self.id_columns = tuple(id_columns)
        self.periods: dict[str, Period] = {}

    @property
    def champion(self) -> str | None:
        alias = self.policy.alias_of("production") or "production"
        return self.lifecycle.registry.alias_version(self.lifecycle.model, alias)

    def bootstrap(self, periods: Sequence[Period]) -> TransitionOutcome:
        """Train the first champion on ``periods`` (a model needs somewhere to start)."""
        for period in periods:
            self.periods[period.name] = period
        train, _ = self._split(periods)
        models = self.retrainer.retrain(train, champion=None)
        model = models["scratch"]
        scores = self.retrainer.score(model, self._holdout(periods[-1]))
        metric = self._metric(self._labels(self._holdout(periods[-1])), scores)
        version = self.retrainer.register(model, tags={"raypipe.trained_on": periods[-1].name})
        self.lifecycle.register(
            version, reason="first model", who=self.who, details={"metric": metric}
        )
        evidence = self._evidence(metric, scores)
        self._to_staging(version, evidence, reason="first model")
        outcome = self.lifecycle.request(
            version, "production", evidence, reason="first model", who=self.who
        )
        self._reference(periods[-1], metric)
        if outcome.status == "moved":
            self.state.champion = version
        self.state.processed.extend(p.name for p in periods)
        self.state.save(self.state_path)
        return outcome

    def step(self, period: Period) -> PeriodOutcome:
        """Process one new period (a period already processed is skipped: reruns are safe)."""
        if period.name in self.state.processed:
            return PeriodOutcome(period.name, self.champion, None)
        self.periods[period.name] = period
        champion = self.champion
        if champion and champion != self.state.champion:
            self.promoted(champion)  # approved since the last period: it is the reference now
        cooldown = Cooldown(self.policy.triggers.cooldown_periods, self.state.since_retrain)
        # The champion never trained on any row of a new period: all of it measures it.
        scores = self.retrainer.score(champion, period.table) if champion else None
        labels = self._labels(period.table)
        metric = self._metric(labels, scores) if scores is not None and labels is not None else None
        reference = self.periods.get(self.state.reference_period or "")
        if reference is None and champion and self.state.reference_period is None:
            # A champion promoted outside the loop: its first watched period is the baseline.
            self._reference(period, self._metric(self._labels(period.table), scores))
            reference = period
        firings = evaluate_triggers(
            self.policy.triggers,
            period_start=period.start,
            previous_start=self._previous_start(period),
            reference=_features(reference.table, self.label) if reference else None,
            current=_features(period.table, self.label),
            reference_metric=self.state.reference_metric,
            labels=labels,
            scores=scores,
            trained_at=_parse(self.state.trained_at),
        )
        outcome = PeriodOutcome(period.name, champion, metric, tuple(firings))
        if firings and cooldown.allows():
            outcome = self._retrain(period, outcome)
        elif firings:
            outcome = PeriodOutcome(
                period.name, champion, metric, tuple(firings), cooling_down=True
            )
        cooldown.tick(outcome.retrained)
        self.state.since_retrain = cooldown.since_retrain
        self.state.processed.append(period.name)
        self._record(outcome)
        self.state.save(self.state_path)
        return outcome

    def promoted(self, version: str) -> None:
        """Note that ``version`` became champion (its newest training period is the reference)."""
        self.state.champion = version
        tags = self.lifecycle.registry.version_tags(self.lifecycle.model, version)
        period = self.periods.get(tags.get("raypipe.trained_on", ""))
        if period is not None:
            metric = self._metric(
                self._labels(self._holdout(period)),
                self.retrainer.score(version, self._holdout(period)),
            )
            self._reference(period, metric)
            self.state.save(self.state_path)

    def _retrain(self, period: Period, seen: PeriodOutcome) -> PeriodOutcome:
        spec = self.policy.challenger
        names = [name for name in self.state.processed if name in self.periods] + [period.name]
        window = [self.periods[n] for n in names[-spec.train_periods :]]
        train, _ = self._split(window)
        champion = seen.champion
        # Both variants are trained and recorded; the policy picks which one challenges.
        models = self.retrainer.retrain(train, champion=champion)
        chosen = "warm" if spec.warm_start and "warm" in models else "scratch"
        older = (
            [self.periods[n] for n in names[:-1]][-spec.replay_periods :]
            if spec.replay_periods
            else []
        )
        challenge = self._challenge(models, chosen, champion, period, older)
        version = self.retrainer.register(
            models[chosen],
            tags={"raypipe.trained_on": period.name, "raypipe.variant": chosen},
        )
        reason = "; ".join(f.message for f in seen.firings)
        self.lifecycle.register(
            version,
            reason=f"retrained on {', '.join(p.name for p in window)} after: {reason}",
            who=self.who,
            details={
                "challenge": challenge.to_dict(),
                "triggers": [f.to_dict() for f in seen.firings],
            },
        )
        fresh = challenge.fresh.get("challenger", math.nan)
        evidence = self._evidence(fresh, None, challenge)
        self._to_staging(version, evidence, reason=reason)
        transition = None
        if challenge.passed:
            transition = self.lifecycle.request(
                version,
                "production",
                evidence,
                reason=f"challenger beat champion {champion} on {period.name} after: {reason}",
                who=self.who,
            )
            if transition.status == "moved":
                self.promoted(version)
        return PeriodOutcome(
            period.name,
            champion,
            seen.metric,
            seen.firings,
            retrained=True,
            challenger=version,
            challenge=challenge,
            transition=transition,
        )

    def _to_staging(self, version: str, evidence: Evidence, *, reason: str) -> TransitionOutcome:
        """Request the move of a version just registered from development to staging.

        A training job may have pointed the staging alias at it already (``train.search``
        makes every new version its ``challenger``, with ``gate: {promote: false}`` too); the
        version still entered the lifecycle in development, so the move is checked from there.
        """
        return self.lifecycle.request(
            version, "staging", evidence, reason=reason, who=self.who, from_stage="development"
        )

    def _challenge(
        self,
        models: dict[str, Any],
        chosen: str,
        champion: str | None,
        period: Period,
        older: Sequence[Period],
    ) -> ChallengeResult:
        spec = self.policy.challenger
        fresh = self._holdout(period)
        replay = _sample(
            pa.concat_tables([self._holdout(p) for p in older]) if older else None,
            spec.replay_rows,
        )
        variants: dict[str, dict[str, float]] = {}
        for name, model in models.items():
            variants[name] = {
                "fresh": self._metric(self._labels(fresh), self.retrainer.score(model, fresh))
            }
            if replay is not None:
                variants[name]["replay"] = self._metric(
                    self._labels(replay), self.retrainer.score(model, replay)
                )
        if champion:
            variants["champion"] = {
                "fresh": self._metric(self._labels(fresh), self.retrainer.score(champion, fresh))
            }
            if replay is not None:
                variants["champion"]["replay"] = self._metric(
                    self._labels(replay), self.retrainer.score(champion, replay)
                )
        mine, theirs = variants[chosen], variants.get("champion", {})
        reasons = []
        if "fresh" in theirs and not mine["fresh"] >= theirs["fresh"] + spec.fresh_margin:
            reasons.append(
                f"fresh {spec.metric} {mine['fresh']:.4f} does not beat the champion's "
                f"{theirs['fresh']:.4f} by {spec.fresh_margin:g}"
            )
        if "replay" in theirs and not mine["replay"] >= theirs["replay"] - spec.replay_tolerance:
            reasons.append(
                f"replay {spec.metric} {mine['replay']:.4f} trails the champion's "
                f"{theirs['replay']:.4f} by more than {spec.replay_tolerance:g} (forgetting)"
            )
        return ChallengeResult(
            passed=not reasons,
            metric=spec.metric,
            fresh={"challenger": mine["fresh"], "champion": theirs.get("fresh", math.nan)},
            replay={
                "challenger": mine.get("replay", math.nan),
                "champion": theirs.get("replay", math.nan),
            },
            reasons=tuple(reasons),
            variants=variants,
        )

    def _evidence(
        self, metric: float, scores: np.ndarray | None, challenge: ChallengeResult | None = None
    ) -> Evidence:
        valid = metric is not None and math.isfinite(metric)
        tested = scores is None or bool(np.all((scores >= 0) & (scores <= 1)))
        notes = {"challenge": challenge.to_dict()} if challenge else {}
        return Evidence(
            validation_passed=valid,
            tests_passed=tested,
            metrics={self.policy.sla.metric: metric} if valid else {},
            notes=notes,
        )

    def _record(self, outcome: PeriodOutcome) -> None:
        action = "retrain" if outcome.retrained else ("cooldown" if outcome.cooling_down else "ok")
        self.lifecycle.audit.append_next(
            model=self.lifecycle.model,
            stream=WATCH_STREAM,
            alias=WATCH_STREAM,
            action=action,
            from_version=outcome.champion,
            to_version=outcome.challenger,
            reason="; ".join(f.message for f in outcome.firings) or "no trigger fired",
            who=self.who,
            details={
                "period": outcome.period,
                "metric": outcome.metric,
                "triggers": [f.to_dict() for f in outcome.firings],
                "challenge": outcome.challenge.to_dict() if outcome.challenge else None,
                "transition": outcome.transition.status if outcome.transition else None,
            },
        )

    def _reference(self, period: Period, metric: float) -> None:
        self.state.reference_period = period.name
        self.state.reference_metric = metric
        self.state.trained_at = period.start.isoformat()

    def _split(self, periods: Sequence[Period]) -> tuple[pa.Table, pa.Table]:
        tables = [p.table for p in periods]
        table = pa.concat_tables(tables)
        mask = holdout_mask(table, self.id_columns, HOLDOUT_FRACTION)
        return table.filter(pa.array(~mask)), table.filter(pa.array(mask))

    def _holdout(self, period: Period) -> pa.Table:
        mask = holdout_mask(period.table, self.id_columns, HOLDOUT_FRACTION)
        return period.table.filter(pa.array(mask))

    def _labels(self, table: pa.Table) -> np.ndarray | None:
        if self.label not in table.column_names or table.column(self.label).null_count:
            return None
        return np.asarray(table.column(self.label).to_numpy(zero_copy_only=False), dtype=np.int64)

    def _metric(self, labels: np.ndarray | None, scores: np.ndarray | None) -> float:
        from raypipe.monitoring.performance import classification_metrics

        if labels is None or scores is None:
            return math.nan
        return float(classification_metrics(labels, scores)[self.policy.challenger.metric])

    def _previous_start(self, period: Period) -> dt.datetime | None:
        starts = [p.start for p in self.periods.values() if p.start < period.start]
        return max(starts, default=None)


def _features(table: pa.Table, label: str) -> pa.Table:
    return table.drop_columns([label]) if label in table.column_names else table


def _sample(table: pa.Table | None, rows: int) -> pa.Table | None:
    if table is None or table.num_rows <= rows:
        return table
    picked = np.sort(np.random.default_rng(0).choice(table.num_rows, rows, replace=False))
    return table.take(pa.array(picked))


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None
