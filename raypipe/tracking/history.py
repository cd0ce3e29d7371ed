"""Which version served which traffic, when, and why it changed.

:func:`model_history` joins three sources:

- the audit trail: every move of the production alias (who, when, why, with the checked
  conditions), the watch loop's decisions (triggers that fired, challenges), registrations,
  approvals, requests and retirements;
- the registry (optional): each version's tags (what it was trained on, its variant);
- the serving logs (optional), read through the small :class:`ServingLogs` interface, which
  gives the requests each version answered. :class:`ParquetServingLogs` reads partitioned
  Parquet request logs (``raypipe serve``'s: ``model_version`` or ``version``, a timestamp ``ts``,
  and ``model`` when one log holds several models); another layout supplies its own reader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from raypipe.tracking.audit import AuditEntry, AuditLog

__all__ = [
    "ModelHistory",
    "ParquetServingLogs",
    "ServedInterval",
    "ServingLogs",
    "Traffic",
    "model_history",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Traffic:
    """Requests one version answered, and the first and last of them."""

    version: str
    requests: int
    first: str | None
    last: str | None


class ServingLogs(Protocol):
    """What :func:`model_history` needs from the serving layer's request logs."""

    def traffic(self, model: str) -> dict[str, Traffic]:
        """Requests answered per version of ``model`` (empty when there are no logs)."""
        ...


class ParquetServingLogs:
    """Request logs as (hive-partitioned) Parquet under ``root``, e.g.
    ``<data_dir>/serving/<service>/requests``; a missing folder means no traffic was logged.

    Expected columns: ``model_version`` (or ``version``), ``ts`` (a timestamp), and ``model``
    (optional: rows of other models are skipped when the log names them).
    """

    def __init__(self, root: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self.storage_options = dict(storage_options or {})

    def traffic(self, model: str) -> dict[str, Traffic]:
        import polars as pl

        from raypipe.io.fs import resolve_fs

        fs, path = resolve_fs(self.root, self.storage_options)
        if not fs.exists(path):
            return {}
        frame = pl.scan_parquet(
            f"{self.root.rstrip('/')}/**/*.parquet",
            hive_partitioning=True,
            storage_options=self.storage_options or None,
        )
        names = frame.collect_schema().names()
        version = "model_version" if "model_version" in names else "version"
        if version not in names or "ts" not in names:
            logger.warning(
                "serving logs under %s lack `model_version`/`version` or `ts`; no traffic shown",
                self.root,
            )
            return {}
        if "model" in names:
            frame = frame.filter(pl.col("model") == model)
        rows = (
            frame.group_by(pl.col(version).cast(pl.String).alias("version"))
            .agg(
                pl.len().alias("requests"),
                pl.col("ts").min().alias("first"),
                pl.col("ts").max().alias("last"),
            )
            .collect()
        )
        return {
            r["version"]: Traffic(r["version"], int(r["requests"]), str(r["first"]), str(r["last"]))
            for r in rows.iter_rows(named=True)
        }


@dataclass(frozen=True)
class ServedInterval:
    """One stretch of time a version held the production alias."""

    version: str
    since: str
    until: str | None
    promoted_by: str
    why_promoted: str
    why_replaced: str | None = None
    traffic: Traffic | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelHistory:
    """Served intervals (oldest first) and every audit event of the model, in time order."""

    model: str
    intervals: tuple[ServedInterval, ...]
    events: tuple[AuditEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "served": [
                {**i.__dict__, "traffic": i.traffic.__dict__ if i.traffic else None}
                for i in self.intervals
            ],
            "events": [e.__dict__ for e in self.events],
        }


def model_history(
    audit: AuditLog,
    model: str,
    *,
    production_alias: str = "champion",
    serving: ServingLogs | None = None,
    version_tags: Any = None,
) -> ModelHistory:
    """The history of ``model``.

    Parameters
    ----------
    production_alias
        The alias of the production stage.
    serving
        Request logs, if any (see :class:`ServingLogs`).
    version_tags
        ``callable(version) -> dict`` of registry tags, if a registry is at hand.
    """
    events = tuple(audit.read(model))
    traffic = serving.traffic(model) if serving is not None else {}
    moves = [e for e in audit.read_stream(model, production_alias) if e.to_version is not None]
    intervals = []
    for index, entry in enumerate(moves):
        following = moves[index + 1] if index + 1 < len(moves) else None
        version = str(entry.to_version)
        intervals.append(
            ServedInterval(
                version=version,
                since=entry.at,
                until=following.at if following else None,
                promoted_by=entry.who,
                why_promoted=f"{entry.action}: {entry.reason}",
                why_replaced=f"{following.action}: {following.reason}" if following else None,
                traffic=traffic.get(version),
                tags=_tags(version_tags, version),
            )
        )
    return ModelHistory(model, tuple(intervals), events)


def _tags(version_tags: Any, version: str) -> dict[str, str]:
    if version_tags is None:
        return {}
    try:
        tags = version_tags(version)
    except Exception:  # a version deleted from the registry still has its history
        return {}
    return {k: v for k, v in tags.items() if k in ("raypipe.trained_on", "raypipe.variant")}
