"""Retraining triggers: data drift, performance degradation, freshness and a cron schedule.

:func:`evaluate_triggers` judges one new period of data against the reference the champion was
trained on and returns the triggers that fired, each with its value, threshold and a sentence.
:class:`Cooldown` keeps one drift from retraining every period: after a retrain, fired triggers
are noted but do not retrain again for ``cooldown_periods`` periods.

- **drift**: the share of drifted feature columns (Evidently's default test per column, see
  :mod:`raypipe.monitoring.drift`) is ``>= drift_share`` (default 0.1).
- **performance**: the champion's ``metric`` on the period fell by more than
  ``performance_drop`` (default 5 %, relative) below its reference value. On labelled data the
  metric is measured; without labels it is estimated with CBPE
  (:class:`raypipe.monitoring.cbpe.CBPE`) when ``estimate_without_labels``.
- **freshness**: the champion was trained more than ``max_age_days`` before the period.
- **schedule**: a cron expression (``minute hour day-of-month month day-of-week``) has a match
  in ``(previous period, this period]``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CronSchedule",
    "Cooldown",
    "Firing",
    "TriggerOptions",
    "evaluate_triggers",
]


class TriggerOptions(BaseModel):
    """When ``raypipe watch`` retrains (the ``lifecycle.triggers`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: float | None = Field(default=0.1, gt=0, le=1)
    drift_columns: tuple[str, ...] | None = None
    performance_drop: float | None = Field(default=0.05, gt=0, lt=1)
    metric: str = "roc_auc"
    estimate_without_labels: bool = True
    max_age_days: float | None = Field(default=None, gt=0)
    schedule: str | None = Field(default=None, description="cron: min hour dom month dow")
    cooldown_periods: int = Field(default=2, ge=0)

    @field_validator("schedule")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            CronSchedule(value)
        return value


@dataclass(frozen=True)
class Firing:
    """One trigger that fired on a period."""

    trigger: str  # "drift", "performance", "freshness", "schedule"
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


def evaluate_triggers(
    options: TriggerOptions,
    *,
    period_start: dt.datetime,
    previous_start: dt.datetime | None,
    reference: pa.Table | None = None,
    current: pa.Table | None = None,
    reference_metric: float | None = None,
    labels: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    estimator: Any = None,
    trained_at: dt.datetime | None = None,
) -> list[Firing]:
    """The triggers that fire on the period starting at ``period_start``.

    Parameters
    ----------
    reference, current
        Feature tables the champion was trained on, and of the new period (drift).
    reference_metric
        The champion's ``options.metric`` on its holdout (performance).
    labels, scores
        The period's labels (``None`` when not yet known) and the champion's scores on it.
    estimator
        A fitted :class:`~raypipe.monitoring.cbpe.CBPE` for unlabelled periods.
    trained_at
        When the champion was trained (freshness).
    """
    fired: list[Firing] = []
    if options.drift_share is not None and reference is not None and current is not None:
        from raypipe.monitoring.drift import detect_drift

        columns = options.drift_columns
        report = detect_drift(
            reference,
            current,
            columns=list(columns) if columns else None,
            drift_share=options.drift_share,
        )
        if report.dataset_drifted:
            drifted = [c.column for c in report.columns if c.drifted]
            fired.append(
                Firing(
                    "drift",
                    report.share_drifted,
                    options.drift_share,
                    f"{report.number_drifted} of {len(report.columns)} features drifted "
                    f"({report.share_drifted:.0%} >= {options.drift_share:.0%}): "
                    + ", ".join(drifted[:6])
                    + (" ..." if len(drifted) > 6 else ""),
                )
            )
    if options.performance_drop is not None and reference_metric and scores is not None:
        value, how = _period_metric(options, labels, scores, estimator)
        floor = reference_metric * (1 - options.performance_drop)
        if value is not None and value < floor:
            fired.append(
                Firing(
                    "performance",
                    value,
                    floor,
                    f"{how} {options.metric} {value:.4f} < {floor:.4f} "
                    f"({options.performance_drop:.0%} below the reference {reference_metric:.4f})",
                )
            )
    if options.max_age_days is not None and trained_at is not None:
        age = (period_start - trained_at).total_seconds() / 86400
        if age > options.max_age_days:
            fired.append(
                Firing(
                    "freshness",
                    age,
                    options.max_age_days,
                    f"the champion is {age:.1f} days old (> {options.max_age_days:g})",
                )
            )
    if options.schedule is not None and previous_start is not None:
        due = CronSchedule(options.schedule).next_after(previous_start)
        if due is not None and due <= period_start:
            fired.append(
                Firing(
                    "schedule",
                    due.timestamp(),
                    period_start.timestamp(),
                    f"schedule `{options.schedule}` was due at {due.isoformat()}",
                )
            )
    return fired


def _period_metric(
    options: TriggerOptions, labels: np.ndarray | None, scores: np.ndarray, estimator: Any
) -> tuple[float | None, str]:
    if labels is not None:
        from raypipe.monitoring.performance import classification_metrics

        value = classification_metrics(np.asarray(labels), np.asarray(scores)).get(options.metric)
        return (None if value is None or math.isnan(value) else float(value)), "measured"
    if options.estimate_without_labels and estimator is not None:
        value = estimator.estimate(np.asarray(scores)).get(options.metric)
        return (None if value is None or math.isnan(value) else float(value)), "estimated (CBPE)"
    return None, "unknown"


@dataclass
class Cooldown:
    """Counts periods since the last retrain; retraining is allowed when the count is enough.

    ``since_retrain`` is ``None`` before the first retrain.
    """

    periods: int
    since_retrain: int | None = None

    def allows(self) -> bool:
        return self.since_retrain is None or self.since_retrain >= self.periods

    def tick(self, retrained: bool) -> None:
        """Advance one period; ``retrained`` restarts the count."""
        if retrained:
            self.since_retrain = 0
        elif self.since_retrain is not None:
            self.since_retrain += 1


_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression: ``*``, numbers, ``a-b`` ranges, ``*/n`` and ``a-b/n``
    steps and comma lists; day of week 0-6 from Sunday (7 is Sunday too). As in cron, when both
    day of month and day of week are restricted, a day matching either matches.

    Raises ``ValueError`` naming the bad field.
    """

    expression: str
    _sets: tuple[frozenset[int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = self.expression.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron `{self.expression}` has {len(parts)} fields; expected 5 "
                "(minute hour day-of-month month day-of-week), e.g. `0 3 1 * *`"
            )
        sets = tuple(
            _parse_field(text, name, low, high)
            for text, (name, low, high) in zip(parts, _FIELDS, strict=True)
        )
        weekday = frozenset(d % 7 for d in sets[4])
        object.__setattr__(self, "_sets", (*sets[:4], weekday))

    def matches(self, moment: dt.datetime) -> bool:
        """Whether the minute of ``moment`` matches."""
        minute, hour, day, month, weekday = self._sets
        if moment.minute not in minute or moment.hour not in hour or moment.month not in month:
            return False
        day_restricted = self.expression.split()[2] != "*"
        weekday_restricted = self.expression.split()[4] != "*"
        cron_weekday = (moment.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        day_ok, weekday_ok = moment.day in day, cron_weekday in weekday
        if day_restricted and weekday_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_after(self, moment: dt.datetime, *, horizon_days: int = 366 * 5) -> dt.datetime | None:
        """The first matching minute strictly after ``moment`` (``None`` within the horizon)."""
        minute, hour, _, _, _ = self._sets
        candidate = moment.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        end = moment + dt.timedelta(days=horizon_days)
        while candidate <= end:
            # Skip whole days and hours that cannot match, so a search spans years quickly.
            day_start = candidate.replace(hour=0, minute=0)
            if not self.matches(day_start.replace(hour=min(hour), minute=min(minute))):
                candidate = day_start + dt.timedelta(days=1)
                continue
            if candidate.hour not in hour:
                candidate = candidate.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if self.matches(candidate):
                return candidate
            candidate += dt.timedelta(minutes=1)
        return None


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    top = 7 if name == "weekday" else high
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, stop = low, high
            elif "-" in base:
                start, stop = (int(v) for v in base.split("-", 1))
            else:
                start = stop = int(base)
                if step_text:
                    stop = high
        except ValueError:
            raise ValueError(
                f"cron field `{name}` has `{part}`; expected `*`, a number, `a-b`, or `/step`"
            ) from None
        if step < 1 or not (low <= start <= stop <= top):
            raise ValueError(
                f"cron field `{name}` has `{part}`; values must lie in {low}-{top}, steps >= 1"
            )
        values.update(range(start, stop + 1, step))
    return frozenset(values)
