"""The watch loop with a retrainer that, like a ``train.search`` job, stages what it registers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.tracking.audit import AuditLog
from raypipe.tracking.continual import Period, WatchLoop
from raypipe.tracking.lifecycle import Lifecycle
from raypipe.tracking.policy import policy_from_mapping
from raypipe.tracking.retrain import XGBoostRetrainer
from raypipe.tracking.store import audit_path
from tests.support.registry import AuditOnlyRegistry


class Registered(AuditOnlyRegistry):
    def register(self, name, model_uri, *, run_id, tags):  # type: ignore[no-untyped-def]
        return self.add_version(name, tags)


class StagingOnRegister(XGBoostRetrainer):
    """Registers as ``train.search`` does: the new version becomes the ``challenger``."""

    def register(self, model: Any, *, tags: Any) -> str:
        version = super().register(model, tags=tags)
        self.registry.set_alias(
            self.model_name, "challenger", version, action="register", reason="trained by run r"
        )
        return version


def _period(name: str, month: int, drifted: bool, rng: np.random.Generator) -> Period:
    x = rng.normal(0, 1, (3000, 4)) + (1.0 if drifted else 0.0) * np.array([1, 1, 0, 0])
    signal = x[:, 1] if drifted else x[:, 0]  # the drift changes what predicts churn
    y = (rng.uniform(size=3000) < 1 / (1 + np.exp(-(2.5 * signal + x[:, 3])))).astype(np.int64)
    columns = {f"f{i}": x[:, i] for i in range(4)}
    table = pa.table({"player_id": np.arange(3000), "churned": y, **columns})
    return Period(name, dt.datetime(2026, month, 1, tzinfo=dt.timezone.utc), table)


def test_a_version_the_training_job_staged_is_still_checked_from_development(
    tmp_path: Path,
) -> None:
    registry = Registered(AuditLog(audit_path(str(tmp_path / "data"))))
    policy = policy_from_mapping(
        {
            "model": "churn",
            "roles": {"ml-lead": ["ann"]},
            # Two periods of opposite concepts: what the challenger may forget is not the point.
            "challenger": {"replay_tolerance": 0.2},
        },
        source="test",
    )
    lifecycle = Lifecycle(registry, policy)
    retrainer = StagingOnRegister(registry, "churn", str(tmp_path / "models"), rounds=30)
    loop = WatchLoop(lifecycle, retrainer, state_path=str(tmp_path / "watch.json"), who="w")
    rng = np.random.default_rng(0)

    boot = loop.bootstrap([_period("p1", 1, False, rng)])
    assert boot.status == "waiting" and boot.from_stage == "staging"
    lifecycle.approve(boot.version, "production", who="ann", reason="first model")
    outcome = loop.step(_period("p2", 2, True, rng))

    assert outcome.retrained and outcome.challenge is not None and outcome.challenge.passed
    assert outcome.transition is not None and outcome.transition.status == "waiting"
    assert lifecycle.stage_of(outcome.challenger) == "staging"
    staged = registry.audit.read_stream("churn", "challenger")[-1]
    assert (staged.action, staged.to_version) == ("promote", outcome.challenger)
    assert staged.details["from_stage"] == "development"
    assert set(staged.details["conditions"]) == {"validation_passed", "tests_passed"}
