"""The online/offline consistency check finds agreement, and finds a corrupted value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from raypipe.engine.inline import InlineBackend
from raypipe.features.store.consistency import check_consistency
from raypipe.features.store.materialize import materialize
from raypipe.features.store.online import (
    OnlineRow,
    StoreConfig,
    encode_values,
    open_store,
    to_micros,
)
from raypipe.features.store.registry import ServedView
from raypipe.io.dataset import write_dataset

T0 = dt.datetime(2026, 1, 1)


def test_materialized_values_equal_the_point_in_time_values(tmp_path: Path) -> None:
    rows = [
        (p, T0 + dt.timedelta(hours=h), float(p + h) if h % 4 else None)
        for p in range(30)
        for h in range(0, 50, 3)
    ]
    source = str(tmp_path / "source")
    write_dataset(
        source,
        pa.table(
            {
                "player_id": pa.array([r[0] for r in rows], pa.int64()),
                "ts": pa.array([r[1] for r in rows], pa.timestamp("us")),
                "x": pa.array([r[2] for r in rows], pa.float64()),
                "tag": [f"t{r[0] % 3}" for r in rows],
            }
        ),
    )
    view = ServedView("v", ("player_id",), "ts", source, ("x", "tag"))
    config = StoreConfig("sqlite", path=str(tmp_path / "online.sqlite"))
    result = materialize(str(tmp_path / "d"), view, source, config, InlineBackend(), partitions=2)
    store = open_store(config)
    assert result.newest_event is not None
    report = check_consistency(view, source, store, result.newest_event, sample=10)
    assert report.checked == 10 and report.consistent, report.mismatches
    # A value written out of band (newer, wrong) is found.
    store.write(
        view.namespace,
        [
            OnlineRow(
                "3",
                to_micros(T0 + dt.timedelta(days=9)),
                0,
                encode_values({"x": -1.0, "tag": "t0"}),
            )
        ],
    )
    report = check_consistency(view, source, store, result.newest_event, sample=30)
    assert report.matching == 29 and report.mismatches[0][:2] == ("3", "x")
