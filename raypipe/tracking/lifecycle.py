"""Move model versions between stages under the policy's machine-checked rules.

:meth:`Lifecycle.request` checks every rule that allows the move; if one holds, the version
moves (the stage's alias through the compare-and-set registry, or an entry in the
``development``/``retired`` stream) and the audit entry keeps each checked condition. If the
only thing missing is ``approved``, the request is recorded (stream ``requests``) and waits:
:meth:`Lifecycle.approve` records an approval and completes the waiting move once enough
approvers agree. Anything else missing refuses the move, recorded with the reasons.

Promoting a version to production retires the one it replaces (rule ``production -> retired``
with ``newer_model_available``), when the policy has that rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from raypipe.errors import ModelError
from raypipe.tracking.approvals import approvals_for, record_approval
from raypipe.tracking.audit import AuditEntry, AuditLog
from raypipe.tracking.policy import STAGES, LifecyclePolicy, TransitionRule
from raypipe.tracking.registry import Registry

__all__ = ["REQUESTS_STREAM", "Evidence", "Lifecycle", "TransitionOutcome"]

logger = logging.getLogger(__name__)

#: Audit stream of transition requests (waiting for approval) and refusals.
REQUESTS_STREAM = "requests"
#: Stages that are sets of versions rather than one alias: kept as audit streams of their name.
SET_STAGES = ("development", "retired")


@dataclass(frozen=True)
class Evidence:
    """What is known about a version when a move is requested (checked against the rules)."""

    validation_passed: bool | None = None
    tests_passed: bool | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    performance_degraded: bool | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = dict(self.metrics)
        out["notes"] = dict(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TransitionOutcome:
    """Whether a move happened, waits for approval, or was refused (and why)."""

    status: Literal["moved", "waiting", "refused"]
    model: str
    version: str
    from_stage: str
    to_stage: str
    unmet: tuple[str, ...] = ()
    entry: AuditEntry | None = None

    def describe(self) -> str:
        move = f"`{self.model}` version `{self.version}` {self.from_stage} -> {self.to_stage}"
        if self.status == "moved":
            return f"{move}: done"
        return f"{move}: {self.status} ({'; '.join(self.unmet)})"


class Lifecycle:
    """The stages of one model's versions under ``policy``.

    Parameters
    ----------
    registry
        The compare-and-set registry (its audit log holds every stream).
    policy
        The validated lifecycle policy; ``policy.model`` is the model governed.
    members
        Role -> users (default: ``policy.role_members()``).
    """

    def __init__(
        self,
        registry: Registry,
        policy: LifecyclePolicy,
        *,
        members: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.model = policy.model
        self.members = dict(members if members is not None else policy.role_members())

    @property
    def audit(self) -> AuditLog:
        return self.registry.audit

    def stage_of(self, version: str) -> str:
        """The stage ``version`` is in now."""
        if self.registry.alias_version(self.model, self._alias("production")) == version:
            return "production"
        if any(e.to_version == version for e in self.audit.read_stream(self.model, "retired")):
            return "retired"
        if self.registry.alias_version(self.model, self._alias("staging")) == version:
            return "staging"
        return "development"

    def register(
        self, version: str, *, reason: str, who: str, details: dict[str, Any]
    ) -> AuditEntry:
        """Record that ``version`` entered development (a new version from a training run)."""
        return self.audit.append_next(
            model=self.model,
            stream="development",
            alias="development",
            action="register",
            from_version=None,
            to_version=version,
            reason=reason,
            who=who,
            details=details,
        )

    def request(
        self,
        version: str,
        to_stage: str,
        evidence: Evidence,
        *,
        reason: str,
        who: str,
        from_stage: str | None = None,
    ) -> TransitionOutcome:
        """Move ``version`` to ``to_stage`` if a rule allows it now; else wait or refuse.

        ``from_stage`` defaults to the version's stage now.

        Raises
        ------
        ModelError
            No rule of the policy allows a move from the version's stage to ``to_stage``.
        """
        from_stage = from_stage or self.stage_of(version)
        rules = self._rules(from_stage, to_stage, version)
        checks = [(rule, self.check(version, rule, evidence)) for rule in rules]
        for rule, conditions in checks:
            if all(ok for ok, _ in conditions.values()):
                return self._move(version, from_stage, rule, conditions, evidence, reason, who)
        rule, conditions = min(checks, key=lambda rc: sum(not ok for ok, _ in rc[1].values()))
        unmet = tuple(f"{c}: {why}" for c, (ok, why) in conditions.items() if not ok)
        waiting = [c for c, (ok, _) in conditions.items() if not ok] == ["approved"]
        entry = self.audit.append_next(
            model=self.model,
            stream=REQUESTS_STREAM,
            alias=to_stage,
            action="request" if waiting else "refuse",
            from_version=None,
            to_version=version,
            reason=reason,
            who=who,
            details={"rule": rule.name, "unmet": list(unmet), "evidence": evidence.to_dict()},
        )
        status: Literal["waiting", "refused"] = "waiting" if waiting else "refused"
        logger.info("%s@%s: %s -> %s %s", self.model, version, from_stage, to_stage, status)
        return TransitionOutcome(status, self.model, version, from_stage, to_stage, unmet, entry)

    def approve(self, version: str, to_stage: str, *, who: str, reason: str) -> TransitionOutcome:
        """Record ``who``'s approval of the move of ``version`` to ``to_stage`` and complete a
        waiting request once its conditions all hold.

        Raises
        ------
        PermissionDeniedError
            ``who`` holds none of the approver roles of the rule.
        ModelError
            No rule with ``approved`` allows that move.
        """
        from_stage = self.stage_of(version)
        rules = [r for r in self._rules(from_stage, to_stage, version) if "approved" in r.when]
        if not rules:
            raise ModelError(
                f"no rule of the lifecycle policy needs an approval for `{self.model}` version "
                f"`{version}` {from_stage} -> {to_stage}",
                hint=f"see the pending requests with `raypipe models history {self.model}`",
            )
        record_approval(
            self.audit,
            model=self.model,
            version=version,
            rule=rules[0],
            who=who,
            members=self.members,
            reason=reason,
        )
        request = self.pending_request(version, to_stage)
        evidence = (
            Evidence.from_dict(request.details.get("evidence", {})) if request else Evidence()
        )
        for rule in rules:
            conditions = self.check(version, rule, evidence)
            if all(ok for ok, _ in conditions.values()):
                why = request.reason if request else reason
                return self._move(version, from_stage, rule, conditions, evidence, why, who)
        conditions = self.check(version, rules[0], evidence)
        unmet = tuple(f"{c}: {why}" for c, (ok, why) in conditions.items() if not ok)
        return TransitionOutcome("waiting", self.model, version, from_stage, to_stage, unmet)

    def pending_request(self, version: str, to_stage: str) -> AuditEntry | None:
        """The latest waiting request of ``version`` to ``to_stage``, unless it was completed."""
        latest = None
        for entry in self.audit.read_stream(self.model, REQUESTS_STREAM):
            if entry.to_version == version and entry.alias == to_stage:
                latest = entry if entry.action == "request" else None
        if latest is None or self.stage_of(version) == to_stage:
            return None
        return latest

    def check(
        self, version: str, rule: TransitionRule, evidence: Evidence
    ) -> dict[str, tuple[bool, str]]:
        """Each condition of ``rule`` for ``version``: (holds, why)."""
        out: dict[str, tuple[bool, str]] = {}
        for condition in rule.when:
            out[condition] = self._condition(condition, version, rule, evidence)
        return out

    def _condition(
        self, condition: str, version: str, rule: TransitionRule, evidence: Evidence
    ) -> tuple[bool, str]:
        if condition == "validation_passed":
            return evidence.validation_passed is True, _flag(evidence.validation_passed)
        if condition == "tests_passed":
            return evidence.tests_passed is True, _flag(evidence.tests_passed)
        if condition == "performance_degraded":
            return evidence.performance_degraded is True, _flag(evidence.performance_degraded)
        if condition == "meets_sla":
            sla = self.policy.sla
            value = evidence.metrics.get(sla.metric)
            if value is None:
                return False, f"no `{sla.metric}` measured"
            if sla.minimum is not None and value < sla.minimum:
                return False, f"`{sla.metric}` {value:.4f} < SLA minimum {sla.minimum:.4f}"
            if sla.maximum is not None and value > sla.maximum:
                return False, f"`{sla.metric}` {value:.4f} > SLA maximum {sla.maximum:.4f}"
            return True, f"`{sla.metric}` {value:.4f} meets the SLA"
        if condition == "approved":
            given = approvals_for(
                self.audit, model=self.model, version=version, rule=rule, members=self.members
            )
            names = ", ".join(e.who for e in given)
            return (
                len(given) >= rule.approvals,
                f"{len(given)} of {rule.approvals} approvals ({names or 'none yet'}) from "
                + ", ".join(rule.approvers),
            )
        if condition == "newer_model_available":
            current = self.registry.alias_version(self.model, self._alias("production"))
            newer = current is not None and current != version and _later(current, version)
            return newer, f"production holds `{current or '-'}`"
        raise ModelError(f"unknown condition `{condition}`")  # the policy model forbids this

    def _move(
        self,
        version: str,
        from_stage: str,
        rule: TransitionRule,
        conditions: dict[str, tuple[bool, str]],
        evidence: Evidence,
        reason: str,
        who: str,
    ) -> TransitionOutcome:
        to_stage = rule.to_stage
        details = {
            "rule": rule.name,
            "from_stage": from_stage,
            "to_stage": to_stage,
            "conditions": {c: why for c, (_, why) in conditions.items()},
            "evidence": evidence.to_dict(),
        }
        alias = self.policy.alias_of(to_stage)
        replaced = self.registry.alias_version(self.model, alias) if alias else None
        if alias:
            entry = self.registry.set_alias(
                self.model,
                alias,
                version,
                action="promote",
                reason=reason,
                who=who,
                details=details,
            )
        else:
            entry = self.audit.append_next(
                model=self.model,
                stream=to_stage,
                alias=to_stage,
                action=to_stage if to_stage == "retired" else "demote",
                from_version=None,
                to_version=version,
                reason=reason,
                who=who,
                details=details,
            )
        logger.info(
            "%s version %s: %s -> %s (%s)", self.model, version, from_stage, to_stage, reason
        )
        retire = to_stage == "production" and self.policy.rules("production", "retired")
        if retire and replaced is not None and replaced != version:
            self.request(
                replaced,
                "retired",
                Evidence(notes={"replaced_by": version}),
                reason=f"replaced by version {version}",
                who=who,
                from_stage="production",
            )
        return TransitionOutcome("moved", self.model, version, from_stage, to_stage, (), entry)

    def _rules(self, from_stage: str, to_stage: str, version: str) -> list[TransitionRule]:
        if to_stage not in STAGES:
            raise ModelError(f"unknown stage `{to_stage}`", hint=f"stages are {', '.join(STAGES)}")
        rules = self.policy.rules(from_stage, to_stage)
        if not rules:
            allowed = sorted(
                {r.to_stage for r in self.policy.transitions if r.from_stage == from_stage}
            )
            raise ModelError(
                f"the lifecycle policy has no rule moving `{self.model}` version `{version}` "
                f"from {from_stage} to {to_stage}",
                hint=f"from {from_stage} it may move to: {', '.join(allowed) or 'nowhere'}",
            )
        return rules

    def _alias(self, stage: str) -> str:
        return self.policy.alias_of(stage) or stage


def _flag(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "not reported"}[value]


def _later(a: str, b: str) -> bool:
    """Whether version ``a`` was registered after ``b`` (registry versions are integers)."""
    try:
        return int(a) > int(b)
    except ValueError:
        return a > b
