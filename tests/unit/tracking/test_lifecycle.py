from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.errors import ModelError, SpecError
from raypipe.tracking.approvals import PermissionDeniedError, resolve_identity, sign_token
from raypipe.tracking.audit import AuditLog
from raypipe.tracking.lifecycle import Evidence, Lifecycle
from raypipe.tracking.policy import IdentitySpec, load_policy, policy_from_mapping
from tests.support.registry import AuditOnlyRegistry

POLICY = {
    "model": "churn",
    "sla": {"metric": "roc_auc", "minimum": 0.7},
    "roles": {"ml-lead": ["ann"], "sre": ["bob"]},
}
GOOD = Evidence(validation_passed=True, tests_passed=True, metrics={"roc_auc": 0.81})


def _lifecycle(tmp_path: Path, **policy: object) -> tuple[Lifecycle, AuditOnlyRegistry]:
    registry = AuditOnlyRegistry(AuditLog(tmp_path / "audit"))
    return Lifecycle(registry, policy_from_mapping({**POLICY, **policy}, source="t")), registry


def test_staging_needs_validation_and_tests(tmp_path: Path) -> None:
    lifecycle, registry = _lifecycle(tmp_path)
    v1 = registry.add_version("churn")
    refused = lifecycle.request(
        v1, "staging", Evidence(validation_passed=True), reason="r", who="ci"
    )
    assert refused.status == "refused"
    assert refused.unmet == ("tests_passed: not reported",)
    assert lifecycle.stage_of(v1) == "development"
    moved = lifecycle.request(v1, "staging", GOOD, reason="trained", who="ci")
    assert moved.status == "moved" and lifecycle.stage_of(v1) == "staging"
    assert moved.entry is not None and moved.entry.details["conditions"]["tests_passed"] == "yes"
    with pytest.raises(ModelError, match=r"no rule moving .* from staging to retired"):
        lifecycle.request(v1, "retired", GOOD, reason="r", who="ci")


def test_production_waits_for_an_approval_by_a_role_holder(tmp_path: Path) -> None:
    lifecycle, registry = _lifecycle(tmp_path)
    v1, v2 = registry.add_version("churn"), registry.add_version("churn")
    for version in (v1, v2):
        lifecycle.request(version, "staging", GOOD, reason="trained", who="ci")
        waiting = lifecycle.request(version, "production", GOOD, reason="better", who="ci")
        assert waiting.status == "waiting"
        assert waiting.unmet[0].startswith("approved: 0 of 1 approvals")
        assert lifecycle.stage_of(version) == "staging"
        with pytest.raises(PermissionDeniedError, match="needs one of the roles ml-lead"):
            lifecycle.approve(version, "production", who="bob", reason="lgtm")
        done = lifecycle.approve(version, "production", who="ann", reason="lgtm")
        assert done.status == "moved" and lifecycle.stage_of(version) == "production"
    # Promoting v2 retired v1 (newer model available), recorded in the retired stream.
    assert lifecycle.stage_of(v1) == "retired"
    retired = lifecycle.audit.read_stream("churn", "retired")
    assert [e.to_version for e in retired] == [v1]
    assert "production holds `2`" in retired[0].details["conditions"]["newer_model_available"]


def test_sla_below_minimum_is_refused_even_with_approval(tmp_path: Path) -> None:
    lifecycle, registry = _lifecycle(tmp_path)
    v1 = registry.add_version("churn")
    lifecycle.request(v1, "staging", GOOD, reason="trained", who="ci")
    weak = Evidence(validation_passed=True, tests_passed=True, metrics={"roc_auc": 0.6})
    outcome = lifecycle.request(v1, "production", weak, reason="r", who="ci")
    assert outcome.status == "refused"
    assert any("0.6000 < SLA minimum 0.7000" in u for u in outcome.unmet)


def test_policy_errors_name_every_problem() -> None:
    with pytest.raises(SpecError) as info:
        policy_from_mapping(
            {
                "model": "m",
                "transitions": [
                    {"from": "staging", "to": "production", "when": ["approved", "lucky"]}
                ],
                "triggers": {"drift_share": 2, "schedule": "0 25 * * *"},
            },
            source="job.yaml",
        )
    text = str(info.value)
    assert "in `job.yaml`" in text
    assert "`lifecycle.transitions.0.when.1`" in text
    assert "`lifecycle.triggers.drift_share`" in text
    assert "cron field `hour` has `25`" in text
    with pytest.raises(SpecError, match="approver roles 'ml-lead' are not defined"):
        policy_from_mapping({"model": "m"}, source="p")


def test_policy_from_job_spec_and_roles_file(tmp_path: Path) -> None:
    (tmp_path / "roles.yaml").write_text("ml-lead: [carol]\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: j\nstages: {a: {uses: x}}\nlifecycle: {model: churn, roles_file: roles.yaml}\n"
    )
    policy = load_policy(job)
    assert policy.role_members() == {"ml-lead": ("carol",)}
    (tmp_path / "plain.yaml").write_text("name: j\nstages: {a: {uses: x}}\n")
    with pytest.raises(SpecError, match="without a `lifecycle:` section"):
        load_policy(tmp_path / "plain.yaml")


def test_identity_sources_in_order_and_signed_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(sign_token("ann", "s3cret"))
    spec = IdentitySpec(sources=("token_file", "env"), token_file=str(token))
    assert resolve_identity(spec, {"RAYPIPE_IDENTITY_KEY": "s3cret", "RAYPIPE_USER": "x"}) == "ann"
    with pytest.raises(SpecError, match="does not verify"):
        resolve_identity(spec, {"RAYPIPE_IDENTITY_KEY": "other"})
    token.write_text("bob:" + sign_token("ann", "s3cret").split(":")[1])  # forged name
    with pytest.raises(SpecError, match="does not verify"):
        resolve_identity(spec, {"RAYPIPE_IDENTITY_KEY": "s3cret"})
    token.unlink()
    assert resolve_identity(spec, {"RAYPIPE_USER": "eve"}) == "eve"
    with pytest.raises(SpecError, match="no identity source"):
        resolve_identity(IdentitySpec(sources=("env",)), {})


def test_the_shipped_example_policy_loads() -> None:
    policy = load_policy(Path(__file__).resolve().parents[3] / "jobs" / "churn-lifecycle.yaml")
    assert policy.model == "churn" and policy.challenger.warm_start
    assert [r.when for r in policy.rules("production", "retired")] == [
        ("newer_model_available",),
        ("performance_degraded", "approved"),
    ]


def test_cli_approve_uses_the_configured_identity_and_completes_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from raypipe.cli import models as models_cli

    lifecycle, registry = _lifecycle(tmp_path)
    monkeypatch.setattr(models_cli, "_registry", lambda data_dir, tracking_uri: registry)
    v1 = registry.add_version("churn")
    lifecycle.request(v1, "staging", GOOD, reason="trained", who="ci")
    assert lifecycle.request(v1, "production", GOOD, reason="r", who="ci").status == "waiting"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "model: churn\nroles: {ml-lead: [ann]}\nidentity: {sources: [env], env_var: TEAM_USER}\n"
    )
    app = typer.Typer()
    models_cli.register(app)
    args = ["models", "approve", "churn", v1, "--to", "production", "--policy", str(policy)]
    runner = CliRunner()
    denied = runner.invoke(app, [*args, "--reason", "ok"], env={"TEAM_USER": "bob"})
    assert isinstance(denied.exception, PermissionDeniedError)
    assert lifecycle.stage_of(v1) == "staging"
    done = runner.invoke(app, [*args, "--reason", "ok"], env={"TEAM_USER": "ann"})
    assert done.exit_code == 0, done.output
    assert "approved by ann" in done.output and "production: done" in done.output
    assert lifecycle.stage_of(v1) == "production"
    other = tmp_path / "other.yaml"
    other.write_text("model: fraud\nroles: {ml-lead: [ann]}\n")
    wrong = runner.invoke(app, ["models", "approve", "churn", v1, "--to", "production",
                                "--policy", str(other), "--reason", "x"])  # fmt: skip
    assert isinstance(wrong.exception, SpecError) and "governs model `fraud`" in str(
        wrong.exception
    )
