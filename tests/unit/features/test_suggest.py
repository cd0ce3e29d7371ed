"""Suggestions: offline rules produce checkable YAML; the LLM hook talks to a local fake server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import polars as pl
import pytest
import yaml

from raypipe.errors import RaypipeError, SpecError
from raypipe.features.asof import compile_view
from raypipe.features.spec import parse_views, views_to_yaml
from raypipe.features.suggest import suggest_views, suggest_views_llm
from raypipe.synth.events import EVENTS_SCHEMA

SCHEMA = pl.from_arrow(EVENTS_SCHEMA.empty_table()).schema


def test_rules_give_valid_pasteable_views() -> None:
    views = suggest_views(
        SCHEMA,
        "Predict churn of mobile game players",
        category_values={"event_type": ["purchase", "level_fail"]},
    )
    names = [v.name for v in views]
    assert names == [
        "suggested_activity",
        "suggested_by_type",
        "suggested_numeric",
        "suggested_categorical",
    ]
    assert "churn" in views[0].description
    reparsed = parse_views(yaml.safe_load(views_to_yaml(views)))
    assert [v.feature_names for v in reparsed] == [v.feature_names for v in views]
    for view in reparsed:
        compile_view(view, SCHEMA)
    by_type = set(views[1].feature_names)
    assert {"purchase_7d", "days_since_level_fail"} <= by_type


def test_fraud_context_uses_short_windows() -> None:
    views = suggest_views(SCHEMA, "in-app purchase fraud and chargebacks")
    assert "events_1h" in views[0].feature_names
    numeric = next(v for v in views if v.name == "suggested_numeric")
    assert any(name.startswith("amount_std") for name in numeric.feature_names)


def test_missing_key_is_reported() -> None:
    with pytest.raises(SpecError, match="entity key"):
        suggest_views({"ts": pl.Datetime("us"), "x": pl.Float64})


ANSWER = """Here you go:
```yaml
views:
  - name: llm_view
    entities: [player_id]
    timestamp: ts
    features:
      - {name: buys_7d, agg: count, window: 7d, where: 'event_type == "purchase"'}
  - name: broken
    entities: [player_id]
    features:
      - {name: x, agg: sum, column: no_such_column}
```"""


@pytest.fixture
def fake_llm() -> Iterator[tuple[str, list]]:
    requests: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, self.headers.get("Authorization"), body))
            reply = {"choices": [{"message": {"role": "assistant", "content": ANSWER}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_llm_hook_keeps_only_valid_views(fake_llm) -> None:
    url, requests = fake_llm
    views = suggest_views_llm(SCHEMA, "churn", url=url, model="local", api_key="k")
    assert [v.name for v in views] == ["llm_view"]
    path, auth, body = requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body["model"] == "local" and "player_id" in body["messages"][0]["content"]


def test_llm_hook_unreachable_is_a_clear_error() -> None:
    with pytest.raises(RaypipeError, match="gave no usable answer"):
        suggest_views_llm(SCHEMA, "churn", url="http://127.0.0.1:9", timeout=2)
