"""Who is acting, which roles they hold, and the approvals they gave.

The acting user comes from the policy's ``identity`` sources, tried in order
(:class:`~raypipe.tracking.policy.IdentitySpec`): a signed token file, an environment variable,
the operating-system user. Approvals are audit entries (stream ``approvals``), so they are
hash-chained with everything else and cannot be added or removed unnoticed.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from raypipe.errors import ModelError, SpecError
from raypipe.tracking.audit import AuditEntry, AuditLog
from raypipe.tracking.policy import IdentitySpec, TransitionRule

__all__ = [
    "APPROVALS_STREAM",
    "PermissionDeniedError",
    "approvals_for",
    "record_approval",
    "resolve_identity",
    "roles_of",
    "sign_token",
]

#: The audit stream of approvals.
APPROVALS_STREAM = "approvals"


class PermissionDeniedError(ModelError):
    """The acting user holds none of the roles a transition's rule names as approvers."""


def sign_token(user: str, key: str) -> str:
    """The token file's content for ``user``: ``user:hex(hmac_sha256(key, user))``."""
    digest = hmac.new(key.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{user}:{digest}"


def resolve_identity(spec: IdentitySpec, environ: Mapping[str, str] | None = None) -> str:
    """The acting user, from the first of ``spec.sources`` that yields one.

    Raises
    ------
    SpecError
        A token file is configured but its signature does not verify (a forged or stale token
        is an error, never a fall-through to the next source), or no source yields a user.
    """
    env = os.environ if environ is None else environ
    for source in spec.sources:
        if source == "token_file":
            user = _user_from_token(spec, env)
            if user:
                return user
        elif source == "env" and env.get(spec.env_var):
            return env[spec.env_var]
        elif source == "os_user":
            try:
                return getpass.getuser()
            except (KeyError, OSError):
                continue
    raise SpecError(
        [f"no identity source yielded a user (tried {', '.join(spec.sources)})"],
        hint=f"set `{spec.env_var}`, or configure `lifecycle.identity.token_file`",
    )


def _user_from_token(spec: IdentitySpec, env: Mapping[str, str]) -> str | None:
    path = Path(os.path.expanduser(spec.token_file or ""))
    if not path.is_file():
        return None
    key = env.get(spec.key_env)
    if not key:
        raise SpecError(
            [f"identity token `{path}` is set but `{spec.key_env}` (its signing key) is not"],
            hint=f"export `{spec.key_env}`, or remove `token_file` from `lifecycle.identity`",
        )
    text = path.read_text(encoding="utf-8").strip()
    user, _, _ = text.partition(":")
    if not user or not hmac.compare_digest(text, sign_token(user, key)):
        raise SpecError(
            [f"identity token `{path}` does not verify with the key in `{spec.key_env}`"],
            hint="write a new token with `raypipe.tracking.approvals.sign_token(user, key)`",
        )
    return user


def roles_of(user: str, members: Mapping[str, Sequence[str]]) -> set[str]:
    """The roles ``user`` holds."""
    return {role for role, users in members.items() if user in users}


def record_approval(
    audit: AuditLog,
    *,
    model: str,
    version: str,
    rule: TransitionRule,
    who: str,
    members: Mapping[str, Sequence[str]],
    reason: str,
) -> AuditEntry:
    """Record ``who``'s approval of ``version`` moving by ``rule``.

    Raises
    ------
    PermissionDeniedError
        ``who`` holds none of ``rule.approvers``; nothing is recorded.
    """
    held = roles_of(who, members)
    allowed = held & set(rule.approvers)
    if not allowed:
        raise PermissionDeniedError(
            f"`{who}` may not approve `{model}` version `{version}` {rule.from_stage} -> "
            f"{rule.to_stage}: that needs one of the roles {', '.join(rule.approvers)}, and "
            f"`{who}` holds {', '.join(sorted(held)) or 'none'}",
            hint="ask a member of "
            + ", ".join(
                f"`{r}` ({', '.join(members.get(r, ())) or 'nobody'})" for r in rule.approvers
            ),
        )
    return audit.append_next(
        model=model,
        stream=APPROVALS_STREAM,
        alias=rule.to_stage,
        action="approve",
        from_version=None,
        to_version=version,
        reason=reason,
        who=who,
        details={"rule": rule.name, "roles": sorted(allowed)},
    )


def approvals_for(
    audit: AuditLog,
    *,
    model: str,
    version: str,
    rule: TransitionRule,
    members: Mapping[str, Sequence[str]],
    since: str | None = None,
) -> list[AuditEntry]:
    """Approvals of ``version`` by ``rule``, one per distinct approver who holds an approver role
    now (a revoked role no longer counts), given after ``since`` (an ISO time) if set."""
    seen: dict[str, AuditEntry] = {}
    for entry in audit.read_stream(model, APPROVALS_STREAM):
        if entry.to_version != version or entry.details.get("rule") != rule.name:
            continue
        if since is not None and entry.at < since:
            continue
        if roles_of(entry.who, members) & set(rule.approvers):
            seen.setdefault(entry.who, entry)
    return list(seen.values())
