"""``recommend.als`` with ``online:``: every player's list in the online store.

Needs the feature store's online stores (``raypipe.features.store.online``); skipped where this
raypipe has none.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.recommend.online import OnlineTarget, store_config
from raypipe.recommend.stage import AlsOptions, AlsStage
from raypipe.stages.base import DatasetInput, StageContext

online = pytest.importorskip("raypipe.features.store.online")


def test_lists_reach_the_online_store(tmp_path: Path) -> None:
    rows = [(user, item) for user in range(40) for item in range(user % 5, user % 5 + 4)]
    url = str(tmp_path / "interactions")
    table = pa.table(
        {
            "player_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "event_type": ["play"] * len(rows),
        }
    )
    interactions = DatasetInput(url, write_dataset(url, table))
    players_url = str(tmp_path / "players")
    players = DatasetInput(
        players_url, write_dataset(players_url, pa.table({"player_id": list(range(45))}))
    )
    context = StageContext("recommend", str(tmp_path / "data"), "r", InlineBackend())
    options = AlsOptions(factors=4, iterations=5, top_k=3, block_players=16, online=OnlineTarget())
    result = AlsStage().run(context, {"interactions": interactions, "players": players}, options)
    assert result.metrics["online_store"]["written"] == 45  # 40 from ALS, 5 cold from popularity
    store = online.open_store(store_config(OnlineTarget(), str(tmp_path / "data")))
    try:
        values = store.read("recommendations", ["7", "42", "999"])
    finally:
        store.close()
    assert [v.status for v in values] == [
        online.Status.PRESENT,
        online.Status.PRESENT,
        online.Status.NOT_FOUND,
    ]
    lists = read_dataset(context.output_url("recommendations")).to_pandas()
    for value, player in zip(values[:2], (7, 42), strict=False):
        expected = lists[lists.player_id == player].sort_values("rank").item_id.tolist()
        assert value.values["items"] == expected
    assert lists[lists.player_id == 42].source.unique().tolist() == ["popular"]
    # the same lists written again (a retried task: same as-of) change nothing
    from raypipe.recommend.online import write_lists

    config = store_config(OnlineTarget(), str(tmp_path / "data"))
    as_of = online.to_micros(values[0].event_ts)
    columns = {"user": "player_id", "item": "item_id"}
    again = pa.Table.from_pandas(lists, preserve_index=False)
    assert write_lists(config, "recommendations", again, columns, as_of) == 0
    assert write_lists(config, "recommendations", again, columns, as_of + 1) == 45
