from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from raypipe.inference.model import ModelBlob
from raypipe.inference.predictor import Predictor
from raypipe.serving.requests import RequestError, parse_body
from raypipe.serving.service import OnlineService, request_log_root
from tests.unit.serving.conftest import STORED, materialize, spec, static_loader


def _request_rows(table: pa.Table) -> list[dict]:
    """What a caller sends: the entity and the fields it knows (the rest is in the store)."""
    sent = [c for c in table.column_names if c not in (*STORED, "label")]
    rows = table.select(sent).to_pylist()
    for row in rows:  # JSON has no NaN: a missing amount is sent as null
        if row["amount"] is not None and math.isnan(row["amount"]):
            row["amount"] = None
    return rows


def test_online_score_equals_batch_score(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob]
) -> None:
    store = materialize(tmp_path, table)
    versions = {"m@champion": "m@champion"}
    service = OnlineService(
        spec(tmp_path, views=("purchase_stats",), store=store),
        loader=static_loader(blobs, versions),
        resolver=lambda uri: None,
    )
    body = json.dumps({"instances": _request_rows(table)}).encode()
    answer = service.score([parse_body(body, "player_id")])[0]
    online = np.array([p["score"] for p in answer["predictions"]], dtype=np.float32)
    batch = Predictor(blobs["m@champion"])(table)["score"].to_numpy()
    np.testing.assert_array_equal(online, batch)
    assert {p["features"]["purchase_stats"] for p in answer["predictions"]} == {"PRESENT"}
    # The same entity alone, as one JSON row, scores the same as in the batch.
    single = service.score([parse_body(json.dumps(_request_rows(table)[7]).encode(), "player_id")])
    assert np.float32(single[0]["score"]) == batch[7]
    service.close()


def test_unknown_entity_scores_with_missing_features(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob]
) -> None:
    store = materialize(tmp_path, table)
    service = OnlineService(
        spec(tmp_path, views=("purchase_stats",), store=store, log_requests=False),
        loader=static_loader(blobs, {"m@champion": "m@champion"}),
        resolver=lambda uri: None,
    )
    row = {"player_id": 10_000_000, "amount": 3.0, "country": "DE"}
    answer = service.score([parse_body(json.dumps(row).encode(), "player_id")])[0]
    missing = table.slice(0, 1).select(["amount", "country"]).to_pylist()[0] | row
    expected = Predictor(blobs["m@champion"])(
        pa.table(
            {
                "amount": [3.0],
                "purchases_1h": pa.array([None], pa.float64()),
                "account_age_days": pa.array([None], pa.float64()),
                "country": [missing["country"]],
            }
        )
    )["score"][0].as_py()
    assert answer["features"] == {"purchase_stats": "NOT_FOUND"}
    assert answer["score"] == pytest.approx(expected, abs=0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "not JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"instances": []}', "list of 1 to"),
        (b'{"amount": 3}', "has no `player_id`"),
    ],
)
def test_bad_bodies_are_request_errors(body: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_body(body, "player_id")


def test_non_numeric_feature_is_a_request_error(
    tmp_path: Path, blobs: dict[str, ModelBlob]
) -> None:
    service = OnlineService(
        spec(tmp_path, log_requests=False),
        loader=static_loader(blobs, {"m@champion": "m@champion"}),
        resolver=lambda uri: None,
    )
    body = b'{"player_id": 1, "amount": "lots"}'
    with pytest.raises(RequestError, match="feature `amount` must be a number"):
        service.score([parse_body(body, "player_id")])


def test_promotion_swaps_model_in_place_and_is_logged(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob]
) -> None:
    versions = {"m@champion": "m@champion"}
    service = OnlineService(
        spec(tmp_path, log_flush_rows=1000, log_flush_s=60),
        loader=static_loader(blobs, versions),
        resolver=lambda uri: versions[uri],
    )
    rows = _request_rows(table.slice(0, 5))
    before = service.score([parse_body(json.dumps(rows[0]).encode(), "player_id")])[0]
    held = service.slots["champion"].current  # a batch in flight keeps this model
    versions["m@champion"] = "m@challenger"
    service.refresh_models()
    after = service.score([parse_body(json.dumps(rows[0]).encode(), "player_id")])[0]
    assert (before["version"], after["version"]) == ("m@champion", "m@challenger")
    assert before["score"] != after["score"]
    assert held.version == "m@champion" and service.slots["champion"].swaps == 1
    assert 'raypipe_serve_model_swaps_total{service="fraud",replica="local"} 1' in (
        service.metrics.render()
    )
    service.close()
    log = ds.dataset(request_log_root(service.spec), partitioning="hive").to_table()
    assert sorted(log["model_version"].to_pylist()) == ["m@challenger", "m@champion"]
    assert log.schema.names[:3] == ["ts", "entity", "variant"]
    assert set(log["date"].to_pylist()) and log["code"].to_pylist() == [200, 200]


def test_failing_variant_falls_back_then_is_rolled_back(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob]
) -> None:
    from raypipe.serving.spec import SloSpec, TrafficSpec

    service = OnlineService(
        spec(
            tmp_path,
            variants={"champion": "m@champion", "candidate": "m@challenger"},
            traffic=TrafficSpec(
                "ab",
                weights={"champion": 0.5, "candidate": 0.5},
                slo=SloSpec(max_error_rate=0.05, window=50, min_requests=20),
            ),
            log_requests=False,
        ),
        loader=static_loader(blobs, {"m@champion": "m@champion", "m@challenger": "m@challenger"}),
        resolver=lambda uri: None,
    )
    # The candidate's model breaks after it was loaded (e.g. a bad swap): its predict raises.
    service.slots["candidate"].current.predictor.predict = lambda matrix: 1 / 0  # type: ignore[method-assign]
    body = json.dumps({"instances": _request_rows(table.slice(0, 60))}).encode()
    answer = service.score([parse_body(body, "player_id")])[0]
    assert {p["variant"] for p in answer["predictions"]} == {"champion"}  # nobody saw an error
    assert service.router.assign([str(i) for i in range(60)]).count("candidate") > 10
    service.refresh_control()  # the watch tick: the candidate broke its error-rate SLO
    assert "error rate" in service.router.state.disabled["candidate"]
    assert set(service.router.assign([str(i) for i in range(60)])) == {"champion"}
    assert "raypipe_serve_rollbacks_total" in service.metrics.render()


def _ab_service(tmp_path: Path, blobs: dict[str, ModelBlob], candidate_uri: str) -> OnlineService:
    """``champion`` (the baseline) and ``candidate`` at 50/50, no request log."""
    from raypipe.serving.spec import TrafficSpec

    return OnlineService(
        spec(
            tmp_path,
            variants={"champion": "m@champion", "candidate": candidate_uri},
            traffic=TrafficSpec("ab", weights={"champion": 0.5, "candidate": 0.5}),
            log_requests=False,
        ),
        loader=static_loader(blobs, {"m@champion": "m@champion", "m@challenger": "m@challenger"}),
        resolver=lambda uri: None,
    )


@pytest.mark.parametrize("batch", ["mixed", "candidate_only"])
def test_a_failing_candidate_falls_back_to_the_batchs_baseline_model(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob], batch: str
) -> None:
    from raypipe.serving.scorer import LoadedModel, score_rows

    service = _ab_service(tmp_path, blobs, "m@challenger")
    rows = _request_rows(table.slice(0, 60))
    routed = service.router.assign([str(row["player_id"]) for row in rows])
    if batch == "candidate_only":  # the baseline has no rows, hence no model, in this batch
        rows = [row for row, variant in zip(rows, routed, strict=True) if variant == "candidate"]
    else:  # candidate rows first: its group scores (and fails) before the baseline's group
        pairs = sorted(zip(rows, routed, strict=True), key=lambda pair: pair[1] != "candidate")
        rows = [row for row, _ in pairs]
    assert "candidate" in routed and len(rows) >= 10
    promoted = LoadedModel(Predictor(blobs["m@challenger"]), "promoted", "m@champion")

    def broken(matrix: np.ndarray) -> np.ndarray:
        if batch == "mixed":  # a promotion lands mid-batch: the batch keeps its own model
            service.slots["champion"].current = promoted
        raise ZeroDivisionError

    service.slots["candidate"].current.predictor.predict = broken  # type: ignore[method-assign]
    champion = service.slots["champion"].current.predictor
    scored: list[int] = []  # rows the champion's model scores, call by call
    champion_predict = champion.predict

    def counted(matrix: np.ndarray) -> np.ndarray:
        scored.append(len(matrix))
        return champion_predict(matrix)

    champion.predict = counted  # type: ignore[method-assign]
    body = json.dumps({"instances": rows}).encode()
    predictions = service.score([parse_body(body, "player_id")])[0]["predictions"]
    assert {(p["variant"], p["version"]) for p in predictions} == {("champion", "m@champion")}
    expected = score_rows(Predictor(blobs["m@champion"]), rows)
    np.testing.assert_array_equal([p["score"] for p in predictions], expected)
    assert sum(scored) == len(rows)  # every row scored once: fallen-back rows not again
    service.close()


@pytest.mark.parametrize("candidate_uri", ["m@challenger", "m@champion"], ids=["ab", "aa"])
def test_a_failing_baseline_reports_the_error(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob], candidate_uri: str
) -> None:
    """The baseline's failure is the answer (the caller sends a 500), after one model call:
    there is nothing to fall back to. In an A/A test the candidate is the same model."""
    service = _ab_service(tmp_path, blobs, candidate_uri)
    broken_calls: list[int] = []

    def broken(matrix: np.ndarray) -> np.ndarray:
        broken_calls.append(len(matrix))
        raise ZeroDivisionError

    failing = ["champion", "candidate"] if candidate_uri == "m@champion" else ["champion"]
    for variant in failing:
        service.slots[variant].current.predictor.predict = broken  # type: ignore[method-assign]
    body = json.dumps({"instances": _request_rows(table.slice(0, 60))}).encode()
    with pytest.raises(ZeroDivisionError):
        service.score([parse_body(body, "player_id")])
    assert len(broken_calls) == 1
    service.close()


def test_shadow_is_scored_and_logged_but_never_answers(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob]
) -> None:
    from raypipe.serving.spec import TrafficSpec

    service = OnlineService(
        spec(
            tmp_path,
            variants={"champion": "m@champion", "candidate": "m@challenger"},
            traffic=TrafficSpec("shadow", baseline="champion", candidate="candidate"),
            log_flush_rows=10_000,
            log_flush_s=3600,
        ),
        loader=static_loader(blobs, {"m@champion": "m@champion", "m@challenger": "m@challenger"}),
        resolver=lambda uri: None,
    )
    rows = table.slice(0, 30).drop(["label"]).to_pylist()  # every feature in the request
    for row in rows:
        if math.isnan(row["amount"]):
            row["amount"] = None
    body = json.dumps({"instances": rows}).encode()
    answer = service.score([parse_body(body, "player_id")])[0]
    assert {p["variant"] for p in answer["predictions"]} == {"champion"}
    service.close()
    log = ds.dataset(request_log_root(service.spec), partitioning="hive").to_table()
    shadow = Predictor(blobs["m@challenger"])(table.slice(0, 30))["score"].to_numpy()
    assert set(log["shadow_variant"].to_pylist()) == {"candidate"}
    np.testing.assert_allclose(log["shadow_score"].to_numpy(), shadow, rtol=1e-6)
    assert not np.allclose(log["score"].to_numpy(), log["shadow_score"].to_numpy())


def test_a_numeric_model_scores_rows_as_the_batch_table_does() -> None:
    """Without a preprocessing state the matrix comes straight from the rows: same values."""
    import xgboost as xgb

    from raypipe.serving.requests import rows_to_matrix, rows_to_table
    from raypipe.serving.scorer import score_rows

    names = ["f0", "f1", "f2"]
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    booster = xgb.train(
        {"max_depth": 3, "nthread": 1},
        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(np.float32), feature_names=names),
        5,
    )
    predictor = Predictor(
        ModelBlob.from_bytes(bytes(booster.save_raw("ubj")), format="xgboost-ubj", uri="plain")
    )
    rows = [
        {"f0": 0.1 + 1e-9, "f1": None, "f2": 3},  # float64 rounding, null, an int
        {"f0": True, "f2": -2.5},  # a bool, an absent field
        {"f0": 1e30, "f1": float("nan"), "f2": 0.0, "other": "ignored"},
    ]
    via_table = predictor.feature_matrix(rows_to_table(rows, names))
    np.testing.assert_array_equal(rows_to_matrix(rows, names), via_table)
    np.testing.assert_array_equal(score_rows(predictor, rows), predictor.predict(via_table))
    with pytest.raises(RequestError, match="feature `f1` must be a number"):
        rows_to_matrix([{"f1": "7"}], names)


@pytest.mark.parametrize(
    ("challenger_uri", "calls"), [("m@champion", 1), ("m@challenger", 2)], ids=["aa", "ab"]
)
def test_variants_with_one_model_share_a_model_call(
    tmp_path: Path, table: pa.Table, blobs: dict[str, ModelBlob], challenger_uri: str, calls: int
) -> None:
    from raypipe.serving.scorer import score_rows
    from raypipe.serving.spec import TrafficSpec

    versions = {"m@champion": "m@champion", "m@challenger": "m@challenger"}
    service = OnlineService(
        spec(
            tmp_path,
            variants={"a": "m@champion", "b": challenger_uri},
            traffic=TrafficSpec("ab", weights={"a": 0.5, "b": 0.5}),
            log_requests=False,
        ),
        loader=static_loader(blobs, versions),
        resolver=lambda uri: None,
    )
    seen: list[int] = []
    for slot in service.slots.values():
        predictor = slot.current.predictor
        predict = predictor.predict
        predictor.predict = lambda m, predict=predict: seen.append(len(m)) or predict(m)  # type: ignore[method-assign]
    rows = _request_rows(table.slice(0, 40))
    answer = service.score([parse_body(json.dumps({"instances": rows}).encode(), "player_id")])
    predictions = answer[0]["predictions"]
    assert {p["variant"] for p in predictions} == {"a", "b"}  # both arms answered
    assert len(seen) == calls and sum(seen) == 40
    b_rows = [i for i, p in enumerate(predictions) if p["variant"] == "b"]
    alone = score_rows(Predictor(blobs[versions[challenger_uri]]), [rows[i] for i in b_rows])
    np.testing.assert_array_equal([predictions[i]["score"] for i in b_rows], alone)
    service.close()
