"""Online features for request rows: one batched store read per served view, merged into rows.

Request fields win over stored values of the same name: what the caller knows at request time
(the purchase being scored) is newer than anything materialized. With ``full_feature_names``
a stored column ``c`` of view ``v`` is named ``v__c`` (Feast's convention), so views with the
same column names (every streaming window has ``count``, ``sum``, ...) do not collide.

A value whose status is not ``PRESENT`` (not found, or older than the view's ``max_age``) is
left out, so the model sees it as missing, exactly as a null in batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raypipe.features.store.online import OnlineStore, Status, entity_key
from raypipe.features.store.registry import ServedView

__all__ = ["FeatureLookup", "LookupResult"]


@dataclass(frozen=True)
class LookupResult:
    """Rows with features merged, and per row the status of each view (``PRESENT`` …)."""

    rows: list[dict[str, Any]]
    statuses: list[dict[str, str]]


class FeatureLookup:
    """Reads the current values of ``views`` from ``store`` for many rows at once.

    Parameters
    ----------
    store
        An open online store (one per replica; SQLite and Redis connections are not shared).
    views
        The served views whose columns the model may use, each with its entity key columns.
    """

    def __init__(
        self, store: OnlineStore, views: Sequence[ServedView], *, full_feature_names: bool = False
    ) -> None:
        self.store = store
        self.views = tuple(views)
        self.full_feature_names = full_feature_names

    @property
    def versions(self) -> dict[str, str]:
        """``view name -> version`` (first 12 hex digits), logged with every request."""
        return {view.name: view.version[:12] for view in self.views}

    def merge(
        self, rows: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
    ) -> LookupResult:
        """``rows`` with every view's present values added under the request's own fields."""
        merged: list[dict[str, Any]] = [{} for _ in rows]
        statuses: list[dict[str, str]] = [{} for _ in rows]
        for view in self.views:
            max_age = None if view.max_age_s is None else dt.timedelta(seconds=view.max_age_s)
            keys = [_key(row, view) for row in rows]
            wanted = sorted({k for k in keys if k is not None})
            found = {}
            if wanted:
                found = {
                    value.entity: value
                    for value in self.store.read(view.namespace, wanted, max_age=max_age, now=now)
                }
            for index, key in enumerate(keys):
                value = found.get(key) if key is not None else None
                if value is None:
                    statuses[index][view.name] = Status.NOT_FOUND.value
                    continue
                statuses[index][view.name] = value.status.value
                if value.status is Status.PRESENT and value.values:
                    if self.full_feature_names:
                        merged[index].update(
                            {f"{view.name}__{c}": value.values.get(c) for c in view.columns}
                        )
                    else:
                        merged[index].update(value.values)
        for index, row in enumerate(rows):
            merged[index].update(row)
        return LookupResult(merged, statuses)


def _key(row: Mapping[str, Any], view: ServedView) -> str | None:
    values = [row.get(column) for column in view.entities]
    if any(value is None for value in values):
        return None
    return entity_key(values)
