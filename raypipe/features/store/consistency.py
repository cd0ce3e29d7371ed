"""Online/offline consistency: sampled entities, offline point-in-time value vs online value.

For a sample of entities of a served view, the offline value is the point-in-time join of the
source (:func:`raypipe.features.pit.pit_join`: the latest row with ``event_ts <= at``, ties by
creation time) at the time the online store was materialized up to; the online value is what
the store returns. They must be equal column by column (nulls and NaN equal each other). A
mismatch means a bug in materialization or a write that broke the conflict rule.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from raypipe.features.pit import FeatureTable, pit_join
from raypipe.features.store.online import OnlineStore, entity_key
from raypipe.features.store.registry import ServedView
from raypipe.io.dataset import scan_dataset

__all__ = ["ConsistencyReport", "check_consistency"]


@dataclass(frozen=True)
class ConsistencyReport:
    """Entities checked, how many matched, and the first mismatches (entity, column, both)."""

    checked: int
    matching: int
    mismatches: list[tuple[str, str, Any, Any]] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.checked == self.matching


def _same(offline: Any, online: Any) -> bool:
    def missing(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    if missing(offline) or missing(online):
        return missing(offline) and missing(online)
    if isinstance(offline, dt.datetime | dt.date):
        return str(offline) == str(online)
    return bool(offline == online)


def check_consistency(
    view: ServedView,
    source_url: str,
    store: OnlineStore,
    at: dt.datetime,
    *,
    sample: int = 100,
    seed: int = 0,
    storage_options: Mapping[str, Any] | None = None,
) -> ConsistencyReport:
    """Compare offline point-in-time and online values of ``sample`` entities at ``at``."""
    keys = list(view.entities)
    frame = scan_dataset(
        source_url, columns=[*keys, view.timestamp, *view.columns], storage_options=storage_options
    )
    entities = frame.select(keys).unique().collect()
    if entities.height > sample:
        entities = entities.sample(sample, seed=seed)
    entities = entities.sort(keys)
    history = frame.join(entities.lazy(), on=keys, how="semi").collect()
    at_naive = at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo else at
    rows = entities.with_columns(pl.lit(at_naive).cast(pl.Datetime("us")).alias("_at"))
    table = FeatureTable(view.name, history, tuple(keys), view.timestamp, features=view.columns)
    offline = pit_join(rows, [table], entity_ts="_at")
    names = [entity_key(row) for row in offline.select(keys).rows()]
    online = store.read(view.namespace, names)
    matching = 0
    mismatches: list[tuple[str, str, Any, Any]] = []
    for name, want, got in zip(
        names, offline.select(view.columns).iter_rows(named=True), online, strict=True
    ):
        values = got.values or {}
        bad = [
            (name, c, want[c], values.get(c))
            for c in view.columns
            if not _same(want[c], values.get(c))
        ]
        matching += not bad
        mismatches.extend(bad[: max(0, 20 - len(mismatches))])
    return ConsistencyReport(len(names), matching, mismatches)
