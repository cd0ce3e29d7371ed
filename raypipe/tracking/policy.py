"""The lifecycle policy: stages, the rules that move a version between them, roles, identity.

A model version lives in one of four stages, development -> staging -> production -> retired.
Staging and production are registry aliases (``challenger`` and ``champion`` by default, so the
scoring stages keep working); development and retired are sets, kept as audit streams. A
:class:`TransitionRule` names the machine-checked conditions under which a version may move
(:data:`CONDITIONS`); several rules for one move are alternatives, the conditions of one rule
must all hold. ``approved`` makes the move wait for approvals by users holding one of
``approvers`` (roles, from ``roles:`` or ``roles_file:``).

The policy lives under ``lifecycle:`` in the job spec or in its own YAML file::

    lifecycle:
      model: churn
      sla: {metric: roc_auc, minimum: 0.7}
      roles: {ml-lead: [ann], sre: [bob]}
      transitions:
        - {from: development, to: staging, when: [validation_passed, tests_passed]}
        - {from: staging, to: production, when: [meets_sla, approved], approvers: [ml-lead]}
      triggers: {drift_share: 0.1, performance_drop: 0.05, cooldown_periods: 2}

Every problem is reported at once, with its path under ``lifecycle``, as a
:class:`~raypipe.errors.SpecError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raypipe.errors import SpecError
from raypipe.monitoring.triggers import TriggerOptions

__all__ = [
    "CONDITIONS",
    "STAGES",
    "ChallengerSpec",
    "IdentitySpec",
    "LifecyclePolicy",
    "SlaSpec",
    "TransitionRule",
    "WatchSpec",
    "load_policy",
    "policy_from_mapping",
]

#: The stages of a model version, in the order it normally moves through them.
STAGES = ("development", "staging", "production", "retired")
Stage = Literal["development", "staging", "production", "retired"]
#: Conditions a transition rule may require; each is checked by :mod:`raypipe.tracking.lifecycle`.
CONDITIONS = (
    "validation_passed",
    "tests_passed",
    "meets_sla",
    "approved",
    "performance_degraded",
    "newer_model_available",
)
Condition = Literal[
    "validation_passed",
    "tests_passed",
    "meets_sla",
    "approved",
    "performance_degraded",
    "newer_model_available",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TransitionRule(_Strict):
    """A version may move ``from_stage`` -> ``to_stage`` when every condition in ``when`` holds."""

    from_stage: Stage = Field(alias="from")
    to_stage: Stage = Field(alias="to")
    when: tuple[Condition, ...] = ()
    approvers: tuple[str, ...] = Field(default=(), description="roles that may approve")
    approvals: int = Field(default=1, ge=1, description="distinct approvers needed")

    @model_validator(mode="after")
    def _approval_needs_roles(self) -> TransitionRule:
        if "approved" in self.when and not self.approvers:
            raise ValueError("`when` has `approved` but `approvers` names no role")
        if self.approvers and "approved" not in self.when:
            raise ValueError("`approvers` is set but `when` lacks `approved`")
        if self.from_stage == self.to_stage:
            raise ValueError(f"`from` and `to` are both `{self.from_stage}`")
        return self

    @property
    def name(self) -> str:
        return f"{self.from_stage}->{self.to_stage}"


class SlaSpec(_Strict):
    """``meets_sla``: holdout ``metric`` >= ``minimum`` (and/or <= ``maximum`` for losses)."""

    metric: str = "roc_auc"
    minimum: float | None = 0.7
    maximum: float | None = None


class ChallengerSpec(_Strict):
    """What a retrained challenger must show before it may be promoted.

    It must beat the champion on fresh data by at least ``fresh_margin`` and, on a replay sample
    of older periods, trail it by at most ``replay_tolerance`` (it must not forget).
    """

    metric: str = "roc_auc"
    train_periods: int = Field(default=3, ge=1, description="periods a retrain learns from")
    fresh_margin: float = 0.0
    replay_tolerance: float = Field(default=0.02, ge=0)
    replay_periods: int = Field(default=3, ge=0)
    replay_rows: int = Field(default=2000, ge=1, description="rows sampled from the replay")
    warm_start: bool = Field(
        default=False,
        description="XGBoost: the challenger continues boosting the champion (xgb_model=); "
        "a retrainer that can warm-start trains both and the record compares them",
    )


class IdentitySpec(_Strict):
    """Where the acting user's name comes from; the first source that yields one wins.

    ``token_file``: a file ``user:hex(hmac_sha256(key, user))`` signed with the key in the
    environment variable ``key_env``; ``env``: the variable ``env_var``; ``os_user``: the login
    name of the process.
    """

    sources: tuple[Literal["token_file", "env", "os_user"], ...] = ("env", "os_user")
    token_file: str | None = None
    key_env: str = "RAYPIPE_IDENTITY_KEY"
    env_var: str = "RAYPIPE_USER"

    @model_validator(mode="after")
    def _token_file_named(self) -> IdentitySpec:
        if "token_file" in self.sources and not self.token_file:
            raise ValueError("`sources` has `token_file` but `token_file` is not set")
        return self


class WatchSpec(_Strict):
    """What ``raypipe watch`` watches and how it retrains.

    ``periods``: a folder holding one committed dataset per period (a features table with the
    label when known), named so that they sort in time order. ``retrain_set``: ``--set``
    overrides of the job for a retraining run (``{period}`` expands to the period's name).
    """

    periods: str
    label: str = "churned"
    id_columns: tuple[str, ...] = ("player_id",)
    retrain_set: tuple[str, ...] = ()
    address: str | None = Field(default=None, description="a Ray cluster to submit the job to")


DEFAULT_TRANSITIONS = (
    {"from": "development", "to": "staging", "when": ["validation_passed", "tests_passed"]},
    {
        "from": "staging",
        "to": "production",
        "when": ["meets_sla", "approved"],
        "approvers": ["ml-lead"],
    },
    {"from": "production", "to": "retired", "when": ["newer_model_available"]},
    {"from": "production", "to": "retired", "when": ["performance_degraded"]},
)


def _default_aliases() -> dict[Literal["staging", "production"], str]:
    # The aliases the scoring stages already read, so a governed model keeps being served.
    return {"staging": "challenger", "production": "champion"}


class LifecyclePolicy(_Strict):
    """The whole ``lifecycle:`` section (or policy file)."""

    model: str
    aliases: dict[Literal["staging", "production"], str] = Field(default_factory=_default_aliases)
    sla: SlaSpec = Field(default_factory=SlaSpec)
    transitions: tuple[TransitionRule, ...] = Field(
        default_factory=lambda: tuple(TransitionRule.model_validate(r) for r in DEFAULT_TRANSITIONS)
    )
    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    roles_file: str | None = None
    identity: IdentitySpec = Field(default_factory=IdentitySpec)
    triggers: TriggerOptions = Field(default_factory=TriggerOptions)
    challenger: ChallengerSpec = Field(default_factory=ChallengerSpec)
    watch: WatchSpec | None = None

    @model_validator(mode="after")
    def _roles_exist(self) -> LifecyclePolicy:
        if self.roles_file is None:
            known = set(self.roles)
            missing = sorted({r for t in self.transitions for r in t.approvers} - known)
            if missing:
                raise ValueError(
                    f"approver roles {', '.join(map(repr, missing))} are not defined in `roles` "
                    f"(defined: {', '.join(sorted(known)) or 'none'}); define them or set "
                    "`roles_file`"
                )
        return self

    def rules(self, from_stage: str, to_stage: str) -> list[TransitionRule]:
        """The rules that allow ``from_stage`` -> ``to_stage`` (alternatives)."""
        return [
            r for r in self.transitions if r.from_stage == from_stage and r.to_stage == to_stage
        ]

    def alias_of(self, stage: str) -> str | None:
        """The registry alias of ``stage`` (``None`` for development and retired)."""
        return next((alias for name, alias in self.aliases.items() if name == stage), None)

    def role_members(self, base_dir: str | None = None) -> dict[str, tuple[str, ...]]:
        """Role -> users, from ``roles`` and ``roles_file`` (a YAML mapping of the same shape)."""
        members = {role: tuple(users) for role, users in self.roles.items()}
        if self.roles_file:
            members.update(_read_roles_file(self.roles_file, base_dir))
        return members


def policy_from_mapping(data: Mapping[str, Any], *, source: str) -> LifecyclePolicy:
    """Validate a ``lifecycle`` mapping; every problem in one :class:`SpecError`."""
    try:
        return LifecyclePolicy.model_validate(dict(data))
    except ValidationError as exc:
        problems = [
            f"`lifecycle.{'.'.join(str(p) for p in error['loc'])}`: {error['msg']}"
            if error["loc"]
            else f"`lifecycle`: {error['msg']}"
            for error in exc.errors()
        ]
        raise SpecError(
            problems,
            source=source,
            hint="see the `lifecycle:` example in raypipe/tracking/policy.py; stages are "
            f"{', '.join(STAGES)}; conditions are {', '.join(CONDITIONS)}",
        ) from exc


def load_policy(path: str | os.PathLike[str]) -> LifecyclePolicy:
    """The policy of a job spec (its ``lifecycle:`` key) or of a policy file (the mapping itself).

    Raises
    ------
    SpecError
        The file is missing, not YAML, has no policy, or the policy is invalid.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(
            [f"cannot read `{path}`: {exc}"], hint="pass a job spec or a policy YAML file"
        ) from exc
    if isinstance(data, Mapping) and "stages" in data:
        data = data.get("lifecycle")
        if not isinstance(data, Mapping):
            raise SpecError(
                [f"`{path}` is a job spec without a `lifecycle:` section"],
                source=str(path),
                hint="add `lifecycle: {model: NAME}` to the job spec",
            )
    if not isinstance(data, Mapping):
        raise SpecError(
            [f"`{path}` holds no mapping"], hint="a policy file is a YAML mapping with `model:`"
        )
    policy = policy_from_mapping(data, source=str(path))
    if policy.roles_file and not os.path.isabs(policy.roles_file):
        policy = policy.model_copy(update={"roles_file": str(path.parent / policy.roles_file)})
    return policy


def _read_roles_file(path: str, base_dir: str | None) -> dict[str, tuple[str, ...]]:
    import yaml

    full = Path(base_dir, path) if base_dir and not os.path.isabs(path) else Path(path)
    try:
        data = yaml.safe_load(full.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(
            [f"`lifecycle.roles_file`: cannot read `{full}`: {exc}"],
            hint="a roles file maps each role to a list of users, e.g. `ml-lead: [ann]`",
        ) from exc
    roles = data.get("roles", data) if isinstance(data, Mapping) else None
    if not isinstance(roles, Mapping) or not all(
        isinstance(users, list) and all(isinstance(u, str) for u in users)
        for users in roles.values()
    ):
        raise SpecError(
            [f"`lifecycle.roles_file` `{full}`: expected a mapping of role to a list of users"],
            hint="e.g. `ml-lead: [ann, bob]`",
        )
    return {str(role): tuple(users) for role, users in roles.items()}
