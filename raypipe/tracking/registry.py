"""The governed registry: versions, aliases, a blessing gate, promotion and rollback with audit.

MLflow keeps which version an alias points to now; raypipe adds the rules and the history.
Every alias change goes through :meth:`Registry.set_alias`, which writes an audit entry (who,
when, from, to, why) to the append-only JSONL log and as MLflow tags (``raypipe.audit.NNNN`` on
the registered model, ``raypipe.<alias>.reason`` on the version).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from raypipe.errors import ModelError
from raypipe.tracking.audit import AuditEntry, AuditLog
from raypipe.tracking.store import get_client, retrying

__all__ = ["CHALLENGER", "CHAMPION", "GateDecision", "Registry", "bless"]

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"


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

    def register(self, name: str, model_uri: str, *, run_id: str, tags: dict[str, Any]) -> str:
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
    ) -> AuditEntry:
        """Point ``alias`` at ``version``, recording the change in the audit log and as tags."""
        self._require_version(name, version)
        previous = self.alias_version(name, alias)
        retrying(lambda: self.client.set_registered_model_alias(name, alias, version))
        entry = self.audit.append(
            model=name,
            alias=alias,
            action=action,
            from_version=previous,
            to_version=version,
            reason=reason,
            who=who,
        )
        self._tag(name, version, alias, entry)
        logger.info("%s@%s: %s -> %s (%s: %s)", name, alias, previous, version, action, reason)
        return entry

    def record_refusal(self, name: str, version: str, reason: str) -> AuditEntry:
        """Audit a gate refusal (no alias moves)."""
        entry = self.audit.append(
            model=name,
            alias=CHAMPION,
            action="gate-refused",
            from_version=self.alias_version(name, CHAMPION),
            to_version=version,
            reason=reason,
        )
        self._tag(name, version, "gate", entry)
        return entry

    def promote(
        self,
        name: str,
        version: str | None,
        *,
        reason: str,
        alias: str = CHAMPION,
        who: str | None = None,
    ) -> AuditEntry:
        """Point ``alias`` (``champion``) at ``version`` (default: the current challenger)."""
        version = version or self.alias_version(name, CHALLENGER)
        if version is None:
            raise ModelError(
                f"model `{name}` has no `{CHALLENGER}` to promote",
                hint=f"pass a version: `raypipe models promote {name} VERSION --reason ...`",
            )
        return self.set_alias(name, alias, version, action="promote", reason=reason, who=who)

    def rollback(
        self,
        name: str,
        *,
        reason: str,
        to_version: str | None = None,
        alias: str = CHAMPION,
        who: str | None = None,
    ) -> AuditEntry:
        """Point ``alias`` back at the version it held before (or at ``to_version``)."""
        current = self.alias_version(name, alias)
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
        return self.set_alias(name, alias, to_version, action="rollback", reason=reason, who=who)

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
                f"no registered model `{name}` in `{self.tracking_uri}`",
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

    def _tag(self, name: str, version: str, alias: str, entry: AuditEntry) -> None:
        sequence = len(self.audit.read(name))
        retrying(
            lambda: self.client.set_registered_model_tag(
                name, f"raypipe.audit.{sequence:04d}", entry.to_json()
            )
        )
        retrying(
            lambda: self.client.set_model_version_tag(
                name, version, f"raypipe.{alias}.reason", f"{entry.at} {entry.who}: {entry.reason}"
            )
        )
