from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from raypipe.features.store.online import (
    OnlineRow,
    StoreConfig,
    encode_values,
    open_store,
    to_micros,
)
from raypipe.features.store.registry import ServedView, register_view
from raypipe.inference.model import ModelBlob
from raypipe.serving.spec import ServiceSpec
from tests.support.serving import purchase_table, train_blob

#: Features the online store serves; the request carries the others.
STORED = ("purchases_1h", "account_age_days")
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return purchase_table(300, seed=1)


@pytest.fixture(scope="module")
def blobs(table: pa.Table) -> dict[str, ModelBlob]:
    return {
        "m@champion": train_blob(table, seed=0, uri="m@champion"),
        "m@challenger": train_blob(table, rounds=3, seed=1, uri="m@challenger"),
    }


def static_loader(blobs: dict[str, ModelBlob], versions: dict[str, str]):  # type: ignore[no-untyped-def]
    """A loader that serves ``blobs[versions[uri]]``; tests move ``versions`` to promote."""

    def load(uri: str) -> tuple[ModelBlob, str]:
        return blobs[versions[uri]], versions[uri]

    return load


def materialize(data_dir: Path, table: pa.Table) -> StoreConfig:
    """Write ``STORED`` columns of every row to a SQLite store under view ``purchase_stats``."""
    view = ServedView(
        name="purchase_stats",
        entities=("player_id",),
        timestamp="ts",
        source="test",
        columns=STORED,
    )
    register_view(str(data_dir), view)
    config = StoreConfig("sqlite", path=str(data_dir / "online.sqlite"))
    store = open_store(config)
    stamp = to_micros(NOW)
    rows = [
        OnlineRow(str(r["player_id"]), stamp, stamp, encode_values({c: r[c] for c in STORED}))
        for r in table.select(["player_id", *STORED]).to_pylist()
    ]
    store.write(view.namespace, rows)
    store.close()
    return config


def spec(data_dir: Path, **kwargs) -> ServiceSpec:  # type: ignore[no-untyped-def]
    defaults = {"name": "fraud", "variants": {"champion": "m@champion"}, "data_dir": str(data_dir)}
    return ServiceSpec(**{**defaults, **kwargs})
