"""``raypipe serve`` on the session's Ray: one deployment shared by the module's tests.

The service looks features up in a SQLite online store, requires a bearer token, and follows
``models:/fraud@champion``; a promotion during a load loop must fail no request.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raypipe.inference.predictor import Predictor
from raypipe.serving.loadgen import LoadResult, run_load
from raypipe.serving.spec import ServiceSpec
from tests.support.serving import purchase_table, register_blob, train_blob
from tests.unit.serving.conftest import STORED, materialize

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def service(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from raypipe.engine import serving

    data_dir = tmp_path_factory.mktemp("serving")
    table = purchase_table(200, seed=3)
    blob = train_blob(table, seed=0, uri="models:/fraud@champion")
    register_blob(str(data_dir), "fraud", blob, "champion", "first")
    spec = ServiceSpec(
        name="fraud",
        variants={"champion": "models:/fraud@champion"},
        views=("purchase_stats",),
        store=materialize(Path(data_dir), table),
        data_dir=str(data_dir),
        port=8179,
        token=TOKEN,
        reload_interval_s=0.5,
        replica_cpus=0.5,
        log_flush_s=0.5,
    )
    serving.deploy(spec)
    try:
        yield {"spec": spec, "table": table, "blob": blob, "data_dir": str(data_dir)}
    finally:
        serving.delete(spec.name)


def _post(url: str, body: dict, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_scores_like_batch_with_online_features_and_token(service: dict) -> None:
    spec, table = service["spec"], service["table"]
    sent = table.select(["player_id", "country"]).slice(0, 20).to_pylist()
    for row in sent:
        row["amount"] = 7.5
    code, answer = _post(f"{spec.url}/predict", {"instances": sent})
    assert code == 200
    batch_table = table.slice(0, 20).set_column(1, "amount", pa.array([7.5] * 20, pa.float32()))
    expected = Predictor(service["blob"])(batch_table)["score"].to_numpy()
    online = np.array([p["score"] for p in answer["predictions"]], np.float32)
    np.testing.assert_array_equal(online, expected)
    assert {p["features"]["purchase_stats"] for p in answer["predictions"]} == {"PRESENT"}
    assert _post(f"{spec.url}/predict", sent[0], token=None)[0] == 401
    assert _post(f"{spec.url}/predict", {"amount": 1}) == (
        400,
        {
            "error": "instance 0 has no `player_id` (the service's entity key)",
            "hint": "add `player_id` to every row; fields: amount",
        },
    )
    with urllib.request.urlopen(f"{spec.url}/healthz", timeout=10) as response:
        assert json.loads(response.read())["variants"]["champion"]["version"] == "1"
    request = urllib.request.Request(
        f"{spec.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert 'code="200"} ' in text and 'status="PRESENT"} ' in text
    assert STORED  # the features sent were only amount and country: the rest came online


def test_promotion_under_load_fails_no_request(service: dict) -> None:
    spec, table = service["spec"], service["table"]
    bodies = [
        json.dumps({"player_id": int(p), "amount": 3.0, "country": "DE"}).encode()
        for p in table["player_id"].to_pylist()[:50]
    ]
    results: list[LoadResult] = []
    stop = threading.Event()
    loader = threading.Thread(
        target=lambda: results.append(
            run_load(
                f"{spec.url}/predict", bodies, concurrency=4, duration_s=90, token=TOKEN, stop=stop
            )
        )
    )
    loader.start()
    time.sleep(2)
    new = train_blob(table, rounds=4, seed=7, uri="models:/fraud@champion")
    version = register_blob(service["data_dir"], "fraud", new, "champion", "better")
    deadline = time.monotonic() + 30
    seen = None
    while time.monotonic() < deadline and loader.is_alive():
        seen = _post(f"{spec.url}/predict", json.loads(bodies[0]))[1].get("version")
        if seen == version:
            break
        time.sleep(0.2)
    time.sleep(2)  # keep the load on the new model for a moment
    stop.set()
    loader.join()
    (result,) = results
    assert seen == version, "the promoted version never answered while the load ran"
    assert result.failed == 0 and result.codes == {"200": result.ok}
    assert result.ok > 100
