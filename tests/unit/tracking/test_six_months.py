"""Six simulated months with drift injected in month 4: the watch loop's whole story.

The generator, the feature build (in process), XGBoost, the triggers, the lifecycle, the
approvals and the audit trail are the real ones; only MLflow is left out (the registry keeps its
aliases in the audit streams, see ``tests/support/registry.py``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from raypipe.cli.models import register as register_models
from raypipe.tracking.audit import AuditLog
from raypipe.tracking.continual import HOLDOUT_FRACTION, WatchLoop, holdout_mask
from raypipe.tracking.lifecycle import Lifecycle
from raypipe.tracking.policy import policy_from_mapping
from raypipe.tracking.retrain import XGBoostRetrainer
from raypipe.tracking.store import audit_path
from raypipe.tracking.verify import verify_audit
from tests.support.registry import AuditOnlyRegistry

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "continual.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_continual", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Registered(AuditOnlyRegistry):
    def register(self, name, model_uri, *, run_id, tags):  # type: ignore[no-untyped-def]
        return self.add_version(name, tags)


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("months")
    return _benchmark().generate_months(str(root), months=6, players=1200, drift_month=4)


def test_six_months_retrain_once_wait_for_approval_promote_and_tell_the_story(
    months: list, tmp_path: Path
) -> None:
    data_dir = str(tmp_path / "data")
    registry = Registered(AuditLog(audit_path(data_dir)))
    policy = policy_from_mapping(
        {
            "model": "churn",
            "roles": {"ml-lead": ["ann"]},
            "triggers": {"drift_share": 0.1, "performance_drop": 0.05, "cooldown_periods": 2},
            "challenger": {"warm_start": True, "replay_tolerance": 0.02},
        },
        source="test",
    )
    lifecycle = Lifecycle(registry, policy)
    retrainer = XGBoostRetrainer(registry, "churn", str(tmp_path / "models"))
    loop = WatchLoop(lifecycle, retrainer, state_path=str(tmp_path / "watch.json"), who="watch")

    boot = loop.bootstrap(months[:1])
    assert boot.status == "waiting" and loop.champion is None  # even the first one is approved
    lifecycle.approve(boot.version, "production", who="ann", reason="first model")
    first = loop.champion
    assert first == boot.version

    outcomes = {}
    for period in months[1:]:
        outcome = loop.step(period)
        outcomes[period.name] = outcome
        if period.name == "m4":
            # Drift fired, the challenger passed and waits: the champion still serves.
            assert outcome.retrained and outcome.challenge is not None
            assert "drift" in {f.trigger for f in outcome.firings}
            assert outcome.challenge.passed, outcome.challenge.reasons
            # For a real reason: the drift (social activity turned around) drops the champion
            # far below the month's Bayes AUC, and the challenger trained on it wins much back.
            fresh = outcome.challenge.fresh
            holdout = period.table.filter(
                pa.array(holdout_mask(period.table, ("player_id",), HOLDOUT_FRACTION))
            )
            assert _benchmark().holdout_auc(holdout) - fresh["champion"] > 0.05, fresh
            assert fresh["challenger"] - fresh["champion"] > 0.02, fresh
            assert outcome.transition is not None and outcome.transition.status == "waiting"
            assert loop.champion == first
            assert lifecycle.stage_of(outcome.challenger) == "staging"
            lifecycle.approve(outcome.challenger, "production", who="ann", reason="looks right")
            assert loop.champion == outcome.challenger
            assert lifecycle.stage_of(first) == "retired"

    # No trigger before the drift, one retrain at month 4, none after (the new champion's data
    # is the reference; the cool-down would hold a lingering drift back too).
    assert [name for name, o in outcomes.items() if o.retrained] == ["m4"]
    assert all(not outcomes[m].firings for m in ("m2", "m3")), outcomes["m3"].firings
    challenger = outcomes["m4"].challenger
    assert outcomes["m5"].champion == challenger and outcomes["m6"].champion == challenger
    variants = outcomes["m4"].challenge.variants
    assert {"scratch", "warm", "champion"} <= set(variants)  # warm start compared with scratch

    # Rerunning a processed month changes nothing.
    assert not loop.step(months[3]).retrained

    # The audit trail verifies and tells the story.
    assert verify_audit(registry.audit, "churn").ok
    app = typer.Typer()
    register_models(app)
    runner = CliRunner()
    result = runner.invoke(
        app, ["models", "history", "churn", "--no-registry", "--json", "--data-dir", data_dir]
    )
    assert result.exit_code == 0, result.output
    story = json.loads(result.stdout)
    served = [(s["version"], s["promoted_by"], s["until"] is None) for s in story["served"]]
    assert served == [(first, "ann", False), (challenger, "ann", True)]
    assert "drifted" in story["served"][1]["why_promoted"]
    actions = [(e["alias"], e["action"], e["to_version"]) for e in story["events"]]
    promote = actions.index(("champion", "promote", challenger))
    approve = actions.index(("production", "approve", challenger))
    request = actions.index(("production", "request", challenger))
    registered = actions.index(("development", "register", challenger))
    assert registered < request < approve < promote
    assert ("retired", "retired", first) in actions[promote:]
    watch = [e for e in story["events"] if e["alias"] == "watch"]
    actions_by_month = {e["details"]["period"]: e["action"] for e in watch}
    assert actions_by_month["m4"] == "retrain" and "features drifted" in watch[2]["reason"]
    # After the retrain a trigger may fire again on small-sample noise: the cool-down holds it.
    assert {actions_by_month[m] for m in ("m5", "m6")} <= {"ok", "cooldown"}, [
        (e["details"]["period"], e["reason"]) for e in watch
    ]
