"""Serving the top-k lists: each player's list as one value in the online store.

Uses the feature store's online stores (:mod:`raypipe.features.store.online`: SQLite embedded,
Redis by URL) and their conflict rule: a player's list is replaced only by a newer one
(``event_ts`` = when the stage computed them), so a retried task's write changes nothing. Each
top-k task writes its own block of players through its own connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from raypipe.errors import SpecError

__all__ = ["OnlineTarget", "store_config", "write_lists"]


class OnlineTarget(BaseModel):
    """The ``online:`` block of ``recommend.als``: which store, and the namespace of the lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None
    url: str | None = None
    namespace: str = "recommendations"


def store_config(target: OnlineTarget, data_dir: str) -> Any:
    """The feature store's ``StoreConfig`` of ``target``; SQLite defaults to
    ``<data_dir>/online/online.sqlite`` (a local data_dir only)."""
    try:
        from raypipe.features.store.online import StoreConfig
    except ModuleNotFoundError as exc:
        raise SpecError(
            ["`online`: this raypipe has no online store (`raypipe.features.store`)"],
            hint="remove `online:` (the lists are in the `recommendations` dataset) or use a "
            "raypipe with the feature store",
        ) from exc
    from raypipe.io.fs import is_local, join_url, resolve_fs

    if target.kind == "redis":
        return StoreConfig("redis", url=target.url)
    path = target.path
    if path is None:
        fs, local = resolve_fs(data_dir)
        if not is_local(fs):
            raise SpecError(
                [f"`online.path` is needed: data_dir `{data_dir}` is not a local folder"],
                hint="set `online: {kind: sqlite, path: /local/online.sqlite}` or "
                "`online: {kind: redis, url: ...}`",
            )
        path = join_url(local, "online", "online.sqlite")
    return StoreConfig("sqlite", path=path)


def write_lists(
    config: Any, namespace: str, lists: pa.Table, columns: Mapping[str, str], as_of_us: int
) -> int:
    """Write one value per user: ``{"items": [...], "scores": [...]}`` best first.

    ``lists`` holds one block's rows (user, rank, item, score), ``columns`` names its user and
    item columns. Returns the rows the store accepted (0 when it already held these lists).
    """
    from raypipe.features.store.online import OnlineRow, encode_values, entity_key, open_store

    order = np.lexsort((lists.column("rank").to_numpy(), lists.column(columns["user"]).to_numpy()))
    table = lists.take(pa.array(order))
    users = table.column(columns["user"]).to_pylist()
    items = table.column(columns["item"]).to_pylist()
    scores = table.column("score").to_pylist()
    grouped: dict[Any, dict[str, list[Any]]] = {}
    for user, item, score in zip(users, items, scores, strict=True):
        value = grouped.setdefault(user, {"items": [], "scores": []})
        value["items"].append(item)
        value["scores"].append(round(float(score), 6))
    rows = [
        OnlineRow(entity_key([user]), as_of_us, as_of_us, encode_values(value))
        for user, value in grouped.items()
    ]
    store = open_store(config)
    try:
        return int(store.write(namespace, rows))
    finally:
        store.close()
