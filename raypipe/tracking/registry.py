"""The governed registry: versions, aliases, a blessing gate, promotion and rollback with audit.

MLflow keeps which version an alias points to now; raypipe adds the rules and the history.
Every alias change goes through :meth:`Registry.set_alias`, which writes an audit entry (who,
when, from, to, why) to the append-only log (:mod:`raypipe.tracking.audit`) and as MLflow tags
(``raypipe.audit.<alias>.NNNNNN`` on the registered model, ``raypipe.<alias>.reason`` on the
version).

What is guaranteed (compare-and-set)
------------------------------------
MLflow's ``set_registered_model_alias`` is a blind write, so the audit stream of an alias is the
source of truth and the MLflow alias follows it:

1. A change reads the stream's head (entry ``n``, pointing at version ``p``), checks
   ``expected_previous`` against ``p`` when the caller gives one, and creates entry ``n + 1``
   exclusively. Of changes that read the same head, exactly one creates ``n + 1``; the others
   raise :class:`~raypipe.tracking.audit.ConcurrentChangeError` and change nothing. So every
   entry's ``from_version`` is the true previous version, and a rollback goes back to it.
2. The winner then points the MLflow alias at the head of the stream and re-reads the head until
   it did not move meanwhile; every writer does this before and after its own entry. The last
   MLflow write is therefore always the newest head's version, even when a slow writer's alias
   call lands after a faster one's. Between an entry being created and its alias call (or after
   a writer died in that window) MLflow may briefly lag the log; the next change, or
   :meth:`Registry.sync_alias`, rolls it forward.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from raypipe.errors import ModelError
from raypipe.redaction import redact_url
from raypipe.tracking.audit import GATE_STREAM, AuditEntry, AuditLog, ConcurrentChangeError
from raypipe.tracking.store import get_client, retrying

__all__ = [
    "ANY_PREVIOUS",
    "CHALLENGER",
    "CHAMPION",
    "GateDecision",
    "Registry",
    "bless",
]

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"


class _AnyPrevious:
    def __repr__(self) -> str:
        return "ANY_PREVIOUS"


#: ``expected_previous`` default: compare-and-set against the head read by the call itself.
ANY_PREVIOUS: Any = _AnyPrevious()

#: MLflow's limit on a registered model tag's value (characters), with room to spare.
TAG_VALUE_LIMIT = 4000
#: What a registry tag keeps of an audit entry too long for it.
WITNESS_FIELDS = ("at", "who", "action", "from_version", "to_version", "sequence", "hash")

#: How often :meth:`Registry.sync_alias` re-reads a head that keeps moving before giving up.
SYNC_ROUNDS = 50


@dataclass(frozen=True)
class GateDecision:
    """Whether a challenger may become champion, and every reason it may not."""

    passed: bool
    metric: str
    value: float
    champion_value: float | None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def bless(
    value: float,
    *,
    metric: str,
    threshold: float | None,
    champion_value: float | None,
    margin: float,
    maximize: bool = True,
) -> GateDecision:
    """TFX-style blessing: pass an absolute ``threshold``; trail the champion by <= ``margin``.

    ``maximize=False`` for losses (RMSE, log loss): the threshold is then a maximum.
    """
    reasons = []
    if value is None or math.isnan(value):
        reasons.append(f"`{metric}` is missing or NaN")
    else:
        if threshold is not None and maximize and value < threshold:
            reasons.append(f"`{metric}` {value:.4f} < threshold {threshold:.4f}")
        if threshold is not None and not maximize and value > threshold:
            reasons.append(f"`{metric}` {value:.4f} > threshold {threshold:.4f}")
        if champion_value is not None and not math.isnan(champion_value):
            worse_by = (champion_value - value) if maximize else (value - champion_value)
            if worse_by > margin:
                reasons.append(
                    f"`{metric}` {value:.4f} is {worse_by:.4f} worse than the champion's "
                    f"{champion_value:.4f} (margin {margin:.4f})"
                )
    return GateDecision(
        passed=not reasons,
        metric=metric,
        value=float(value) if value is not None else float("nan"),
        champion_value=champion_value,
        reasons=tuple(reasons),
    )


class Registry:
    """Registered models of one MLflow store, with the audit log beside it."""

    def __init__(self, tracking_uri: str, audit: AuditLog) -> None:
        self.tracking_uri = tracking_uri
        self.client = get_client(tracking_uri)
        self.audit = audit

    def register(
        self, name: str, model_uri: str, *, run_id: str | None, tags: dict[str, Any]
    ) -> str:
        """Create a new version of ``name`` from a logged model; returns the version number."""
        from mlflow.exceptions import MlflowException

        from raypipe.tracking.runs import global_tracking_uri

        try:
            retrying(lambda: self.client.get_registered_model(name))
        except MlflowException:
            retrying(lambda: self.client.create_registered_model(name))
        with global_tracking_uri(self.tracking_uri):  # the registry resolves the logged model
            version = retrying(
                lambda: self.client.create_model_version(
                    name,
                    source=model_uri,
                    run_id=run_id,
                    tags={k: str(v) for k, v in tags.items()},
                    model_id=model_uri.rsplit("/", 1)[-1]
                    if model_uri.startswith("models:/m-")
                    else None,
                )
            )
        return str(version.version)

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points to, or ``None``."""
        try:
            model = retrying(lambda: self.client.get_registered_model(name))
        except Exception:
            return None
        version = (model.aliases or {}).get(alias)
        return str(version) if version is not None else None

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(retrying(lambda: self.client.get_model_version(name, version)).tags)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        action: str,
        reason: str,
        who: str | None = None,
        expected_previous: str | None = ANY_PREVIOUS,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Point ``alias`` at ``version`` if nobody moved it meanwhile (see the module docstring).

        Parameters
        ----------
        expected_previous
            The version the caller believes ``alias`` holds (``None``: unset). Default: whatever
            the head of the audit stream says when this call reads it.
        details
            Evidence kept in the audit entry (the lifecycle's checked conditions).

        Raises
        ------
        ConcurrentChangeError
            ``alias`` is not at ``expected_previous``, or another change won the race; nothing
            was changed.
        ModelError
            ``version`` does not exist.
        """
        self._require_version(name, version)
        self.sync_alias(name, alias)
        sequence, head = self.audit.head(name, alias)
        # Before raypipe logged anything the alias may have been set by hand: MLflow knows it.
        previous = head.to_version if head is not None else self.alias_version(name, alias)
        if expected_previous is not ANY_PREVIOUS and previous != expected_previous:
            raise ConcurrentChangeError(
                f"`{name}@{alias}` is at version `{previous or '-'}`, not the expected "
                f"`{expected_previous or '-'}`; nothing was changed",
                hint=f"check the current state with `raypipe models show {name}`",
            )
        entry = self.audit.append(
            model=name,
            alias=alias,
            action=action,
            from_version=previous,
            to_version=version,
            reason=reason,
            who=who,
            sequence=sequence + 1,
            details=details,
        )
        self.sync_alias(name, alias)
        self._tag(name, version, alias, entry)
        logger.info("%s@%s: %s -> %s (%s: %s)", name, alias, previous, version, action, reason)
        return entry

    def sync_alias(self, name: str, alias: str) -> str | None:
        """Point the MLflow alias at the head of its audit stream; returns that version.

        Repeats until the head did not move while the alias was written, so the last MLflow write
        of concurrent writers is always the newest head's version.
        """
        seen = -1
        for _ in range(SYNC_ROUNDS):
            sequence, head = self.audit.head(name, alias)
            if head is None or head.to_version is None:
                return None
            if sequence == seen:
                return head.to_version
            if self.alias_version(name, alias) != head.to_version:
                self._set_mlflow_alias(name, alias, head.to_version)
            seen = sequence
        raise ConcurrentChangeError(
            f"`{name}@{alias}` kept changing while its MLflow alias was updated",
            hint=f"retry; check `raypipe models show {name}`",
        )

    def _set_mlflow_alias(self, name: str, alias: str, version: str) -> None:
        retrying(lambda: self.client.set_registered_model_alias(name, alias, version))

    def record_refusal(self, name: str, version: str, reason: str) -> AuditEntry:
        """Audit a gate refusal (no alias moves; its own stream, so it never races a promote)."""
        for _ in range(SYNC_ROUNDS):
            sequence, _ = self.audit.head(name, GATE_STREAM)
            try:
                entry = self.audit.append(
                    model=name,
                    alias=CHAMPION,
                    action="gate-refused",
                    from_version=self.alias_version(name, CHAMPION),
                    to_version=version,
                    reason=reason,
                    sequence=sequence + 1,
                    stream=GATE_STREAM,
                )
            except ConcurrentChangeError:
                continue  # another refusal took the number: a refusal needs no compare-and-set
            self._tag(name, version, "gate", entry)
            return entry
        raise ConcurrentChangeError(f"gate refusal of `{name}` could not be recorded")

    def promote(
        self,
        name: str,
        version: str | None,
        *,
        reason: str,
        alias: str = CHAMPION,
        who: str | None = None,
        expected_previous: str | None = ANY_PREVIOUS,
    ) -> AuditEntry:
        """Point ``alias`` (``champion``) at ``version`` (default: the current challenger).

        Compare-and-set: see :meth:`set_alias` and ``expected_previous``.
        """
        version = version or self.alias_version(name, CHALLENGER)
        if version is None:
            raise ModelError(
                f"model `{name}` has no `{CHALLENGER}` to promote",
                hint=f"pass a version: `raypipe models promote {name} VERSION --reason ...`",
            )
        return self.set_alias(
            name,
            alias,
            version,
            action="promote",
            reason=reason,
            who=who,
            expected_previous=expected_previous,
        )

    def rollback(
        self,
        name: str,
        *,
        reason: str,
        to_version: str | None = None,
        alias: str = CHAMPION,
        who: str | None = None,
    ) -> AuditEntry:
        """Point ``alias`` back at the version it held before (or at ``to_version``).

        The alias must still be where the audit log said when the target was chosen; a promote
        that lands in between makes this raise :class:`ConcurrentChangeError`.
        """
        self.sync_alias(name, alias)
        _, head = self.audit.head(name, alias)
        current = head.to_version if head is not None else self.alias_version(name, alias)
        if to_version is None:
            # The version the alias held before the current one was promoted to it.
            for entry in reversed(self.audit.read(name)):
                if (
                    entry.alias == alias
                    and entry.action == "promote"
                    and entry.to_version == current
                    and entry.from_version
                ):
                    to_version = entry.from_version
                    break
        if to_version is None:
            raise ModelError(
                f"`{name}@{alias}` has no earlier version to roll back to",
                hint=f"pass one: `raypipe models rollback {name} --to VERSION --reason ...`",
            )
        return self.set_alias(
            name,
            alias,
            to_version,
            action="rollback",
            reason=reason,
            who=who,
            expected_previous=current,
        )

    def list_models(self) -> list[dict[str, Any]]:
        """Name, latest version and aliases of every registered model."""
        models = retrying(lambda: self.client.search_registered_models())
        return [
            {
                "name": m.name,
                "latest": max((int(v.version) for v in m.latest_versions or []), default=None),
                "aliases": dict(m.aliases or {}),
            }
            for m in models
        ]

    def show_model(self, name: str) -> dict[str, Any]:
        """Versions (with their raypipe tags), aliases and audit history of ``name``."""
        from mlflow.exceptions import MlflowException

        try:
            model = retrying(lambda: self.client.get_registered_model(name))
        except MlflowException as exc:
            raise ModelError(
                f"no registered model `{name}` in `{redact_url(self.tracking_uri)}`",
                hint="list them with `raypipe models list`",
            ) from exc
        versions = retrying(lambda: self.client.search_model_versions(f"name='{name}'"))
        return {
            "name": name,
            "aliases": dict(model.aliases or {}),
            "versions": sorted(
                (
                    {
                        "version": str(v.version),
                        "run_id": v.run_id,
                        "source": v.source,
                        "tags": {k: val for k, val in v.tags.items() if k.startswith("raypipe.")},
                    }
                    for v in versions
                ),
                key=lambda d: int(d["version"]),
            ),
            "history": [e.__dict__ for e in self.audit.read(name)],
        }

    def _require_version(self, name: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            retrying(lambda: self.client.get_model_version(name, version))
        except MlflowException as exc:
            raise ModelError(
                f"model `{name}` has no version `{version}`",
                hint=f"see its versions with `raypipe models show {name}`",
            ) from exc

    def audit_witnesses(self, name: str) -> dict[str, str]:
        """The copies of audit entries kept as registry tags (``raypipe.audit.<stream>.NNNNNN``),
        an outside witness for :func:`raypipe.tracking.verify.verify_audit`."""
        try:
            model = retrying(lambda: self.client.get_registered_model(name))
        except Exception:
            return {}
        return {k: v for k, v in (model.tags or {}).items() if k.startswith("raypipe.audit.")}

    def _tag(self, name: str, version: str, alias: str, entry: AuditEntry) -> None:
        key = f"raypipe.audit.{alias}.{entry.sequence:06d}"
        text = entry.to_json()
        if len(text) > TAG_VALUE_LIMIT:  # evidence can be long: keep what identifies the entry
            text = json.dumps({k: getattr(entry, k) for k in WITNESS_FIELDS}, sort_keys=True)
        retrying(lambda: self.client.set_registered_model_tag(name, key, text))
        retrying(
            lambda: self.client.set_model_version_tag(
                name, version, f"raypipe.{alias}.reason", f"{entry.at} {entry.who}: {entry.reason}"
            )
        )
