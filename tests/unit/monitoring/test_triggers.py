from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from raypipe.monitoring.cbpe import CBPE
from raypipe.monitoring.triggers import Cooldown, CronSchedule, TriggerOptions, evaluate_triggers

START = dt.datetime(2026, 3, 1)


def _table(rng: np.random.Generator, shift: float, n: int = 2000) -> pa.Table:
    return pa.table({f"f{i}": rng.normal(shift if i < 2 else 0.0, 1.0, n) for i in range(10)})


def test_drift_share_fires_at_the_default_tenth() -> None:
    rng = np.random.default_rng(0)
    reference = _table(rng, 0.0)
    options = TriggerOptions()
    quiet = evaluate_triggers(
        options, period_start=START, previous_start=None, reference=reference,
        current=_table(rng, 0.0),
    )  # fmt: skip
    assert quiet == []
    fired = evaluate_triggers(
        options, period_start=START, previous_start=None, reference=reference,
        current=_table(rng, 1.0),
    )  # fmt: skip
    assert [f.trigger for f in fired] == ["drift"]
    assert fired[0].value == pytest.approx(0.2) and "f0, f1" in fired[0].message
    strict = TriggerOptions(drift_share=0.3)
    assert not evaluate_triggers(
        strict, period_start=START, previous_start=None, reference=reference,
        current=_table(rng, 1.0),
    )  # fmt: skip


def test_performance_drop_measured_or_estimated_without_labels() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 4000)
    good = np.clip(y * 0.6 + rng.uniform(0, 0.4, 4000), 0, 1)
    noisy = np.clip(y * 0.2 + rng.uniform(0, 0.8, 4000), 0, 1)
    options = TriggerOptions(drift_share=None)
    common = {"period_start": START, "previous_start": None, "reference_metric": 0.99}
    assert not evaluate_triggers(options, labels=y, scores=good, **common)
    fired = evaluate_triggers(options, labels=y, scores=noisy, **common)
    assert [f.trigger for f in fired] == ["performance"] and "measured" in fired[0].message
    estimator = CBPE().fit(y, good)
    # Without labels: CBPE estimates from calibrated scores; a confident model looks fine.
    assert not evaluate_triggers(options, scores=good, estimator=estimator, **common)
    fired = evaluate_triggers(options, scores=np.full(4000, 0.5), estimator=estimator, **common)
    assert fired and "estimated (CBPE)" in fired[0].message
    assert not evaluate_triggers(options, scores=noisy, **common)  # no labels, no estimator


def test_freshness_and_schedule() -> None:
    options = TriggerOptions(drift_share=None, max_age_days=45, schedule="0 3 1 * *")
    fired = evaluate_triggers(
        options,
        period_start=dt.datetime(2026, 4, 1, 12),
        previous_start=dt.datetime(2026, 3, 2),
        trained_at=dt.datetime(2026, 2, 1),
    )
    assert [f.trigger for f in fired] == ["freshness", "schedule"]
    assert "2026-04-01T03:00:00" in fired[1].message
    none = evaluate_triggers(
        options,
        period_start=dt.datetime(2026, 3, 31),
        previous_start=dt.datetime(2026, 3, 2),
        trained_at=dt.datetime(2026, 3, 1),
    )
    assert none == []


def test_cron_matcher_against_brute_force() -> None:
    cases = ["*/15 * * * *", "0 3 1 * *", "30 8 * * 1-5", "0 0 13 * 5", "5,35 */6 * 2 0"]
    start = dt.datetime(2026, 1, 30, 22, 50)
    for expression in cases:
        cron = CronSchedule(expression)
        moment = start + dt.timedelta(minutes=1)
        while not cron.matches(moment):
            moment += dt.timedelta(minutes=1)
        assert cron.next_after(start) == moment, expression
    friday_13 = CronSchedule("0 0 13 * 5")  # either day of month or day of week, as in cron
    assert friday_13.matches(dt.datetime(2026, 2, 13)) and friday_13.matches(
        dt.datetime(2026, 2, 6)
    )
    with pytest.raises(ValueError, match="cron field `weekday` has `8`"):
        CronSchedule("0 0 * * 8")
    with pytest.raises(ValueError, match="has 4 fields"):
        CronSchedule("0 0 * *")


def test_cooldown_holds_triggers_for_the_configured_periods() -> None:
    cooldown = Cooldown(periods=2)
    assert cooldown.allows()
    cooldown.tick(retrained=True)
    assert not cooldown.allows()
    cooldown.tick(retrained=False)
    assert not cooldown.allows()
    cooldown.tick(retrained=False)
    assert cooldown.allows()
