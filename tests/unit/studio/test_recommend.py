"""Recommendation data, implicit ALS top-k and the ranking evaluation, without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError
from raypipe.evaluation.ranking_stage import RankingEvalOptions, RankingEvalStage
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.recommend import interaction_matrix, popular_items, top_k
from raypipe.recommend.stage import AlsOptions, AlsStage
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.stages.registry import load_stage
from raypipe.synth.catalog import (
    CatalogConfig,
    RecommendationDataOptions,
    RecommendationDataStage,
    generate_catalog_shard,
)


def _context(tmp_path: Path, name: str) -> StageContext:
    return StageContext(
        stage_name=name, data_dir=str(tmp_path), run_id="r", backend=InlineBackend()
    )


def test_shards_are_deterministic_and_truth_is_sorted() -> None:
    config = CatalogConfig(players=600, items=50, seed=3, shard_players=300)
    first = generate_catalog_shard(config, 1)
    again = generate_catalog_shard(config, 1)
    for name in first:
        assert first[name].equals(again[name])
    topk = first["affinity_topk"].to_pandas()
    assert topk["player_id"].min() == 300
    assert (topk.groupby("player_id")["affinity"].apply(lambda a: a.is_monotonic_decreasing)).all()
    events = set(first["interactions"].column("event_type").to_pylist())
    assert events == {"view", "play", "purchase"}
    assert first["future"].column("day").to_numpy().min() >= config.history_days


def test_interaction_matrix_weighs_events_and_logs() -> None:
    table = pa.table(
        {
            "u": [7, 7, 7, 9, 8],
            "i": [1, 1, 2, 2, 2],
            "e": ["view", "purchase", "unknown", "play", "view"],
        }
    )
    m = interaction_matrix(
        table,
        user_column="u",
        item_column="i",
        event_column="e",
        event_weights={"view": 1, "play": 3, "purchase": 10},
    )
    assert m.user_ids.tolist() == [7, 8, 9] and m.item_ids.tolist() == [1, 2]
    dense = m.matrix.toarray()
    assert dense[0, 0] == pytest.approx(np.log1p(11))
    assert dense[0, 1] == 0  # an unlisted event weighs nothing
    assert dense[2, 1] == pytest.approx(np.log1p(3))
    assert popular_items(m, 2).tolist() == [2, 1]  # two players vs one
    with pytest.raises(DataError, match="lack column"):
        interaction_matrix(table, user_column="user", item_column="i")


def test_top_k_orders_by_dot_product() -> None:
    users = np.array([[1.0, 0.0], [0.0, 1.0]])
    items = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    indices, scores = top_k(users, items, 2, chunk=1)
    assert indices.tolist() == [[0, 1], [2, 1]]
    assert scores.tolist() == [[3.0, 1.0], [2.0, 1.0]]


def test_als_beats_popularity_and_truth_beats_als(tmp_path: Path) -> None:
    data = _context(tmp_path, "catalog")
    generated = RecommendationDataStage().run(
        data, {}, RecommendationDataOptions(players=3_000, items=80, seed=2, shard_players=1_000)
    )
    inputs = {k: DatasetInput(data.output_url(k), m) for k, m in generated.outputs.items()}
    assert data.executor.calls == ["synth.catalog_shard"]
    assert inputs["items"].rows == 80
    context = _context(tmp_path, "recommend")
    result = AlsStage().run(
        context,
        {"interactions": inputs["interactions"], "players": inputs["affinity_topk"]},
        AlsOptions(factors=8, regularization=0.1, alpha=2.0, iterations=10, block_players=1_000),
    )
    assert context.executor.calls == ["recommend.als_fit", "recommend.top_k"]
    lists = read_dataset(context.output_url("recommendations")).to_pandas()
    assert lists["player_id"].nunique() == 3_000  # every player, cold ones from popularity
    assert (lists.groupby("player_id").size() == 10).all()
    assert result.metrics["cold_start_players"] == (lists["source"] == "popular").sum() / 10
    evaluated = RankingEvalStage().run(
        _context(tmp_path, "evaluate"),
        {
            "recommendations": DatasetInput(
                context.output_url("recommendations"), result.outputs["recommendations"]
            ),
            "relevant": inputs["future"],
            "truth": inputs["affinity_topk"],
            "history": inputs["interactions"],
        },
        RankingEvalOptions(k=10),
    )
    quality = evaluated.metrics["quality"]
    assert quality["metric"] == "ndcg@10"
    assert quality["baseline"] < quality["value"] < quality["truth"]
    recall = evaluated.metrics["recall@10"]
    assert recall["popularity"] < recall["model"] < recall["truth"]


def test_ranking_evaluation_hand_case(tmp_path: Path) -> None:
    def dataset(name: str, table: pa.Table) -> DatasetInput:
        url = str(tmp_path / name)
        return DatasetInput(url, write_dataset(url, table))

    recommendations = dataset(
        "recs", pa.table({"player_id": [1, 1, 2, 2], "rank": [1, 2, 1, 2], "item_id": [5, 6, 6, 5]})
    )
    relevant = dataset(
        "rel", pa.table({"player_id": [1, 2, 3], "item_id": [6, 6, 5], "event_type": ["view"] * 3})
    )
    result = RankingEvalStage().run(
        _context(tmp_path, "evaluate"),
        {"recommendations": recommendations, "relevant": relevant},
        RankingEvalOptions(k=2),
    )
    # player 3 has no list: skipped; player 1 hits at rank 2, player 2 at rank 1
    assert result.metrics["players_evaluated"] == 2
    assert result.metrics["recall@2"]["model"] == 1.0
    assert result.metrics["ndcg@2"]["model"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert "quality" not in result.metrics  # no truth, no baseline


def test_kinds_are_registered() -> None:
    assert load_stage("synth.recommendations") is RecommendationDataStage
    assert load_stage("recommend.als") is AlsStage
    assert load_stage("evaluate.ranking") is RankingEvalStage
